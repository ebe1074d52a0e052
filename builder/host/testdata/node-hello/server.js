const fs = require('fs');
const http = require('http');
const greeting = fs.readFileSync('greeting.txt', 'utf8');
http.createServer((req, res) => {
  res.end('hello from node, built with ' + greeting + '\n');
}).listen(Number(process.env.PORT), '127.0.0.1');
