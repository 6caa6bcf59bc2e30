//! evaluation-proxy: evaluate feature flags and experiments next to your applications.
//!
//! A drop-in replacement for Amplitude's Evaluation Proxy and, on the same server, for the
//! Flagsmith Edge Proxy. The crate is laid out one concern per module:
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | one typed [`config::Config`]; figment: defaults < YAML/JSON file < `AMPLITUDE_*` env |
//! | [`app`] | builds state, starts sync loops, serves HTTP, shuts down gracefully |
//! | [`http`] | axum routers (Amplitude SDK API, ops endpoints), extractors, the error type |
//! | [`amplitude::engine`] | the pure Amplitude evaluation engine (no I/O, no async, no clock) |
//! | [`amplitude`] | upstream clients, sync loops, compiled per-deployment snapshots |
//! | [`flagsmith::engine`] | the pure Flagsmith evaluation engine |
//! | [`store`] | the storage trait shared by replicas, and its in-memory implementation |
//! | [`metrics`] | Prometheus metric names and the exporter |

pub mod amplitude;
pub mod app;
pub mod config;
pub mod flagsmith;
pub mod http;
pub mod metrics;
pub mod store;
