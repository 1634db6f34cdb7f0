-- When a conversation or message was soft-deleted (ms since the epoch, UTC): what
-- `aichatd purge --deleted-before DATE` goes by. A message's deletion also set its
-- updated_at, so rows deleted before this migration take that; a conversation's deletion
-- set no time, so a conversation deleted before it counts as deleted now (a purge never
-- removes one that may have been deleted after its DATE).
ALTER TABLE conversations ADD COLUMN deleted_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;
UPDATE messages SET deleted_at = updated_at WHERE is_deleted = 1;
UPDATE conversations SET deleted_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000
	WHERE is_deleted = 1;
