// Random flag configurations for one evaluation context. Conditions are chosen knowing the
// context, so that the operator fits the selected value (lib/safe.mjs) and the filter values
// are a mix of matching and non-matching ones.

import {
  OPS, NULL_UNSAFE_OPS, STRING_OPS, NUMERIC_OPS, VERSION_OPS, SET_OPS, REGEX_OPS,
  allowedOps, stringForms, listForms, isNumericSafe, isRegexSafe, isVersionSafe, escapeRegex,
} from './safe.mjs';
import { WORDS, NUMERIC_STRINGS, NUMERIC_JUNK, VERSIONS, COHORTS, PROP_NAMES, genInt, genDecimal } from './values.mjs';

const VARIANT_KEYS = ['on', 'off', 'control', 'treatment', 'variant-a', 'variant-b', 'slot-1', 'slot-2'];
const SALTS = ['abc', 'salt', '', 'exp-1-salt', 'sälz', '🎲', 'Xy7_9k', 'a/b', 'spaces in salt'];
const DIST_MAX = 42949673;
const REGEX_POOL = [
  '^.*$', '^$', '^[a-z]+$', '^[A-Z].*$', '^\\w+$', '^\\d+$', '^\\d+(?:\\.\\d+)?$', '^-?\\d+$',
  '^(?:ios|android|web)$', '^(?:iOS|Android)$', '^.{0,5}$', '^.{3,}$', '^[^@]+@[^@]+$',
  '^user-\\d+$', '^device-[0-9]+$', '^[0-9a-f-]+$', '^(?:true|false)$', '^.*[Ss]tra.*$', '^caf.$',
  '^[^,]*,[^,]*$', '^x.y$', '^.*\\(s\\)$', '^\\[.*$',
];
const INVALID_REGEX = ['(', '[a-', 'a)', '*a', '(?<', 'a{2,1}'];

/** Reads a context value the way both engines do for object-only paths. */
function lookup(root, path) {
  if (path.length === 0) return undefined;
  let node = root;
  for (const el of path) {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return undefined;
    node = Object.prototype.hasOwnProperty.call(node, el) ? node[el] : undefined;
  }
  return node ?? undefined;
}

/** Every selector into the context (leaves and whole objects) plus some that select nothing. */
function contextSelectors(context) {
  const out = [];
  const walk = (node, path) => {
    for (const [k, v] of Object.entries(node)) {
      const p = [...path, k];
      out.push(p);
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) walk(v, p);
    }
  };
  walk(context, ['context']);
  return out;
}

/** Selectors that usually select nothing (missing keys, through a string, wrong root). */
const MISSING_SELECTORS = [
  ['context', 'user', 'user_properties', 'missing_prop'],
  ['context', 'user', 'nope'],
  ['context', 'groups', 'nonexistent', 'group_name'],
  ['context', 'user', 'user_id', 'deeper'],
  ['user', 'user_id'],
  ['context', 'groups', 'org', 'group_properties', 'plan'],
  [],
];

/** Code-point slice: a UTF-16 slice could leave a lone surrogate, which Rust strings cannot hold. */
function slice(s, start, end) {
  return Array.from(s).slice(start, end).join('');
}

function changeCase(r, s) {
  return r.pick([s.toUpperCase(), s.toLowerCase(), s]);
}

function dedupe(values) {
  return [...new Set(values)];
}

/** Filter values for op, given the strings the property value compares with. */
function filterValues(r, op, forms) {
  const n = r.weighted([[1, 0], [6, 1], [4, 2], [2, 3]]);
  const some = () => (forms.length > 0 && r.chance(0.6) ? r.pick(forms) : undefined);
  const out = [];
  for (let i = 0; i < n; i++) {
    let v;
    if (STRING_OPS.includes(op)) {
      const f = some();
      v = r.weighted([
        [4, () => f ?? r.pick(WORDS)],
        [2, () => (f !== undefined ? changeCase(r, f) : r.pick(WORDS))],
        [2, () => (f !== undefined && op.includes('contain') ? slice(f, r.int(0, f.length), r.int(0, f.length + 1)) : r.pick(WORDS))],
        [1, () => r.pick(['(none)', 'true', 'FALSE', ''])],
        [1, () => r.pick(NUMERIC_STRINGS)],
      ])();
    } else if (NUMERIC_OPS.includes(op)) {
      const f = some();
      v = r.weighted([
        [3, () => f ?? r.pick(NUMERIC_STRINGS)],
        [3, () => r.pick(NUMERIC_STRINGS)],
        [2, () => (f !== undefined ? String(Number(f) + r.pick([-1, 1, 0.5, -0.5, 100])) : String(genInt(r)))],
        [1, () => String(genDecimal(r))],
        [1, () => '(none)'],
      ])();
      if (!isNumericSafe(v) && v !== '(none)') v = '1';
    } else if (VERSION_OPS.includes(op)) {
      const f = some();
      v = r.weighted([[3, () => f ?? r.pick(VERSIONS)], [5, () => r.pick(VERSIONS)], [1, () => '(none)']])();
      if (!isVersionSafe(v)) v = '1.0.0';
    } else if (SET_OPS.includes(op)) {
      const f = some();
      v = r.weighted([[5, () => f ?? r.pick(COHORTS)], [2, () => r.pick(COHORTS)], [1, () => r.pick(WORDS)], [1, () => '(none)']])();
      if (f !== undefined && r.chance(0.2)) v = changeCase(r, v);
    } else {
      const f = some();
      v = r.weighted([
        [3, () => (f !== undefined && isRegexSafe(f) ? `^${escapeRegex(f)}$` : r.pick(REGEX_POOL))],
        [2, () => (f !== undefined && isRegexSafe(f) && f.length > 1 ? `^${escapeRegex(f.slice(0, r.int(1, f.length - 1)))}.*$` : r.pick(REGEX_POOL))],
        [2, () => (f !== undefined && isRegexSafe(f) && f.length > 1 ? `^.*${escapeRegex(f.slice(r.int(1, f.length - 1)))}$` : r.pick(REGEX_POOL))],
        [4, () => r.pick(REGEX_POOL)],
      ])();
      if (r.chance(0.01)) v = r.pick(INVALID_REGEX);
    }
    out.push(v);
  }
  // Numeric operators: junk values are dropped on the JVM and NaN in JS, which agree as
  // long as some value parses (otherwise the JVM compares strings and JS says false).
  // `(none)` is junk too for a non-null property.
  if (NUMERIC_OPS.includes(op) && out.length > 0 && !out.some(isNumericSafe)) out.push(r.pick(NUMERIC_STRINGS));
  if (NUMERIC_OPS.includes(op) && out.some(isNumericSafe) && r.chance(0.15)) out.push(r.pick(NUMERIC_JUNK));
  // Duplicates only where neither engine can tell (JS does not dedupe; the JVM does).
  if (!SET_OPS.includes(op) && out.length > 0 && r.chance(0.05)) out.push(out[0]);
  return SET_OPS.includes(op) ? dedupe(out) : out;
}

/** Picks an operator: lists favour the set operators, scalars the others. */
function pickOp(r, allowed, isList) {
  if (r.chance(0.01)) return r.pick(['IS', 'equals', '']);
  const set = allowed.filter((op) => SET_OPS.includes(op));
  const other = allowed.filter((op) => !SET_OPS.includes(op));
  const preferSet = isList ? 0.6 : 0.1;
  return set.length > 0 && (other.length === 0 || r.chance(preferSet)) ? r.pick(set) : r.pick(other);
}

/** Set-operator values for a list: often exactly the set, or a subset, plus noise. */
function setValues(r, op, forms) {
  const mode = r.weighted([[op === 'set is' || op === 'set is not' ? 4 : 1, 'exact'], [4, 'subset'], [3, 'random']]);
  if (mode === 'random') return filterValues(r, op, forms);
  let values = mode === 'exact' ? r.shuffle(forms) : r.sample(forms, r.int(1, Math.max(1, forms.length - 1)));
  if (r.chance(0.3)) values = [...values, ...filterValues(r, op, [])];
  return dedupe(values);
}

/** One condition on the context, with an operator safe for the selected value. */
function contextCondition(r, context, selectors) {
  const selector = r.chance(0.1) ? r.pick(MISSING_SELECTORS) : r.pick(selectors);
  const value = lookup({ context }, selector);
  const isNull = value === undefined || value === null;
  const isList = !isNull && listForms(value) !== undefined;
  const op = pickOp(r, allowedOps(value), isList);
  const forms = isNull ? [] : stringForms(value);
  const values = isList && SET_OPS.includes(op) ? setValues(r, op, forms) : filterValues(r, op, forms);
  return { selector, op, values };
}

/**
 * One condition on an earlier flag's result. The parent may have no result (null), so the
 * null-unsafe operators are excluded; numeric operators only for numeric variant values.
 */
function resultCondition(r, parent) {
  const field = r.weighted([[6, 'key'], [3, 'value'], [2, 'metadata']]);
  const selector = ['result', parent.key, field];
  const variants = Object.values(parent.variants);
  let forms;
  if (field === 'key') forms = variants.map((v) => v.key);
  else if (field === 'value') forms = variants.flatMap((v) => (v.value === undefined ? [] : stringForms(v.value)));
  else {
    selector.push(r.pick(['default', 'flagType', 'segmentName', 'deployed', 'flagVersion', 'missing']));
    forms = ['true', 'false', 'release', 'experiment', 'All Other Users', 'Segment 1', '1', '3'];
  }
  let ops = OPS.filter((op) => !NULL_UNSAFE_OPS.includes(op) && !NUMERIC_OPS.includes(op));
  if (forms.length > 0 && forms.every(isNumericSafe)) ops.push(...NUMERIC_OPS);
  if (!forms.every(isVersionSafe)) ops = ops.filter((op) => !VERSION_OPS.includes(op));
  if (!forms.every(isRegexSafe)) ops = ops.filter((op) => !REGEX_OPS.includes(op));
  const op = field === 'key' && r.chance(0.5) ? r.pick(['is', 'is not']) : r.pick(ops);
  return { selector, op, values: filterValues(r, op, forms) };
}

function genConditions(r, context, selectors, parents) {
  const shape = r.weighted([[2, 'null'], [1, 'empty'], [1, 'emptyAnd'], [14, 'groups']]);
  if (shape === 'null') return undefined;
  if (shape === 'empty') return [];
  if (shape === 'emptyAnd') return [[]];
  const groups = [];
  for (let g = r.weighted([[6, 1], [3, 2], [1, 3]]); g > 0; g--) {
    const and = [];
    for (let c = r.weighted([[5, 1], [4, 2], [2, 3], [1, 5]]); c > 0; c--) {
      and.push(parents.length > 0 && r.chance(0.25) ? resultCondition(r, r.pick(parents)) : contextCondition(r, context, selectors));
    }
    groups.push(and);
  }
  return groups;
}

function splitDistributions(r, variantKeys) {
  const keys = r.sample(variantKeys, r.int(1, Math.min(3, variantKeys.length)));
  const out = [];
  let start = 0;
  keys.forEach((key, i) => {
    const end = i === keys.length - 1 ? DIST_MAX : Math.min(DIST_MAX, start + r.int(1, DIST_MAX));
    // Real configs contain small overlaps such as [0,42520177] then [42520175,42949673].
    const overlap = i > 0 && r.chance(0.2) ? r.int(1, 5) : 0;
    out.push({ variant: key, range: [Math.max(0, start - overlap), end] });
    start = end;
  });
  return out;
}

function genBucket(r, context, variantKeys, parents) {
  const user = context.user;
  const props = Object.keys(user.user_properties ?? {});
  const selector = r.weighted([
    [10, ['context', 'user', 'device_id']],
    [5, ['context', 'user', 'user_id']],
    [1, ['context', 'user', 'amplitude_id']],
    [1, props.length > 0 ? ['context', 'user', 'user_properties', r.pick(props)] : ['context', 'user', 'user_id']],
    [1, ['context', 'groups', 'org', 'group_name']],
    [1, ['context', 'user', 'missing']],
    [1, parents.length > 0 ? ['result', r.pick(parents).key, 'key'] : ['context', 'user', 'device_id']],
    [0.3, []],
  ]);
  const withGhost = [...variantKeys, 'ghost'];
  let allocations;
  if (r.chance(0.5)) {
    allocations = [{ range: [0, 100], distributions: splitDistributions(r, r.chance(0.05) ? withGhost : variantKeys) }];
  } else {
    allocations = [];
    for (let i = r.int(1, 3); i > 0; i--) {
      const a = r.int(0, 100);
      const b = r.chance(0.1) ? r.int(0, a) : r.int(a, 100);
      const distributions = [];
      for (let j = r.int(0, 3); j > 0; j--) {
        const s = r.int(0, DIST_MAX);
        distributions.push({ variant: r.pick(withGhost), range: [s, r.chance(0.1) ? r.int(0, s) : r.int(s, DIST_MAX)] });
      }
      allocations.push({ range: [a, b], distributions });
    }
  }
  return { selector, salt: r.chance(0.8) ? r.pick(SALTS) : `salt-${r.int(0, 1e6)}`, allocations };
}

function genVariantValue(r, key) {
  return r.weighted([
    [14, () => key],
    [2, () => undefined],
    [1, () => genInt(r)],
    [1, () => genDecimal(r)],
    [1, () => r.chance(0.5)],
    [1, () => ({ color: r.pick(['red', 'blue']), size: genInt(r), nested: { list: [1, 'two', null] } })],
  ])();
}

function genVariants(r) {
  const keys = r.sample(VARIANT_KEYS, r.int(1, 4));
  const variants = {};
  for (const mapKey of keys) {
    const v = { key: r.chance(0.03) ? `${mapKey}-renamed` : mapKey };
    const value = genVariantValue(r, mapKey);
    if (value !== undefined) v.value = value;
    if (r.chance(0.15)) v.payload = r.pick([{ a: 1, b: [true, null] }, 'payload-string', [1, 2.5, 'x'], 42]);
    if (mapKey === 'off' && r.chance(0.8)) v.metadata = { default: true };
    else if (r.chance(0.1)) v.metadata = { note: r.pick(['x', 'y']), flagType: 'overridden-by-variant' };
    variants[mapKey] = v;
  }
  return variants;
}

function genFlagMetadata(r, index) {
  if (r.chance(0.2)) return undefined;
  const md = {
    deployed: r.chance(0.9),
    evaluationMode: r.pick(['local', 'remote']),
    flagType: r.pick(['release', 'experiment', 'holdout-group', 'mutual-exclusion-group']),
    flagVersion: r.int(1, 50),
  };
  if (md.flagType === 'experiment') md.experimentKey = `exp-${index}`;
  if (r.chance(0.1)) md.segmentName = 'overridden-by-segment';
  return md;
}

function genSegment(r, context, selectors, variantKeys, parents, isLast) {
  const seg = {};
  if (isLast) {
    if (r.chance(0.5)) seg.bucket = genBucket(r, context, variantKeys, parents);
    seg.variant = variantKeys.includes('off') ? 'off' : r.pick(variantKeys);
    seg.metadata = { segmentName: 'All Other Users' };
    return seg;
  }
  const conditions = genConditions(r, context, selectors, parents);
  if (conditions !== undefined) seg.conditions = conditions;
  if (r.chance(0.35)) seg.bucket = genBucket(r, context, variantKeys, parents);
  const variant = r.weighted([[14, () => r.pick(variantKeys)], [1, () => 'ghost'], [4, () => undefined], [0.3, () => null]])();
  if (variant !== undefined) seg.variant = variant;
  if (r.chance(0.5)) seg.metadata = { segmentName: r.pick(['Segment 1', 'Segment 2', 'individual-inclusions', 'beta users']) };
  return seg;
}

const FLAG_WORDS = ['checkout', 'search', 'onboarding', 'pricing', 'banner', 'holdout', 'mutex', 'new-ui', 'dark-mode'];

/**
 * A random deployment: 1..8 flags whose dependencies form a DAG (a random rank order),
 * emitted in shuffled order so topological sorting matters. Sometimes adds a missing
 * dependency, an empty dependency list, or (rarely) a cycle.
 */
export function genFlags(r, context) {
  const n = r.weighted([[2, 1], [3, r.int(2, 4)], [3, r.int(5, 8)]]);
  const selectors = contextSelectors(context);
  const flags = [];
  for (let i = 0; i < n; i++) {
    const key = `${r.pick(FLAG_WORDS)}-${i}${r.chance(0.1) ? '-ü' : ''}`;
    const variants = genVariants(r);
    const variantKeys = Object.keys(variants);
    const parents = i > 0 && r.chance(0.4) ? r.sample(flags, r.int(1, 2)) : [];
    const flag = { key, variants, segments: [] };
    if (parents.length > 0 || r.chance(0.05)) {
      flag.dependencies = parents.map((p) => p.key);
      if (r.chance(0.1)) flag.dependencies.push('ghost-flag');
      if (parents.length > 0 && r.chance(0.7)) {
        flag.segments.push({
          conditions: [parents.map((p) => ({ selector: ['result', p.key, 'key'], op: 'is not', values: [r.pick(['on', 'treatment', 'slot-1'])] }))],
          metadata: { segmentName: 'flag-dependencies' },
          variant: variantKeys.includes('off') ? 'off' : variantKeys[0],
        });
      }
    }
    const resultParents = r.chance(0.8) ? parents : flags.slice();
    const segCount = r.int(1, 4);
    const withDefault = r.chance(0.7);
    for (let s = 0; s < segCount; s++) {
      flag.segments.push(genSegment(r, context, selectors, variantKeys, resultParents, false));
    }
    if (withDefault) flag.segments.push(genSegment(r, context, selectors, variantKeys, resultParents, true));
    const md = genFlagMetadata(r, i);
    if (md !== undefined) flag.metadata = md;
    flags.push(flag);
  }
  if (n > 1 && r.chance(0.01)) {
    const a = r.pick(flags);
    const b = r.pick(flags);
    a.dependencies = [...(a.dependencies ?? []), b.key];
    b.dependencies = [...(b.dependencies ?? []), a.key];
  }
  return r.shuffle(flags);
}

/** undefined (all flags) most of the time, else a non-empty subset, maybe with an unknown key. */
export function genFlagKeys(r, flags) {
  if (r.chance(0.7)) return undefined;
  const keys = r.sample(flags.map((f) => f.key), r.int(1, Math.min(3, flags.length)));
  if (r.chance(0.1)) keys.push('no-such-flag');
  return keys;
}

export { PROP_NAMES };
