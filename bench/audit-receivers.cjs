// Local receivers for `npm run bench -- audit`, in a process of their own so
// that their work does not share the bench's event loop (on 2 cores the
// sink and its receiver then run side by side, as on two machines). One HTTP
// server answers what Loki (push: 204), Elasticsearch (index template: 200;
// _bulk: a per-item answer for every action line, as the real API does) and
// a webhook (200) answer. Syslog goes to a real rsyslogd the bench starts.
// Usage: node audit-receivers.cjs, with an IPC channel: sends { port } once
// listening and stops when the bench goes away.
'use strict';
const http = require('node:http');

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.url === '/loki/api/v1/push') {
      res.writeHead(204);
      res.end();
    } else if (req.url.startsWith('/_index_template/')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"acknowledged":true}');
    } else if (req.url === '/_bulk') {
      const body = Buffer.concat(chunks).toString('utf8');
      const items = [];
      // Action lines are the even ones; answer each with its _id, as Elasticsearch does.
      const lines = body.split('\n');
      for (let i = 0; i + 1 < lines.length; i += 2) {
        const id = /"_id":"([^"]*)"/.exec(lines[i]);
        items.push(`{"create":{"_id":"${id ? id[1] : ''}","status":201}}`);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"took":1,"errors":false,"items":[${items.join(',')}]}`);
    } else {
      res.writeHead(200);
      res.end();
    }
  });
});
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
// The bench went away: close the server and its keep-alive connections, and let the process end.
process.on('disconnect', () => {
  server.close();
  server.closeAllConnections();
});
