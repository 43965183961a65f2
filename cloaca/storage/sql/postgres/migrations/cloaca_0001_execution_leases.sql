-- cloaca_0001: execution leases of runners sharing one PostgreSQL database
-- (DESIGN.md, Scale-out). Additive and keyed by existing ids (SCHEMA.md 9): Cloacina
-- never reads the table and nothing in it can reject one of Cloacina's writes; Diesel
-- ignores the version row. Queries on it live in ../leases.sql. Released: never edit.
CREATE TABLE IF NOT EXISTS cloaca_execution_leases (
    execution_id uuid PRIMARY KEY,
    runner_id uuid NOT NULL,
    expires_at timestamp NOT NULL,
    heartbeat_at timestamp NOT NULL,
    created_at timestamp NOT NULL
);
CREATE INDEX IF NOT EXISTS cloaca_execution_leases_runner_idx
    ON cloaca_execution_leases (runner_id);
CREATE INDEX IF NOT EXISTS cloaca_execution_leases_expires_idx
    ON cloaca_execution_leases (expires_at);
