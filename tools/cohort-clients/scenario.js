// The flags, cohorts and users every client of run.sh works with: a user-cohort flag and a
// group-cohort flag, members and non-members of each.
'use strict';

const DEPLOYMENT_KEY = 'server-cohort-clients-deployment';
const API_KEY = 'cohort-clients-api-key';
const SECRET_KEY = 'cohort-clients-secret-key';

const flag = (key, selector, cohortId) => ({
  key,
  metadata: { flagType: 'release', flagVersion: 1, evaluationMode: 'local', deployed: true },
  variants: { on: { key: 'on', value: 'on' }, off: { key: 'off', value: 'off' } },
  segments: [
    { conditions: [[{ selector, op: 'set contains any', values: [cohortId] }]], variant: 'on' },
    { variant: 'off' },
  ],
});

const FLAGS = [
  flag('beta-users', ['context', 'user', 'cohort_ids'], 'cohortUsers1'),
  flag('enterprise-orgs', ['context', 'groups', 'org id', 'cohort_ids'], 'cohortOrgs1'),
];

const COHORTS = {
  cohortUsers1: {
    cohortId: 'cohortUsers1', groupType: 'User', groupTypeId: 0, lastComputed: 1700000000000,
    lastModified: 1700000000000, memberIds: ['alice', 'bob'],
  },
  cohortOrgs1: {
    cohortId: 'cohortOrgs1', groupType: 'org id', groupTypeId: 1, lastComputed: 1700000000000,
    lastModified: 1700000000000, memberIds: ['acme'],
  },
};

// Members and non-members of both cohorts.
const USERS = [
  { user_id: 'alice', device_id: 'd1' },
  { user_id: 'bob' },
  { user_id: 'carol', device_id: 'd3' },
  { user_id: 'dave', groups: { 'org id': ['acme'] } },
  { user_id: 'alice', groups: { 'org id': ['globex'] } },
  { device_id: 'anonymous' },
];

module.exports = { DEPLOYMENT_KEY, API_KEY, SECRET_KEY, FLAGS, COHORTS, USERS };
