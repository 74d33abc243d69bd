// A function in a custom runtime: a Node.js HTTP server on FC_SERVER_PORT.
//
//   .venv/bin/funclet invoke custom-node --payload 'hi'
//   curl -s http://127.0.0.1:9000/http/custom-node/any/path
'use strict';
const http = require('http');

const startedAt = new Date().toISOString();

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    res.setHeader('Content-Type', 'application/json');
    if (req.url === '/invoke') {
      console.log(`invoked by ${req.headers['x-fc-request-id']}`);
      res.end(JSON.stringify({ echo: body.toString(), startedAt }));
    } else if (req.url === '/pre-stop' || req.url === '/initialize') {
      res.end('{}');
    } else {
      res.end(JSON.stringify({ method: req.method, url: req.url, received: body.length }));
    }
  });
}).listen(Number(process.env.FC_SERVER_PORT), '127.0.0.1');
