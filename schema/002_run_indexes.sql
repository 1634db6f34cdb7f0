-- Lookups the push daemon and the sync sends make per run.
CREATE INDEX travel_plans_by_message ON travel_plans (message);
CREATE INDEX runs_by_user_msg ON runs (user_msg);
CREATE INDEX runs_by_ai_msg ON runs (ai_msg);
