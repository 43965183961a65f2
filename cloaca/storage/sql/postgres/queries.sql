-- Named statements of the PostgreSQL store (asyncpg, $n parameters), loaded once by
-- cloaca.storage.queries and used only by cloaca/storage/postgres.py and its pg_*
-- helpers. Names are unqualified: the store sets search_path to "<schema>", public.
-- Timestamps are parameters (naive UTC, SCHEMA.md 2.2), never NOW(). The journal's
-- writes are set-based: each statement takes one array per column and writes one
-- row per element (unnest), so a group of entries costs one round trip; UPDATEs
-- return the ids they touched so that the store can report the ones they missed.
-- {schema} and {role} are identifiers filled by cloaca.storage.identifiers.render.

-- name: lock_migrations
-- Serialises schema creation and migrations across processes (SCHEMA.md 4); the
-- lock is released at commit. The key is cloaca's own constant.
SELECT pg_advisory_xact_lock(7306034539811521537);

-- name: schema_exists
-- Whether a schema exists (checked before CREATE SCHEMA, which needs CREATE on the
-- database even when the schema is already there).
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1);

-- name: create_schema
-- A tenant schema (SCHEMA.md 8).
CREATE SCHEMA IF NOT EXISTS {schema};

-- name: set_local_search_path
-- The search path of the current transaction only (DatabaseAdmin.create_tenant).
SET LOCAL search_path TO {schema}, public;

-- name: current_schema
-- Where unqualified names resolve when no schema was given.
SELECT current_schema();

-- name: list_tables
-- Every table of one schema, to compare with the layout (SCHEMA.md 4).
SELECT c.relname
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f');

-- name: migration_versions
-- The versions recorded in Diesel's bookkeeping table.
SELECT version FROM __diesel_schema_migrations;

-- name: record_migration
-- Record one version; run_on takes its default, as Diesel does.
INSERT INTO __diesel_schema_migrations (version) VALUES ($1);

-- name: insert_contexts
-- Immutable context snapshots (SCHEMA.md 3, contexts), one row per array element.
INSERT INTO contexts (id, value, created_at, updated_at)
SELECT u.id, u.value, u.at, u.at
FROM unnest($1::uuid[], $2::varchar[], $3::timestamp[]) AS u (id, value, at);

-- name: insert_executions
-- New executions (SCHEMA.md 5.2): started_at = created_at. Status and updated_at
-- are Pending and the creation time, unless the batch also marks the execution
-- Running (pg_apply folds that UPDATE into the insert).
INSERT INTO pipeline_executions
    (id, pipeline_name, pipeline_version, status, context_id, started_at,
     created_at, updated_at)
SELECT u.id, u.pipeline_name, u.pipeline_version, u.status, u.context_id, u.at,
       u.at, u.updated_at
FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::uuid[], $5::timestamp[],
            $6::varchar[], $7::timestamp[])
    AS u (id, pipeline_name, pipeline_version, context_id, at, status, updated_at);

-- name: insert_tasks
-- The task rows of new executions (SCHEMA.md 5.2): NotStarted, attempt 1, not
-- started, updated_at = created_at, unless the batch also makes the task Ready or
-- starts it (pg_apply folds those UPDATEs into the insert).
INSERT INTO task_executions
    (id, pipeline_execution_id, task_name, status, attempt, max_attempts,
     trigger_rules, task_configuration, started_at, created_at, updated_at)
SELECT u.id, u.execution_id, u.task_name, u.status, u.attempt, u.max_attempts,
       u.trigger_rules, '{}', u.started_at, u.at, u.updated_at
FROM unnest($1::uuid[], $2::uuid[], $3::varchar[], $4::integer[], $5::text[],
            $6::timestamp[], $7::varchar[], $8::integer[], $9::timestamp[],
            $10::timestamp[])
    AS u (id, execution_id, task_name, max_attempts, trigger_rules, at, status,
          attempt, started_at, updated_at);

-- name: mark_executions_running
-- The first attempt of each execution started.
UPDATE pipeline_executions AS e SET status = 'Running', updated_at = u.at
FROM unnest($1::uuid[], $2::timestamp[]) AS u (id, at)
WHERE e.id = u.id
RETURNING e.id;

-- name: mark_tasks_ready
-- Dependencies terminal and the trigger rule holds (SCHEMA.md 5.3).
UPDATE task_executions AS t SET status = 'Ready', updated_at = u.at
FROM unnest($1::uuid[], $2::timestamp[]) AS u (id, at)
WHERE t.id = u.id
RETURNING t.id;

-- name: start_tasks
-- Attempts start: the conditional UPDATE of SCHEMA.md 5.4; a row in another state
-- is not returned, and the store reports it as a conflict.
UPDATE task_executions AS t
SET status = 'Running', attempt = u.attempt, started_at = u.at, updated_at = u.at
FROM unnest($1::uuid[], $2::integer[], $3::timestamp[]) AS u (id, attempt, at)
WHERE t.id = u.id AND t.status IN ('NotStarted', 'Ready')
RETURNING t.id;

-- name: upsert_task_metadata
-- The tasks' output pointers, inserted or updated (SCHEMA.md 5.5).
INSERT INTO task_execution_metadata
    (id, task_execution_id, pipeline_execution_id, task_name, context_id,
     created_at, updated_at)
SELECT u.id, u.task_execution_id, u.execution_id, u.task_name, u.context_id, u.at,
       u.at
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::varchar[], $5::uuid[],
            $6::timestamp[])
    AS u (id, task_execution_id, execution_id, task_name, context_id, at)
ON CONFLICT (task_execution_id)
DO UPDATE SET context_id = EXCLUDED.context_id, updated_at = EXCLUDED.updated_at;

-- name: complete_tasks
-- Success (SCHEMA.md 5.5).
UPDATE task_executions AS t
SET status = 'Completed', completed_at = u.at, updated_at = u.at
FROM unnest($1::uuid[], $2::timestamp[]) AS u (id, at)
WHERE t.id = u.id
RETURNING t.id;

-- name: schedule_task_retries
-- Failed attempts that will be retried: back to Ready (SCHEMA.md 5.6).
UPDATE task_executions AS t
SET status = 'Ready', attempt = u.attempt, retry_at = u.retry_at,
    last_error = u.error, started_at = NULL, completed_at = NULL, updated_at = u.at
FROM unnest($1::uuid[], $2::integer[], $3::timestamp[], $4::text[], $5::timestamp[])
    AS u (id, attempt, retry_at, error, at)
WHERE t.id = u.id
RETURNING t.id;

-- name: fail_tasks
-- Final failures; the message goes to both error columns (SCHEMA.md 5.7).
UPDATE task_executions AS t
SET status = 'Failed', last_error = u.error, error_details = u.error,
    completed_at = u.at, updated_at = u.at
FROM unnest($1::uuid[], $2::text[], $3::timestamp[]) AS u (id, error, at)
WHERE t.id = u.id
RETURNING t.id;

-- name: skip_tasks
-- Trigger rule false (SCHEMA.md 5.3).
UPDATE task_executions AS t
SET status = 'Skipped', error_details = u.reason, updated_at = u.at
FROM unnest($1::uuid[], $2::text[], $3::timestamp[]) AS u (id, reason, at)
WHERE t.id = u.id
RETURNING t.id;

-- name: reset_tasks
-- Crash recovery of orphaned Running tasks (SCHEMA.md 5, crash recovery).
UPDATE task_executions AS t
SET status = 'Ready', started_at = NULL, recovery_attempts = u.recovery_attempt,
    last_recovery_at = u.at, updated_at = u.at
FROM unnest($1::uuid[], $2::integer[], $3::timestamp[])
    AS u (id, recovery_attempt, at)
WHERE t.id = u.id
RETURNING t.id;

-- name: abandon_tasks
-- Recovery gave up on tasks: Failed with ABANDONED in error_details.
UPDATE task_executions AS t
SET status = 'Failed', error_details = u.error, last_error = u.error,
    completed_at = u.at, updated_at = u.at
FROM unnest($1::uuid[], $2::text[], $3::timestamp[]) AS u (id, error, at)
WHERE t.id = u.id
RETURNING t.id;

-- name: insert_recovery_events
-- Recovery events (task_reset, task_abandoned, workflow_unavailable).
INSERT INTO recovery_events
    (id, pipeline_execution_id, task_execution_id, recovery_type, recovered_at,
     details, created_at, updated_at)
SELECT u.id, u.execution_id, u.task_execution_id, u.recovery_type, u.at, u.details,
       u.at, u.at
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::varchar[], $5::timestamp[],
            $6::text[])
    AS u (id, execution_id, task_execution_id, recovery_type, at, details);

-- name: finish_executions
-- Terminal status; context_id moves to the final context, error to error_details
-- (a NULL element leaves the column as it is) (SCHEMA.md 5.8).
UPDATE pipeline_executions AS e
SET status = u.status, context_id = COALESCE(u.context_id, e.context_id),
    error_details = COALESCE(u.error, e.error_details), completed_at = u.at,
    updated_at = u.at
FROM unnest($1::uuid[], $2::varchar[], $3::uuid[], $4::text[], $5::timestamp[])
    AS u (id, status, context_id, error, at)
WHERE e.id = u.id
RETURNING e.id;

-- name: batch_insert_leases
-- The statements named batch_* are parts of a journal batch's first statement
-- (pg_apply.batch_statement), beside its writes; they are the in-batch forms of
-- leases.sql's insert_leases, check_leases and release_leases. This one: the
-- leases of executions the batch creates ($1 ids, $2 runner, $3 ttl seconds).
INSERT INTO cloaca_execution_leases
    (execution_id, runner_id, expires_at, heartbeat_at, created_at)
SELECT id, $2, (now() AT TIME ZONE 'UTC') + make_interval(secs => $3),
       now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
FROM unnest($1::uuid[]) AS id;

-- name: batch_renew_leases
-- Renew this runner's leases on the executions a batch touches; returns the ones
-- it holds (the others are lost). The UPDATE locks the lease rows until the batch
-- commits, so no claimer can take one over in between.
UPDATE cloaca_execution_leases
SET expires_at = (now() AT TIME ZONE 'UTC') + make_interval(secs => $3),
    heartbeat_at = now() AT TIME ZONE 'UTC'
WHERE execution_id = ANY($1::uuid[]) AND runner_id = $2
RETURNING execution_id AS id;

-- name: batch_release_leases
-- Drop this runner's leases of executions the batch finishes; returns the ones it
-- held (the others are lost: the finish must not be written).
DELETE FROM cloaca_execution_leases
WHERE execution_id = ANY($1::uuid[]) AND runner_id = $2
RETURNING execution_id AS id;

-- name: task_statuses
-- Diagnosis only, after a batch touched fewer task rows than it named.
SELECT id, status FROM task_executions WHERE id = ANY($1::uuid[]);

-- name: execution_statuses
-- Diagnosis only, after a batch touched fewer execution rows than it named.
SELECT id, status FROM pipeline_executions WHERE id = ANY($1::uuid[]);

-- name: select_unfinished_executions
-- Executions to recover, oldest first.
SELECT e.id, e.pipeline_name, e.pipeline_version, e.status, c.value AS context_json,
       COALESCE(e.started_at, e.created_at) AS started_at, e.completed_at,
       e.error_details, e.recovery_attempts, e.created_at, e.updated_at
FROM pipeline_executions AS e
LEFT JOIN contexts AS c ON c.id = e.context_id
WHERE e.status IN ('Pending', 'Running')
ORDER BY e.created_at, e.id;

-- name: select_execution
-- One execution by id.
SELECT e.id, e.pipeline_name, e.pipeline_version, e.status, c.value AS context_json,
       COALESCE(e.started_at, e.created_at) AS started_at, e.completed_at,
       e.error_details, e.recovery_attempts, e.created_at, e.updated_at
FROM pipeline_executions AS e
LEFT JOIN contexts AS c ON c.id = e.context_id
WHERE e.id = $1;

-- name: list_executions
-- Executions newest first, optionally of one workflow and/or one status.
SELECT e.id, e.pipeline_name, e.pipeline_version, e.status, c.value AS context_json,
       COALESCE(e.started_at, e.created_at) AS started_at, e.completed_at,
       e.error_details, e.recovery_attempts, e.created_at, e.updated_at
FROM pipeline_executions AS e
LEFT JOIN contexts AS c ON c.id = e.context_id
WHERE ($1::varchar IS NULL OR e.pipeline_name = $1::varchar)
  AND ($2::varchar IS NULL OR e.status = $2::varchar)
ORDER BY COALESCE(e.started_at, e.created_at) DESC, e.id DESC
LIMIT $3 OFFSET $4;

-- name: select_tasks
-- The tasks of some executions with their output context, found the way Cloacina
-- finds it: (pipeline_execution_id, task_name) -> metadata -> contexts.
SELECT t.id, t.pipeline_execution_id, t.task_name, t.status,
       COALESCE(t.attempt, 1) AS attempt, COALESCE(t.max_attempts, 1) AS max_attempts,
       t.started_at, t.completed_at, t.retry_at, t.error_details, t.last_error,
       t.recovery_attempts, t.trigger_rules, c.value AS output_context_json,
       t.created_at, t.updated_at
FROM task_executions AS t
LEFT JOIN task_execution_metadata AS m
    ON m.pipeline_execution_id = t.pipeline_execution_id AND m.task_name = t.task_name
LEFT JOIN contexts AS c ON c.id = m.context_id
WHERE t.pipeline_execution_id = ANY($1::uuid[])
ORDER BY t.pipeline_execution_id, t.created_at, t.task_name;

-- name: role_exists
-- Whether a role exists, and whether it is a superuser (never dropped by us).
SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1;

-- name: format_create_role
-- The server quotes the password literal itself (quote_literal via %L), so no
-- password text is ever formatted by us; the role name was validated first.
SELECT format('CREATE ROLE %I WITH LOGIN PASSWORD %L', $1::text, $2::text);

-- name: grant_tenant
-- A tenant role may use and create in its schema, and has every privilege on the
-- tables and sequences in it, present and future (API.md 3.16).
GRANT USAGE, CREATE ON SCHEMA {schema} TO {role};
GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA {schema} TO {role};
GRANT ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT ALL PRIVILEGES ON TABLES TO {role};
ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT ALL PRIVILEGES ON SEQUENCES TO {role};

-- name: revoke_tenant
-- Undo grant_tenant (run in a savepoint; its errors are ignored, API.md 3.16).
ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL PRIVILEGES ON TABLES FROM {role};
ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL PRIVILEGES ON SEQUENCES FROM {role};
REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA {schema} FROM {role};
REVOKE ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA {schema} FROM {role};
REVOKE ALL PRIVILEGES ON SCHEMA {schema} FROM {role};

-- name: drop_schema
-- A tenant schema with everything in it.
DROP SCHEMA IF EXISTS {schema} CASCADE;

-- name: drop_role
-- A tenant login role.
DROP ROLE IF EXISTS {role};

-- name: insert_cron_schedule
-- The cron and trigger statements from here on are run by pg_schedules.py
-- (SCHEMA.md 6-7). Times are naive UTC timestamps bound by the client; ticks are
-- whole seconds. Registration: enabled, skip, no window, never run.
INSERT INTO cron_schedules
    (id, workflow_name, cron_expression, timezone, enabled, catchup_policy,
     start_date, end_date, next_run_at, last_run_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, true, 'skip', NULL, NULL, $5, NULL, $6, $6);

-- name: list_cron_schedules
SELECT id, workflow_name, cron_expression, timezone, enabled, catchup_policy,
       start_date, end_date, next_run_at, last_run_at, created_at, updated_at
FROM cron_schedules
WHERE (NOT $1::boolean OR enabled)
ORDER BY workflow_name, created_at, id
LIMIT $2 OFFSET $3;

-- name: get_cron_schedule
SELECT id, workflow_name, cron_expression, timezone, enabled, catchup_policy,
       start_date, end_date, next_run_at, last_run_at, created_at, updated_at
FROM cron_schedules
WHERE id = $1;

-- name: update_cron_schedule
-- A new expression or zone recomputes next_run_at from now (SCHEMA.md 6).
UPDATE cron_schedules
SET cron_expression = $2, timezone = $3, next_run_at = $4, updated_at = $5
WHERE id = $1;

-- name: set_cron_schedule_enabled
-- Only enabled and updated_at: a re-enabled overdue schedule fires once.
UPDATE cron_schedules SET enabled = $2, updated_at = $3 WHERE id = $1;

-- name: delete_cron_executions_of_schedule
-- The audit rows go first, as on SQLite (the FK would cascade here anyway).
DELETE FROM cron_executions WHERE schedule_id = $1;

-- name: delete_cron_schedule
DELETE FROM cron_schedules WHERE id = $1;

-- name: due_cron_schedules
SELECT id, workflow_name, cron_expression, timezone, enabled, catchup_policy,
       start_date, end_date, next_run_at, last_run_at, created_at, updated_at
FROM cron_schedules
WHERE enabled AND next_run_at <= $1
ORDER BY next_run_at, id;

-- name: earliest_cron_run
SELECT MIN(next_run_at) FROM cron_schedules WHERE enabled;

-- name: claim_cron_schedule
-- Compare-and-set on the next_run_at that was read: only one claimer moves it.
UPDATE cron_schedules
SET last_run_at = $4, next_run_at = $3, updated_at = $4
WHERE id = $1 AND enabled AND next_run_at = $2
RETURNING id;

-- name: insert_cron_executions
-- One audit row per tick; a tick recorded by another claimer is left alone.
INSERT INTO cron_executions
    (id, schedule_id, pipeline_execution_id, scheduled_time, claimed_at,
     created_at, updated_at)
SELECT u.id, $3, NULL, u.scheduled_time, $4, $4, $4
FROM unnest($1::uuid[], $2::timestamp[]) AS u (id, scheduled_time)
ON CONFLICT (schedule_id, scheduled_time) DO NOTHING
RETURNING id, schedule_id, scheduled_time, claimed_at, pipeline_execution_id,
          created_at, updated_at;

-- name: link_cron_execution
UPDATE cron_executions
SET pipeline_execution_id = $2, updated_at = $3
WHERE id = $1 AND pipeline_execution_id IS NULL
RETURNING id;

-- name: lost_cron_executions
SELECT e.id, e.schedule_id, e.scheduled_time, e.claimed_at, e.pipeline_execution_id,
       e.created_at, e.updated_at, s.workflow_name, s.cron_expression, s.timezone
FROM cron_executions AS e
JOIN cron_schedules AS s ON s.id = e.schedule_id
WHERE e.pipeline_execution_id IS NULL AND s.enabled
  AND e.claimed_at < $1 AND e.updated_at < $1
ORDER BY e.scheduled_time DESC, e.id
LIMIT $2;

-- name: reclaim_cron_execution
-- Compare-and-set on updated_at: one recoverer per lost row and threshold.
UPDATE cron_executions
SET updated_at = $3
WHERE id = $1 AND pipeline_execution_id IS NULL AND updated_at = $2
RETURNING id;

-- name: existing_executions
SELECT id FROM pipeline_executions WHERE id = ANY($1::uuid[]);

-- name: list_cron_executions
SELECT id, schedule_id, scheduled_time, claimed_at, pipeline_execution_id,
       created_at, updated_at
FROM cron_executions
WHERE schedule_id = $1
ORDER BY scheduled_time DESC, id
LIMIT $2 OFFSET $3;

-- name: cron_execution_stats
SELECT COUNT(*) AS total,
       COUNT(pipeline_execution_id) AS linked,
       COUNT(*) FILTER (WHERE pipeline_execution_id IS NULL AND claimed_at < $2)
           AS lost
FROM cron_executions
WHERE claimed_at >= $1;

-- name: upsert_trigger_schedule
-- Only a change rewrites the row; enabled is kept (API.md 4.13 leaves it open).
INSERT INTO trigger_schedules
    (id, trigger_name, workflow_name, poll_interval_ms, allow_concurrent, enabled,
     last_poll_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, true, NULL, $6, $6)
ON CONFLICT (trigger_name) DO UPDATE
SET workflow_name = EXCLUDED.workflow_name,
    poll_interval_ms = EXCLUDED.poll_interval_ms,
    allow_concurrent = EXCLUDED.allow_concurrent,
    updated_at = EXCLUDED.updated_at
WHERE trigger_schedules.workflow_name <> EXCLUDED.workflow_name
   OR trigger_schedules.poll_interval_ms <> EXCLUDED.poll_interval_ms
   OR trigger_schedules.allow_concurrent <> EXCLUDED.allow_concurrent;

-- name: list_trigger_schedules
SELECT id, trigger_name, workflow_name, poll_interval_ms, allow_concurrent, enabled,
       last_poll_at, created_at, updated_at
FROM trigger_schedules
WHERE (NOT $1::boolean OR enabled)
ORDER BY created_at DESC, trigger_name
LIMIT $2 OFFSET $3;

-- name: get_trigger_schedule
SELECT id, trigger_name, workflow_name, poll_interval_ms, allow_concurrent, enabled,
       last_poll_at, created_at, updated_at
FROM trigger_schedules
WHERE trigger_name = $1;

-- name: set_trigger_enabled
UPDATE trigger_schedules SET enabled = $2, updated_at = $3 WHERE trigger_name = $1;

-- name: record_trigger_poll
UPDATE trigger_schedules SET last_poll_at = $2, updated_at = $2
WHERE trigger_name = $1;

-- name: insert_trigger_execution
-- The partial UNIQUE index allows one in-progress fire per (trigger, hash).
INSERT INTO trigger_executions
    (id, trigger_name, context_hash, pipeline_execution_id, started_at,
     completed_at, created_at, updated_at)
VALUES ($1, $2, $3, NULL, $4, NULL, $4, $4)
ON CONFLICT (trigger_name, context_hash) WHERE completed_at IS NULL DO NOTHING
RETURNING id;

-- name: insert_completed_trigger_execution
INSERT INTO trigger_executions
    (id, trigger_name, context_hash, pipeline_execution_id, started_at,
     completed_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $5, $6);

-- name: link_trigger_execution
UPDATE trigger_executions
SET pipeline_execution_id = $2, updated_at = $3,
    completed_at = CASE WHEN $4::boolean THEN $3 ELSE completed_at END
WHERE id = $1;

-- name: complete_trigger_executions
UPDATE trigger_executions SET completed_at = $2, updated_at = $2
WHERE pipeline_execution_id = $1 AND completed_at IS NULL;

-- name: sweep_trigger_executions
UPDATE trigger_executions SET completed_at = $2, updated_at = $2
WHERE completed_at IS NULL
  AND (
    (pipeline_execution_id IS NULL AND started_at < $1)
    OR pipeline_execution_id IN (
        SELECT id FROM pipeline_executions
        WHERE status IN ('Completed', 'Failed', 'Cancelled')
    )
  );

-- name: list_trigger_executions
SELECT id, trigger_name, context_hash, pipeline_execution_id, started_at,
       completed_at, created_at
FROM trigger_executions
WHERE trigger_name = $1
ORDER BY started_at DESC, id
LIMIT $2 OFFSET $3;
