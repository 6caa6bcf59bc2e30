//! Everything Amplitude-specific outside the pure engine: upstream API clients, sync loops,
//! and the compiled per-deployment snapshots the request path reads.

pub mod engine;
