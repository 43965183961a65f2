-- cloaca_0003: each live runner also announces how many of its attempt slots are
-- free, so a full runner offers work only to runners that can take it (two full
-- runners offering to each other only add round trips). Additive (SCHEMA.md 9).
-- Released: never edit.
ALTER TABLE cloaca_runners ADD COLUMN IF NOT EXISTS free_slots integer NOT NULL DEFAULT 0;
