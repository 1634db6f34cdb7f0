-- aichatd schema, version 1. Times are integer milliseconds since the epoch, UTC.
-- One store for the five dialects (docs/API.md says how each reads and writes it).

CREATE TABLE conversations (
	seq          INTEGER PRIMARY KEY,          -- rowid; tie-break for equal update times
	id           TEXT NOT NULL UNIQUE,         -- UUID v4, or a client-named id (1-48 chars)
	user_id      TEXT NOT NULL,                -- owner
	title        TEXT NOT NULL,
	model_config TEXT,                         -- model_configs.config_id, NULL: the default
	msg_count    INTEGER NOT NULL DEFAULT 0,   -- visible messages, kept by the store
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	is_deleted   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX conversations_by_update ON conversations (updated_at DESC, seq DESC)
	WHERE is_deleted = 0;
CREATE INDEX conversations_by_user ON conversations (user_id, updated_at DESC, seq DESC)
	WHERE is_deleted = 0;

CREATE TABLE messages (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	msg_id       TEXT NOT NULL UNIQUE,         -- msg_YYYYMMDDHHMMSS_xxxxxxxx
	conv_seq     INTEGER NOT NULL REFERENCES conversations (seq),
	user_id      TEXT NOT NULL,                -- sender: a user id, 'ai_bot' or 'system'
	role         TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
	content      TEXT NOT NULL DEFAULT '',
	unfinished   INTEGER NOT NULL DEFAULT 0,
	error        TEXT,
	visible      INTEGER NOT NULL DEFAULT 1,   -- C's visiableInClient
	metadata     TEXT,                         -- D's metadata, as the client sent it (JSON)
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	is_deleted   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_by_conv ON messages (conv_seq, id) WHERE is_deleted = 0;

-- AI runs: im's "AI records". status 0 running, 1 done, 2 failed, 3 stopped (RUN_STOPPED
-- came with the stop command; enum run_status in src/lib/store.h names them all).
CREATE TABLE runs (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	record_id     TEXT NOT NULL UNIQUE,        -- record_YYYYMMDDHHMMSS_xxxxxxxx
	conv_seq      INTEGER NOT NULL REFERENCES conversations (seq),
	user_msg      INTEGER NOT NULL REFERENCES messages (id),
	ai_msg        INTEGER REFERENCES messages (id),
	status        INTEGER NOT NULL DEFAULT 0,
	duration_ms   INTEGER,
	error_code    INTEGER,
	error_message TEXT,
	created_at    INTEGER NOT NULL,
	finished_at   INTEGER
);
CREATE INDEX runs_by_conv ON runs (conv_seq, id);
CREATE INDEX runs_open ON runs (id) WHERE status = 0;

-- Model configs (dialect D). API keys are never stored here: they come from the
-- environment or the config file.
CREATE TABLE model_configs (
	config_id     TEXT PRIMARY KEY,
	provider      TEXT NOT NULL CHECK (provider IN ('builtin', 'openai', 'n8n')),
	model_name    TEXT NOT NULL,
	model_version TEXT NOT NULL DEFAULT '',
	parameters    TEXT NOT NULL DEFAULT '{}',  -- a JSON object
	system_prompt TEXT NOT NULL DEFAULT '',
	updated_at    INTEGER NOT NULL
);

-- The service's own operation log (dialect D's /api/v1/logs).
CREATE TABLE logs (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	level      TEXT NOT NULL CHECK (level IN ('info', 'warning', 'error')),
	message    TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX logs_by_time ON logs (created_at, id);

-- Travel plans returned by a workflow (dialect E).
CREATE TABLE travel_plans (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	conv_seq   INTEGER NOT NULL REFERENCES conversations (seq),
	message    INTEGER REFERENCES messages (id),
	plan       TEXT NOT NULL,                  -- the JSON object, as the workflow sent it
	created_at INTEGER NOT NULL
);
