-- A reply being written is saved as appended parts, so that saving it as it grows costs
-- in proportion to what is new, not to all that was written before. The parts are joined
-- into messages.content, and removed, when the reply ends.
CREATE TABLE message_parts (
	msg  INTEGER NOT NULL REFERENCES messages (id),
	seq  INTEGER NOT NULL,
	text TEXT NOT NULL,
	PRIMARY KEY (msg, seq)
) WITHOUT ROWID;
