//! The pure Flagsmith evaluation engine (see `../shared/spec/flagsmith-engine.md`).
