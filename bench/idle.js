'use strict';
// Idle connections for `scripts/bench connections`: many WebSockets and SSE streams at once.
//
//   node bench/idle.js URL NWS NCONV NSSE HOLD_S PUSHD_PID [NGINX_WORKER_PID...]
//
// 1. Starts NSSE replies (POST /ai/chat; the stack's builtin delay keeps them unfinished)
//    and waits until the daemon runs them all; reads the RSS ("before"), times 50 GET /health.
// 2. Opens NWS WebSockets to /ws/bench_idle_<i % NCONV> (each waits for "connected"), reads
//    the RSS ("WebSockets open"), then one SSE stream per reply (GET
//    /ai/message/stream/<msgId>, each waits for "init").
// 3. Reads /health?detail=1 and the RSS ("after"), times 50 GET /health (as in 1), holds every
//    connection HOLD_S seconds (pings and heartbeats flow), reads both again.
// 4. Closes everything and waits for the daemon's counters to fall to 0 ("all closed"); then
//    opens them all once more ("reopened": is the memory reused?) and closes them again.
// Prints its summary as "key value" lines; exits 1 when something could not be done.
const http = require('http');
const WebSocket = require('ws');
const { rssKb, request, pushCounters, pooled, sleep, quantile, report } = require('./common');

const [base, nwsArg, nconvArg, nsseArg, holdArg, pushPid, ...nginxPids] = process.argv.slice(2);
if (!pushPid) {
	console.error('usage: node idle.js URL NWS NCONV NSSE HOLD_S PUSHD_PID [NGINX_WORKER_PID...]');
	process.exit(2);
}
const nws = Number(nwsArg), nconv = Number(nconvArg), nsse = Number(nsseArg);
const hold = Number(holdArg);
const url = new URL(base);
const wsBase = `ws://${url.host}`;
const out = {};
const st = {
	ws_open: 0, ws_failed: 0, ws_closed: 0, ws_msgs: 0, ws_pings: 0,
	sse_open: 0, sse_failed: 0, sse_closed: 0, sse_events: 0, sse_beats: 0,
};
const errors = {};
const note = (k) => { errors[k] = (errors[k] || 0) + 1; };
let closing = false;
const sockets = [], streams = [];

const rss = () => ({ push: rssKb(pushPid), nginx: nginxPids.reduce((s, p) => s + rssKb(p), 0) });
const log = (s) => process.stderr.write(`bench: idle: ${s}\n`);

function openWs(i) {
	return new Promise((resolve) => {
		const ws = new WebSocket(`${wsBase}/ws/bench_idle_${i % nconv}`,
			{ perMessageDeflate: false, handshakeTimeout: 30000 });
		let settled = false;
		const settle = (ok) => { if (!settled) { settled = true; resolve(ok); } };
		sockets.push(ws);
		ws.on('message', (m) => {
			if (!settled && JSON.parse(m).type === 'connected') {
				st.ws_open++;
				settle(true);
			} else {
				st.ws_msgs++;
			}
		});
		ws.on('ping', () => { st.ws_pings++; });
		ws.on('unexpected-response', (q, r) => { note(`ws HTTP ${r.statusCode}`); });
		ws.on('error', (e) => { note(`ws ${e.message}`); });
		ws.on('close', (code) => {
			if (!closing) {
				st.ws_closed++;
				note(`ws closed ${code}`);
			}
			if (!settled)
				st.ws_failed++;
			settle(false);
		});
	});
}

function openSse(msgId) {
	return new Promise((resolve) => {
		let settled = false;
		const settle = (ok) => { if (!settled) { settled = true; resolve(ok); } };
		const req = http.get({ host: url.hostname, port: url.port, agent: false,
			path: `/ai/message/stream/${msgId}`, headers: { Accept: 'text/event-stream' } }, (res) => {
			if (res.statusCode !== 200) {
				note(`sse HTTP ${res.statusCode}`);
				st.sse_failed++;
				res.resume();
				return settle(false);
			}
			let buf = '';
			res.setEncoding('utf8');
			res.on('data', (d) => {
				buf += d;
				let k;
				while ((k = buf.indexOf('\n\n')) >= 0) {
					const block = buf.slice(0, k);
					buf = buf.slice(k + 2);
					if (block.startsWith(':')) {
						st.sse_beats++;
					} else if (/^event: init$/m.test(block) && !settled) {
						st.sse_open++;
						settle(true);
					} else if (/^event: /m.test(block)) {
						st.sse_events++;
					}
				}
			});
			res.on('close', () => {
				if (!closing) {
					st.sse_closed++;
					note('sse closed');
				}
				if (!settled)
					st.sse_failed++;
				settle(false);
			});
		});
		req.on('error', (e) => {
			if (!closing)
				note(`sse ${e.message}`);
			if (!settled)
				st.sse_failed++;
			settle(false);
		});
		streams.push(req);
	});
}

async function waitCounters(pred, ms) {
	const end = Date.now() + ms;
	let p;
	for (;;) {
		p = await pushCounters(base);
		if (pred(p) || Date.now() > end)
			return p;
		await sleep(200);
	}
}

async function healthLatency(n) {
	const ms = [];
	for (let i = 0; i < n; i++) {
		const r = await request(base, 'GET', '/health');
		if (r.status !== 200)
			note(`health HTTP ${r.status}`);
		ms.push(r.ms);
	}
	return { p50: quantile(ms, 0.5).toFixed(2), p99: quantile(ms, 0.99).toFixed(2),
		max: Math.max(...ms).toFixed(2) };
}

async function main() {
	let t = Date.now();
	const p0 = await pushCounters(base);
	out.runs_idle = p0.runs;
	out.rss_idle = rss();
	const msgIds = await pooled(nsse, 50, async (i) => {
		const r = await request(base, 'POST', '/ai/chat',
			JSON.stringify({ content: `Benchmark stream ${i}: an unfinished reply to watch` }));
		if (r.status !== 200)
			throw new Error(`POST /ai/chat answered ${r.status}: ${r.body.slice(0, 200)}`);
		return JSON.parse(r.body).msgId;
	});
	const p1 = await waitCounters((p) => p.runs >= p0.runs + nsse, 20000);
	out.runs_before = p1.runs;
	await sleep(1000);
	out.rss_before = rss();
	out.health_ms_idle = await healthLatency(50);
	out.replies_s = ((Date.now() - t) / 1000).toFixed(1);
	log(`${nsse} replies running; opening ${nws} WebSockets and ${nsse} SSE streams`);

	t = Date.now();
	await pooled(nws, 200, openWs);
	out.ws_open_s = ((Date.now() - t) / 1000).toFixed(1);
	await waitCounters((p) => p.ws >= p0.ws + nws, 5000);
	await sleep(1000);
	out.rss_ws = rss();
	t = Date.now();
	await pooled(nsse, 100, (i) => openSse(msgIds[i]));
	out.sse_open_s = ((Date.now() - t) / 1000).toFixed(1);
	const p2 = await waitCounters((p) => p.ws >= p0.ws + nws && p.sse >= p0.sse + nsse, 5000);
	await sleep(1000);
	out.rss_after = rss();
	out.counters_after = p2;
	out.health_ms = await healthLatency(50);
	log(`open: ws ${p2.ws}, sse ${p2.sse}; holding them ${hold} s`);

	await sleep(hold * 1000);
	const p3 = await pushCounters(base);
	out.counters_held = p3;
	out.rss_held = rss();
	out.health_ms_held = await healthLatency(50);

	closing = true;
	t = Date.now();
	for (const ws of sockets)
		ws.terminate();
	for (const s of streams)
		s.destroy();
	const p4 = await waitCounters((p) => p.ws === p0.ws && p.sse === p0.sse, 20000);
	out.counters_closed = p4;
	out.close_s = ((Date.now() - t) / 1000).toFixed(1);
	await sleep(1000);
	out.rss_closed = rss();

	// a second wave: does the memory of the first get reused (or did it leak)?
	closing = false;
	sockets.length = 0;
	streams.length = 0;
	const before2 = { ...st };
	await pooled(nws, 200, openWs);
	await pooled(nsse, 100, (i) => openSse(msgIds[i]));
	out.counters_reopened = await waitCounters((p) => p.ws >= p0.ws + nws && p.sse >= p0.sse + nsse, 5000);
	await sleep(1000);
	out.rss_reopened = rss();
	out.reopened_ws = st.ws_open - before2.ws_open;
	out.reopened_sse = st.sse_open - before2.sse_open;
	closing = true;
	for (const ws of sockets)
		ws.terminate();
	for (const s of streams)
		s.destroy();
	await waitCounters((p) => p.ws === p0.ws && p.sse === p0.sse, 20000);
	Object.assign(out, st);
	out.errors = errors;
	report(out);
}

main().then(() => process.exit(0), (e) => {
	Object.assign(out, st);
	out.errors = errors;
	report(out);
	process.stdout.write(`error ${e.message}\n`);
	process.exit(1);
});
process.on('SIGTERM', () => process.exit(143));
