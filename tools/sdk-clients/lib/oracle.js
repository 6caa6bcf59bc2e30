// The test plan and the expected variants.
//
// Expected variants come from @amplitude/experiment-core (Amplitude's own JS evaluation engine),
// evaluated over the same flag files the proxy serves, with the SDK user converted to an
// evaluation context the way the proxy does it (spec amplitude-evaluation-proxy.md §7.4).
'use strict';

const fs = require('fs');
const path = require('path');
const { EvaluationEngine, topologicalSort } = require('@amplitude/experiment-core');

const ROOT = path.resolve(__dirname, '..');
const REPO = path.resolve(ROOT, '..', '..');

/// The deployments the run.sh config declares: key -> flags file.
const DEPLOYMENTS = {
  main: {
    key: 'client-local-example-deployment',
    flagsFile: path.join(REPO, 'examples', 'flags.json'),
  },
  extra: {
    key: 'client-sdk-clients-extra',
    flagsFile: path.join(ROOT, 'extra-flags.json'),
  },
};

/// Flag-key subsets fetched for every user (besides "all flags").
/// `new-pricing` depends on `checkout-experiment`: the dependency is evaluated and returned too.
const SUBSETS = {
  main: [['welcome-banner'], ['new-pricing'], ['dark-mode', 'welcome-banner'], ['no-such-flag'], []],
  extra: [['org-enterprise'], ['app-version-gate', 'user-split']],
};

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/// Every (deployment, user, flagKeys) combination a client runs. flagKeys null = no subset.
function plan() {
  const users = readJson(path.join(ROOT, 'users.json'));
  const cases = [];
  for (const [deployment, { key }] of Object.entries(DEPLOYMENTS)) {
    for (const { name, user } of users) {
      cases.push({ id: `${deployment}/${name}`, deployment, deploymentKey: key, user, flagKeys: null });
      for (const keys of SUBSETS[deployment]) {
        cases.push({
          id: `${deployment}/${name}/keys=${keys.join(',') || '[]'}`,
          deployment,
          deploymentKey: key,
          user,
          flagKeys: keys,
        });
      }
    }
  }
  return cases;
}

/// The SDK user as the proxy turns it into an evaluation context: `groups` and
/// `group_properties` leave the user; each group type keeps its first group name.
function toContext(user) {
  const rest = {};
  for (const [k, v] of Object.entries(user)) {
    if (v !== null && v !== undefined) rest[k] = v;
  }
  if (Object.keys(rest).length === 0) return {};
  const { groups, group_properties: groupProperties, group_cohort_ids: groupCohortIds, ...plain } = rest;
  const context = { user: plain };
  const built = {};
  if (groups && typeof groups === 'object') {
    for (const [type, names] of Object.entries(groups)) {
      const name = Array.isArray(names) ? names[0] : names;
      if (typeof name !== 'string') continue;
      const node = { group_name: name };
      const props = groupProperties && groupProperties[type] && groupProperties[type][name];
      if (props && typeof props === 'object' && Object.keys(props).length > 0) node.group_properties = props;
      const ids = groupCohortIds && groupCohortIds[type] && groupCohortIds[type][name];
      if (Array.isArray(ids) && ids.length > 0) node.cohort_ids = ids;
      built[type] = node;
    }
  }
  if (Object.keys(built).length > 0) context.groups = built;
  return context;
}

const flagCache = {};
function flagsByKey(deployment) {
  if (!flagCache[deployment]) {
    const flags = readJson(DEPLOYMENTS[deployment].flagsFile);
    flagCache[deployment] = Object.fromEntries(flags.map((f) => [f.key, f]));
  }
  return flagCache[deployment];
}

const engine = new EvaluationEngine();

/// The v2 results (`/sdk/v2/vardata`) for a case: every evaluated flag, defaults included.
/// An empty key list means "all flags" at the proxy (as the reference), but "none" in JS.
function expectedV2(c) {
  const keys = c.flagKeys && c.flagKeys.length > 0 ? c.flagKeys : undefined;
  return engine.evaluate(toContext(c.user), topologicalSort(flagsByKey(c.deployment), keys));
}

/// The v1 filter (`/sdk/vardata`, `/v1/vardata`): drop defaults and undeployed flags.
function v1Filter(results) {
  const out = {};
  for (const [k, v] of Object.entries(results)) {
    const md = v.metadata || {};
    if (md.default === true || md.deployed === false) continue;
    out[k] = v;
  }
  return out;
}

module.exports = { DEPLOYMENTS, plan, toContext, expectedV2, v1Filter, flagsByKey, readJson };

if (require.main === module) {
  process.stdout.write(JSON.stringify(plan(), null, 1));
}
