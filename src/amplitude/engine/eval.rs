//! Flags compiled once per config version, and evaluation (spec §9, §10, §11).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use super::condition::{str_eq, CompiledCondition, Op, PropView, RegexError, Selected};
use super::model::{Flag, Segment};
use super::murmur::MurmurPrefix;
use super::topo::{sort_indices, CycleError};
use super::value::{coerce_string, write_json_object, write_json_string, Map, Value};
use crate::amplitude::assignment::event::TableParts;

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
/// Results are built once per (flag, segment, variant) at compile time and shared by every
/// evaluation, so the JSON form is serialised then too: writing a result is a copy.
#[derive(Debug, Clone)]
pub struct EvaluatedVariant {
    key: String,
    value: Option<Value>,
    payload: Option<Value>,
    metadata: Option<Map>,
    /// `{"key":..,"value"?:..,"payload"?:..,"metadata"?:{..}}`, precomputed.
    json: Box<[u8]>,
    /// Whether the v1 endpoints drop this result.
    v1_hidden: bool,
}

impl PartialEq for EvaluatedVariant {
    fn eq(&self, other: &Self) -> bool {
        // `json` and `v1_hidden` derive from the other fields.
        self.key == other.key
            && self.value == other.value
            && self.payload == other.payload
            && self.metadata == other.metadata
    }
}

impl EvaluatedVariant {
    /// A result; null `value`/`payload` are treated as absent, an empty metadata map as none.
    pub fn new(
        key: String,
        value: Option<Value>,
        payload: Option<Value>,
        metadata: Option<Map>,
    ) -> Self {
        let value = value.filter(|v| !v.is_null());
        let payload = payload.filter(|v| !v.is_null());
        let metadata = metadata.filter(|m| !m.is_empty());
        let mut json = Vec::new();
        json.extend_from_slice(b"{\"key\":");
        write_json_string(&key, &mut json);
        if let Some(v) = &value {
            json.extend_from_slice(b",\"value\":");
            v.write_json(&mut json);
        }
        if let Some(v) = &payload {
            json.extend_from_slice(b",\"payload\":");
            v.write_json(&mut json);
        }
        if let Some(m) = &metadata {
            json.extend_from_slice(b",\"metadata\":");
            write_json_object(m, &mut json);
        }
        json.push(b'}');
        let meta = |k: &str| metadata.as_ref().and_then(|m| m.get(k));
        let v1_hidden = meta("default") == Some(&Value::Bool(true))
            || meta("deployed") == Some(&Value::Bool(false));
        Self {
            key,
            value,
            payload,
            metadata,
            json: json.into_boxed_slice(),
            v1_hidden,
        }
    }

    /// The variant's own key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The variant value, if not null.
    pub fn value(&self) -> Option<&Value> {
        self.value.as_ref()
    }

    /// The variant payload, if not null.
    pub fn payload(&self) -> Option<&Value> {
        self.payload.as_ref()
    }

    /// Flag < segment < variant metadata; `None` when the merge is empty.
    pub fn metadata(&self) -> Option<&Map> {
        self.metadata.as_ref()
    }

    /// Writes `{"key":..,"value"?:..,"payload"?:..,"metadata"?:{..}}` with nulls omitted.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.json);
    }

    fn v1_hidden(&self) -> bool {
        self.v1_hidden
    }
}

/// Flag keys and result variants of one compiled config, shared by all its evaluations.
///
/// Why a table: results refer to it by index, so an evaluation takes one reference count on
/// the table instead of two per result (atomic increments and decrements were ~10% of an
/// evaluation).
#[derive(Debug, Default)]
struct ResultTable {
    /// Flag key per result slot.
    keys: Vec<Box<str>>,
    /// `"flagKey":` per result slot, escaped once here rather than on every request.
    keys_json: Vec<Box<[u8]>>,
    /// Every distinct (flag, segment, variant) result.
    variants: Vec<EvaluatedVariant>,
    /// [`flag_variant_digest`] of each entry of `variants` with its flag's key.
    digests: Vec<u128>,
    /// The slot (flag key) each entry of `variants` belongs to.
    variant_slots: Vec<usize>,
    /// The assignment events' per-(flag, variant) bytes and hashes, built by the tracking
    /// worker on its first event of this config version (never when tracking is off).
    event_parts: OnceLock<TableParts>,
}

/// A stable 128-bit fingerprint of a (flag key, variant key) pair: XXH3-128 of
/// `flagKey.trim() 0x00 variantKey.trim()`. Assignment dedup sums these per evaluation
/// (order-independent); the table computes them once per config version, not per request.
pub fn flag_variant_digest(flag_key: &str, variant_key: &str) -> u128 {
    let (flag, variant) = (flag_key.trim().as_bytes(), variant_key.trim().as_bytes());
    let mut buffer = Vec::with_capacity(flag.len() + variant.len() + 1);
    buffer.extend_from_slice(flag);
    buffer.push(0);
    buffer.extend_from_slice(variant);
    xxhash_rust::xxh3::xxh3_128(&buffer)
}

/// Ordered flagKey → variant map (insertion order = order of first evaluation).
#[derive(Clone, Default)]
pub struct EvaluationResults {
    table: Arc<ResultTable>,
    /// (slot, variant index) into `table`.
    entries: Vec<(usize, usize)>,
}

impl std::fmt::Debug for EvaluationResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl EvaluationResults {
    /// Entries in evaluation order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &EvaluatedVariant)> {
        self.entries
            .iter()
            .filter_map(|&(slot, v)| self.entry(slot, v))
    }

    fn entry(&self, slot: usize, variant: usize) -> Option<(&str, &EvaluatedVariant)> {
        let key = self.table.keys.get(slot)?;
        Some((&**key, self.table.variants.get(variant)?))
    }

    /// [`flag_variant_digest`] of each entry, in evaluation order (precomputed per config).
    pub fn flag_variant_digests(&self) -> impl Iterator<Item = u128> + '_ {
        self.entries
            .iter()
            .filter_map(|&(_, v)| self.table.digests.get(v).copied())
    }

    /// The assignment-event parts of this config version (built on the first call, then
    /// shared by every evaluation of the config) and the entries as (slot, variant) indices
    /// into them, in evaluation order: an event is then mostly copies of precomputed bytes.
    pub fn event_parts(&self) -> (&TableParts, &[(usize, usize)]) {
        let table = &*self.table;
        let parts = table
            .event_parts
            .get_or_init(|| TableParts::build(&table.keys, &table.variants, &table.variant_slots));
        (parts, &self.entries)
    }

    /// The result for one flag key.
    pub fn get(&self, key: &str) -> Option<&EvaluatedVariant> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
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
        let table = &*self.table;
        // One exact reservation instead of growing a ~10 KB body several times.
        let needed: usize = self
            .entries
            .iter()
            .filter_map(|&(s, v)| {
                Some(table.keys_json.get(s)?.len() + table.variants.get(v)?.json.len() + 1)
            })
            .sum();
        out.reserve(needed + 2);
        out.push(b'{');
        let mut first = true;
        for &(slot, variant) in &self.entries {
            let (Some(key), Some(v)) = (table.keys_json.get(slot), table.variants.get(variant))
            else {
                continue;
            };
            if v1_filter && v.v1_hidden() {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(key);
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
    /// `["context", ...path]`, as an index into the interned context paths.
    Context(usize),
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
    fn new(
        sel: &[String],
        slots: &HashMap<String, usize>,
        paths: &mut PathInterner,
    ) -> CompiledSelector {
        match sel.split_first() {
            Some((root, rest)) if root == "context" => {
                CompiledSelector::Context(paths.intern(rest))
            }
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

    fn select<'r>(&self, ctx: &mut EvalContext<'r>, results: &SlotResults<'r>) -> Selected<'r> {
        match self {
            CompiledSelector::Null => Selected::Null,
            CompiledSelector::Context(id) => ctx.selected(*id),
            CompiledSelector::Result { slot, field, rest } => {
                let Some(variant) = results.get(*slot) else {
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

/// Objects up to this size are searched by scanning: cheaper than SipHash-ing the key (only keys
/// of the same length are compared byte by byte), and most context levels (`{user, groups}`, a
/// user with its ~15 standard fields, `user_properties`, a group) are this small.
const LINEAR_LOOKUP_MAX: usize = 32;

/// `map.get(key)`, scanning small maps instead of hashing (keys are unique, same result).
fn lookup<'a>(map: &'a Map, key: &str) -> Option<&'a Value> {
    if map.len() <= LINEAR_LOOKUP_MAX {
        map.iter().find(|(k, _)| str_eq(k, key)).map(|(_, v)| v)
    } else {
        map.get(key)
    }
}

/// Distinct context paths across all flags, so each is resolved once per evaluation, and
/// distinct context conditions (path, operator, values), so each is matched once per evaluation
/// however many segments repeat it (real configs copy targeting segments between flags).
#[derive(Debug, Default)]
struct PathInterner {
    ids: HashMap<Vec<String>, usize>,
    paths: Vec<Vec<String>>,
    conditions: HashMap<(usize, String, Vec<String>), usize>,
}

impl PathInterner {
    fn intern(&mut self, path: &[String]) -> usize {
        if let Some(&id) = self.ids.get(path) {
            return id;
        }
        let id = self.paths.len();
        self.paths.push(path.to_vec());
        self.ids.insert(path.to_vec(), id);
        id
    }

    fn intern_condition(&mut self, path: usize, op: &str, values: &[String]) -> usize {
        let next = self.conditions.len();
        *self
            .conditions
            .entry((path, op.to_owned(), values.to_vec()))
            .or_insert(next)
    }
}

type CacheEntry<'a> = (Selected<'a>, Option<PropView<'a>>);

/// Per-evaluation memo of context selections and their coerced views.
struct EvalContext<'a> {
    context: &'a Value,
    paths: &'a [Vec<String>],
    cache: Vec<Option<CacheEntry<'a>>>,
    /// Outcome per interned condition: [`UNKNOWN`], [`MATCHED`] or [`NOT_MATCHED`].
    memo: Vec<u8>,
}

const UNKNOWN: u8 = 0;
const MATCHED: u8 = 1;
const NOT_MATCHED: u8 = 2;

impl<'a> EvalContext<'a> {
    fn entry(&mut self, id: usize) -> Option<&mut CacheEntry<'a>> {
        let (context, paths) = (self.context, self.paths);
        let slot = self.cache.get_mut(id)?;
        Some(slot.get_or_insert_with(|| {
            let sel = match paths.get(id).and_then(|p| descend(context, p)) {
                Some(v) => Selected::Value(v),
                None => Selected::Null,
            };
            (sel, None)
        }))
    }

    fn selected(&mut self, id: usize) -> Selected<'a> {
        self.entry(id).map_or(Selected::Null, |e| e.0)
    }

    /// [`EvalContext::matches`] remembered per interned condition. Errors are not remembered
    /// (they abort the evaluation anyway).
    fn matches_memo<'c>(
        &mut self,
        id: usize,
        memo: usize,
        cond: &'c CompiledCondition,
    ) -> Result<bool, &'c RegexError> {
        match self.memo.get(memo).copied() {
            Some(MATCHED) => return Ok(true),
            Some(NOT_MATCHED) => return Ok(false),
            _ => {}
        }
        let matched = self.matches(id, cond)?;
        if let Some(slot) = self.memo.get_mut(memo) {
            *slot = if matched { MATCHED } else { NOT_MATCHED };
        }
        Ok(matched)
    }

    fn matches<'c>(
        &mut self,
        id: usize,
        cond: &'c CompiledCondition,
    ) -> Result<bool, &'c RegexError> {
        match self.entry(id) {
            None => cond.matches_ref(Selected::Null),
            Some(entry) => {
                let sel = entry.0;
                cond.matches_view_ref(entry.1.get_or_insert_with(|| PropView::of(sel)))
            }
        }
    }
}

#[derive(Debug, Clone)]
struct CCondition {
    selector: CompiledSelector,
    /// Interned (path, operator, values) id for context selectors.
    memo: Option<usize>,
    cond: CompiledCondition,
}

/// A bucket outcome, as an index into [`ResultTable::variants`]: `None` = variant missing
/// (fall through to the next segment).
type Outcome = Option<usize>;

/// The results so far of one evaluation, by slot, for `result` selectors.
struct SlotResults<'t> {
    variants: &'t [EvaluatedVariant],
    slots: Vec<Outcome>,
}

impl<'t> SlotResults<'t> {
    fn get(&self, slot: usize) -> Option<&'t EvaluatedVariant> {
        let variants = self.variants;
        variants.get((*self.slots.get(slot)?)?)
    }
}

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
    /// Murmur state after `salt + "/"`.
    salt: MurmurPrefix,
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
    key: Box<str>,
    slot: usize,
    segments: Vec<CSegment>,
}

/// Flags compiled once per config version (regexes, semvers, numbers, value sets, merged result
/// variants and the topological order are all precomputed). Never fails on parsed flags.
#[derive(Debug, Clone)]
pub struct CompiledFlags {
    flags: Vec<Flag>,
    compiled: Vec<CFlag>,
    paths: Vec<Vec<String>>,
    /// Number of interned context conditions (size of the per-evaluation memo).
    condition_count: usize,
    table: Arc<ResultTable>,
    all_order: Result<Vec<usize>, CycleError>,
    cohorts: BTreeMap<String, BTreeSet<String>>,
}

fn range_of(r: &[i32]) -> Option<(i32, i32)> {
    match r {
        [a, b, ..] => Some((*a, *b)),
        _ => None,
    }
}

fn merge_metadata(parts: [Option<&Map>; 3]) -> Option<Map> {
    let mut out = Map::default();
    for m in parts.into_iter().flatten() {
        for (k, v) in m {
            out.insert(k.clone(), v.clone());
        }
    }
    (!out.is_empty()).then_some(out)
}

struct SegmentBuilder<'a, 'v> {
    flag: &'a Flag,
    segment: &'a Segment,
    cache: HashMap<&'a str, Outcome>,
    variants: &'v mut Vec<EvaluatedVariant>,
}

impl<'a> SegmentBuilder<'a, '_> {
    fn outcome(&mut self, variant_key: &'a str) -> Outcome {
        let (flag, segment) = (self.flag, self.segment);
        let variants = &mut *self.variants;
        *self.cache.entry(variant_key).or_insert_with(|| {
            let v = flag.variants.get(variant_key)?;
            variants.push(EvaluatedVariant::new(
                v.key.clone(),
                v.value.clone(),
                v.payload.clone(),
                merge_metadata([
                    flag.metadata.as_ref(),
                    segment.metadata.as_ref(),
                    v.metadata.as_ref(),
                ]),
            ));
            Some(variants.len() - 1)
        })
    }
}

fn compile_segment(
    flag: &Flag,
    segment: &Segment,
    slots: &HashMap<String, usize>,
    paths: &mut PathInterner,
    variants: &mut Vec<EvaluatedVariant>,
) -> CSegment {
    let mut b = SegmentBuilder {
        flag,
        segment,
        cache: HashMap::new(),
        variants,
    };
    let mut compile_cond = |c: &super::model::Condition| {
        let selector = CompiledSelector::new(&c.selector, slots, paths);
        let memo = match selector {
            CompiledSelector::Context(id) => Some(paths.intern_condition(id, &c.op, &c.values)),
            _ => None,
        };
        CCondition {
            selector,
            memo,
            cond: CompiledCondition::from_model(c),
        }
    };
    let conditions = segment.conditions.as_ref().map(|groups| {
        groups
            .iter()
            .map(|g| g.iter().map(&mut compile_cond).collect())
            .collect()
    });
    let bucket = segment.bucket.as_ref().map(|bk| CBucket {
        selector: CompiledSelector::new(&bk.selector, slots, paths),
        salt: MurmurPrefix::new(format!("{}/", bk.salt).as_bytes()),
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

impl Default for CompiledFlags {
    /// No flags.
    fn default() -> Self {
        CompiledFlags::compile(Vec::new())
    }
}

impl CompiledFlags {
    /// Compiles flags (kept in input order for re-serving).
    pub fn compile(flags: Vec<Flag>) -> CompiledFlags {
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut table = ResultTable::default();
        for f in &flags {
            if !slots.contains_key(&f.key) {
                slots.insert(f.key.clone(), table.keys.len());
                table.keys.push(f.key.as_str().into());
                let mut key_json = Vec::with_capacity(f.key.len() + 3);
                write_json_string(&f.key, &mut key_json);
                key_json.push(b':');
                table.keys_json.push(key_json.into_boxed_slice());
            }
        }
        let mut paths = PathInterner::default();
        let compiled = flags
            .iter()
            .map(|f| {
                let segments = f
                    .segments
                    .iter()
                    .map(|s| compile_segment(f, s, &slots, &mut paths, &mut table.variants))
                    .collect();
                // Every variant added since the last flag belongs to `f`.
                let new_variants = &table.variants[table.digests.len()..];
                let digests: Vec<u128> = new_variants
                    .iter()
                    .map(|v| flag_variant_digest(&f.key, v.key()))
                    .collect();
                table.digests.extend(digests);
                let slot = slots.get(&f.key).copied().unwrap_or(0);
                table.variant_slots.resize(table.digests.len(), slot);
                CFlag {
                    key: f.key.as_str().into(),
                    slot,
                    segments,
                }
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
            table: Arc::new(table),
            condition_count: paths.conditions.len(),
            paths: paths.paths,
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
        let slot_count = self.table.keys.len();
        let mut results = SlotResults {
            variants: &self.table.variants,
            slots: vec![None; slot_count],
        };
        let mut ctx = EvalContext {
            context,
            paths: &self.paths,
            cache: Vec::with_capacity(self.paths.len()),
            memo: vec![UNKNOWN; self.condition_count],
        };
        // Not `vec![None; n]`: that clones the (large) entry type element by element.
        ctx.cache.resize_with(self.paths.len(), || None);
        let mut entries: Vec<(usize, usize)> = Vec::with_capacity(slot_count);
        for i in order {
            let Some(flag) = self.compiled.get(i) else {
                continue;
            };
            let outcome =
                evaluate_flag(flag, &mut ctx, &results).map_err(|f| f.error(&flag.key))?;
            let Some(result) = outcome else {
                continue;
            };
            let Some(slot) = results.slots.get_mut(flag.slot) else {
                continue;
            };
            if slot.is_none() {
                entries.push((flag.slot, result));
            } else if let Some(entry) = entries.iter_mut().find(|e| e.0 == flag.slot) {
                // A repeated flag key: the later flag's result, the first one's position.
                entry.1 = result;
            }
            *slot = Some(result);
        }
        Ok(EvaluationResults {
            table: Arc::clone(&self.table),
            entries,
        })
    }
}

/// Why a flag's evaluation failed, borrowed from the compiled flags (small, so the hot path's
/// `Result`s stay in registers); turned into an [`EvaluationError`] with the flag key.
enum Fail<'c> {
    Regex(&'c RegexError),
    Range,
}

impl Fail<'_> {
    fn error(self, flag: &str) -> EvaluationError {
        match self {
            Fail::Regex(e) => EvaluationError::InvalidRegex {
                flag: flag.to_string(),
                pattern: e.pattern.clone(),
                message: e.message.clone(),
            },
            Fail::Range => EvaluationError::InvalidRange {
                flag: flag.to_string(),
            },
        }
    }
}

fn evaluate_flag<'a, 'c>(
    flag: &'c CFlag,
    ctx: &mut EvalContext<'a>,
    results: &SlotResults<'a>,
) -> Result<Outcome, Fail<'c>> {
    for seg in &flag.segments {
        if let Some(groups) = &seg.conditions {
            if !match_groups(groups, ctx, results)? {
                continue;
            }
        }
        if let Some(outcome) = bucket(seg, ctx, results)? {
            return Ok(Some(outcome));
        }
    }
    Ok(None)
}

fn match_groups<'a, 'c>(
    groups: &'c [Vec<CCondition>],
    ctx: &mut EvalContext<'a>,
    results: &SlotResults<'a>,
) -> Result<bool, Fail<'c>> {
    'groups: for group in groups {
        for c in group {
            let matched = match &c.selector {
                CompiledSelector::Context(id) => match c.memo {
                    Some(memo) => ctx.matches_memo(*id, memo, &c.cond),
                    None => ctx.matches(*id, &c.cond),
                },
                other => c.cond.matches_ref(other.select(ctx, results)),
            };
            let ok = matched.map_err(Fail::Regex)?;
            if !ok {
                continue 'groups;
            }
        }
        return Ok(true);
    }
    Ok(false)
}

fn bucket<'a, 'c>(
    seg: &'c CSegment,
    ctx: &mut EvalContext<'a>,
    results: &SlotResults<'a>,
) -> Result<Outcome, Fail<'c>> {
    let Some(bk) = &seg.bucket else {
        return Ok(seg.default);
    };
    let value = match bk.selector.select(ctx, results) {
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
        _ => return Ok(seg.default),
    };
    let hash = i64::from(bk.salt.hash(value.as_bytes()));
    let (alloc_value, dist_value) = (hash % 100, hash / 100);
    for a in &bk.allocations {
        let (start, end) = a.range.ok_or(Fail::Range)?;
        if i64::from(start) <= alloc_value && alloc_value < i64::from(end) {
            for d in &a.distributions {
                let (ds, de) = d.range.ok_or(Fail::Range)?;
                if i64::from(ds) <= dist_value && dist_value < i64::from(de) {
                    return Ok(d.outcome);
                }
            }
        }
    }
    Ok(seg.default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amplitude::engine::parse_flags;

    #[test]
    fn precomputed_json_matches_fields() {
        let mut meta = Map::default();
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
            let map: Map = (0..size)
                .map(|i| (format!("k{i}"), Value::Int(i as i64)))
                .collect();
            for i in 0..size + 2 {
                let key = format!("k{i}");
                assert_eq!(lookup(&map, &key), map.get(&key), "size {size} key {key}");
            }
        }
    }

    /// A realistic deployment: inclusions, a dependency segment, property targeting, a rollout.
    pub(crate) fn deployment(n: usize) -> CompiledFlags {
        let flags: Vec<String> = (0..n)
            .map(|i| {
                let has_dep = i > 0 && i % 5 == 0;
                let deps = if has_dep { format!(r#"["flag-{}"]"#, i - 1) } else { "[]".to_string() };
                let dep_segment = if has_dep {
                    format!(
                        r#"{{"conditions":[[{{"selector":["result","flag-{}","key"],"op":"is","values":["never"]}}]],
                        "variant":"off","metadata":{{"segmentName":"flag-dependencies"}}}},"#,
                        i - 1
                    )
                } else {
                    String::new()
                };
                format!(
                    r#"{{"key":"flag-{i}","dependencies":{deps},
                    "metadata":{{"deployed":true,"evaluationMode":"local","flagType":"release","flagVersion":{i}}},
                    "variants":{{"on":{{"key":"on","value":"on"}},"off":{{"key":"off","metadata":{{"default":true}}}}}},
                    "segments":[{dep_segment}
                      {{"conditions":[[{{"selector":["context","user","user_id"],"op":"is","values":["u1","u2","u3"]}}]],
                        "variant":"on","metadata":{{"segmentName":"individual-inclusions"}}}},
                      {{"conditions":[[{{"selector":["context","user","country"],"op":"is","values":["DE","FR"]}},
                        {{"selector":["context","user","user_properties","plan"],"op":"contains","values":["pro"]}}],
                        [{{"selector":["context","user","version"],"op":"version greater or equal","values":["2.1.0"]}}],
                        [{{"selector":["context","user","cohort_ids"],"op":"set contains any","values":["c1","c2"]}}]],
                        "bucket":{{"selector":["context","user","device_id"],"salt":"s{i}","allocations":[{{"range":[0,50],
                        "distributions":[{{"variant":"on","range":[0,42949673]}}]}}]}},"variant":"off","metadata":{{"segmentName":"Segment 1"}}}},
                      {{"bucket":{{"selector":["context","user","device_id"],"salt":"t{i}","allocations":[{{"range":[0,100],
                        "distributions":[{{"variant":"on","range":[0,21474836]}},{{"variant":"off","range":[21474836,42949673]}}]}}]}},
                        "metadata":{{"segmentName":"All Other Users"}}}}
                    ]}}"#
                )
            })
            .collect();
        CompiledFlags::compile(parse_flags(format!("[{}]", flags.join(",")).as_bytes()).unwrap())
    }

    /// On-CPU nanoseconds of this thread (Linux schedstat), so a loaded machine does not skew it.
    fn thread_cpu_ns() -> Option<u64> {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        s.split_whitespace().next()?.parse().ok()
    }

    const CONTEXT: &str = r#"{"user":{"user_id":"someone","device_id":"d-123456","country":"US","version":"2.0.3",
        "user_properties":{"plan":"basic","age":31},"cohort_ids":["c9"]},"groups":{}}"#;

    fn one(flags: &str, ctx: &str) -> Result<String, EvaluationError> {
        let compiled = CompiledFlags::compile(parse_flags(flags.as_bytes()).unwrap());
        let r = compiled.evaluate(&Value::from_json_slice(ctx.as_bytes()).unwrap(), &[])?;
        let mut out = Vec::new();
        r.write_json(&mut out, false);
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn invalid_regex_fails_only_when_reached() {
        let flags = r#"[{"key":"f","variants":{"on":{"key":"on"}},"segments":[{"conditions":[[
            {"selector":["context","user","a"],"op":"is","values":["x"]},
            {"selector":["context","user","a"],"op":"regex match","values":["("]}]],"variant":"on"}]}]"#;
        assert_eq!(one(flags, r#"{"user":{"a":"y"}}"#).unwrap(), "{}");
        let err = one(flags, r#"{"user":{"a":"x"}}"#).unwrap_err();
        assert!(
            matches!(err, EvaluationError::InvalidRegex { ref flag, ref pattern, .. } if flag == "f" && pattern == "(")
        );
    }

    #[test]
    fn short_range_fails_only_when_reached() {
        let flags = r#"[{"key":"f","variants":{"on":{"key":"on"}},"segments":[{"bucket":{"selector":["context","id"],
            "salt":"s","allocations":[{"range":[0],"distributions":[]}]},"variant":"on"}]}]"#;
        assert_eq!(one(flags, r#"{}"#).unwrap(), r#"{"f":{"key":"on"}}"#);
        assert!(matches!(
            one(flags, r#"{"id":"x"}"#),
            Err(EvaluationError::InvalidRange { .. })
        ));
    }

    #[test]
    fn metadata_merge_and_v1_filter() {
        let flags = r#"[{"key":"f","metadata":{"a":1,"b":1},"variants":{"off":{"key":"off","metadata":{"default":true,"b":3}}},
            "segments":[{"metadata":{"a":2,"s":"x"},"variant":"off"}]}]"#;
        let compiled = CompiledFlags::compile(parse_flags(flags.as_bytes()).unwrap());
        let r = compiled.evaluate(&Value::Null, &[]).unwrap();
        let mut out = Vec::new();
        r.write_json(&mut out, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"f":{"key":"off","metadata":{"a":2,"b":3,"s":"x","default":true}}}"#
        );
        let mut out = Vec::new();
        r.write_json(&mut out, true);
        assert_eq!(out, b"{}");
    }

    #[test]
    fn result_selectors_see_merged_metadata_and_value() {
        let flags = r#"[
            {"key":"child","dependencies":["parent"],"variants":{"on":{"key":"on"}},"segments":[
              {"conditions":[[{"selector":["result","parent","metadata","default"],"op":"is","values":["true"]},
                              {"selector":["result","parent","value","n"],"op":"greater","values":["9"]},
                              {"selector":["result","parent","payload"],"op":"is","values":["(none)"]}]],"variant":"on"}]},
            {"key":"parent","variants":{"off":{"key":"off","value":{"n":10},"payload":"p","metadata":{"default":true}}},
             "segments":[{"variant":"off"}]}]"#;
        assert_eq!(
            one(flags, "{}").unwrap(),
            r#"{"parent":{"key":"off","value":{"n":10},"payload":"p","metadata":{"default":true}},"child":{"key":"on"}}"#
        );
    }

    #[test]
    fn cohort_ids_grouped() {
        let flags = r#"[{"key":"f","variants":{},"segments":[{"conditions":[[
            {"selector":["context","user","cohort_ids"],"op":"set contains any","values":["c1","c2"]},
            {"selector":["context","groups","org","cohort_ids"],"op":"set does not contain any","values":["g1"]},
            {"selector":["context","user","cohort_ids"],"op":"set contains","values":["ignored"]}]]}]}]"#;
        let compiled = CompiledFlags::compile(parse_flags(flags.as_bytes()).unwrap());
        let c = compiled.cohort_ids_by_group_type();
        assert_eq!(c.len(), 2);
        assert_eq!(c["User"].iter().collect::<Vec<_>>(), ["c1", "c2"]);
        assert_eq!(c["org"].iter().collect::<Vec<_>>(), ["g1"]);
    }

    #[test]
    fn compiled_flags_are_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledFlags>();
        assert_send_sync::<EvaluationResults>();
        assert!(CompiledFlags::default().is_empty());
    }

    #[test]
    fn deployment_evaluates_every_flag() {
        let compiled = deployment(50);
        let ctx = Value::from_json_slice(CONTEXT.as_bytes()).unwrap();
        let r = compiled.evaluate(&ctx, &[]).unwrap();
        assert_eq!(r.len(), 50);
        let sub = compiled.evaluate(&ctx, &["flag-10".to_string()]).unwrap();
        let keys: Vec<&str> = sub.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["flag-9", "flag-10"]);
    }

    /// `cargo test --release --lib amplitude::engine::eval::tests::perf -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn perf_50_flags() {
        let compiled = deployment(50);
        let ctx = Value::from_json_slice(CONTEXT.as_bytes()).unwrap();
        let iterations = 50_000u32;
        let cpu0 = thread_cpu_ns();
        let start = std::time::Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(compiled.evaluate(std::hint::black_box(&ctx), &[]).unwrap());
        }
        let per = start.elapsed() / iterations;
        let cpu = cpu0
            .zip(thread_cpu_ns())
            .map(|(a, b)| (b - a) / u64::from(iterations));
        println!("evaluate 50 flags: wall {per:?}/call, on-CPU {cpu:?} ns/call");
    }
}
