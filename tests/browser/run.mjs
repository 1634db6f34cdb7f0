// Headless-browser checks of aichatd's streams: Debian's Chromium, driven by playwright-core,
// runs page.html (served from a tiny static server on another loopback port) against a fresh
// stack. The page uses the browser's own EventSource and WebSocket.
//
//   cd tests/browser && npm ci && node run.mjs
//
// Environment: AICHATD_BUILD_DIR passes through to scripts/stack; CHROMIUM (default
// /usr/bin/chromium); AICHATD_BROWSER_KEEP=1 keeps the temp dirs (stack data, profile).
// Prints `ok - browser <name>` / `FAIL - browser <name>: reason` per check, then
// `N passed, N failed`; exits 0 only when every check passed.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync'];
const CHECK_TIMEOUT_MS = 60000;
const KEEP = !!process.env.AICHATD_BROWSER_KEEP;

// ------------------------------------------------------------------------------------------
// Processes and temp dirs this run owns; cleanup() undoes them all, once.

const owned = { stack: null, stackExit: null, server: null, context: null, dirs: [] };
let cleaning = null;
let interrupted = false;

function cleanup() {
  if (cleaning) return cleaning;
  cleaning = (async () => {
    if (owned.context) {
      await withTimeout(owned.context.close(), 15000, 'closing the browser').catch((e) =>
        process.stderr.write(`run.mjs: ${e.message}\n`));
      owned.context = null;
    }
    if (owned.server) {
      owned.server.closeAllConnections?.();
      await new Promise((r) => owned.server.close(() => r()));
      owned.server = null;
    }
    if (owned.stack) await stopStack();
    if (!KEEP) for (const d of owned.dirs) fs.rmSync(d, { recursive: true, force: true });
  })();
  return cleaning;
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    interrupted = true;
    process.stderr.write(`run.mjs: ${sig}; cleaning up\n`);
    cleanup().finally(() => process.exit(130));
  });
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]);
}

function tempDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  owned.dirs.push(d);
  return d;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ------------------------------------------------------------------------------------------
// The stack: scripts/stack in the foreground, stopped by SIGTERM to its PID.

function httpGet(port, p) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function startStack() {
  const port = await freePort();
  const data = tempDir('aichatd-browser-data-');
  const logPath = path.join(data, 'stack-output.log');
  const log = fs.openSync(logPath, 'w');
  const env = {
    ...process.env,
    AICHATD_PORT: String(port),
    AICHATD_DATA_DIR: data,
    AICHATD_AUTH: 'off',
    AICHATD_PROVIDER: 'builtin',
    AICHATD_BUILTIN_DELAY_MS: '120',
  };
  const child = spawn(path.join(ROOT, 'scripts', 'stack'), [], {
    cwd: ROOT, env, stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  owned.stack = { child, port, logPath };
  owned.stackExit = new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, sig })));
  let exited = null;
  owned.stackExit.then((e) => { exited = e; });
  const deadline = Date.now() + 20000;
  let last = '';
  while (Date.now() < deadline) {
    if (exited) throw new Error(`stack exited (${JSON.stringify(exited)}) before ready:\n${logTail()}`);
    try {
      const status = await httpGet(port, '/health');
      if (status === 200) return port;
      last = `health answered ${status}`;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`stack not ready within 20 s (${last}):\n${logTail()}`);
}

function logTail(n = 30) {
  try {
    return fs.readFileSync(owned.stack.logPath, 'utf8').split('\n').slice(-n).join('\n');
  } catch (_) {
    return '';
  }
}

async function stopStack() {
  const { child } = owned.stack;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    try {
      await withTimeout(owned.stackExit, 15000, 'stack stop');
    } catch (_) {
      process.stderr.write(`run.mjs: stack did not stop on SIGTERM; SIGKILL to pid ${child.pid}\n`);
      child.kill('SIGKILL');
      await owned.stackExit;
    }
  }
  owned.stack = null;
}

function stackAlive() {
  const c = owned.stack?.child;
  return !!c && c.exitCode === null && c.signalCode === null;
}

// ------------------------------------------------------------------------------------------
// The static server: page.html and nothing else.

async function startStaticServer() {
  const page = fs.readFileSync(path.join(HERE, 'page.html'));
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    if (req.method === 'GET' && (p === '/' || p === '/page.html')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(page);
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
    }
  });
  owned.server = server;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return server.address().port;
}

// ------------------------------------------------------------------------------------------
// Assertions on what the page reports.

class CheckError extends Error {}
function assert(cond, msg) {
  if (!cond) throw new CheckError(msg);
}
const J = (v) => {
  const s = JSON.stringify(v);
  return s && s.length > 300 ? s.slice(0, 300) + '…' : s;
};
const bytes = (s) => Buffer.byteLength(s, 'utf8');

// Every SSE event's id is "<msgId>:<n>", n the byte length of the reply up to and including
// that event; done's and error's end in ":end".
function checkIds(events, before, label, msgId) {
  let text = before;
  for (const e of events) {
    if (e.type === 'init' || e.type === 'chunk') text += e.data.content;
    if (e.type === 'done') text = e.data.content;
    const want = `${msgId}:${bytes(text)}${e.type === 'done' || e.type === 'error' ? ':end' : ''}`;
    assert(e.id === want, `${label}: ${e.type} has id ${J(e.id)}, expected ${J(want)}`);
  }
}

function checkNoBrowserReconnect(events, label) {
  const again = events.find((e) => e.opens !== 1);
  assert(!again, `${label}: the browser reconnected on its own (event ${J(again)})`);
}

const checks = {
  // (a)
  sse(r) {
    const { events, stored } = r;
    const types = events.map((e) => e.type);
    assert(types[0] === 'init', `first event ${J(types[0])}, expected init (events ${J(types)})`);
    assert(types.at(-1) === 'done', `last event ${J(types.at(-1))}, expected done: ${J(events.at(-1))}`);
    const middle = types.slice(1, -1);
    assert(middle.every((t) => t === 'chunk'), `between init and done: ${J(middle)}`);
    assert(middle.length >= 2, `only ${middle.length} chunk(s): the reply did not stream`);
    const text = events.filter((e) => e.type !== 'done').map((e) => e.data.content).join('');
    const done = events.at(-1).data.content;
    assert(text === done, `init+chunks ${J(text)} != done ${J(done)}`);
    assert(stored && stored.content === done && stored.error === '',
      `GET /ai/message/content ${J(stored)} != done ${J(done)}`);
    assert(done.length > 0, 'empty reply');
    checkIds(events, '', 'stream', r.msgId);
    checkNoBrowserReconnect(events, 'stream');
    return `${middle.length} chunks, ${bytes(done)} bytes`;
  },

  // (b)
  sse_resume(r) {
    const { first, second, lastId, stored } = r;
    const t1 = first.map((e) => e.type);
    assert(J(t1) === J(['init', 'chunk', 'chunk']),
      `first stream ${J(t1)}, expected init, chunk, chunk (closed after the 2nd chunk)`);
    const text1 = first.map((e) => e.data.content).join('');
    assert(lastId === `${r.msgId}:${bytes(text1)}`, `last event id ${J(lastId)} != ${bytes(text1)} bytes seen`);
    const t2 = second.map((e) => e.type);
    assert(t2[0] === 'chunk', `resumed stream starts with ${J(t2[0])}, expected the missed chunk`);
    assert(second[0].data.content.length > 0, 'resumed stream: the catch-up chunk is empty');
    assert(t2.at(-1) === 'done' && t2.slice(0, -1).every((t) => t === 'chunk'),
      `resumed stream ${J(t2)}, expected chunk… done`);
    const text2 = second.filter((e) => e.type === 'chunk').map((e) => e.data.content).join('');
    const done = second.at(-1).data.content;
    assert(text1 + text2 === done,
      `first ${J(text1)} + resumed ${J(text2)} != done ${J(done)} (lost or repeated text)`);
    assert(stored && stored.content === done, `stored ${J(stored)} != done ${J(done)}`);
    checkIds(first, '', 'first stream', r.msgId);
    checkIds(second, text1, 'resumed stream', r.msgId);
    checkNoBrowserReconnect(first, 'first stream');
    checkNoBrowserReconnect(second, 'resumed stream');
    return `resumed at byte ${lastId} of ${bytes(done)}`;
  },

  // (c)
  ws(r) {
    const { conv, connected, sent, reply, all, stored } = r;
    assert(connected.type === 'connected' && connected.session_id === conv,
      `connected ${J(connected)}, expected session_id ${J(conv)}`);
    assert(sent.type === 'message_sent' && sent.session_id === conv && sent.message_id,
      `answer to send_message ${J(sent)}`);
    assert(reply.type === 'ai_reply', `reply ${J(reply)}`);
    assert(reply.stopped === false, `ai_reply stopped ${J(reply.stopped)}`);
    assert(reply.session_id === conv, `ai_reply session_id ${J(reply.session_id)}`);
    const chunks = all.filter((m) => m.type === 'ai_chunk' && m.message_id === reply.message_id);
    assert(chunks.length >= 2, `${chunks.length} ai_chunk(s) for ${reply.message_id}: no streaming`);
    assert(chunks.every((c) => c.user_message_id === sent.message_id && c.session_id === conv),
      `ai_chunk ids ${J(chunks[0])}`);
    const text = chunks.map((c) => c.content).join('');
    assert(text === reply.content, `ai_chunks ${J(text)} != ai_reply ${J(reply.content)}`);
    assert(stored && stored.content === reply.content,
      `GET /ai/message/content ${J(stored)} != ai_reply ${J(reply.content)}`);
    const iSent = all.indexOf(all.find((m) => m.type === 'message_sent'));
    const iChunk = all.indexOf(chunks[0]);
    const iReply = all.indexOf(all.find((m) => m.type === 'ai_reply'));
    assert(iSent < iChunk && iChunk < iReply, `order of events ${J(all.map((m) => m.type))}`);
    return `${chunks.length} ai_chunks, ${bytes(reply.content)} bytes`;
  },

  // (d)
  ws_resume(r) {
    const { sent, firstChunk, firstAll, reply, secondAll, list, stored, fresh } = r;
    assert(sent.type === 'message_sent', `answer to send_message ${J(sent)}`);
    assert(firstChunk.type === 'ai_chunk', `first reply event ${J(firstChunk)}, expected ai_chunk`);
    assert(reply.type === 'ai_reply' && reply.stopped === false,
      `after reconnecting: ${J(reply)} (expected an ai_reply, not stopped)`);
    assert(reply.message_id === firstChunk.message_id, 'ai_reply is for another message');
    const mine = (m) => m.type === 'ai_chunk' && m.message_id === reply.message_id;
    const text1 = firstAll.filter(mine).map((m) => m.content).join('');
    const later = secondAll.filter(mine);
    assert(later.length >= 1, 'no ai_chunk after reconnecting: the reply was not live any more');
    const text2 = later.map((m) => m.content).join('');
    assert(reply.content.startsWith(text1) && reply.content.endsWith(text2),
      `ai_chunks before ${J(text1)} / after ${J(text2)} do not fit ai_reply ${J(reply.content)}`);
    // in the browser: chax's list and content routes
    assert(Array.isArray(list), `GET /ai/message/list: ${J(list)}`);
    const c = list.find((x) => x.msgId === reply.message_id);
    assert(c, `reply ${reply.message_id} missing from /ai/message/list: ${J(list)}`);
    assert(c.role === 'assistant' && c.unfinished === false && c.error === '',
      `C lists the reply as ${J(c)}`);
    assert(stored.content === reply.content && stored.error === '',
      `GET /ai/message/content ${J(stored)} != ai_reply ${J(reply.content)}`);
    // outside it (im's routes have no CORS): im's list
    const msgs = r.aList?.messages;
    assert(Array.isArray(msgs), `GET /api/message/list: ${J(r.aList)}`);
    const m = msgs.find((x) => x.message_id === reply.message_id);
    assert(m, `reply ${reply.message_id} missing from /api/message/list: ${J(msgs)}`);
    assert(m.msg_type === 'AI_REPLY' && m.msg_content === reply.content,
      `A lists the reply as ${J(m)}, ai_reply was ${J(reply.content)}`);
    const ft = fresh.map((e) => e.type);
    assert(J(ft) === J(['init', 'done']), `fresh stream of the finished reply: ${J(ft)}`);
    assert(fresh[0].data.content === reply.content && fresh[1].data.content === reply.content,
      `fresh stream ${J(fresh)} != stored ${J(reply.content)}`);
    assert(fresh[0].id !== fresh[1].id, `init and done of the finished reply share the id ${J(fresh[0].id)}`);
    return `${later.length} ai_chunks after reconnecting, ${bytes(reply.content)} bytes stored`;
  },

  // (e) an EventSource never closed: done once, then the 204 of its reconnect ends it
  sse_never_closed(r) {
    return checkNeverClosed(r, 'Chromium');
  },
};

// What a page or a client that never calls close() saw in the WAIT_AFTER_DONE_MS after done.
function checkNeverClosed(r, who) {
  const { events, readyState, opens, errors } = r;
  const types = events.map((e) => e.type);
  const dones = types.filter((t) => t === 'done').length;
  assert(types[0] === 'init', `${who}: first event ${J(types[0])}`);
  assert(dones === 1, `${who}: done ${dones} times in ${WAIT_AFTER_DONE_MS} ms after the first (events ${J(types)}, ${opens} opens)`);
  assert(types.at(-1) === 'done', `${who}: events after done: ${J(types)}`);
  assert(readyState === 2, `${who}: readyState ${readyState} after the reconnect, expected 2 (CLOSED: the 204 stopped it)`);
  assert(opens === 1, `${who}: ${opens} opens: a reconnect after done was answered with a stream`);
  assert(errors >= 1, `${who}: no error event: the stream never ended`);
  const ids = events.map((e) => e.id);
  assert(new Set(ids).size === ids.length, `${who}: repeated ids ${J(ids)}`);
  return `${types.length} events, done once, closed by the 204`;
}
const WAIT_AFTER_DONE_MS = 10000;

// The same with npm's eventsource (Node), and a Last-Event-ID it never gave: a whole stream.
async function nodeEventSourceChecks(api, report) {
  const { EventSource } = await import('eventsource');
  const chat = async (content) => {
    const res = await fetch(`${api}/ai/chat`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ content }),
    });
    assert(res.ok, `POST /ai/chat → ${res.status}`);
    return res.json();
  };
  const watch = (url, stopAfterDoneMs) => new Promise((resolve, reject) => {
    const es = new EventSource(url);
    const events = [];
    let opens = 0;
    let errors = 0;
    let timer = setTimeout(() => { es.close(); reject(new Error(`no done within 30 s: ${J(events)}`)); }, 30000);
    es.onopen = () => { opens++; };
    es.onerror = () => { errors++; };
    for (const type of ['init', 'chunk', 'done', 'error']) {
      es.addEventListener(type, (ev) => {
        if (typeof ev.data !== 'string') return; // the connection's own error, not an event
        events.push({ type, id: ev.lastEventId, data: JSON.parse(ev.data) });
        if ((type === 'done' || type === 'error') && events.filter((e) => e.type === type).length === 1) {
          clearTimeout(timer);
          // never close(): whatever the client does by itself in the next seconds counts
          timer = setTimeout(() => {
            const readyState = es.readyState;
            es.close();
            resolve({ events, readyState, opens, errors });
          }, stopAfterDoneMs);
        }
      });
    }
  });
  for (const [name, fn] of Object.entries({
    async node_eventsource_done_once() {
      const c = await chat('npm eventsource 从不调用 close()');
      const r = await watch(`${api}/ai/message/stream/${encodeURIComponent(c.msgId)}`, WAIT_AFTER_DONE_MS);
      return checkNeverClosed(r, 'eventsource');
    },
    async node_eventsource_bad_last_event_id() {
      const c = await chat('npm eventsource 带一个坏的 last_event_id');
      const first = await watch(`${api}/ai/message/stream/${encodeURIComponent(c.msgId)}`, 100);
      const full = first.events.at(-1).data.content;
      const b = Buffer.from(full, 'utf8');
      let inside = 1;
      while ((b[inside] & 0xc0) !== 0x80) inside++;
      for (const bad of ['garbage', `${c.msgId}:${inside}`, String(inside), `${c.msgId}:99999999`]) {
        const r = await watch(`${api}/ai/message/stream/${encodeURIComponent(c.msgId)}?last_event_id=${encodeURIComponent(bad)}`, 100);
        const got = r.events.map((e) => [e.type, e.data.content]);
        assert(J(got) === J([['init', full], ['done', full]]), `last_event_id ${J(bad)}: ${J(got)}`);
      }
      return 'each started over';
    },
  })) {
    let err = null;
    let note = '';
    try {
      note = await withTimeout(fn(), CHECK_TIMEOUT_MS, name);
    } catch (e) {
      err = e;
    }
    report(name, err, note);
  }
}

const PAGE_FUNCS = { sse: 'checkSse', sse_resume: 'checkSseResume', ws: 'checkWs', ws_resume: 'checkWsResume',
  sse_never_closed: 'checkSseNeverClosed' };

// ------------------------------------------------------------------------------------------

async function main() {
  let passed = 0;
  let failed = 0;
  const report = (name, err, note) => {
    if (err) {
      failed++;
      // one line; playwright appends the browser's whole log to its errors: not that
      let why = String(err.message || err).split('Browser logs:')[0].replace(/\s+/g, ' ').trim();
      if (why.length > 600) why = why.slice(0, 600) + '…';
      console.log(`FAIL - browser ${name}: ${why}`);
    } else {
      passed++;
      console.log(`ok - browser ${name}${process.env.VERBOSE && note ? ` (${note})` : ''}`);
    }
  };

  try {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found (apt-get install chromium)`);
    let chromium;
    try {
      ({ chromium } = await import('playwright-core'));
    } catch (e) {
      throw new Error(`playwright-core is not installed (cd tests/browser && npm ci): ${e.message}`);
    }
    const stackPort = await startStack();
    // npm's eventsource, in Node, while the browser starts
    const nodeChecks = nodeEventSourceChecks(`http://127.0.0.1:${stackPort}`, report)
      .catch((e) => report('node_eventsource', e));
    const pagePort = await startStaticServer();
    const profile = tempDir('aichatd-browser-profile-');
    owned.context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true,
      // our own handlers close the browser *and* stop the stack (playwright's would exit first)
      handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
      viewport: { width: 1000, height: 900 },
    });
    const page = owned.context.pages()[0] || await owned.context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const api = `http://127.0.0.1:${stackPort}`;
    await page.goto(`http://127.0.0.1:${pagePort}/page.html?api=${encodeURIComponent(api)}`);
    await page.waitForFunction(() => typeof window.checkWsResume === 'function', null, { timeout: 10000 });

    for (const [name, verify] of Object.entries(checks)) {
      if (interrupted) break;
      let err = null;
      let note = '';
      try {
        const fn = PAGE_FUNCS[name];
        const r = await withTimeout(page.evaluate((f) => window[f](), fn), CHECK_TIMEOUT_MS, name);
        if (name === 'ws_resume') {
          const res = await fetch(`${api}/api/message/list?session_id=${encodeURIComponent(r.conv)}`);
          r.aList = await res.json().catch(() => `HTTP ${res.status}, not JSON`);
        }
        note = verify(r);
      } catch (e) {
        err = e;
      }
      if (interrupted) break; // the failure, if any, is the interrupt's
      if (!err && pageErrors.length) err = new Error(`page error: ${pageErrors.join('; ')}`);
      if (!err && !stackAlive()) err = new Error(`the stack exited:\n${logTail()}`);
      await page.evaluate(([n, ok, msg]) => window.markResult(n, ok, msg),
        [name, !err, err ? String(err.message).slice(0, 200) : note]).catch(() => {});
      report(name, err, note);
    }

    await nodeChecks;
    if (interrupted) return;
    fs.mkdirSync(path.join(HERE, 'out'), { recursive: true });
    await page.screenshot({ path: path.join(HERE, 'out', 'last.png'), fullPage: true });
  } catch (e) {
    if (!interrupted) report('setup', e);
  } finally {
    if (failed && owned.stack) process.stderr.write(`stack output (tail):\n${logTail()}\n`);
    await cleanup();
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 && passed > 0 ? 0 : 1;
}

await main();
