//! Everything Amplitude-specific outside the pure engine: upstream API clients, sync loops,
//! the compiled per-deployment snapshots the request path reads, and the conversion of an SDK
//! user into an evaluation context.

pub mod assignment;
pub mod cohort;
pub mod context;
pub mod engine;
pub mod lease;
pub mod registry;
pub mod sync;
pub mod upstream;
