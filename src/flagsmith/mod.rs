//! Flagsmith Edge Proxy compatibility.

pub mod engine;
