-- Each index of runs costs every send and every reply's end a write. Two were not worth it:
-- nothing looks runs up by user message, and the daemon finds new open runs by id range
-- (id > the last it saw), which the rowid serves; only its start-up scan reads them all.
DROP INDEX runs_by_user_msg;
DROP INDEX runs_open;
