'use strict';
// Helpers shared by the Node clients of scripts/bench.
const http = require('http');
const fs = require('fs');

// VmRSS of a process in kB (0 when it is gone).
function rssKb(pid) {
	try {
		const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
		return m ? Number(m[1]) : 0;
	} catch (e) {
		return 0;
	}
}

// CPU time (user + system) of a process in ms (0 when it is gone).
function cpuMs(pid) {
	try {
		const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
		const v = f.slice(f.lastIndexOf(')') + 2).split(' ');
		return (Number(v[11]) + Number(v[12])) * 10; // utime, stime in ticks of 10 ms
	} catch (e) {
		return 0;
	}
}

// One HTTP request; resolves {status, body, ms}.
function request(base, method, path, body, agent) {
	const url = new URL(base);
	return new Promise((resolve, reject) => {
		const t0 = process.hrtime.bigint();
		const req = http.request({
			host: url.hostname, port: url.port, method, path, agent: agent || false,
			headers: body ? { 'Content-Type': 'application/json',
					  'Content-Length': Buffer.byteLength(body) } : {},
			timeout: 30000,
		}, (res) => {
			let data = '';
			res.setEncoding('utf8');
			res.on('data', (d) => { data += d; });
			res.on('end', () => resolve({ status: res.statusCode, body: data,
				ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
		});
		req.on('timeout', () => req.destroy(new Error('timeout')));
		req.on('error', reject);
		if (body)
			req.write(body);
		req.end();
	});
}

// The push counters of GET /health?detail=1.
async function pushCounters(base) {
	const r = await request(base, 'GET', '/health?detail=1');
	const p = JSON.parse(r.body).push;
	if (!p)
		throw new Error(`no push counters in ${r.body}`);
	return p;
}

// Run fn(i) for i in 0..n-1, at most `limit` at once; resolves the results in order.
async function pooled(n, limit, fn) {
	const out = new Array(n);
	let next = 0;
	async function lane() {
		while (next < n) {
			const i = next++;
			out[i] = await fn(i);
		}
	}
	await Promise.all(Array.from({ length: Math.min(limit, n) }, lane));
	return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function quantile(a, q) {
	if (!a.length)
		return NaN;
	const s = a.slice().sort((x, y) => x - y);
	return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}

// Print the summary as "key value" lines, for the shell to read.
function report(out) {
	for (const [k, v] of Object.entries(out))
		process.stdout.write(`${k} ${typeof v === 'object' ? JSON.stringify(v) : v}\n`);
}

module.exports = { rssKb, cpuMs, request, pushCounters, pooled, sleep, quantile, report };
