//! The pure Flagsmith flag engine (no I/O, no async, no clock), bit-exact with the
//! Python `flagsmith-flag-engine` 10.2.0 that the engine-test-data vectors (v3.9.0) pin.
//!
//! Two ways in:
//!
//! * [`get_evaluation_result`]: one-shot evaluation of an [`EvaluationContext`] (the
//!   vectors' input format, serde) into an [`EvaluationResult`] (their output format).
//! * For a proxy serving many requests from one polled environment document:
//!   deserialize an [`EnvironmentDocument`] (unknown fields ignored), call
//!   [`EnvironmentDocument::compile`] once per document (= [`CompiledContext::new`] of
//!   [`EnvironmentDocument::to_context`]`(None)`), then per request
//!   [`CompiledContext::evaluate`] with `None` (`GET /api/v1/flags/`) or
//!   `Some(&`[`IdentityContext::from_traits`]`(identifier, &traits))`
//!   (`POST /api/v1/identities/`). The result borrows from the compiled context; flags
//!   come in document order, and each flag's `metadata` is `{"id": <feature id>}`.
//!
//! Compilation parses everything reusable once: JSONPaths, regexes, semvers, number
//! casts, `IN` sets, reason strings, variant order. Semantics:
//! `shared/spec/flagsmith-engine.md`. Inputs the reference crashes on (invalid regex, zero
//! modulo divisor, unknown rule type, null priority, null `IN` value, …) evaluate as
//! "no match" / "weakest priority" here; nothing panics.

mod accessor;
mod compiled;
mod condition;
mod context;
mod document;
mod hashing;
#[cfg(test)]
mod proptests;
mod python;
mod result;
mod semver;
mod value;

pub use compiled::CompiledContext;
pub use context::{
    EnvironmentContext, EvaluationContext, FeatureContext, FeatureVariant, IdentityContext,
    Priority, RuleType, SegmentCondition, SegmentContext, SegmentRule,
};
pub use document::{
    DocCondition, DocFeature, DocFeatureState, DocMultivariateOption, DocMultivariateValue,
    DocProject, DocRule, DocSegment, EnvironmentDocument, IdentityOverride, Trait,
};
pub use hashing::hashed_percentage;
pub use result::{EvaluationResult, FlagResult, SegmentResult};

/// Evaluates a full context (identity included) once; for repeated evaluation of the same
/// environment compile it with [`CompiledContext::new`] instead.
pub fn get_evaluation_result(ctx: &EvaluationContext) -> EvaluationResult<'static> {
    CompiledContext::new(ctx)
        .evaluate(ctx.identity.as_ref())
        .into_owned()
}
