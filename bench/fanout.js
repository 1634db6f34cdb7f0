'use strict';
// Fan-out for `scripts/bench connections`: NSUBS WebSocket subscribers of one conversation,
// then REPLIES replies in it, one after another (POST /api/message/send), after one that
// warms up and is not counted.
//
//   node bench/fanout.js URL NSUBS REPLIES SESSION PROCS [PUSHD_PID [NGINX_WORKER_PID...]]
//
// The subscribers live in PROCS child processes (NSUBS / PROCS each; 1: one process holds
// them all). Every subscriber records the arrival time of each ai_chunk (process.hrtime,
// CLOCK_MONOTONIC, so comparable between the processes); chunk k of a reply is the k-th
// ai_chunk of that message on every subscriber (the daemon sends them in order), and its
// spread is the last arrival minus the first. Checks that every subscriber got the same
// chunks and an ai_reply whose content is their concatenation. Reports the CPU time the
// daemon, nginx's workers and the subscriber processes used during the replies.
// Prints its summary as "key value" lines; exits 1 when something could not be done.
const { fork } = require('child_process');
const { cpuMs, request, pooled, sleep, quantile, report } = require('./common');

if (process.argv[2] === '--child')
	child(process.argv[3], Number(process.argv[4]), process.argv[5]);
else
	parent();

// ---- a subscriber process ----

function child(base, n, session) {
	const WebSocket = require('ws');
	const url = new URL(base);
	const subs = [];
	let closing = false, unexpectedCloses = 0;
	const errors = {};
	const note = (k) => { errors[k] = (errors[k] || 0) + 1; };

	function subscribe() {
		return new Promise((resolve) => {
			const ws = new WebSocket(`ws://${url.host}/ws/${session}`, { perMessageDeflate: false });
			const sub = { ws, msgs: [] };
			let settled = false;
			ws.on('message', (m) => {
				const at = process.hrtime.bigint();
				if (!settled) {
					settled = true;
					subs.push(sub);
					return resolve(true);
				}
				sub.msgs.push([at, m]);
			});
			ws.on('error', (e) => note(e.message));
			ws.on('close', (code) => {
				if (!closing) {
					unexpectedCloses++;
					note(`closed ${code}`);
				}
				if (!settled) {
					settled = true;
					resolve(false);
				}
			});
		});
	}

	// the ai_reply (or error) is each subscriber's last event of the reply
	const ended = (s) => s.msgs.length > 0 &&
		(s.msgs[s.msgs.length - 1][1].includes('"type":"ai_reply"') ||
		 s.msgs[s.msgs.length - 1][1].includes('"type":"error"'));

	function events() {
		return subs.map((s) => {
			const ev = { chunks: [], reply: null, error: null };
			for (const [at, m] of s.msgs) {
				const j = JSON.parse(m);
				if (j.type === 'ai_chunk')
					ev.chunks.push([String(at), j.content, j.message_id]);
				else if (j.type === 'ai_reply')
					ev.reply = { content: j.content, message_id: j.message_id };
				else if (j.type === 'error')
					ev.error = j.message;
			}
			return ev;
		});
	}

	let watching = null;
	process.on('message', (cmd) => {
		if (cmd.cmd === 'reset') {
			for (const s of subs)
				s.msgs = [];
			clearInterval(watching);
			watching = setInterval(() => {
				if (subs.every(ended)) {
					clearInterval(watching);
					process.send({ type: 'events', events: events() });
				}
			}, 50);
			process.send({ type: 'reset' });
		} else if (cmd.cmd === 'flush') {
			clearInterval(watching);
			process.send({ type: 'events', events: events() });
		} else if (cmd.cmd === 'close') {
			closing = true;
			for (const s of subs)
				s.ws.terminate();
			process.send({ type: 'closed', unexpectedCloses, errors }, () => process.exit(0));
		}
	});
	pooled(n, 200, subscribe).then(() => process.send({ type: 'ready', n: subs.length }));
}

// ---- the parent: starts the replies and measures ----

function parent() {
	const [base, nsubsArg, repliesArg, session, procsArg, pushPid, ...nginxPids] =
		process.argv.slice(2);
	if (!procsArg) {
		console.error('usage: node fanout.js URL NSUBS REPLIES SESSION PROCS [PUSHD_PID [NGINX_WORKER_PID...]]');
		process.exit(2);
	}
	const nsubs = Number(nsubsArg), nreplies = Number(repliesArg), nprocs = Number(procsArg);
	const out = {};
	const errors = {};
	const log = (s) => process.stderr.write(`bench: fan-out: ${s}\n`);
	const kids = [];

	// the next message of type `type` from every child
	function fromAll(type, ms) {
		return Promise.all(kids.map((k) => new Promise((resolve, reject) => {
			const timer = setTimeout(() => reject(new Error(`no ${type} from a subscriber process`)), ms);
			const on = (m) => {
				if (m.type !== type)
					return;
				clearTimeout(timer);
				k.off('message', on);
				resolve(m);
			};
			k.on('message', on);
		})));
	}

	async function main() {
		let t = Date.now();
		for (let i = 0; i < nprocs; i++) {
			const n = Math.floor(nsubs / nprocs) + (i < nsubs % nprocs ? 1 : 0);
			const k = fork(__filename, ['--child', base, String(n), session]);
			k.on('exit', (code) => {
				if (code)
					errors[`subscriber process exited with ${code}`] = 1;
			});
			kids.push(k);
		}
		const ready = await fromAll('ready', 60000);
		out.subscribers = ready.reduce((a, m) => a + m.n, 0);
		out.subscribe_s = ((Date.now() - t) / 1000).toFixed(1);
		if (out.subscribers !== nsubs)
			throw new Error(`only ${out.subscribers} of ${nsubs} subscribers connected`);
		log(`${nsubs} subscribers of ${session} in ${nprocs} process(es); ${nreplies} replies`);

		const cpu = () => ({ push: pushPid ? cpuMs(pushPid) : 0,
			nginx: nginxPids.reduce((a, p) => a + cpuMs(p), 0),
			client: kids.reduce((a, k) => a + cpuMs(k.pid), 0) });
		const spreads = [], firstLatency = [], replyMs = [];
		let chunks = 0, complete = 0, incomplete = 0, mismatched = 0, busy = 0;
		const c0 = cpu();
		// reply -1 warms up (the upstream connection, the JIT) and is not counted
		for (let r = -1; r < nreplies; r++) {
			if (r === 0)
				Object.assign(c0, cpu());
			kids.forEach((k) => k.send({ cmd: 'reset' }));
			await fromAll('reset', 10000);
			const wait = fromAll('events', 60000);
			const t0 = process.hrtime.bigint();
			const b0 = Date.now();
			const res = await request(base, 'POST', '/api/message/send',
				JSON.stringify({ session_id: session, content: `Fan-out reply ${r}: tell me a story.` }));
			if (res.status !== 200)
				throw new Error(`send answered ${res.status}: ${res.body.slice(0, 200)}`);
			const evs = [].concat(...(await wait).map((m) => m.events));
			if (r < 0) {
				await sleep(300);
				continue;
			}
			busy += Date.now() - b0;
			const ref = evs[0];
			const n = Math.max(...evs.map((e) => e.chunks.length));
			for (const e of evs) {
				const text = e.chunks.map((c) => c[1]).join('');
				const same = e.chunks.length === n && e.chunks.every((c, k) => ref.chunks[k] &&
					c[1] === ref.chunks[k][1] && c[2] === ref.chunks[k][2]);
				if (!same)
					mismatched++;
				if (same && e.reply && e.reply.content === text && ref.chunks.length &&
				    e.reply.message_id === ref.chunks[0][2])
					complete++;
				else
					incomplete++;
				if (e.error)
					errors[`error event: ${e.error}`] = (errors[`error event: ${e.error}`] || 0) + 1;
			}
			let last = t0;
			for (let k = 0; k < n; k++) {
				let lo = null, hi = null;
				for (const e of evs) {
					if (!e.chunks[k])
						continue;
					const at = BigInt(e.chunks[k][0]);
					if (lo === null || at < lo)
						lo = at;
					if (hi === null || at > hi)
						hi = at;
				}
				spreads.push(Number(hi - lo) / 1e6);
				if (k === 0)
					firstLatency.push(Number(lo - t0) / 1e6);
				if (hi > last)
					last = hi;
			}
			replyMs.push(Number(last - t0) / 1e6);
			chunks += n;
			await sleep(300);
		}
		const c1 = cpu();
		// CPU time per second of the replies themselves (the pauses between them left out)
		out.busy_s = (busy / 1000).toFixed(1);
		out.cpu_push_pct = ((c1.push - c0.push) / busy * 100).toFixed(0);
		out.cpu_nginx_pct = ((c1.nginx - c0.nginx) / busy * 100).toFixed(0);
		out.cpu_client_pct = ((c1.client - c0.client) / busy * 100).toFixed(0);
		out.replies = nreplies;
		out.chunks = chunks;
		out.chunks_per_reply = (chunks / nreplies).toFixed(1);
		out.deliveries = chunks * nsubs;
		out.complete = complete;
		out.incomplete = incomplete;
		out.mismatched = mismatched;
		out.spread_p50 = quantile(spreads, 0.5).toFixed(2);
		out.spread_p99 = quantile(spreads, 0.99).toFixed(2);
		out.spread_max = Math.max(...spreads).toFixed(2);
		out.first_chunk_ms = firstLatency.map((v) => v.toFixed(0)).join(',');
		out.reply_ms = replyMs.map((v) => v.toFixed(0)).join(',');
		kids.forEach((k) => k.send({ cmd: 'close' }));
		const closed = await fromAll('closed', 10000);
		out.unexpected_closes = closed.reduce((a, m) => a + m.unexpectedCloses, 0);
		for (const m of closed)
			for (const [k, v] of Object.entries(m.errors))
				errors[k] = (errors[k] || 0) + v;
		out.errors = errors;
		report(out);
	}

	const stopKids = () => kids.forEach((k) => { try { k.kill('SIGTERM'); } catch (e) { /* gone */ } });
	process.on('SIGTERM', () => {
		stopKids();
		process.exit(143);
	});
	main().then(() => process.exit(0), (e) => {
		stopKids();
		out.errors = errors;
		report(out);
		process.stdout.write(`error ${e.message}\n`);
		process.exit(1);
	});
}
