// Targeted cases for every known place where @amplitude/experiment-core (JS) differs from
// the Kotlin JVM engine 2.3.0 that we match. For each case `expected` is the JVM answer
// (from ../../shared/spec/amplitude-evaluation-engine.md and
// amplitude-engine-vector-verification.md); the runner asserts that our engine gives it
// AND that JS gives something else (so this list stays honest if JS changes).
// Context JSON is raw text so number tokens keep their spelling.

const ON = { key: 'on', value: 'on' };
const OFF = { key: 'off', metadata: { default: true } };

/** One flag `f`: segment 1 has the single condition and gives `on`, else `off`. */
function condFlag(selector, op, values) {
  return [{
    key: 'f',
    variants: { on: { key: 'on', value: 'on' }, off: { key: 'off', metadata: { default: true } } },
    segments: [{ conditions: [[{ selector, op, values }]], variant: 'on' }, { variant: 'off' }],
  }];
}

/** A case on user property `p` (raw JSON text `propJson`). */
function propCase(name, note, propJson, op, values, match) {
  return {
    name,
    note,
    flags: condFlag(['context', 'user', 'p'], op, values),
    context_json: propJson === undefined ? '{"user":{}}' : `{"user":{"p":${propJson}}}`,
    expected: { results: { f: match ? ON : OFF } },
  };
}

export const KNOWN = [
  // 1. matchNull
  propCase('null-set-is-not', 'matchNull: JVM `set is not` on a null property is always true; JS false', undefined, 'set is not', ['x'], true),
  propCase('null-set-is-not-none', 'matchNull: JVM true even with (none); JS false', undefined, 'set is not', ['(none)'], true),
  propCase('null-regex-does-not-match', 'matchNull: JVM `regex does not match` on null is true; JS false', undefined, 'regex does not match', ['^x$'], true),
  // 2. number kinds and Java Double.toString
  propCase('double-1.0', 'JVM keeps 1.0 a double: "1.0"; JS String(1) = "1"', '1.0', 'is', ['1.0'], true),
  propCase('double-1.5e1', 'JVM double 15.0 -> "15.0"; JS "15"', '1.5e1', 'is', ['15.0'], true),
  propCase('double-sci-large', 'Double.toString(12345678.9) = "1.23456789E7"; JS "12345678.9"', '12345678.9', 'is', ['1.23456789E7'], true),
  propCase('double-sci-small', 'Double.toString(0.0001) = "1.0E-4"; JS "0.0001"', '0.0001', 'is', ['1.0E-4'], true),
  propCase('double-neg-zero', 'JVM -0.0 -> "-0.0"; JS "0"', '-0.0', 'is', ['-0.0'], true),
  propCase('long-max', 'JVM Long 9223372036854775807; JS loses precision (9223372036854776000)', '9223372036854775807', 'is', ['9223372036854775807'], true),
  propCase('long-2^53+1', 'JVM Long 9007199254740993; JS 9007199254740992', '9007199254740993', 'is', ['9007199254740993'], true),
  propCase('double-in-list-string', 'JVM parses "[1.0]" to double 1.0 -> "1.0"; JS "1"', '"[1.0]"', 'set contains', ['1.0'], true),
  // 3. numeric comparison
  propCase('numeric-junk-filter-fallback', 'JVM drops unparseable "abc", then compares strings "5" < "abc"; JS Number("abc") = NaN -> false', '"5"', 'less', ['abc'], true),
  propCase('numeric-java-float-suffix', 'Java parseDouble("5f") = 5.0; JS Number("5f") = NaN', '"5f"', 'less', ['6'], true),
  propCase('numeric-neg-zero', 'Double.compare(-0.0, 0.0) < 0; JS IEEE -0 < 0 is false', '"-0"', 'less', ['0'], true),
  propCase('numeric-nan-largest', 'Double.compare(NaN, 1.0) > 0; JS NaN > 1 is false', '"NaN"', 'greater', ['1'], true),
  propCase('numeric-nan-equal', 'Double.compare(NaN, NaN) == 0; JS false', '"NaN"', 'greater or equal', ['NaN'], true),
  propCase('numeric-hex-int', 'Java rejects "0x10" -> string compare "0x10" < "15"; JS Number("0x10") = 16 > 15', '"0x10"', 'greater', ['15'], false),
  propCase('numeric-hex-float', 'Java parseDouble("0x1p4") = 16.0; JS NaN', '"0x1p4"', 'greater', ['15'], true),
  propCase('numeric-empty-string', 'Java rejects "" -> string compare "" < "-1"; JS Number("") = 0 > -1', '""', 'greater', ['-1'], false),
  propCase('numeric-nbsp', 'Java trims only <= U+0020 -> "\\u00a05" is a string > "6"; JS trims U+00A0 -> 5 < 6', '"\\u00a05"', 'less', ['6'], false),
  propCase('numeric-boolean-fallback', 'JVM compares "true" > "a" as strings; JS NaN > ... is false', 'true', 'greater', ['a'], true),
  // 4. regex: whole match, Java syntax/semantics
  propCase('regex-substring', 'Java matches() needs the whole string; JS exec finds "b" in "abc"', '"abc"', 'regex match', ['b'], false),
  propCase('regex-substring-negated', 'negation of regex-substring', '"abc"', 'regex does not match', ['b'], true),
  propCase('regex-dot-nel', 'Java `.` excludes U+0085; JS `.` matches it', '"\\u0085"', 'regex match', ['^.$'], false),
  propCase('regex-dot-astral', 'Java `.` matches one code point; JS (no u flag) sees two surrogates', '"😀"', 'regex match', ['^.$'], true),
  propCase('regex-space-nbsp', 'Java \\s is ASCII only; JS \\s includes U+00A0', '"\\u00a0"', 'regex match', ['^\\s$'], false),
  // 5. semantic versions: JS still has the pre-2.1.0 pattern and unbounded integers
  propCase('semver-build-metadata', 'JVM parses 1.2.3+build as 1.2.3 < 1.2.10; JS rejects it -> string compare "1.2.3+build" > "1.2.10"', '"1.2.3+build"', 'version less', ['1.2.10'], true),
  propCase('semver-prerelease-leading-zero', 'JVM rejects 1.2.3-01 -> string compare (greater); JS parses it as a pre-release (less)', '"1.2.3-01"', 'version less', ['1.2.3'], false),
  propCase('semver-prerelease-underscore', 'JVM rejects "_" in a pre-release -> string compare; JS \\w accepts it', '"1.2.3-a_b"', 'version less', ['1.2.3'], false),
  propCase('semver-trailing-dot', 'JVM rejects 10.2.33-alpha1.2. -> string compare; JS accepts it', '"10.2.33-alpha1.2."', 'version less', ['10.2.33'], false),
  propCase('semver-major-overflow', 'JVM: major > int32 is invalid -> string compare "9..." > "1..."; JS compares numbers', '"99999999999.1"', 'version less', ['100000000000.0'], false),
  propCase('semver-patch-overflow', 'JVM: patch > int32 becomes 0 -> 1.2.0 < 1.2.1; JS keeps 99999999999', '"1.2.99999999999"', 'version less', ['1.2.1'], true),
  // 6. lists and sets
  propCase('list-empty-string-element', 'JVM keeps "" in the set {"","a"} != {"a"}; JS filter(Boolean) drops ""', '["","a"]', 'set is', ['a'], false),
  propCase('values-dedupe-size-shortcut', 'JVM dedupes values to {"a"} (size 1 <= 1); JS compares raw lengths 1 < 2 -> false', '["a"]', 'set contains', ['a', 'a'], true),
  // 7. selectors
  {
    name: 'selector-array-index',
    note: 'JVM never indexes arrays (null); JS select indexes arr["1"]',
    flags: condFlag(['context', 'user', 'arr', '1'], 'is', ['y']),
    context_json: '{"user":{"arr":["x","y"]}}',
    expected: { results: { f: OFF } },
  },
  {
    name: 'selector-prototype-name',
    note: 'JVM: no "constructor" key -> null -> is (none) true; JS select returns Object.prototype.constructor',
    flags: condFlag(['context', 'user', 'constructor'], 'is', ['(none)']),
    context_json: '{"user":{}}',
    expected: { results: { f: ON } },
  },
  {
    name: 'selector-empty-element',
    note: 'JVM looks up the "" key; JS select stops at a falsy selector element',
    flags: condFlag(['context', 'user', ''], 'is', ['x']),
    context_json: '{"user":{"":"x"}}',
    expected: { results: { f: ON } },
  },
  {
    name: 'selector-result-payload',
    note: 'JVM result variants expose only key/value/metadata; JS exposes payload',
    flags: [
      { key: 'p', variants: { on: { key: 'on', value: 'on', payload: 'pl' } }, segments: [{ variant: 'on' }] },
      ...condFlag(['result', 'p', 'payload'], 'is', ['pl']).map((f) => ({ ...f, dependencies: ['p'] })),
    ],
    context_json: '{"user":{}}',
    expected: { results: { p: { key: 'on', value: 'on', payload: 'pl' }, f: OFF } },
  },
  // 8. flags and results
  {
    name: 'integer-like-flag-keys-order',
    note: 'JVM keeps input order 2,1 (LinkedHashMap); a JS object iterates integer-like keys ascending',
    flags: [
      { key: '2', variants: { on: { key: 'on' } }, segments: [{ variant: 'on' }] },
      { key: '1', variants: { on: { key: 'on' } }, segments: [{ variant: 'on' }] },
    ],
    context_json: '{"user":{}}',
    expected: { order: ['2', '1'], results: { 2: { key: 'on' }, 1: { key: 'on' } }, result_order: ['2', '1'] },
  },
  {
    name: 'variant-unknown-field',
    note: 'JVM decodes variants to key/value/payload/metadata only; JS copies every field of the variant object',
    flags: [{ key: 'f', variants: { on: { key: 'on', value: 'on', extra: 1 } }, segments: [{ variant: 'on' }] }],
    context_json: '{"user":{}}',
    expected: { results: { f: ON } },
  },
  {
    name: 'segment-variant-null-key',
    note: 'JVM: a null segment variant gives no variant (fall through); JS looks up variants[null] = variants["null"]',
    flags: [{ key: 'f', variants: { null: { key: 'surprise' } }, segments: [{ variant: null }] }],
    context_json: '{"user":{}}',
    expected: { results: {} },
  },
  {
    name: 'allocation-short-range',
    note: 'JVM: an allocation range with < 2 elements throws when reached; JS compares with undefined and goes on',
    flags: [{
      key: 'f',
      variants: { on: { key: 'on' } },
      segments: [{ bucket: { selector: ['context', 'user', 'device_id'], salt: 's', allocations: [{ range: [0], distributions: [] }] }, variant: 'on' }],
    }],
    context_json: '{"user":{"device_id":"d1"}}',
    expected: { error: true },
  },
];
