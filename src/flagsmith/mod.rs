//! Flagsmith Edge Proxy compatibility: the engine, the document sync loops and the
//! per-environment snapshots the HTTP handlers read.

pub mod engine;
pub mod registry;
pub mod sync;
pub mod time;
