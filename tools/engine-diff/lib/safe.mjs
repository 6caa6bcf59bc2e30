// Which (value, operator, filter values) combinations the JS port and the JVM engine
// evaluate identically. The random generator only emits conditions that pass these
// checks; every known JS-vs-JVM difference is covered by known-differences.mjs instead.
// See ../README.md, section "Inputs the generator avoids".

export const OPS = [
  'is', 'is not', 'contains', 'does not contain',
  'less', 'less or equal', 'greater', 'greater or equal',
  'version less', 'version less or equal', 'version greater', 'version greater or equal',
  'set is', 'set is not', 'set contains', 'set does not contain', 'set contains any', 'set does not contain any',
  'regex match', 'regex does not match',
];
export const STRING_OPS = ['is', 'is not', 'contains', 'does not contain'];
export const NUMERIC_OPS = ['less', 'less or equal', 'greater', 'greater or equal'];
export const VERSION_OPS = ['version less', 'version less or equal', 'version greater', 'version greater or equal'];
export const SET_OPS = ['set is', 'set is not', 'set contains', 'set does not contain', 'set contains any', 'set does not contain any'];
export const REGEX_OPS = ['regex match', 'regex does not match'];

/** Operators whose null-property answer differs between JS (false) and the JVM (true). */
export const NULL_UNSAFE_OPS = ['set is not', 'regex does not match'];

/** The JS port's coerceString (equal to the JVM's for the values we generate). */
export function coerceString(v) {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/**
 * The element strings when the value counts as a list (an array, or a string that starts
 * with `[` and parses as a JSON array), else undefined.
 */
export function listForms(v) {
  let arr;
  if (Array.isArray(v)) {
    arr = v;
  } else if (typeof v === 'string' && v.startsWith('[')) {
    try {
      arr = JSON.parse(v);
    } catch {
      return undefined;
    }
    if (!Array.isArray(arr)) return undefined;
  } else {
    return undefined;
  }
  return arr.filter((e) => e !== null && e !== undefined).map(coerceString);
}

/** Strings a non-set operator compares: the list elements, or the one coerced string. */
export function stringForms(v) {
  return listForms(v) ?? [coerceString(v)];
}

/**
 * A list is "clean" when JS and JVM build the same element set: no empty-string elements
 * (JS drops them) and no duplicates (the JVM dedupes, which changes set sizes).
 */
export function isCleanList(forms) {
  return forms.every((f) => f !== '') && new Set(forms).size === forms.length;
}

const NUMERIC_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,2})?$/;

/** True when JS Number() and Java parseDouble() both accept s and give the same double. */
export function isNumericSafe(s) {
  if (typeof s !== 'string' || !NUMERIC_RE.test(s)) return false;
  const n = Number(s);
  return Number.isFinite(n) && !Object.is(n, -0);
}

/** True when neither JS Number() nor Java parseDouble() accepts s. */
export function isNumericJunk(s) {
  return ['abc', 'n/a', '1,000', 'one', 'x1', '--1', '1..2'].includes(s);
}

/**
 * Strings on which JS RegExp and java.util.regex agree for our anchored patterns:
 * BMP only (JS without the u flag sees surrogate halves) and no U+0085 (Java's `.`
 * excludes it, JS's does not).
 */
export function isRegexSafe(s) {
  return !/[\uD800-\uDFFF\u0085]/.test(s);
}

/** Operators that give the same answer in JS and on the JVM for property value v. */
export function allowedOps(v) {
  if (v === undefined || v === null) {
    return OPS.filter((op) => !NULL_UNSAFE_OPS.includes(op));
  }
  const forms = stringForms(v);
  const list = listForms(v);
  if (list !== undefined && !isCleanList(list)) {
    throw new Error(`generator bug: unclean list ${JSON.stringify(v)}`);
  }
  const ops = [...STRING_OPS, ...SET_OPS];
  if (forms.every(isVersionSafe)) ops.push(...VERSION_OPS);
  if (typeof v !== 'boolean' && forms.every(isNumericSafe)) ops.push(...NUMERIC_OPS);
  if (forms.every(isRegexSafe)) ops.push(...REGEX_OPS);
  return ops;
}

/** Escapes regex metacharacters the same way for JS, Java and Rust. */
export function escapeRegex(s) {
  return s.replace(/[\\^$.|?*+()[\]{}]/g, (c) => `\\${c}`);
}

// The JVM 2.3.0 semver pattern (spec §8.1) and the JS port's older one.
const JVM_SEMVER =
  /^(0|[0-9][0-9]*)\.(0|[0-9][0-9]*)(\.(0|[0-9][0-9]*)(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?)?$/;
const JS_SEMVER = /^(\d+)\.(\d+)(\.(\d+)(-(([-\w]+\.?)*))?)?$/;
const INT32_MAX = 2147483647;

function jvmSemver(s) {
  const m = JVM_SEMVER.exec(s);
  if (!m) return null;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  if (major > INT32_MAX || minor > INT32_MAX) return null;
  const patch = m[4] === undefined || Number(m[4]) > INT32_MAX ? 0 : Number(m[4]);
  return [major, minor, patch, m[5] || null];
}

function jsSemver(s) {
  if (!s || s.length > 24) return null;
  const m = JS_SEMVER.exec(s);
  if (!m) return null;
  return [Number(m[1]), Number(m[2]), Number(m[4]) || 0, m[5] ? m[5].slice(1) : null];
}

/**
 * True when the JVM and JS semver parsers agree on s (both reject it, or both accept it
 * with the same parts), so version operators compare it the same way. Strings longer
 * than 24 characters are refused: the JS pattern backtracks catastrophically.
 */
export function isVersionSafe(s) {
  if (typeof s !== 'string' || s.length > 24) return false;
  return JSON.stringify(jvmSemver(s)) === JSON.stringify(jsSemver(s));
}
