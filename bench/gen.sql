-- Fills a freshly migrated aichatd database with benchmark data (run by scripts/bench with
-- the sqlite3 CLI; the schema itself comes from the program's own migrations).
-- Parameters, set with .parameter before this file is read:
--   @total  messages in all          @big    of them in conversation 'bench_big' (seq 1)
--   @convs  other conversations (seq 2..@convs+1), sharing @total - @big evenly
-- Messages are interleaved: every (@total / @big)th row is bench_big's, the rest go round-robin
-- over the other conversations, as if all of them were being written at once. Roles alternate
-- user/assistant within each conversation; one message per second from 2025-01-01T00:00:00Z.
PRAGMA journal_mode = DELETE;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -524288;

BEGIN;

INSERT INTO conversations (seq, id, user_id, title, msg_count, created_at, updated_at)
VALUES (1, 'bench_big', 'default_user', 'bench_big', 0, 1735689600000, 1735689600000);

WITH RECURSIVE c(k) AS (SELECT 1 WHERE @convs > 0 UNION ALL SELECT k + 1 FROM c WHERE k < @convs)
INSERT INTO conversations (seq, id, user_id, title, msg_count, created_at, updated_at)
SELECT k + 1, printf('bench_c%05d', k), 'default_user', printf('Bench conversation %d', k), 0,
       1735689600000, 1735689600000
FROM c;

WITH RECURSIVE
g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n < @total - 1),
p(s) AS (SELECT @total / @big),
r(n, conv, k) AS (
	SELECT n,
	       CASE WHEN n % s = 0 THEN 1 ELSE 2 + (n - n / s - 1) % @convs END,
	       CASE WHEN n % s = 0 THEN n / s ELSE (n - n / s - 1) / @convs END
	FROM g, p
),
t(lorem) AS (SELECT 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod '
	|| 'tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis '
	|| 'nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute '
	|| 'irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla '
	|| 'pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia.')
INSERT INTO messages (id, msg_id, conv_seq, user_id, role, content, created_at, updated_at)
SELECT n + 1,
       'msg_' || strftime('%Y%m%d%H%M%S', 1735689600 + n, 'unixepoch') || '_' || printf('%08x', n + 1),
       conv,
       CASE k % 2 WHEN 0 THEN 'default_user' ELSE 'ai_bot' END,
       CASE k % 2 WHEN 0 THEN 'user' ELSE 'assistant' END,
       'Bench message ' || (n + 1) || ': ' || substr(lorem, 1 + n % 97, 35 + (n * 7919) % 150),
       1735689600000 + n * 1000,
       1735689600000 + n * 1000
FROM r, t;

UPDATE conversations SET msg_count = a.cnt, created_at = a.first, updated_at = a.last
FROM (SELECT conv_seq, count(*) AS cnt, min(created_at) AS first, max(created_at) AS last
      FROM messages WHERE is_deleted = 0 AND visible = 1 GROUP BY conv_seq) AS a
WHERE a.conv_seq = conversations.seq;

COMMIT;

ANALYZE;
PRAGMA journal_mode = WAL;
