//! Storage trait and implementations.
