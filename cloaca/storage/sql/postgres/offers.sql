-- Task offers between runners sharing one database (migration cloaca_0002,
-- cloaca.storage.pg_offers). Times are the server's clock in UTC, as in leases.sql.

-- name: announce_runner
-- Announce (or renew) a live runner, its attempt capacity and its free slots, and
-- return the free slots of the other live runners at their last announcement (0
-- when this runner is alone or every other one is full).
WITH announced AS (
    INSERT INTO cloaca_runners
        (runner_id, capacity, heartbeat_at, expires_at, free_slots)
    VALUES ($1, $2, now() AT TIME ZONE 'UTC',
            (now() AT TIME ZONE 'UTC') + make_interval(secs => $3), $4)
    ON CONFLICT (runner_id) DO UPDATE
    SET capacity = EXCLUDED.capacity,
        heartbeat_at = EXCLUDED.heartbeat_at,
        expires_at = EXCLUDED.expires_at,
        free_slots = EXCLUDED.free_slots
    RETURNING 1
)
SELECT coalesce(sum(free_slots), 0)::bigint FROM cloaca_runners
WHERE runner_id <> $1 AND expires_at > now() AT TIME ZONE 'UTC'

-- name: forget_runner
DELETE FROM cloaca_runners WHERE runner_id = $1

-- name: forget_dead_runners
-- Rows of runners that stopped renewing long ago (housekeeping).
DELETE FROM cloaca_runners
WHERE expires_at < (now() AT TIME ZONE 'UTC') - make_interval(secs => $1)

-- name: forget_orphan_offers
-- Offers of executions nobody leases any more (finished, or left behind by a
-- task actor that a restart replaced): nobody can claim or read them.
DELETE FROM cloaca_task_offers AS o
WHERE NOT EXISTS (
    SELECT 1 FROM cloaca_execution_leases AS l WHERE l.execution_id = o.execution_id
)

-- name: offer_task
-- Offer one attempt and wake the runners of this schema (sent at commit).
WITH offered AS (
    INSERT INTO cloaca_task_offers
        (task_execution_id, execution_id, owner_id, task_name, attempt,
         input_json, offered_at)
    VALUES ($1, $2, $3, $4, $5, $6, now() AT TIME ZONE 'UTC')
    ON CONFLICT (task_execution_id) DO UPDATE
    SET execution_id = EXCLUDED.execution_id,
        owner_id = EXCLUDED.owner_id,
        task_name = EXCLUDED.task_name,
        attempt = EXCLUDED.attempt,
        input_json = EXCLUDED.input_json,
        offered_at = EXCLUDED.offered_at,
        claimed_by = NULL,
        claim_expires_at = NULL,
        claims = 0,
        output_json = NULL,
        error = NULL,
        finished_at = NULL
    RETURNING 1
)
SELECT pg_notify('cloaca_offers', current_schema()) FROM offered

-- name: withdraw_offer
-- Take an offer back to run it here: only while nobody holds a live claim on it.
DELETE FROM cloaca_task_offers
WHERE task_execution_id = $1 AND owner_id = $2 AND finished_at IS NULL
  AND (claimed_by IS NULL OR claim_expires_at < now() AT TIME ZONE 'UTC')
RETURNING claims

-- name: offer_state
-- How an offer stands: (claimed_by, claim live, claims, finished), no row if gone.
SELECT claimed_by,
       claim_expires_at >= now() AT TIME ZONE 'UTC' AS claim_live,
       claims,
       finished_at IS NOT NULL AS finished
FROM cloaca_task_offers
WHERE task_execution_id = $1 AND owner_id = $2

-- name: claim_offers
-- Claim open offers of other runners for this one, each claimed fewer than $5
-- times before. Only offers whose owner still
-- holds the execution's lease: the result of anything else would be refused.
-- SKIP LOCKED: an offer another claimer is taking is left to it.
UPDATE cloaca_task_offers AS o
SET claimed_by = $1,
    claim_expires_at = (now() AT TIME ZONE 'UTC') + make_interval(secs => $2),
    claims = o.claims + 1
WHERE o.task_execution_id IN (
    SELECT c.task_execution_id
    FROM cloaca_task_offers AS c
    JOIN cloaca_execution_leases AS l
      ON l.execution_id = c.execution_id AND l.runner_id = c.owner_id
    WHERE c.owner_id <> $1
      AND c.finished_at IS NULL
      AND (c.claimed_by IS NULL OR c.claim_expires_at < now() AT TIME ZONE 'UTC')
      AND l.expires_at > now() AT TIME ZONE 'UTC'
      AND c.task_name = ANY($3::text[])
      AND c.claims < $5
    ORDER BY c.offered_at
    LIMIT $4
    FOR UPDATE OF c SKIP LOCKED
)
RETURNING o.task_execution_id, o.execution_id, o.owner_id, o.task_name,
          o.attempt, o.input_json

-- name: post_result
-- The claimer's result; refused (no row) when its claim is gone or was taken over.
UPDATE cloaca_task_offers
SET output_json = $3, error = $4, finished_at = now() AT TIME ZONE 'UTC'
WHERE task_execution_id = $1 AND claimed_by = $2 AND attempt = $5
  AND finished_at IS NULL
RETURNING owner_id

-- name: notify_done
-- Wake the owner of a finished offer (payload: schema and owner id).
SELECT pg_notify('cloaca_offers_done', current_schema() || ' ' || $1::text)

-- name: hand_back
-- A claimer leaving gracefully gives its unfinished claims back at once.
UPDATE cloaca_task_offers
SET claimed_by = NULL, claim_expires_at = NULL
WHERE claimed_by = $1 AND finished_at IS NULL
RETURNING task_execution_id

-- name: take_results
-- Finished offers of this owner, removed as they are read.
DELETE FROM cloaca_task_offers
WHERE owner_id = $1 AND finished_at IS NOT NULL
RETURNING task_execution_id, output_json, error

-- name: renew_claims
-- Heartbeat of the claims this runner is still working on.
UPDATE cloaca_task_offers
SET claim_expires_at = (now() AT TIME ZONE 'UTC') + make_interval(secs => $2)
WHERE claimed_by = $1 AND finished_at IS NULL
  AND task_execution_id = ANY($3::uuid[])

-- name: hand_back_abandoned
-- Claims of this runner that no attempt works on any more (their actors were
-- stopped by a restart): open again at once instead of renewed forever.
UPDATE cloaca_task_offers
SET claimed_by = NULL, claim_expires_at = NULL
WHERE claimed_by = $1 AND finished_at IS NULL
  AND NOT (task_execution_id = ANY($2::uuid[]))
RETURNING task_execution_id

-- name: drop_owner_offers
-- Graceful leave of an owner: its offers go with its leases.
DELETE FROM cloaca_task_offers WHERE owner_id = $1

-- name: drop_execution_offers
-- Offers of executions a new owner took over: their results would be refused.
DELETE FROM cloaca_task_offers WHERE execution_id = ANY($1::uuid[])

-- name: notify_offered
-- Wake the runners of this schema: offers are open to claim.
SELECT pg_notify('cloaca_offers', current_schema())
