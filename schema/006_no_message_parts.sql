-- A reply being written is no longer saved as it grows: the push daemon holds it, and a
-- worker that reads an unfinished message asks the daemon for its content so far (fresher
-- than any save, and a send no longer pays for two or three part writes and their delete).
-- A reply that a restart interrupts is made again from the start, as before, so the parts
-- left over by an earlier version have no reader.
DROP TABLE message_parts;
