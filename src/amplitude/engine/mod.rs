//! The pure Amplitude Experiment evaluation engine (see `../shared/spec/amplitude-evaluation-engine.md`).
