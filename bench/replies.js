'use strict';
// AI-reply load for `scripts/bench replies`: keeps TARGET replies running in the push daemon.
//
//   node bench/replies.js URL TARGET PUSHD_PID PREFIX FLAGDIR
//
// Every 100 ms it reads GET /health?detail=1 (push.runs) and the daemon's VmRSS, and sends
// TARGET - runs - (sends not yet answered) new POST /api/message/send, each into a session
// of its own (PREFIX + n): the first tick sends TARGET at once, later ones top up the replies
// that ended. It prints "ready" once TARGET * 0.9 replies run. The window in which it records
// samples opens when FLAGDIR/window-start exists and closes at FLAGDIR/window-end; then it
// stops sending, waits for every reply to end and prints its summary as "key value" lines.
const http = require('http');
const fs = require('fs');
const { rssKb: rssOf, request: req, quantile } = require('./common');

const [base, targetArg, pidArg, prefix, flagdir] = process.argv.slice(2);
if (!flagdir) {
	console.error('usage: node replies.js URL TARGET PUSHD_PID PREFIX FLAGDIR');
	process.exit(2);
}
const target = Number(targetArg);
const pid = Number(pidArg);
const sendAgent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const healthAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });

let seq = 0, pending = 0, sent = 0, ok = 0, failed = 0, windowSent = 0;
const failures = {};
function send() {
	const sid = prefix + seq++;
	const body = JSON.stringify({ session_id: sid,
		content: `Benchmark reply ${sid}: what is the weather like in Hangzhou this weekend?` });
	pending++;
	sent++;
	if (phase === 'window')
		windowSent++;
	req(base, 'POST', '/api/message/send', body, sendAgent).then((r) => {
		if (r.status === 200) {
			ok++;
		} else {
			failed++;
			failures[r.status] = (failures[r.status] || 0) + 1;
		}
	}, (e) => {
		failed++;
		failures[e.message] = (failures[e.message] || 0) + 1;
	}).finally(() => { pending--; });
}

let phase = 'ramp', ready = false, healthErrors = 0;
const started = Date.now();
let windowStart = 0, windowEnd = 0, drainStart = 0;
const rssKb = () => rssOf(pid);
const idleRss = rssKb();
let peakRss = 0, runsAtPeak = 0, afterRss = 0, drained = 0;
const samples = { runs: [], upstream: [] };

function finish(code) {
	const out = {
		sent, ok, failed, failures: JSON.stringify(failures), health_errors: healthErrors,
		window_s: ((windowEnd - windowStart) / 1000).toFixed(1),
		window_sent: windowSent,
		samples: samples.runs.length,
		runs_min: samples.runs.length ? Math.min(...samples.runs) : 0,
		runs_med: quantile(samples.runs, 0.5) || 0,
		runs_max: samples.runs.length ? Math.max(...samples.runs) : 0,
		up_min: samples.upstream.length ? Math.min(...samples.upstream) : 0,
		up_med: quantile(samples.upstream, 0.5) || 0,
		up_max: samples.upstream.length ? Math.max(...samples.upstream) : 0,
		rss_idle_kb: idleRss, rss_peak_kb: peakRss, runs_at_peak: runsAtPeak,
		rss_after_kb: afterRss, drained,
		drain_s: drainStart ? ((Date.now() - drainStart) / 1000).toFixed(1) : 0,
	};
	for (const [k, v] of Object.entries(out))
		process.stdout.write(`${k} ${v}\n`);
	sendAgent.destroy();
	healthAgent.destroy();
	process.exit(code);
}

async function tick() {
	let h;
	try {
		const r = await req(base, 'GET', '/health?detail=1', null, healthAgent);
		h = JSON.parse(r.body).push;
		if (!h || h.status !== 'ok')
			throw new Error('no push counters');
	} catch (e) {
		healthErrors++;
		if (healthErrors > 50) {
			process.stdout.write(`error health: ${e.message}\n`);
			return finish(1);
		}
		return setTimeout(tick, 100);
	}
	const rss = rssKb();
	if (phase === 'ramp' && fs.existsSync(`${flagdir}/window-start`)) {
		phase = 'window';
		windowStart = Date.now();
	}
	if (phase === 'window' && fs.existsSync(`${flagdir}/window-end`)) {
		phase = 'drain';
		windowEnd = drainStart = Date.now();
	}
	if (phase !== 'drain') {
		for (let d = target - h.runs - pending; d > 0; d--)
			send();
	}
	if (phase === 'ramp' && !ready && h.runs >= 0.9 * target) {
		ready = true;
		process.stdout.write('ready\n');
	}
	if (phase === 'ramp' && Date.now() - started > 60000) {
		process.stdout.write(`error only ${h.runs} replies running after 60 s\n`);
		return finish(1);
	}
	if (phase === 'window') {
		samples.runs.push(h.runs);
		samples.upstream.push(h.upstream);
		if (rss > peakRss) {
			peakRss = rss;
			runsAtPeak = h.runs;
		}
	}
	if (phase === 'drain') {
		if (h.runs === 0 && pending === 0) {
			drained = 1;
			afterRss = rss;
			return finish(0);
		}
		if (Date.now() - drainStart > 60000) {
			afterRss = rss;
			return finish(0);
		}
	}
	setTimeout(tick, 100);
}

process.on('SIGTERM', () => process.exit(143));
tick();
