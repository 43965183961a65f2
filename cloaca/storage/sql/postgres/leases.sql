-- Execution leases of runners sharing one PostgreSQL database (DESIGN.md, Scale-out).
-- Loaded by cloaca/storage/pg_leases.py only. Lease times are the database's own
-- clock (UTC wall time, as every timestamp of the layout): the database is the
-- coordinator, so no two runners' clocks are ever compared (CONVENTIONS.md 6).
-- The table is additive and keyed by existing ids (SCHEMA.md 9): Cloacina never
-- reads it, and nothing in it can reject one of Cloacina's writes.

-- name: leases_table_exists
-- The table comes with migration cloaca_0001 (migrations/cloaca_0001_*.sql).
SELECT to_regclass('cloaca_execution_leases') IS NOT NULL

-- name: release_runner_leases
-- Graceful leave: every lease of one runner, at once.
DELETE FROM cloaca_execution_leases WHERE runner_id = $1
RETURNING execution_id

-- name: heartbeat_leases
-- Extend the leases of one runner on the executions it drives, in one statement.
-- Only those: a lease taken by a claim whose answer was lost with its connection
-- names an execution the runner does not know it holds, and must run out so that
-- it is claimed again (by this runner or another).
UPDATE cloaca_execution_leases
SET expires_at = (now() AT TIME ZONE 'UTC') + make_interval(secs => $2),
    heartbeat_at = now() AT TIME ZONE 'UTC'
WHERE runner_id = $1 AND execution_id = ANY($3::uuid[])
RETURNING execution_id

-- name: leases_held_by_others
-- Which of these executions another runner holds (this runner lost them).
SELECT execution_id FROM cloaca_execution_leases
WHERE execution_id = ANY($1::uuid[]) AND runner_id <> $2

-- name: claimable_executions
-- Unfinished executions of known workflows without a live lease, oldest first.
-- SKIP LOCKED: rows another claimer or writer holds are left for it.
SELECT e.id
FROM pipeline_executions AS e
LEFT JOIN cloaca_execution_leases AS l ON l.execution_id = e.id
WHERE e.status = ANY($1::text[])
  AND e.pipeline_name = ANY($2::text[])
  AND (l.execution_id IS NULL OR l.expires_at < now() AT TIME ZONE 'UTC')
ORDER BY e.started_at, e.id
LIMIT $3
FOR UPDATE OF e SKIP LOCKED

-- name: take_leases
-- Claim leases that are missing or expired; returns what was taken. The
-- conflict arm re-checks expiry on the latest row version, so of two claimers
-- racing for one expired lease only one gets it.
INSERT INTO cloaca_execution_leases
    (execution_id, runner_id, expires_at, heartbeat_at, created_at)
SELECT id, $2, (now() AT TIME ZONE 'UTC') + make_interval(secs => $3),
       now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
FROM unnest($1::uuid[]) AS id
ON CONFLICT (execution_id) DO UPDATE
SET runner_id = EXCLUDED.runner_id,
    expires_at = EXCLUDED.expires_at,
    heartbeat_at = EXCLUDED.heartbeat_at
WHERE cloaca_execution_leases.expires_at < now() AT TIME ZONE 'UTC'
   OR cloaca_execution_leases.runner_id = EXCLUDED.runner_id
RETURNING execution_id

-- name: notify_work
-- Wake idle runners of this schema (LISTEN cloaca_work; payload = schema).
SELECT pg_notify('cloaca_work', current_schema())

