-- cloacina-versions: 000 001 002 003 004 005 006 007 008 009
-- Cloacina v0.3.1's PostgreSQL layout in its final form (SCHEMA.md 3 and 4), created
-- in one transaction and recorded as all ten Diesel versions. The objects are those
-- of the 0.3.1 fixture dump (shared/fixtures/cloacina-0.3.1-postgres.sql) without
-- schema qualifiers: the store sets search_path, so this file never names a schema.
-- Constraints are declared the way Cloacina declares them, so that PostgreSQL
-- generates the same names (<table>_pkey, _<col>_check, _<cols>_key, _<col>_fkey)
-- and the same CHECK expressions. Columns that later Diesel steps appended
-- (pipeline_executions.paused_at/pause_reason in 008, workflow_packages.storage_type
-- in 007) stay last, where those steps put them. Released: never edit; add a
-- cloaca_NNNN_<what>.sql migration instead.

-- Diesel's bookkeeping table, as Diesel creates it.
CREATE TABLE __diesel_schema_migrations (
    version varchar(50) PRIMARY KEY NOT NULL,
    run_on timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- 000: two trigger functions that no trigger uses; they exist in every Cloacina schema.
CREATE FUNCTION update_timestamp() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.updated_at = CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$$;

CREATE FUNCTION soft_delete() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.deleted_at = CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$$;

-- 001 (003 added the id default): immutable context snapshots.
CREATE TABLE contexts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    value varchar NOT NULL CHECK (value::json IS NOT NULL),
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX contexts_created_at_idx ON contexts (created_at DESC);

-- 002 (008 added Paused and the pause columns): executions.
CREATE TABLE pipeline_executions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    pipeline_name varchar NOT NULL,
    pipeline_version varchar NOT NULL DEFAULT '1.0',
    status varchar NOT NULL CHECK (
        status IN ('Pending', 'Running', 'Completed', 'Failed', 'Cancelled', 'Paused')
    ),
    context_id uuid REFERENCES contexts (id),
    started_at timestamp DEFAULT CURRENT_TIMESTAMP,
    completed_at timestamp,
    error_details text,
    recovery_attempts integer NOT NULL DEFAULT 0,
    last_recovery_at timestamp,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    paused_at timestamp,
    pause_reason text
);

CREATE INDEX pipeline_executions_status_idx ON pipeline_executions (status);
CREATE INDEX pipeline_executions_name_version_idx
    ON pipeline_executions (pipeline_name, pipeline_version);
CREATE INDEX pipeline_executions_paused_idx ON pipeline_executions (status)
    WHERE status = 'Paused';

-- 002: one row per task per execution; all attempts share it.
CREATE TABLE task_executions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    pipeline_execution_id uuid NOT NULL REFERENCES pipeline_executions (id),
    task_name varchar NOT NULL,
    status varchar NOT NULL CHECK (
        status IN ('NotStarted', 'Ready', 'Running', 'Completed', 'Failed', 'Skipped')
    ),
    started_at timestamp,
    completed_at timestamp,
    attempt integer DEFAULT 1,
    max_attempts integer DEFAULT 1,
    error_details text,
    trigger_rules text DEFAULT '{"type": "Always"}'
        CHECK (trigger_rules IS NULL OR trigger_rules::json IS NOT NULL),
    task_configuration text DEFAULT '{}'
        CHECK (task_configuration IS NULL OR task_configuration::json IS NOT NULL),
    retry_at timestamp,
    last_error text,
    recovery_attempts integer NOT NULL DEFAULT 0,
    last_recovery_at timestamp,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX task_executions_status_idx ON task_executions (status);
CREATE INDEX task_executions_pipeline_idx ON task_executions (pipeline_execution_id);
CREATE INDEX task_executions_task_name_idx ON task_executions (task_name);
CREATE INDEX task_executions_running_idx ON task_executions (status)
    WHERE status = 'Running';

-- 002: one row per successful task, pointing at its output context.
CREATE TABLE task_execution_metadata (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_execution_id uuid NOT NULL REFERENCES task_executions (id),
    pipeline_execution_id uuid NOT NULL REFERENCES pipeline_executions (id),
    task_name varchar NOT NULL,
    context_id uuid REFERENCES contexts (id),
    created_at timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (task_execution_id),
    UNIQUE (pipeline_execution_id, task_name)
);

CREATE INDEX task_execution_metadata_pipeline_idx
    ON task_execution_metadata (pipeline_execution_id);
CREATE INDEX task_execution_metadata_lookup_idx
    ON task_execution_metadata (pipeline_execution_id, task_name);
CREATE INDEX task_execution_metadata_context_idx ON task_execution_metadata (context_id);

-- 002: recovery actions.
CREATE TABLE recovery_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    pipeline_execution_id uuid NOT NULL REFERENCES pipeline_executions (id),
    task_execution_id uuid REFERENCES task_executions (id),
    recovery_type varchar NOT NULL,
    recovered_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    details text CHECK (details IS NULL OR details::json IS NOT NULL),
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX recovery_events_pipeline_idx ON recovery_events (pipeline_execution_id);
CREATE INDEX recovery_events_task_idx ON recovery_events (task_execution_id)
    WHERE task_execution_id IS NOT NULL;
CREATE INDEX recovery_events_type_idx ON recovery_events (recovery_type);

-- 004: cron schedules.
CREATE TABLE cron_schedules (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_name varchar NOT NULL,
    cron_expression varchar NOT NULL,
    timezone varchar NOT NULL DEFAULT 'UTC',
    enabled boolean NOT NULL DEFAULT true,
    catchup_policy varchar NOT NULL DEFAULT 'skip'
        CHECK (catchup_policy IN ('skip', 'run_all')),
    start_date timestamp,
    end_date timestamp,
    next_run_at timestamp NOT NULL,
    last_run_at timestamp,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_cron_schedules_polling ON cron_schedules (enabled, next_run_at)
    WHERE enabled = true;
CREATE INDEX idx_cron_schedules_workflow ON cron_schedules (workflow_name, enabled);
CREATE INDEX idx_cron_schedules_time_window ON cron_schedules (start_date, end_date);

-- 005: one audit row per fired tick; the UNIQUE is the durable once-per-tick guard.
CREATE TABLE cron_executions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    schedule_id uuid NOT NULL REFERENCES cron_schedules (id) ON DELETE CASCADE,
    pipeline_execution_id uuid REFERENCES pipeline_executions (id) ON DELETE CASCADE,
    scheduled_time timestamp NOT NULL,
    claimed_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (schedule_id, scheduled_time)
);

CREATE INDEX idx_cron_executions_schedule
    ON cron_executions (schedule_id, scheduled_time DESC);
CREATE INDEX idx_cron_executions_pipeline ON cron_executions (pipeline_execution_id)
    WHERE pipeline_execution_id IS NOT NULL;
CREATE INDEX idx_cron_executions_claimed_at ON cron_executions (claimed_at DESC);

-- 006 (007 added storage_type and dropped the registry foreign key): packaged
-- workflows. cloaca creates these tables and never writes to them.
CREATE TABLE workflow_registry (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    data bytea NOT NULL
);

CREATE INDEX idx_workflow_registry_created_at ON workflow_registry (created_at);

CREATE TABLE workflow_packages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    registry_id uuid NOT NULL,
    package_name varchar(255) NOT NULL,
    version varchar(100) NOT NULL,
    description text,
    author varchar(255),
    metadata text NOT NULL DEFAULT '{}',
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    storage_type varchar(20) NOT NULL DEFAULT 'database',
    UNIQUE (package_name, version)
);

CREATE INDEX idx_workflow_packages_name_version
    ON workflow_packages (package_name, version);
CREATE INDEX idx_workflow_packages_registry_id ON workflow_packages (registry_id);
CREATE INDEX idx_workflow_packages_created_at ON workflow_packages (created_at);
CREATE INDEX idx_workflow_packages_storage_type ON workflow_packages (storage_type);

-- 009: event trigger schedules and fires. The partial UNIQUE index allows one
-- in-progress fire per (trigger_name, context_hash) across all processes.
CREATE TABLE trigger_schedules (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trigger_name varchar NOT NULL UNIQUE,
    workflow_name varchar NOT NULL,
    poll_interval_ms integer NOT NULL,
    allow_concurrent boolean NOT NULL DEFAULT false,
    enabled boolean NOT NULL DEFAULT true,
    last_poll_at timestamp,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_trigger_schedules_polling ON trigger_schedules (enabled, last_poll_at)
    WHERE enabled = true;
CREATE INDEX idx_trigger_schedules_workflow
    ON trigger_schedules (workflow_name, enabled);

CREATE TABLE trigger_executions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trigger_name varchar NOT NULL,
    context_hash varchar NOT NULL,
    pipeline_execution_id uuid REFERENCES pipeline_executions (id) ON DELETE CASCADE,
    started_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    completed_at timestamp,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE UNIQUE INDEX idx_trigger_executions_dedup
    ON trigger_executions (trigger_name, context_hash) WHERE completed_at IS NULL;
CREATE INDEX idx_trigger_executions_trigger
    ON trigger_executions (trigger_name, started_at DESC);
CREATE INDEX idx_trigger_executions_pipeline ON trigger_executions (pipeline_execution_id)
    WHERE pipeline_execution_id IS NOT NULL;
CREATE INDEX idx_trigger_executions_in_progress
    ON trigger_executions (trigger_name, context_hash) WHERE completed_at IS NULL;
CREATE INDEX idx_trigger_executions_completed_at ON trigger_executions (completed_at DESC)
    WHERE completed_at IS NOT NULL;
