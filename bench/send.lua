-- wrk script for scripts/bench: dialect im's POST /api/message/send, every request into the
-- one conversation "bench_send" (the first request creates it).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"content":"Benchmark message: what is the weather like in Hangzhou this weekend?",'
	.. '"session_id":"bench_send"}'
