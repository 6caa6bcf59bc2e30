// Compares, per user, the variants each SDK's local evaluation (cohorts from the proxy) gave
// with the proxy's remote evaluation and with what the scenario says (member -> on).
// Usage: node check.js node.json python.json. Last line: `N passed, N failed`.
'use strict';

const fs = require('fs');
const { USERS, COHORTS } = require('./scenario');

const expected = USERS.map((u) => ({
  'beta-users': COHORTS.cohortUsers1.memberIds.includes(u.user_id) ? 'on' : 'off',
  'enterprise-orgs': (u.groups?.['org id'] || []).some((g) => COHORTS.cohortOrgs1.memberIds.includes(g)) ? 'on' : 'off',
}));

let passed = 0;
let failed = 0;
for (const [name, file] of [['node', process.argv[2]], ['python', process.argv[3]]]) {
  let results;
  try {
    results = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    console.log(`FAIL ${name}: no results (${e.message})`);
    failed += 1;
    continue;
  }
  for (const mode of ['local', 'remote']) {
    USERS.forEach((user, i) => {
      const got = results[mode]?.[i] || {};
      const ok = Object.entries(expected[i]).every(([flag, key]) => got[flag] === key);
      if (ok) passed += 1;
      else {
        failed += 1;
        console.log(`FAIL ${name} ${mode} ${JSON.stringify(user)}: got ${JSON.stringify(got)}, want ${JSON.stringify(expected[i])}`);
      }
    });
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
