//! The pure Amplitude Experiment evaluation engine (see `../shared/spec/amplitude-evaluation-engine.md`).
//!
//! No I/O, no async, no clock. Parse flags with [`parse_flags`], compile them once per config
//! version with [`CompiledFlags::compile`], then call [`CompiledFlags::evaluate`] per request with a
//! context [`Value`] parsed by [`Value::from_json_slice`] (which keeps Kotlin's number kinds).
//!
//! Known, deliberate differences from the Kotlin JVM engine 2.3.0 (all on malformed or exotic input):
//! - JSON syntax is strict except for number spelling: kotlinx's other lenient extras (unquoted keys
//!   and words, e.g. `{a: foo}`) are rejected in flags and contexts. They *are* accepted inside
//!   `[`-prefixed string properties (`coerceStringList`), where unknown words become null.
//! - Selecting a whole result variant (`["result","f"]`) or the whole result map yields null
//!   (upstream stringifies a Kotlin data class; the spec calls this undefined).
//! - A NaN/Infinity double nested in an array/object that gets JSON-encoded is written as `null`
//!   instead of aborting the evaluation (only reachable via tokens such as `1e400`).
//! - Regexes are Java patterns translated to Rust syntax (see [`JavaRegex`]); possessive
//!   quantifiers, `\G` and some Java-only classes are reported as invalid patterns.
//! - Hexadecimal float literals in numeric comparisons round via a 64-bit mantissa (exact for all
//!   literals up to 16 significant hex digits).

mod condition;
mod eval;
pub mod java;
mod json;
mod model;
mod murmur;
mod partial;
mod regex_java;
pub mod semver;
mod topo;
mod value;

pub use condition::{CompiledCondition, Op, PropList, PropView, RegexError, Scalar, Selected};
pub use eval::{
    flag_variant_digest, CompiledFlags, EvaluatedVariant, EvaluationError, EvaluationResults,
};
pub use model::{
    parse_flag, parse_flags, Allocation, Bucket, Condition, Distribution, Flag, FlagParseError,
    Segment, Variant,
};
pub use murmur::murmur3_x86_32;
pub use partial::{always_false, always_true, partial_evaluate, partial_evaluate_segment};
pub use regex_java::JavaRegex;
pub use topo::{sort_indices, topological_sort, CycleError};
pub use value::{
    classify_number, coerce_string, coerce_string_list, escape_json_into, map_with_capacity,
    parse_string_list, JsonError, Map, MapHasher, Value,
};

/// Resolves a selector against a context-only target `{"context": context}` (spec §5): the first
/// element must be `"context"`; arrays are not indexable; missing and null both give `None`.
pub fn select<'a>(context: &'a Value, selector: &[String]) -> Option<&'a Value> {
    let (root, path) = selector.split_first()?;
    if root != "context" {
        return None;
    }
    let mut cur = context;
    for k in path {
        match cur {
            Value::Object(map) => cur = map.get(k)?,
            _ => return None,
        }
    }
    (!cur.is_null()).then_some(cur)
}

/// Matches one condition (`op`, `values`) against a property value (`None` = null/missing),
/// exactly as a segment condition would (spec §6). `Err` for a reached invalid regex.
pub fn match_condition(
    prop: Option<&Value>,
    op: &str,
    values: &[String],
) -> Result<bool, RegexError> {
    let cond = CompiledCondition::new(op, values);
    cond.matches(prop.map_or(Selected::Null, Selected::Value))
}
