//! Flags compiled once per config version, and evaluation (spec §9, §10, §11).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use indexmap::IndexMap;

use super::condition::{CompiledCondition, Op, Selected};
use super::model::{Flag, Segment};
use super::murmur::murmur3_x86_32;
use super::topo::{sort_indices, CycleError};
use super::value::{coerce_string, write_json_object, write_json_string, Value};

/// Why an evaluation was aborted (spec §12); no partial results are returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvaluationError {
    /// The flag dependencies contain a cycle reachable from the requested keys.
    #[error("{0}")]
    Cycle(CycleError),
    /// A reached regex condition has a pattern that does not compile.
    #[error("invalid regex {pattern:?} in flag {flag}: {message}")]
    InvalidRegex {
        /// Flag key.
        flag: String,
        /// The pattern.
        pattern: String,
        /// Compiler message.
        message: String,
    },
    /// A reached allocation or distribution range has fewer than 2 elements.
    #[error("allocation or distribution range with fewer than 2 elements in flag {flag}")]
    InvalidRange {
        /// Flag key.
        flag: String,
    },
}

/// One flag result: the variant with merged metadata (spec §10).
///
/// Built once per config version, read by every request: its JSON form and its v1 visibility
/// are computed at construction, so answering a request copies bytes instead of re-serialising.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatedVariant {
    /// The variant's own key.
    pub key: String,
    /// The variant value.
    pub value: Option<Value>,
    /// The variant payload.
    pub payload: Option<Value>,
    /// Flag < segment < variant metadata; `None` when the merge is empty.
    pub metadata: Option<IndexMap<String, Value>>,
    /// [`EvaluatedVariant::write_json`] output, precomputed.
    json: Box<[u8]>,
    /// Whether the v1 endpoints hide this result, precomputed.
    v1_hidden: bool,
}

impl EvaluatedVariant {
    /// A variant result with its JSON form precomputed (nulls in `value`/`payload` are kept
    /// as given; they are omitted from the JSON).
    pub fn new(
        key: String,
        value: Option<Value>,
        payload: Option<Value>,
        metadata: Option<IndexMap<String, Value>>,
    ) -> Self {
        let mut variant = Self {
            key,
            value,
            payload,
            metadata,
            json: Box::default(),
            v1_hidden: false,
        };
        let mut json = Vec::new();
        variant.serialize(&mut json);
        variant.json = json.into_boxed_slice();
        variant.v1_hidden = variant.compute_v1_hidden();
        variant
    }

    /// Writes `{"key":..,"value"?:..,"payload"?:..,"metadata"?:{..}}` with nulls omitted.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.json);
    }

    fn serialize(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"key\":");
        write_json_string(&self.key, out);
        if let Some(v) = self.value.as_ref().filter(|v| !v.is_null()) {
            out.extend_from_slice(b",\"value\":");
            v.write_json(out);
        }
        if let Some(v) = self.payload.as_ref().filter(|v| !v.is_null()) {
            out.extend_from_slice(b",\"payload\":");
            v.write_json(out);
        }
        if let Some(m) = &self.metadata {
            out.extend_from_slice(b",\"metadata\":");
            write_json_object(m, out);
        }
        out.push(b'}');
    }

    fn v1_hidden(&self) -> bool {
        self.v1_hidden
    }

    fn compute_v1_hidden(&self) -> bool {
        let meta = |k: &str| self.metadata.as_ref().and_then(|m| m.get(k));
        meta("default") == Some(&Value::Bool(true)) || meta("deployed") == Some(&Value::Bool(false))
    }
}

/// Ordered flagKey → variant map (insertion order = order of first evaluation).
#[derive(Debug, Clone, Default)]
pub struct EvaluationResults {
    entries: Vec<(Arc<str>, Arc<EvaluatedVariant>)>,
}

impl EvaluationResults {
    /// Entries in evaluation order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &EvaluatedVariant)> {
        self.entries.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The result for one flag key.
    pub fn get(&self, key: &str) -> Option<&EvaluatedVariant> {
        self.entries
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    /// Number of flags with a result.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no flag produced a result.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes `{"flagKey":{variant},..}`. With `v1_filter`, entries whose metadata has
    /// `default == true` or `deployed == false` are dropped (the v1 endpoints' behaviour).
    pub fn write_json(&self, out: &mut Vec<u8>, v1_filter: bool) {
        out.push(b'{');
        let mut first = true;
        for (k, v) in &self.entries {
            if v1_filter && v.v1_hidden() {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            write_json_string(k, out);
            out.push(b':');
            v.write_json(out);
        }
        out.push(b'}');
    }
}

/// A selector resolved against the target `{context, result}` (spec §5).
#[derive(Debug, Clone)]
enum CompiledSelector {
    /// Always null (empty selector, unknown root, whole variant, whole result map).
    Null,
    /// `["context", ...path]`.
    Context(Vec<String>),
    /// `["result", flag, field, ...rest]` with the flag resolved to a result slot.
    Result {
        slot: usize,
        field: ResultField,
        rest: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy)]
enum ResultField {
    Key,
    Value,
    Metadata,
}

impl CompiledSelector {
    fn new(sel: &[String], slots: &HashMap<String, usize>) -> CompiledSelector {
        match sel.split_first() {
            Some((root, rest)) if root == "context" => CompiledSelector::Context(rest.to_vec()),
            Some((root, rest)) if root == "result" && rest.len() >= 2 => {
                let Some(&slot) = slots.get(&rest[0]) else {
                    return CompiledSelector::Null;
                };
                let field = match rest[1].as_str() {
                    "key" => ResultField::Key,
                    "value" => ResultField::Value,
                    "metadata" => ResultField::Metadata,
                    _ => return CompiledSelector::Null,
                };
                CompiledSelector::Result {
                    slot,
                    field,
                    rest: rest[2..].to_vec(),
                }
            }
            _ => CompiledSelector::Null,
        }
    }

    fn select<'a>(
        &self,
        context: &'a Value,
        results: &'a [Option<Arc<EvaluatedVariant>>],
    ) -> Selected<'a> {
        match self {
            CompiledSelector::Null => Selected::Null,
            CompiledSelector::Context(path) => match descend(context, path) {
                Some(v) => Selected::Value(v),
                None => Selected::Null,
            },
            CompiledSelector::Result { slot, field, rest } => {
                let Some(Some(variant)) = results.get(*slot) else {
                    return Selected::Null;
                };
                match field {
                    ResultField::Key if rest.is_empty() => Selected::Str(&variant.key),
                    ResultField::Key => Selected::Null,
                    ResultField::Value => {
                        match variant.value.as_ref().and_then(|v| descend(v, rest)) {
                            Some(v) => Selected::Value(v),
                            None => Selected::Null,
                        }
                    }
                    ResultField::Metadata => {
                        let Some(meta) = &variant.metadata else {
                            return Selected::Null;
                        };
                        match rest.split_first() {
                            None => Selected::Map(meta),
                            Some((k, more)) => match meta.get(k).and_then(|v| descend(v, more)) {
                                Some(v) => Selected::Value(v),
                                None => Selected::Null,
                            },
                        }
                    }
                }
            }
        }
    }
}

/// Walks `path` through objects only (arrays are not indexable); `None` for missing/null.
fn descend<'a>(start: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = start;
    for k in path {
        match cur {
            Value::Object(map) => cur = lookup(map, k)?,
            _ => return None,
        }
    }
    (!cur.is_null()).then_some(cur)
}

/// Objects up to this size are searched by scanning: cheaper than SipHash-ing the key, and
/// most context levels (`{user, groups}`, `user_properties`, a group) are this small.
const LINEAR_LOOKUP_MAX: usize = 8;

/// `map.get(key)`, scanning small maps instead of hashing (keys are unique, same result).
fn lookup<'a>(map: &'a IndexMap<String, Value>, key: &str) -> Option<&'a Value> {
    if map.len() <= LINEAR_LOOKUP_MAX {
        map.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        map.get(key)
    }
}

#[derive(Debug, Clone)]
struct CCondition {
    selector: CompiledSelector,
    cond: CompiledCondition,
}

/// A bucket outcome: `None` = variant missing (fall through to the next segment).
type Outcome = Option<Arc<EvaluatedVariant>>;

#[derive(Debug, Clone)]
struct CDistribution {
    range: Option<(i32, i32)>,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
struct CAllocation {
    range: Option<(i32, i32)>,
    distributions: Vec<CDistribution>,
}

#[derive(Debug, Clone)]
struct CBucket {
    selector: CompiledSelector,
    salt: String,
    allocations: Vec<CAllocation>,
}

#[derive(Debug, Clone)]
struct CSegment {
    conditions: Option<Vec<Vec<CCondition>>>,
    bucket: Option<CBucket>,
    default: Outcome,
}

#[derive(Debug, Clone)]
struct CFlag {
    key: Arc<str>,
    slot: usize,
    segments: Vec<CSegment>,
}

/// Flags compiled once per config version (regexes, semvers, numbers, value sets, merged result
/// variants and the topological order are all precomputed). Never fails on parsed flags.
#[derive(Debug, Clone)]
pub struct CompiledFlags {
    flags: Vec<Flag>,
    compiled: Vec<CFlag>,
    slot_count: usize,
    all_order: Result<Vec<usize>, CycleError>,
    cohorts: BTreeMap<String, BTreeSet<String>>,
}

fn range_of(r: &[i32]) -> Option<(i32, i32)> {
    match r {
        [a, b, ..] => Some((*a, *b)),
        _ => None,
    }
}

fn merge_metadata(parts: [Option<&IndexMap<String, Value>>; 3]) -> Option<IndexMap<String, Value>> {
    let mut out = IndexMap::new();
    for m in parts.into_iter().flatten() {
        for (k, v) in m {
            out.insert(k.clone(), v.clone());
        }
    }
    (!out.is_empty()).then_some(out)
}

struct SegmentBuilder<'a> {
    flag: &'a Flag,
    segment: &'a Segment,
    cache: HashMap<&'a str, Outcome>,
}

impl<'a> SegmentBuilder<'a> {
    fn outcome(&mut self, variant_key: &'a str) -> Outcome {
        let (flag, segment) = (self.flag, self.segment);
        self.cache
            .entry(variant_key)
            .or_insert_with(|| {
                let v = flag.variants.get(variant_key)?;
                Some(Arc::new(EvaluatedVariant::new(
                    v.key.clone(),
                    v.value.clone().filter(|x| !x.is_null()),
                    v.payload.clone().filter(|x| !x.is_null()),
                    merge_metadata([
                        flag.metadata.as_ref(),
                        segment.metadata.as_ref(),
                        v.metadata.as_ref(),
                    ]),
                )))
            })
            .clone()
    }
}

fn compile_segment(flag: &Flag, segment: &Segment, slots: &HashMap<String, usize>) -> CSegment {
    let mut b = SegmentBuilder {
        flag,
        segment,
        cache: HashMap::new(),
    };
    let compile_cond = |c: &super::model::Condition| CCondition {
        selector: CompiledSelector::new(&c.selector, slots),
        cond: CompiledCondition::from_model(c),
    };
    let conditions = segment.conditions.as_ref().map(|groups| {
        groups
            .iter()
            .map(|g| g.iter().map(compile_cond).collect())
            .collect()
    });
    let bucket = segment.bucket.as_ref().map(|bk| CBucket {
        selector: CompiledSelector::new(&bk.selector, slots),
        salt: bk.salt.clone(),
        allocations: bk
            .allocations
            .iter()
            .map(|a| CAllocation {
                range: range_of(&a.range),
                distributions: a
                    .distributions
                    .iter()
                    .map(|d| CDistribution {
                        range: range_of(&d.range),
                        outcome: b.outcome(&d.variant),
                    })
                    .collect(),
            })
            .collect(),
    });
    let default = segment.variant.as_deref().and_then(|v| b.outcome(v));
    CSegment {
        conditions,
        bucket,
        default,
    }
}

fn collect_cohorts(flags: &[Flag]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let conds = flags
        .iter()
        .flat_map(|f| &f.segments)
        .flat_map(|s| s.conditions.iter().flatten().flatten());
    for c in conds {
        let op = Op::parse(&c.op);
        let sel = &c.selector;
        if !matches!(op, Op::SetContainsAny | Op::SetDoesNotContainAny)
            || sel.len() <= 2
            || sel.last().map(String::as_str) != Some("cohort_ids")
        {
            continue;
        }
        let group_type = if sel[1] == "user" {
            "User".to_string()
        } else if sel.iter().any(|s| s == "groups") {
            sel[2].clone()
        } else {
            continue;
        };
        out.entry(group_type)
            .or_default()
            .extend(c.values.iter().cloned());
    }
    out
}

impl CompiledFlags {
    /// Compiles flags (kept in input order for re-serving).
    pub fn compile(flags: Vec<Flag>) -> CompiledFlags {
        let mut slots: HashMap<String, usize> = HashMap::new();
        for f in &flags {
            let n = slots.len();
            slots.entry(f.key.clone()).or_insert(n);
        }
        let compiled = flags
            .iter()
            .map(|f| CFlag {
                key: Arc::from(f.key.as_str()),
                slot: slots.get(&f.key).copied().unwrap_or(0),
                segments: f
                    .segments
                    .iter()
                    .map(|s| compile_segment(f, s, &slots))
                    .collect(),
            })
            .collect();
        let all_order = sort_indices(
            flags.len(),
            |i| flags[i].key.as_str(),
            |i| flags[i].dependencies.as_slice(),
            &[],
        );
        CompiledFlags {
            cohorts: collect_cohorts(&flags),
            slot_count: slots.len(),
            compiled,
            all_order,
            flags,
        }
    }

    /// The flags in input order.
    pub fn flags(&self) -> &[Flag] {
        &self.flags
    }

    /// Number of flags.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// True when there are no flags.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Cohort ids referenced by `set contains any`/`set does not contain any` conditions on
    /// `…cohort_ids` selectors, by group type (`User` for user cohorts).
    pub fn cohort_ids_by_group_type(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.cohorts
    }

    /// Evaluates for one context in topological order; `flag_keys` empty = all flags, otherwise
    /// only those keys and their transitive dependencies (which are included in the results).
    pub fn evaluate(
        &self,
        context: &Value,
        flag_keys: &[String],
    ) -> Result<EvaluationResults, EvaluationError> {
        if flag_keys.is_empty() {
            let order = self
                .all_order
                .as_ref()
                .map_err(|e| EvaluationError::Cycle(e.clone()))?;
            self.evaluate_in_order(context, order.iter().copied())
        } else {
            let flags = &self.flags;
            let order = sort_indices(
                flags.len(),
                |i| flags[i].key.as_str(),
                |i| flags[i].dependencies.as_slice(),
                flag_keys,
            )
            .map_err(EvaluationError::Cycle)?;
            self.evaluate_in_order(context, order.into_iter())
        }
    }

    /// Evaluates every flag in input order without sorting (the core `evaluate`, spec §10).
    pub fn evaluate_unsorted(&self, context: &Value) -> Result<EvaluationResults, EvaluationError> {
        self.evaluate_in_order(context, 0..self.compiled.len())
    }

    fn evaluate_in_order(
        &self,
        context: &Value,
        order: impl Iterator<Item = usize>,
    ) -> Result<EvaluationResults, EvaluationError> {
        let mut slots: Vec<Option<Arc<EvaluatedVariant>>> = vec![None; self.slot_count];
        let mut first_seen: Vec<usize> = Vec::new();
        let mut keys: Vec<Option<Arc<str>>> = vec![None; self.slot_count];
        for i in order {
            let Some(flag) = self.compiled.get(i) else {
                continue;
            };
            if let Some(result) = evaluate_flag(flag, context, &slots)? {
                if slots[flag.slot].is_none() {
                    first_seen.push(flag.slot);
                    keys[flag.slot] = Some(flag.key.clone());
                }
                slots[flag.slot] = Some(result);
            }
        }
        let entries = first_seen
            .into_iter()
            .filter_map(|s| Some((keys[s].take()?, slots[s].take()?)))
            .collect();
        Ok(EvaluationResults { entries })
    }
}

fn evaluate_flag(
    flag: &CFlag,
    context: &Value,
    results: &[Option<Arc<EvaluatedVariant>>],
) -> Result<Option<Arc<EvaluatedVariant>>, EvaluationError> {
    for seg in &flag.segments {
        if let Some(groups) = &seg.conditions {
            if !match_groups(flag, groups, context, results)? {
                continue;
            }
        }
        if let Some(outcome) = bucket(flag, seg, context, results)? {
            return Ok(Some(outcome));
        }
    }
    Ok(None)
}

fn match_groups(
    flag: &CFlag,
    groups: &[Vec<CCondition>],
    context: &Value,
    results: &[Option<Arc<EvaluatedVariant>>],
) -> Result<bool, EvaluationError> {
    'groups: for group in groups {
        for c in group {
            let prop = c.selector.select(context, results);
            let ok = c
                .cond
                .matches(prop)
                .map_err(|e| EvaluationError::InvalidRegex {
                    flag: flag.key.to_string(),
                    pattern: e.pattern,
                    message: e.message,
                })?;
            if !ok {
                continue 'groups;
            }
        }
        return Ok(true);
    }
    Ok(false)
}

fn bucket(
    flag: &CFlag,
    seg: &CSegment,
    context: &Value,
    results: &[Option<Arc<EvaluatedVariant>>],
) -> Result<Outcome, EvaluationError> {
    let Some(bk) = &seg.bucket else {
        return Ok(seg.default.clone());
    };
    let value = match bk.selector.select(context, results) {
        Selected::Null => None,
        Selected::Str(s) => Some(std::borrow::Cow::Borrowed(s)),
        Selected::Value(v) => coerce_string(v),
        Selected::Map(m) => {
            let mut out = Vec::new();
            write_json_object(m, &mut out);
            Some(std::borrow::Cow::Owned(
                String::from_utf8(out).unwrap_or_default(),
            ))
        }
    };
    let value = match value {
        Some(v) if !v.is_empty() => v,
        _ => return Ok(seg.default.clone()),
    };
    let mut key = String::with_capacity(bk.salt.len() + 1 + value.len());
    key.push_str(&bk.salt);
    key.push('/');
    key.push_str(&value);
    let hash = i64::from(murmur3_x86_32(key.as_bytes(), 0));
    let (alloc_value, dist_value) = (hash % 100, hash / 100);
    let bad_range = || EvaluationError::InvalidRange {
        flag: flag.key.to_string(),
    };
    for a in &bk.allocations {
        let (start, end) = a.range.ok_or_else(bad_range)?;
        if i64::from(start) <= alloc_value && alloc_value < i64::from(end) {
            for d in &a.distributions {
                let (ds, de) = d.range.ok_or_else(bad_range)?;
                if i64::from(ds) <= dist_value && dist_value < i64::from(de) {
                    return Ok(d.outcome.clone());
                }
            }
        }
    }
    Ok(seg.default.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precomputed_json_matches_fields() {
        let mut meta = IndexMap::new();
        meta.insert("default".to_owned(), Value::Bool(true));
        let v = EvaluatedVariant::new(
            "on".to_owned(),
            Some(Value::String("on".to_owned())),
            Some(Value::Null),
            Some(meta),
        );
        let mut out = Vec::new();
        v.write_json(&mut out);
        assert_eq!(
            out,
            br#"{"key":"on","value":"on","metadata":{"default":true}}"#
        );
        assert!(v.v1_hidden());
        let plain = EvaluatedVariant::new("off".to_owned(), None, None, None);
        assert!(!plain.v1_hidden());
    }

    #[test]
    fn lookup_agrees_with_get_for_small_and_large_maps() {
        for size in [0, 1, LINEAR_LOOKUP_MAX, LINEAR_LOOKUP_MAX + 1, 40] {
            let map: IndexMap<String, Value> = (0..size)
                .map(|i| (format!("k{i}"), Value::Int(i as i64)))
                .collect();
            for i in 0..size + 2 {
                let key = format!("k{i}");
                assert_eq!(lookup(&map, &key), map.get(&key), "size {size} key {key}");
            }
        }
    }
}
