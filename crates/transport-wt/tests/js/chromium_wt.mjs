// Headless Chromium as a WebTransport client, for transport-wt's interop test
// (interop_chromium.rs).
//
// Usage: node chromium_wt.mjs URL CERT_SHA256_HEX TOKEN [SCENARIO]
// Env:   TRANSPORT_CHROMIUM      the Chromium binary (default /usr/bin/chromium)
//        TRANSPORT_NODE_MODULES  a directory whose node_modules holds playwright-core
//
// Serves a blank page on http://127.0.0.1:<port 0> (a secure context, as WebTransport needs),
// opens it in Chromium, and there connects to URL trusting the certificate by its hash
// (serverCertificateHashes), then, by SCENARIO:
//   echo (default)  a bidirectional echo (small and 200 kB), a unidirectional echo (the answer
//                   comes on a stream the server opens), a datagram echo (small and of
//                   maxDatagramSize), twenty bidirectional echoes at once, and a close with code
//                   7, reason "done";
//   server-streams  reads a bidirectional stream the server opens (then answers "reply" on it)
//                   and a unidirectional one;
//   server-close    opens a bidirectional stream with "close, please" and reports how `closed`
//                   settles;
//   refused         reports how `ready` fails.
// Prints one line "RESULT <flat JSON>" and exits 0; on a failure the JSON has an "error" field
// with what had been done so far. Stops by itself after 45 s, or when stdin closes (the test
// that started it is gone), closing the browser first.

import { createRequire } from 'node:module';
import http from 'node:http';
import path from 'node:path';

const [url, hash, token, scenario = 'echo'] = process.argv.slice(2);
if (!url || !hash || !token) {
  console.error('usage: node chromium_wt.mjs URL CERT_SHA256_HEX TOKEN [SCENARIO]');
  process.exit(2);
}
const chromiumPath = process.env.TRANSPORT_CHROMIUM || '/usr/bin/chromium';
const modules = process.env.TRANSPORT_NODE_MODULES;
if (!modules) {
  console.error('TRANSPORT_NODE_MODULES is not set');
  process.exit(2);
}
const { chromium } = createRequire(path.join(path.resolve(modules), 'package.json'))(
  'playwright-core',
);

let browser = null;
let pageServer = null;
let finished = false;
async function cleanup() {
  if (browser) {
    const b = browser;
    browser = null;
    await b.close().catch(() => {});
  }
  if (pageServer) {
    pageServer.close();
    pageServer = null;
  }
}
function bail(why) {
  if (finished) return;
  finished = true;
  console.error(`chromium_wt: ${why}`);
  cleanup().finally(() => process.exit(3));
}
const lifetime = setTimeout(() => bail('no result within 45 s'), 45_000);
process.stdin.on('end', () => bail('stdin closed'));
process.stdin.on('error', () => bail('stdin closed'));
process.stdin.resume();

// Runs in the page.
async function runInPage({ url, hash, token, scenario }) {
  const out = { origin: location.origin, secure: isSecureContext, scenario };
  const step = (what, promise, ms = 10_000) =>
    Promise.race([
      promise,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms),
      ),
    ]);
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  async function readAll(readable) {
    const reader = readable.getReader();
    const chunks = [];
    let length = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
      length += value.length;
    }
    const all = new Uint8Array(length);
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    return all;
  }
  const describe = (e) => `${e && e.name}: ${e && e.message}`;
  try {
    const value = new Uint8Array(hash.match(/../g).map((h) => parseInt(h, 16)));
    const wt = new WebTransport(url, {
      serverCertificateHashes: [{ algorithm: 'sha-256', value }],
    });
    wt.closed.catch(() => {});
    if (scenario === 'refused') {
      try {
        await step('session', wt.ready);
        out.ready = true;
      } catch (e) {
        out.ready = false;
        out.readyError = describe(e);
        out.readySource = e.source;
      }
      return out;
    }
    await step('session', wt.ready);
    out.ready = true;

    if (scenario === 'server-streams') {
      const bidis = wt.incomingBidirectionalStreams.getReader();
      const { value: bidi } = await step('incoming bidi stream', bidis.read());
      out.serverBidi = dec.decode(await step('server bidi', readAll(bidi.readable)));
      const replyWriter = bidi.writable.getWriter();
      await replyWriter.write(enc.encode('reply'));
      await replyWriter.close();
      const unis = wt.incomingUnidirectionalStreams.getReader();
      const { value: uni } = await step('incoming uni stream', unis.read());
      out.serverUni = dec.decode(await step('server uni', readAll(uni)));
      wt.close({ closeCode: 0, reason: '' });
      return out;
    }

    if (scenario === 'server-close') {
      const bidi = await step('createBidirectionalStream', wt.createBidirectionalStream());
      const writer = bidi.writable.getWriter();
      writer.write(enc.encode('close, please')).catch(() => {});
      try {
        const closed = await step('closed', wt.closed);
        out.closedHow = 'resolved';
        out.closedCode = closed.closeCode;
        out.closedReason = closed.reason;
      } catch (e) {
        out.closedHow = 'rejected';
        out.closedError = describe(e);
        out.closedSource = e.source;
      }
      return out;
    }

    // Bidirectional, small.
    const bidi = await step('createBidirectionalStream', wt.createBidirectionalStream());
    const writer = bidi.writable.getWriter();
    await writer.write(enc.encode(`bidi ${token}`));
    await writer.close();
    out.bidi = dec.decode(await step('bidi echo', readAll(bidi.readable)));

    // Bidirectional, larger than the flow-control windows: write and read at once.
    const big = new Uint8Array(200_000);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    const large = await step('createBidirectionalStream', wt.createBidirectionalStream());
    const largeWriter = large.writable.getWriter();
    const writing = largeWriter.write(big).then(() => largeWriter.close());
    const back = await step('large bidi echo', readAll(large.readable));
    await step('large bidi write', writing);
    out.bidiLargeLength = back.length;
    out.bidiLargeEqual = back.length === big.length && back.every((v, i) => v === big[i]);

    // Unidirectional: the echo arrives on a stream the server opens.
    const incoming = wt.incomingUnidirectionalStreams.getReader();
    const uni = await step('createUnidirectionalStream', wt.createUnidirectionalStream());
    const uniWriter = uni.getWriter();
    await uniWriter.write(enc.encode(`uni ${token}`));
    await uniWriter.close();
    const { value: echoed } = await step('incoming uni stream', incoming.read());
    out.uni = dec.decode(await step('uni echo', readAll(echoed)));

    // Datagrams: unreliable, so retried a few times.
    out.datagramMax = wt.datagrams.maxDatagramSize;
    const dgWriter = wt.datagrams.writable.getWriter();
    const dgReader = wt.datagrams.readable.getReader();
    const next = dgReader.read();
    for (let i = 0; i < 10 && out.datagram === undefined; i++) {
      await dgWriter.write(enc.encode(`dg ${token}`));
      const got = await Promise.race([next, new Promise((r) => setTimeout(() => r(null), 500))]);
      if (got && !got.done) out.datagram = dec.decode(got.value);
    }
    // The largest datagram the browser lets the page send, echoed (same path, same prefix).
    let pending = dgReader.read();
    const bigDatagram = new Uint8Array(wt.datagrams.maxDatagramSize).fill(0x5a);
    for (let i = 0; i < 10 && out.bigDatagramLength === undefined; i++) {
      await dgWriter.write(bigDatagram);
      const got = await Promise.race([pending, new Promise((r) => setTimeout(() => r(null), 500))]);
      if (got && !got.done) {
        if (got.value.length > 100) out.bigDatagramLength = got.value.length;
        pending = dgReader.read();
      }
    }

    // Twenty bidirectional echoes at once, 10 kB each.
    const parallel = await step(
      'parallel echoes',
      Promise.all(
        Array.from({ length: 20 }, async (_, n) => {
        const payload = new Uint8Array(10_000).fill(n);
        const stream = await wt.createBidirectionalStream();
        const w = stream.writable.getWriter();
        const sent = w.write(payload).then(() => w.close());
        const got = await readAll(stream.readable);
        await sent;
        return got.length === payload.length && got.every((v) => v === n);
        }),
      ),
    );
    out.parallelEchoes = parallel.filter(Boolean).length;

    // Close with a code and a reason.
    wt.close({ closeCode: 7, reason: 'done' });
    const closed = await step('closed', wt.closed);
    out.closedCode = closed.closeCode;
    out.closedReason = closed.reason;
  } catch (e) {
    out.error = describe(e);
  }
  return out;
}

try {
  pageServer = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>transport-wt interop</title>');
  });
  await new Promise((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  const pageUrl = `http://127.0.0.1:${pageServer.address().port}/`;

  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    timeout: 30_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = await browser.newPage();
  page.on('console', (m) => console.error(`page: ${m.text()}`));
  await page.goto(pageUrl, { timeout: 15_000 });
  const result = await page.evaluate(runInPage, { url, hash, token, scenario });
  result.browser = browser.version();
  console.log(`RESULT ${JSON.stringify(result)}`);
  finished = true;
  clearTimeout(lifetime);
  await cleanup();
  process.exit(0);
} catch (e) {
  // After a bail (timeout, stdin closed) the browser is gone on purpose: bail reports and exits.
  if (finished) await new Promise(() => {});
  console.log(`RESULT ${JSON.stringify({ error: `driver: ${e && e.message}` })}`);
  finished = true;
  clearTimeout(lifetime);
  await cleanup();
  process.exit(0);
}
