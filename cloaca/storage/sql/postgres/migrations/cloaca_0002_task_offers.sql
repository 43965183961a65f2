-- cloaca_0002: task-level work sharing between runners on one PostgreSQL database
-- (DESIGN.md, Scale-out). A runner whose executor is full offers ready attempts here;
-- a runner with spare slots claims one (FOR UPDATE SKIP LOCKED), runs it and posts the
-- result; the owner of the execution journals it. cloaca_runners lists the live
-- runners, so a runner offers nothing when it has no peers. Additive and keyed by
-- existing ids (SCHEMA.md 9); Cloacina never reads these tables. Queries live in
-- ../offers.sql. Released: never edit.
CREATE TABLE IF NOT EXISTS cloaca_task_offers (
    task_execution_id uuid PRIMARY KEY,
    execution_id uuid NOT NULL,
    owner_id uuid NOT NULL,
    task_name varchar NOT NULL,
    attempt integer NOT NULL,
    input_json text NOT NULL,
    offered_at timestamp NOT NULL,
    claimed_by uuid,
    claim_expires_at timestamp,
    claims integer NOT NULL DEFAULT 0,
    output_json text,
    error text,
    finished_at timestamp
);
CREATE INDEX IF NOT EXISTS cloaca_task_offers_owner_idx
    ON cloaca_task_offers (owner_id);
CREATE INDEX IF NOT EXISTS cloaca_task_offers_execution_idx
    ON cloaca_task_offers (execution_id);
CREATE INDEX IF NOT EXISTS cloaca_task_offers_open_idx
    ON cloaca_task_offers (offered_at) WHERE finished_at IS NULL;

CREATE TABLE IF NOT EXISTS cloaca_runners (
    runner_id uuid PRIMARY KEY,
    capacity integer NOT NULL,
    heartbeat_at timestamp NOT NULL,
    expires_at timestamp NOT NULL
);
