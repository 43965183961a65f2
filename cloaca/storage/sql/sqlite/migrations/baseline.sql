-- cloacina-versions: 000 001 002 003 004 005 006 007 008
--
-- Cloacina v0.3.1's final SQLite layout (SCHEMA.md 3), recorded as Diesel versions
-- 000-008. Every statement is copied verbatim from sqlite_master of a database the
-- 0.3.1 wheel wrote (fixtures/cloacina-0.3.1.sqlite), so a database cloaca creates
-- holds the very objects Cloacina's own migrations leave behind. Released: never edit;
-- add a cloaca_NNNN_<what>.sql file instead (SCHEMA.md 9).
--
-- One statement per terminating ';' line: the store splits the file with
-- sqlite3.complete_statement and runs it inside its own BEGIN IMMEDIATE transaction.

-- 000: Diesel's own bookkeeping table (Cloacina's 000 step is empty on SQLite).

CREATE TABLE __diesel_schema_migrations (
       version VARCHAR(50) PRIMARY KEY NOT NULL,
       run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- 001: contexts.

CREATE TABLE contexts (
    id BLOB PRIMARY KEY NOT NULL,
    value TEXT NOT NULL CHECK (json_valid(value)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX contexts_created_at_idx ON contexts(created_at DESC);

-- 002 (with 007's pause columns and paused index): executions, tasks, task output
-- metadata and recovery events. 007 rebuilt pipeline_executions through a rename,
-- which is why SQLite records its name quoted.

CREATE TABLE "pipeline_executions" (
    id BLOB PRIMARY KEY NOT NULL,
    pipeline_name TEXT NOT NULL,
    pipeline_version TEXT NOT NULL DEFAULT '1.0',
    status TEXT NOT NULL CHECK (status IN ('Pending', 'Running', 'Completed', 'Failed', 'Cancelled', 'Paused')),
    context_id BLOB REFERENCES contexts(id),
    started_at TEXT NOT NULL,
    completed_at TEXT,
    error_details TEXT,
    recovery_attempts INTEGER DEFAULT 0 NOT NULL,
    last_recovery_at TEXT,
    paused_at TEXT,
    pause_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE task_executions (
    id BLOB PRIMARY KEY NOT NULL,
    pipeline_execution_id BLOB NOT NULL REFERENCES pipeline_executions(id),
    task_name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('NotStarted', 'Ready', 'Running', 'Completed', 'Failed', 'Skipped')),
    started_at TEXT,
    completed_at TEXT,
    attempt INTEGER DEFAULT 1,
    max_attempts INTEGER DEFAULT 1,
    error_details TEXT,
    trigger_rules TEXT DEFAULT '{"type": "Always"}' CHECK (trigger_rules IS NULL OR json_valid(trigger_rules)),
    task_configuration TEXT DEFAULT '{}' CHECK (task_configuration IS NULL OR json_valid(task_configuration)),
    retry_at TEXT,
    last_error TEXT,
    recovery_attempts INTEGER DEFAULT 0 NOT NULL,
    last_recovery_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE task_execution_metadata (
    id BLOB PRIMARY KEY NOT NULL,
    task_execution_id BLOB NOT NULL REFERENCES task_executions(id),
    pipeline_execution_id BLOB NOT NULL REFERENCES pipeline_executions(id),
    task_name TEXT NOT NULL,
    context_id BLOB REFERENCES contexts(id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,

    -- Constraints
    UNIQUE(task_execution_id),                    -- One metadata per task execution
    UNIQUE(pipeline_execution_id, task_name)      -- Unique task name per pipeline
);

CREATE TABLE recovery_events (
    id BLOB PRIMARY KEY NOT NULL,
    pipeline_execution_id BLOB NOT NULL REFERENCES pipeline_executions(id),
    task_execution_id BLOB REFERENCES task_executions(id),
    recovery_type TEXT NOT NULL, -- 'task_reset', 'task_abandoned', 'pipeline_failed'
    recovered_at TEXT NOT NULL,
    details TEXT CHECK (details IS NULL OR json_valid(details)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX pipeline_executions_status_idx ON pipeline_executions(status);

CREATE INDEX pipeline_executions_name_version_idx ON pipeline_executions(pipeline_name, pipeline_version);

CREATE INDEX pipeline_executions_paused_idx ON pipeline_executions(status) WHERE status = 'Paused';

CREATE INDEX task_executions_status_idx ON task_executions(status);

CREATE INDEX task_executions_pipeline_idx ON task_executions(pipeline_execution_id);

CREATE INDEX task_executions_task_name_idx ON task_executions(task_name);

CREATE INDEX task_executions_running_idx ON task_executions(status) WHERE status = 'Running';

CREATE INDEX task_execution_metadata_pipeline_idx ON task_execution_metadata(pipeline_execution_id);

CREATE INDEX task_execution_metadata_lookup_idx ON task_execution_metadata(pipeline_execution_id, task_name);

CREATE INDEX task_execution_metadata_context_idx ON task_execution_metadata(context_id);

CREATE INDEX recovery_events_pipeline_idx ON recovery_events(pipeline_execution_id);

CREATE INDEX recovery_events_task_idx ON recovery_events(task_execution_id) WHERE task_execution_id IS NOT NULL;

CREATE INDEX recovery_events_type_idx ON recovery_events(recovery_type);

-- 003: cron schedules.

CREATE TABLE cron_schedules (
    id BLOB PRIMARY KEY NOT NULL,
    workflow_name TEXT NOT NULL,
    cron_expression TEXT NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'UTC',           -- Timezone for cron interpretation (e.g., 'America/New_York')
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    catchup_policy TEXT NOT NULL DEFAULT 'skip' CHECK (catchup_policy IN ('skip', 'run_once', 'run_all')),
    start_date TEXT,                                -- NULL = immediate start (RFC3339 format)
    end_date TEXT,                                  -- NULL = no end (RFC3339 format)
    next_run_at TEXT NOT NULL,                      -- RFC3339 format
    last_run_at TEXT,                               -- RFC3339 format
    created_at TEXT NOT NULL,                       -- RFC3339 format
    updated_at TEXT NOT NULL                        -- RFC3339 format
);

CREATE INDEX idx_cron_schedules_polling
ON cron_schedules (enabled, next_run_at)
WHERE enabled = 1;

CREATE INDEX idx_cron_schedules_workflow
ON cron_schedules (workflow_name, enabled);

CREATE INDEX idx_cron_schedules_time_window
ON cron_schedules (start_date, end_date);

-- 004: cron executions (the audit row per fired tick).

CREATE TABLE cron_executions (
    id BLOB PRIMARY KEY NOT NULL,
    schedule_id BLOB NOT NULL REFERENCES cron_schedules(id) ON DELETE CASCADE,
    pipeline_execution_id BLOB REFERENCES pipeline_executions(id) ON DELETE CASCADE,
    scheduled_time TEXT NOT NULL,              -- The original scheduled execution time
    claimed_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,

    -- Prevent duplicate executions for the same schedule at the same time
    UNIQUE(schedule_id, scheduled_time)
);

CREATE INDEX idx_cron_executions_schedule
ON cron_executions (schedule_id, scheduled_time DESC);

CREATE INDEX idx_cron_executions_pipeline
ON cron_executions (pipeline_execution_id) WHERE pipeline_execution_id IS NOT NULL;

CREATE INDEX idx_cron_executions_claimed_at
ON cron_executions (claimed_at DESC);

-- 005 and 006: packaged workflows (006 added storage_type and dropped the registry
-- foreign key through a rebuild, hence the quoted name). cloaca never writes them.

CREATE TABLE workflow_registry (
    id BLOB PRIMARY KEY NOT NULL,
    created_at TEXT NOT NULL,                           -- RFC3339 format
    data BLOB NOT NULL
);

CREATE INDEX idx_workflow_registry_created_at
ON workflow_registry(created_at DESC);

CREATE TABLE "workflow_packages" (
    id BLOB PRIMARY KEY NOT NULL,
    registry_id BLOB NOT NULL,
    package_name TEXT NOT NULL,
    version TEXT NOT NULL,
    description TEXT,
    author TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    storage_type TEXT NOT NULL DEFAULT 'database',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE(package_name, version)
);

CREATE INDEX idx_workflow_packages_name_version ON workflow_packages(package_name, version);

CREATE INDEX idx_workflow_packages_registry_id ON workflow_packages(registry_id);

CREATE INDEX idx_workflow_packages_created_at ON workflow_packages(created_at DESC);

CREATE INDEX idx_workflow_packages_storage_type ON workflow_packages(storage_type);

-- 008: trigger schedules and trigger executions.

CREATE TABLE trigger_schedules (
    id BLOB PRIMARY KEY NOT NULL,
    trigger_name TEXT NOT NULL UNIQUE,            -- Unique identifier for the trigger
    workflow_name TEXT NOT NULL,                  -- Workflow to execute when trigger fires
    poll_interval_ms INTEGER NOT NULL,            -- Poll interval in milliseconds
    allow_concurrent INTEGER NOT NULL DEFAULT 0 CHECK (allow_concurrent IN (0, 1)),
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    last_poll_at TEXT,                            -- Last time the trigger was polled (RFC3339 format)
    created_at TEXT NOT NULL,                     -- RFC3339 format
    updated_at TEXT NOT NULL                      -- RFC3339 format
);

CREATE INDEX idx_trigger_schedules_polling
ON trigger_schedules (enabled, last_poll_at)
WHERE enabled = 1;

CREATE INDEX idx_trigger_schedules_workflow
ON trigger_schedules (workflow_name, enabled);

CREATE TABLE trigger_executions (
    id BLOB PRIMARY KEY NOT NULL,
    trigger_name TEXT NOT NULL,                   -- Name of the trigger that fired
    context_hash TEXT NOT NULL,                   -- Hash of the context for deduplication
    pipeline_execution_id BLOB REFERENCES pipeline_executions(id) ON DELETE CASCADE,
    started_at TEXT NOT NULL,                     -- RFC3339 format
    completed_at TEXT,                            -- NULL while execution is in progress (RFC3339 format)
    created_at TEXT NOT NULL,                     -- RFC3339 format
    updated_at TEXT NOT NULL                      -- RFC3339 format
);

CREATE UNIQUE INDEX idx_trigger_executions_dedup
ON trigger_executions (trigger_name, context_hash)
WHERE completed_at IS NULL;

CREATE INDEX idx_trigger_executions_trigger
ON trigger_executions (trigger_name, started_at DESC);

CREATE INDEX idx_trigger_executions_pipeline
ON trigger_executions (pipeline_execution_id)
WHERE pipeline_execution_id IS NOT NULL;

CREATE INDEX idx_trigger_executions_in_progress
ON trigger_executions (trigger_name, context_hash)
WHERE completed_at IS NULL;

CREATE INDEX idx_trigger_executions_completed_at
ON trigger_executions (completed_at DESC)
WHERE completed_at IS NOT NULL;
