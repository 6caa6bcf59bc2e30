// A stand-in for the proxy, used only by `run.sh --self-test` to check this harness itself
// (SDK plumbing, shims, comparisons) when the real proxy is not available. It serves the
// remote-evaluation endpoints with the reference behaviour, evaluating with experiment-core.
// Usage: node stub-proxy.js PORT   (STUB_MUTATE=1 makes it answer a wrong variant)
'use strict';

const http = require('http');
const oracle = require('./lib/oracle');

const byKey = Object.fromEntries(Object.entries(oracle.DEPLOYMENTS).map(([name, d]) => [d.key, name]));
const decode = (s) => JSON.parse(Buffer.from(s, 'base64').toString('utf8')); // both alphabets

function send(res, status, body) {
  res.writeHead(status, { 'Content-Type': typeof body === 'string' ? 'text/plain' : 'application/json' });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

function handle(req, res, body) {
  // Repeated slashes collapse, as at the proxy (`//sdk/v2/vardata` from a serverUrl ending in /).
  const url = new URL(req.url.replace(/^\/+/, '/'), 'http://stub');
  if (url.pathname === '/readyz') return send(res, 200, 'OK');
  const auth = req.headers.authorization || '';
  const deployment = auth.startsWith('Api-Key ') ? byKey[auth.slice(8)] : undefined;
  if (!deployment) return send(res, 401, 'Invalid deployment');
  if (url.pathname === '/sdk/v2/flags') return send(res, 200, Object.values(oracle.flagsByKey(deployment)));
  const v1 = url.pathname === '/sdk/vardata' || url.pathname === '/v1/vardata';
  if (!v1 && url.pathname !== '/sdk/v2/vardata') return send(res, 404, '');
  let user = {};
  if (req.method === 'POST') user = JSON.parse(body);
  else if (url.pathname === '/v1/vardata') {
    user = JSON.parse(url.searchParams.get('context') || '{}');
    for (const k of ['user_id', 'device_id']) if (url.searchParams.has(k)) user[k] = url.searchParams.get(k);
  } else if (req.headers['x-amp-exp-user']) user = decode(req.headers['x-amp-exp-user']);
  const keysHeader = req.headers['x-amp-exp-flag-keys'];
  const flagKeys = keysHeader ? decode(keysHeader) : null;
  const results = oracle.expectedV2({ deployment, user, flagKeys });
  // STUB_MUTATE=1: answer one wrong variant, to prove that the checks catch it.
  if (process.env.STUB_MUTATE && results['checkout-experiment']) results['checkout-experiment'].key = 'mutated';
  return send(res, 200, v1 ? oracle.v1Filter(results) : results);
}

http
  .createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      try {
        handle(req, res, body);
      } catch (e) {
        send(res, 500, String(e));
      }
    });
  })
  .listen(Number(process.argv[2] || 3546), '127.0.0.1');
