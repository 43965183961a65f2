-- Named statements of the SQLite store (cloaca/storage/sqlite.py, sqlite_apply.py),
-- on Cloacina v0.3.1's layout (SCHEMA.md). Parameters are :name placeholders. Ids are
-- 16-byte blobs, timestamps RFC 3339 text written by the client (never the database
-- clock), JSON compact text. Every UPDATE sets only the columns its journal entry
-- changes, so 0.3.1's nanosecond timestamps in other columns survive (SCHEMA.md 9).

-- name: list_tables
-- Every table of the file, to decide how to open it (SCHEMA.md 4).
SELECT name FROM sqlite_master WHERE type = 'table'

-- name: list_versions
-- Diesel's migration records (and cloaca's own cloaca_NNNN rows).
SELECT version FROM __diesel_schema_migrations

-- name: record_version
-- Only version is written; run_on takes Diesel's CURRENT_TIMESTAMP default.
INSERT INTO __diesel_schema_migrations (version) VALUES (:version)

-- name: get_journal_mode
SELECT journal_mode FROM pragma_journal_mode

-- name: set_journal_mode_wal
-- Persistent: the file header stays WAL for every later connection, Cloacina's too.
PRAGMA journal_mode = WAL

-- name: set_journal_mode_delete
PRAGMA journal_mode = DELETE

-- name: set_journal_mode_truncate
PRAGMA journal_mode = TRUNCATE

-- name: set_journal_mode_persist
PRAGMA journal_mode = PERSIST

-- name: set_journal_mode_memory
PRAGMA journal_mode = MEMORY

-- name: set_journal_mode_off
PRAGMA journal_mode = OFF

-- name: set_synchronous_off
PRAGMA synchronous = OFF

-- name: set_synchronous_normal
-- The default: with WAL, commits are durable against process crashes and only a
-- power loss may roll back the last ones.
PRAGMA synchronous = NORMAL

-- name: set_synchronous_full
PRAGMA synchronous = FULL

-- name: set_synchronous_extra
PRAGMA synchronous = EXTRA

-- name: begin_write
-- Writers take the write lock up front, so a busy database waits in the busy
-- handler instead of failing a deferred transaction half way.
BEGIN IMMEDIATE

-- name: begin_read
-- One snapshot for a multi-statement read.
BEGIN

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: insert_context
-- An immutable context snapshot (SCHEMA.md 3, contexts); created_at = updated_at.
INSERT INTO contexts (id, value, created_at, updated_at)
VALUES (:id, :value, :at, :at)

-- name: insert_execution
-- SCHEMA.md 5.2: Pending, started_at = created_at = updated_at.
INSERT INTO pipeline_executions (
    id, pipeline_name, pipeline_version, status, context_id,
    started_at, created_at, updated_at
)
VALUES (:id, :pipeline_name, :pipeline_version, 'Pending', :context_id, :at, :at, :at)

-- name: insert_task
-- SCHEMA.md 5.2: NotStarted, attempt 1, task_configuration {}, other times NULL.
INSERT INTO task_executions (
    id, pipeline_execution_id, task_name, status, attempt, max_attempts,
    trigger_rules, task_configuration, created_at, updated_at
)
VALUES (
    :id, :execution_id, :task_name, 'NotStarted', 1, :max_attempts,
    :trigger_rules, '{}', :at, :at
)

-- name: mark_execution_running
UPDATE pipeline_executions SET status = 'Running', updated_at = :at WHERE id = :id

-- name: mark_task_ready
UPDATE task_executions SET status = 'Ready', updated_at = :at WHERE id = :id

-- name: start_task
-- SCHEMA.md 5.4: a conditional claim; a row in any other state is not started.
UPDATE task_executions
SET status = 'Running', attempt = :attempt, started_at = :at, updated_at = :at
WHERE id = :id AND status IN ('Ready', 'NotStarted')

-- name: upsert_task_metadata
-- SCHEMA.md 5.5: one row per successful task, pointing at its output context.
INSERT INTO task_execution_metadata (
    id, task_execution_id, pipeline_execution_id, task_name, context_id,
    created_at, updated_at
)
VALUES (:id, :task_execution_id, :execution_id, :task_name, :context_id, :at, :at)
ON CONFLICT (task_execution_id) DO UPDATE
SET context_id = excluded.context_id, updated_at = excluded.updated_at

-- name: complete_task
UPDATE task_executions
SET status = 'Completed', completed_at = :at, updated_at = :at
WHERE id = :id

-- name: schedule_task_retry
-- SCHEMA.md 5.6: back to Ready for the next attempt, not before retry_at.
UPDATE task_executions
SET status = 'Ready', attempt = :attempt, retry_at = :retry_at, started_at = NULL,
    completed_at = NULL, last_error = :error, updated_at = :at
WHERE id = :id

-- name: fail_task
-- SCHEMA.md 5.7: the message goes to last_error and to error_details.
UPDATE task_executions
SET status = 'Failed', completed_at = :at, last_error = :error,
    error_details = :error, updated_at = :at
WHERE id = :id

-- name: skip_task
UPDATE task_executions
SET status = 'Skipped', error_details = :reason, updated_at = :at
WHERE id = :id

-- name: reset_task
-- SCHEMA.md 5, crash recovery: an orphaned Running task goes back to Ready.
UPDATE task_executions
SET status = 'Ready', started_at = NULL, recovery_attempts = :recovery_attempt,
    last_recovery_at = :at, updated_at = :at
WHERE id = :id

-- name: abandon_task
UPDATE task_executions
SET status = 'Failed', error_details = :error, last_error = :error,
    completed_at = :at, updated_at = :at
WHERE id = :id

-- name: insert_recovery_event
INSERT INTO recovery_events (
    id, pipeline_execution_id, task_execution_id, recovery_type, recovered_at,
    details, created_at, updated_at
)
VALUES (
    :id, :execution_id, :task_execution_id, :recovery_type, :at, :details, :at, :at
)

-- name: finish_execution
-- SCHEMA.md 5.8; a NULL context_id or error leaves the stored value as it is.
UPDATE pipeline_executions
SET status = :status, context_id = COALESCE(:context_id, context_id),
    error_details = COALESCE(:error, error_details), completed_at = :at,
    updated_at = :at
WHERE id = :id

-- name: get_task_status
-- Diagnosis only, after a batch touched fewer task rows than it named.
SELECT status FROM task_executions WHERE id = :id

-- name: get_execution_status
-- Diagnosis only, after a batch touched fewer execution rows than it named.
SELECT status FROM pipeline_executions WHERE id = :id

-- name: get_execution
-- One execution with the text of the context it points at.
SELECT p.id, p.pipeline_name, p.pipeline_version, p.status, c.value, p.started_at,
       p.completed_at, p.error_details, p.recovery_attempts, p.created_at,
       p.updated_at
FROM pipeline_executions AS p
LEFT JOIN contexts AS c ON c.id = p.context_id
WHERE p.id = :id

-- name: get_execution_tasks
-- A task's output: (pipeline_execution_id, task_name) -> metadata -> contexts.
SELECT t.id, t.pipeline_execution_id, t.task_name, t.status, t.attempt,
       t.max_attempts, t.started_at, t.completed_at, t.retry_at, t.error_details,
       t.last_error, t.recovery_attempts, t.trigger_rules, c.value, t.created_at,
       t.updated_at
FROM task_executions AS t
LEFT JOIN task_execution_metadata AS m
    ON m.pipeline_execution_id = t.pipeline_execution_id AND m.task_name = t.task_name
LEFT JOIN contexts AS c ON c.id = m.context_id
WHERE t.pipeline_execution_id = :id
ORDER BY t.created_at, t.task_name

-- name: list_unfinished_executions
SELECT p.id, p.pipeline_name, p.pipeline_version, p.status, c.value, p.started_at,
       p.completed_at, p.error_details, p.recovery_attempts, p.created_at,
       p.updated_at
FROM pipeline_executions AS p
LEFT JOIN contexts AS c ON c.id = p.context_id
WHERE p.status IN ('Pending', 'Running')
ORDER BY p.started_at, p.id

-- name: list_unfinished_tasks
SELECT t.id, t.pipeline_execution_id, t.task_name, t.status, t.attempt,
       t.max_attempts, t.started_at, t.completed_at, t.retry_at, t.error_details,
       t.last_error, t.recovery_attempts, t.trigger_rules, c.value, t.created_at,
       t.updated_at
FROM task_executions AS t
JOIN pipeline_executions AS p ON p.id = t.pipeline_execution_id
LEFT JOIN task_execution_metadata AS m
    ON m.pipeline_execution_id = t.pipeline_execution_id AND m.task_name = t.task_name
LEFT JOIN contexts AS c ON c.id = m.context_id
WHERE p.status IN ('Pending', 'Running')
ORDER BY t.pipeline_execution_id, t.created_at, t.task_name

-- name: list_executions
-- Newest first; a NULL filter matches every row.
SELECT p.id, p.pipeline_name, p.pipeline_version, p.status, c.value, p.started_at,
       p.completed_at, p.error_details, p.recovery_attempts, p.created_at,
       p.updated_at
FROM pipeline_executions AS p
LEFT JOIN contexts AS c ON c.id = p.context_id
WHERE (:pipeline_name IS NULL OR p.pipeline_name = :pipeline_name)
  AND (:status IS NULL OR p.status = :status)
ORDER BY p.started_at DESC, p.id DESC
LIMIT :limit OFFSET :offset

-- name: insert_cron_schedule
-- The cron and trigger statements from here on are run by sqlite_schedules.py
-- (SCHEMA.md 6-7). Ticks (next_run_at, scheduled_time) are whole seconds without a
-- fraction, so every writer encodes a tick identically and UNIQUE (schedule_id,
-- scheduled_time) holds. Registration: enabled, skip, no window, never run.
INSERT INTO cron_schedules (
    id, workflow_name, cron_expression, timezone, enabled, catchup_policy,
    start_date, end_date, next_run_at, last_run_at, created_at, updated_at
)
VALUES (
    :id, :workflow_name, :cron_expression, :timezone, 1, 'skip',
    NULL, NULL, :next_run_at, NULL, :at, :at
)

-- name: list_cron_schedules
SELECT id, workflow_name, cron_expression, timezone, enabled, catchup_policy,
       start_date, end_date, next_run_at, last_run_at, created_at, updated_at
FROM cron_schedules
WHERE (:enabled_only = 0 OR enabled = 1)
ORDER BY workflow_name, created_at, id
LIMIT :limit OFFSET :offset

-- name: get_cron_schedule
SELECT id, workflow_name, cron_expression, timezone, enabled, catchup_policy,
       start_date, end_date, next_run_at, last_run_at, created_at, updated_at
FROM cron_schedules
WHERE id = :id

-- name: update_cron_schedule
-- A new expression or zone recomputes next_run_at from now (SCHEMA.md 6).
UPDATE cron_schedules
SET cron_expression = :cron_expression, timezone = :timezone,
    next_run_at = :next_run_at, updated_at = :at
WHERE id = :id

-- name: set_cron_schedule_enabled
-- Only enabled and updated_at: a re-enabled overdue schedule fires once.
UPDATE cron_schedules SET enabled = :enabled, updated_at = :at WHERE id = :id

-- name: delete_cron_executions_of_schedule
-- SQLite does not enforce the ON DELETE CASCADE, so the audit rows go first.
DELETE FROM cron_executions WHERE schedule_id = :id

-- name: delete_cron_schedule
DELETE FROM cron_schedules WHERE id = :id

-- name: due_cron_schedules
-- Text order is time order in SCHEMA.md 2.1's encoding.
SELECT id, workflow_name, cron_expression, timezone, enabled, catchup_policy,
       start_date, end_date, next_run_at, last_run_at, created_at, updated_at
FROM cron_schedules
WHERE enabled = 1 AND next_run_at <= :now
ORDER BY next_run_at, id

-- name: earliest_cron_run
SELECT MIN(next_run_at) FROM cron_schedules WHERE enabled = 1

-- name: claim_cron_schedule
-- Compare-and-set on the next_run_at that was read: only one claimer moves it.
UPDATE cron_schedules
SET last_run_at = :at, next_run_at = :next_run_at, updated_at = :at
WHERE id = :id AND enabled = 1 AND next_run_at = :seen_next_run_at

-- name: insert_cron_execution
-- One audit row per tick; a tick recorded by another claimer is left alone.
INSERT INTO cron_executions (
    id, schedule_id, pipeline_execution_id, scheduled_time, claimed_at,
    created_at, updated_at
)
VALUES (:id, :schedule_id, NULL, :scheduled_time, :at, :at, :at)
ON CONFLICT (schedule_id, scheduled_time) DO NOTHING

-- name: get_cron_execution
SELECT id, schedule_id, scheduled_time, claimed_at, pipeline_execution_id,
       created_at, updated_at
FROM cron_executions
WHERE id = :id

-- name: link_cron_execution
UPDATE cron_executions
SET pipeline_execution_id = :pipeline_execution_id, updated_at = :at
WHERE id = :id AND pipeline_execution_id IS NULL

-- name: lost_cron_executions
SELECT e.id, e.schedule_id, e.scheduled_time, e.claimed_at, e.pipeline_execution_id,
       e.created_at, e.updated_at, s.workflow_name, s.cron_expression, s.timezone
FROM cron_executions AS e
JOIN cron_schedules AS s ON s.id = e.schedule_id
WHERE e.pipeline_execution_id IS NULL AND s.enabled = 1
  AND e.claimed_at < :stale_before AND e.updated_at < :stale_before
ORDER BY e.scheduled_time DESC, e.id
LIMIT :limit

-- name: reclaim_cron_execution
-- Compare-and-set on updated_at: one recoverer per lost row and threshold.
UPDATE cron_executions
SET updated_at = :at
WHERE id = :id AND pipeline_execution_id IS NULL AND updated_at = :seen_updated_at

-- name: execution_exists
SELECT id FROM pipeline_executions WHERE id = :id

-- name: list_cron_executions
SELECT id, schedule_id, scheduled_time, claimed_at, pipeline_execution_id,
       created_at, updated_at
FROM cron_executions
WHERE schedule_id = :schedule_id
ORDER BY scheduled_time DESC, id
LIMIT :limit OFFSET :offset

-- name: cron_execution_stats
SELECT COUNT(*),
       COUNT(pipeline_execution_id),
       COALESCE(SUM(pipeline_execution_id IS NULL AND claimed_at < :lost_before), 0)
FROM cron_executions
WHERE claimed_at >= :since

-- name: upsert_trigger_schedule
-- Only a change rewrites the row; enabled is kept (API.md 4.13 leaves it open).
INSERT INTO trigger_schedules (
    id, trigger_name, workflow_name, poll_interval_ms, allow_concurrent, enabled,
    last_poll_at, created_at, updated_at
)
VALUES (
    :id, :trigger_name, :workflow_name, :poll_interval_ms, :allow_concurrent, 1,
    NULL, :at, :at
)
ON CONFLICT (trigger_name) DO UPDATE
SET workflow_name = excluded.workflow_name,
    poll_interval_ms = excluded.poll_interval_ms,
    allow_concurrent = excluded.allow_concurrent,
    updated_at = excluded.updated_at
WHERE trigger_schedules.workflow_name != excluded.workflow_name
   OR trigger_schedules.poll_interval_ms != excluded.poll_interval_ms
   OR trigger_schedules.allow_concurrent != excluded.allow_concurrent

-- name: list_trigger_schedules
SELECT id, trigger_name, workflow_name, poll_interval_ms, allow_concurrent, enabled,
       last_poll_at, created_at, updated_at
FROM trigger_schedules
WHERE (:enabled_only = 0 OR enabled = 1)
ORDER BY created_at DESC, trigger_name
LIMIT :limit OFFSET :offset

-- name: get_trigger_schedule
SELECT id, trigger_name, workflow_name, poll_interval_ms, allow_concurrent, enabled,
       last_poll_at, created_at, updated_at
FROM trigger_schedules
WHERE trigger_name = :trigger_name

-- name: set_trigger_enabled
UPDATE trigger_schedules SET enabled = :enabled, updated_at = :at
WHERE trigger_name = :trigger_name

-- name: record_trigger_poll
UPDATE trigger_schedules SET last_poll_at = :at, updated_at = :at
WHERE trigger_name = :trigger_name

-- name: insert_trigger_execution
-- The partial UNIQUE index allows one in-progress fire per (trigger, hash).
INSERT INTO trigger_executions (
    id, trigger_name, context_hash, pipeline_execution_id, started_at,
    completed_at, created_at, updated_at
)
VALUES (:id, :trigger_name, :context_hash, NULL, :at, NULL, :at, :at)
ON CONFLICT (trigger_name, context_hash) WHERE completed_at IS NULL DO NOTHING

-- name: insert_completed_trigger_execution
INSERT INTO trigger_executions (
    id, trigger_name, context_hash, pipeline_execution_id, started_at,
    completed_at, created_at, updated_at
)
VALUES (
    :id, :trigger_name, :context_hash, :pipeline_execution_id, :started_at,
    :at, :started_at, :at
)

-- name: link_trigger_execution
UPDATE trigger_executions
SET pipeline_execution_id = :pipeline_execution_id, updated_at = :at,
    completed_at = CASE WHEN :completed THEN :at ELSE completed_at END
WHERE id = :id

-- name: complete_trigger_executions
UPDATE trigger_executions SET completed_at = :at, updated_at = :at
WHERE pipeline_execution_id = :pipeline_execution_id AND completed_at IS NULL

-- name: sweep_trigger_executions
UPDATE trigger_executions SET completed_at = :at, updated_at = :at
WHERE completed_at IS NULL
  AND (
    (pipeline_execution_id IS NULL AND started_at < :unlinked_before)
    OR pipeline_execution_id IN (
        SELECT id FROM pipeline_executions
        WHERE status IN ('Completed', 'Failed', 'Cancelled')
    )
  )

-- name: list_trigger_executions
SELECT id, trigger_name, context_hash, pipeline_execution_id, started_at,
       completed_at, created_at
FROM trigger_executions
WHERE trigger_name = :trigger_name
ORDER BY started_at DESC, id
LIMIT :limit OFFSET :offset
