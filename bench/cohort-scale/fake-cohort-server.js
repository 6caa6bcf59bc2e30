// A stand-in for Amplitude's flags and cohort APIs for the cohort-scale benchmark (spec
// amplitude-apis-and-clients.md §1.3-1.4). `/sdk/v2/flags` serves one flag targeting cohort
// `big`; `/sdk/v1/cohort/big` streams a generated cohort (never built whole in memory, so
// 10,000,000 members cost this process nothing). The driver sets the served version with
// `POST /control?size=N&churn=K&lastModified=T`: members are `user-<i>` for i in [K, N + K), so
// going from churn 0 to churn K removes K members and adds K. `GET /stats` tells when the last
// cohort download started and finished (ms since the epoch) and how many bytes it sent.
'use strict';
const http = require('http');

const port = Number(process.argv[2] || 0);
const COHORT_ID = 'big';
let version = { size: 0, churn: 0, lastModified: 1 };
let stats = { started: 0, finished: 0, bytes: 0, downloads: 0 };

const FLAGS = JSON.stringify([
  {
    key: 'cohort-flag',
    metadata: { flagType: 'release', flagVersion: 1, evaluationMode: 'local', deployed: true },
    variants: { on: { key: 'on', value: 'on' }, off: { key: 'off', value: 'off' } },
    segments: [
      { conditions: [[{ selector: ['context', 'user', 'cohort_ids'], op: 'set contains any', values: [COHORT_ID] }]], variant: 'on' },
      { variant: 'off' },
    ],
  },
]);

function streamCohort(res, v) {
  stats = { started: Date.now(), finished: 0, bytes: 0, downloads: stats.downloads + 1 };
  res.writeHead(200, { 'content-type': 'application/json' });
  const head = `{"cohortId":"${COHORT_ID}","groupType":"User","groupTypeId":0,"lastComputed":${v.lastModified},` +
    `"lastModified":${v.lastModified},"size":${v.size},"memberIds":[`;
  let i = 0;
  const end = v.size;
  const CHUNK = 20000;
  const write = (s) => { stats.bytes += s.length; return res.write(s); };
  write(head);
  const pump = () => {
    while (i < end) {
      const parts = [];
      const stop = Math.min(end, i + CHUNK);
      for (; i < stop; i++) parts.push(`${i === 0 ? '' : ','}"user-${i + v.churn}"`);
      if (!write(parts.join(''))) return res.once('drain', pump);
    }
    write(']}');
    res.end(() => { stats.finished = Date.now(); });
  };
  pump();
}

http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/control' && req.method === 'POST') {
    version = {
      size: Number(url.searchParams.get('size') || 0),
      churn: Number(url.searchParams.get('churn') || 0),
      lastModified: Number(url.searchParams.get('lastModified') || 1),
    };
    res.writeHead(200); return res.end('ok');
  }
  if (url.pathname === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(stats));
  }
  if (url.pathname === '/sdk/v2/flags') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(FLAGS);
  }
  if (url.pathname === `/sdk/v1/cohort/${COHORT_ID}`) {
    const since = url.searchParams.get('lastModified');
    if (since !== null && Number(since) >= version.lastModified) { res.writeHead(204); return res.end(); }
    return streamCohort(res, version);
  }
  res.writeHead(404); res.end();
}).listen(port, '127.0.0.1', function () {
  console.log(`listening ${this.address().port}`);
});
