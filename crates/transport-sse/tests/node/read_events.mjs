// Reads Server-Sent Events with the `eventsource` package (a WHATWG-compliant EventSource for
// Node) and prints each one as a JSON line: {"type","data","lastEventId"}.
//
// Usage: node read_events.mjs URL N [TYPE...]
//
// Listens for `message` events and for the named event TYPEs; exits 0 once N events have been
// printed, 2 when TIMEOUT_MS (environment, default 20000) passes first. The package is loaded
// from TRANSPORT_NODE_MODULES (the directory holding `node_modules/eventsource`), as installed
// by `npm install --prefix DIR eventsource@4`. Connection errors (the EventSource reconnects
// after them by itself) and opens are reported on stderr.

import { createRequire } from 'node:module';
import path from 'node:path';

const [url, countArg, ...types] = process.argv.slice(2);
const count = Number(countArg);
if (!url || !Number.isInteger(count) || count < 1) {
  process.stderr.write('usage: node read_events.mjs URL N [TYPE...]\n');
  process.exit(64);
}
const modules = process.env.TRANSPORT_NODE_MODULES;
if (!modules) {
  process.stderr.write('TRANSPORT_NODE_MODULES is not set\n');
  process.exit(64);
}
const require = createRequire(path.join(path.resolve(modules), 'package.json'));
const { EventSource } = require('eventsource');

const timeoutMs = Number(process.env.TIMEOUT_MS ?? 20000);
const timer = setTimeout(() => {
  process.stderr.write(`timeout: ${seen} of ${count} events after ${timeoutMs} ms\n`);
  process.exit(2);
}, timeoutMs);

let seen = 0;
const source = new EventSource(url);

function print(event) {
  if (seen >= count) {
    return;
  }
  seen += 1;
  const line = JSON.stringify({
    type: event.type,
    data: event.data,
    lastEventId: event.lastEventId,
  });
  if (seen < count) {
    process.stdout.write(`${line}\n`);
    return;
  }
  source.close();
  clearTimeout(timer);
  // Exit once the line is out: keep-alive sockets must not hold the process.
  process.stdout.write(`${line}\n`, () => process.exit(0));
}

source.addEventListener('message', print);
for (const type of types) {
  source.addEventListener(type, print);
}
source.addEventListener('open', () => process.stderr.write('open\n'));
source.addEventListener('error', (event) => {
  const code = event.code === undefined ? '' : ` (code ${event.code})`;
  process.stderr.write(`error: ${event.message ?? 'connection error'}${code}\n`);
});
