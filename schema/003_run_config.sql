-- A run may name its own model config (dialect E always talks to its workflow), ahead of
-- its conversation's.
ALTER TABLE runs ADD COLUMN model_config TEXT;
