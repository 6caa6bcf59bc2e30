// A stand-in for Amplitude's flags and cohort APIs (spec amplitude-apis-and-clients.md §1.3-1.4)
// that the proxy syncs from: `/sdk/v2/flags` (Api-Key) and `/sdk/v1/cohort/{id}` (Basic,
// maxCohortSize -> 413, lastModified -> 204). Usage: node fake-upstream.js PORT
'use strict';

const http = require('http');
const { DEPLOYMENT_KEY, API_KEY, SECRET_KEY, FLAGS, COHORTS } = require('./scenario');

function send(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(body === undefined ? '' : JSON.stringify(body));
}

http
  .createServer((req, res) => {
    const url = new URL(req.url, 'http://fake');
    const auth = req.headers.authorization || '';
    if (url.pathname === '/sdk/v2/flags') {
      return auth === `Api-Key ${DEPLOYMENT_KEY}` ? send(res, 200, FLAGS) : send(res, 401);
    }
    const match = url.pathname.match(/^\/sdk\/v1\/cohort\/([^/]+)$/);
    if (!match) return send(res, 404);
    if (auth !== 'Basic ' + Buffer.from(`${API_KEY}:${SECRET_KEY}`).toString('base64')) return send(res, 401);
    const cohort = COHORTS[decodeURIComponent(match[1])];
    if (!cohort) return send(res, 404);
    const max = Number(url.searchParams.get('maxCohortSize') || Infinity);
    if (cohort.memberIds.length > max) return send(res, 413);
    const since = url.searchParams.get('lastModified');
    if (since !== null && Number(since) >= cohort.lastModified) return send(res, 204);
    return send(res, 200, { ...cohort, size: cohort.memberIds.length });
  })
  .listen(Number(process.argv[2]), '127.0.0.1');
