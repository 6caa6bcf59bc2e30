//! The evaluation result: the engine's output, in the JSON format of the Flagsmith
//! `evaluation-result.json` schema. Borrows from the compiled context where it can, so
//! evaluating a cached environment does not copy feature values.

use std::borrow::Cow;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Flags by feature name (context feature order) and matched segments (context order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationResult<'a> {
    /// One result per feature, keyed by feature name.
    pub flags: IndexMap<Cow<'a, str>, FlagResult<'a>>,
    /// Segments the context matched, in context order.
    pub segments: Vec<SegmentResult<'a>>,
}

/// The evaluated state of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagResult<'a> {
    /// Feature name.
    pub name: Cow<'a, str>,
    /// Whether the flag is on.
    pub enabled: bool,
    /// The evaluated value.
    pub value: Cow<'a, Value>,
    /// `DEFAULT`, `TARGETING_MATCH; segment=<name>` or `SPLIT; weight=<w>`.
    pub reason: Cow<'a, str>,
    /// `None` without identity or variants, `"control"` for the remainder bucket, else
    /// the chosen variant's key (`None` if it has none). Always serialised.
    pub variant: Option<Cow<'a, str>>,
    /// The feature context's metadata, present only when non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Cow<'a, Value>>,
}

/// One matched segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentResult<'a> {
    /// Segment name.
    pub name: Cow<'a, str>,
    /// The segment's metadata, present only when non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Cow<'a, Value>>,
}

impl EvaluationResult<'_> {
    /// Detaches the result from the compiled context it borrows from.
    pub fn into_owned(self) -> EvaluationResult<'static> {
        EvaluationResult {
            flags: self
                .flags
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                .collect(),
            segments: self
                .segments
                .into_iter()
                .map(SegmentResult::into_owned)
                .collect(),
        }
    }
}

impl FlagResult<'_> {
    /// Detaches the flag from the compiled context it borrows from.
    pub fn into_owned(self) -> FlagResult<'static> {
        FlagResult {
            name: Cow::Owned(self.name.into_owned()),
            enabled: self.enabled,
            value: Cow::Owned(self.value.into_owned()),
            reason: Cow::Owned(self.reason.into_owned()),
            variant: self.variant.map(|v| Cow::Owned(v.into_owned())),
            metadata: self.metadata.map(|m| Cow::Owned(m.into_owned())),
        }
    }
}

impl SegmentResult<'_> {
    /// Detaches the segment from the compiled context it borrows from.
    pub fn into_owned(self) -> SegmentResult<'static> {
        SegmentResult {
            name: Cow::Owned(self.name.into_owned()),
            metadata: self.metadata.map(|m| Cow::Owned(m.into_owned())),
        }
    }
}
