-- 001: the mirror, its cursor and its run history.
-- Applied by `vozagent-sync migrate` (and at the start of every command) in one
-- transaction; the runner records it in vozagent.schema_migrations.

-- One row per call, columns named as the API's fields. raw keeps the record
-- exactly as received, so a field the API adds tomorrow is already stored.
CREATE TABLE vozagent.calls (
    id                  text PRIMARY KEY,
    contact_id          text,
    assistant_id        text,
    call_type           text,
    call_status         text,
    duration_seconds    numeric,
    call_started_at     timestamptz,
    call_ended_at       timestamptz,
    appointment_booked  boolean,
    lead_qualification  text,
    call_intent         text,
    raw                 jsonb NOT NULL,
    source              text NOT NULL,
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
COMMENT ON TABLE vozagent.calls IS 'Mirror of the VozAgent call list, one row per call (vozagent-sync).';
COMMENT ON COLUMN vozagent.calls.raw IS 'The call record exactly as the API sent it.';
COMMENT ON COLUMN vozagent.calls.updated_at IS 'When the row''s content last changed (not when it was last seen).';
COMMENT ON COLUMN vozagent.calls.deleted_at IS 'Set when a full reconciliation no longer finds the call; NULL = live.';

CREATE INDEX calls_started_idx ON vozagent.calls (call_started_at);
CREATE INDEX calls_assistant_started_idx ON vozagent.calls (assistant_id, call_started_at);
-- Incremental passes re-read unfinished calls; this keeps finding them cheap.
CREATE INDEX calls_unfinished_idx ON vozagent.calls (source, id)
    WHERE call_status = 'in-progress' AND deleted_at IS NULL;

-- Where each source stands. Updated in the same transaction as the rows the
-- change covers, so the cursor is never ahead of the data.
CREATE TABLE vozagent.sync_state (
    source              text PRIMARY KEY,
    api_order           text CHECK (api_order IN ('oldest_first', 'newest_first', 'unknown')),
    newest_started_at   timestamptz,      -- high-water mark of call_started_at mirrored
    window_offset       bigint,           -- oldest-first: list offset near the start of the lookback window
    backfill_offset     bigint,           -- next offset of an unfinished backfill; NULL = none
    backfill_run_id     bigint,
    last_backfill_at    timestamptz,      -- when the last complete backfill finished
    last_pass_at        timestamptz,      -- when the last successful pass finished
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- One row per pass; dashboards read freshness from it.
CREATE TABLE vozagent.sync_runs (
    id              bigserial PRIMARY KEY,
    source          text NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('backfill', 'incremental')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    requests        integer NOT NULL DEFAULT 0,
    pages           integer NOT NULL DEFAULT 0,
    records_seen    bigint NOT NULL DEFAULT 0,
    inserted        bigint NOT NULL DEFAULT 0,
    updated         bigint NOT NULL DEFAULT 0,
    rejected        bigint NOT NULL DEFAULT 0,
    warnings        bigint NOT NULL DEFAULT 0,
    outcome         text NOT NULL DEFAULT 'running'
                    CHECK (outcome IN ('running', 'ok', 'failed', 'interrupted')),
    error           text
);
CREATE INDEX sync_runs_source_started_idx ON vozagent.sync_runs (source, started_at DESC);

-- Merges one page, staged by the daemon in pg_temp.calls_stage, into the
-- mirror. A call whose record is unchanged is not written at all, so a pass
-- over unchanged data leaves vozagent.calls untouched.
CREATE FUNCTION vozagent.merge_stage(p_source text, OUT inserted bigint, OUT updated bigint)
LANGUAGE plpgsql AS $$
BEGIN
    WITH merged AS (
        INSERT INTO vozagent.calls AS c
            (id, contact_id, assistant_id, call_type, call_status, duration_seconds,
             call_started_at, call_ended_at, appointment_booked, lead_qualification,
             call_intent, raw, source)
        SELECT s.id, s.contact_id, s.assistant_id, s.call_type, s.call_status,
               s.duration_seconds, s.call_started_at, s.call_ended_at,
               s.appointment_booked, s.lead_qualification, s.call_intent, s.raw, p_source
          FROM pg_temp.calls_stage s
        ON CONFLICT (id) DO UPDATE SET
            contact_id = EXCLUDED.contact_id,
            assistant_id = EXCLUDED.assistant_id,
            call_type = EXCLUDED.call_type,
            call_status = EXCLUDED.call_status,
            duration_seconds = EXCLUDED.duration_seconds,
            call_started_at = EXCLUDED.call_started_at,
            call_ended_at = EXCLUDED.call_ended_at,
            appointment_booked = EXCLUDED.appointment_booked,
            lead_qualification = EXCLUDED.lead_qualification,
            call_intent = EXCLUDED.call_intent,
            raw = EXCLUDED.raw,
            source = EXCLUDED.source,
            updated_at = now(),
            deleted_at = NULL
        WHERE c.raw IS DISTINCT FROM EXCLUDED.raw OR c.deleted_at IS NOT NULL
        RETURNING (xmax = 0) AS is_insert
    )
    SELECT count(*) FILTER (WHERE is_insert), count(*) FILTER (WHERE NOT is_insert)
      INTO inserted, updated
      FROM merged;
END
$$;

-- Where each source stands, for `vozagent-sync status` and for dashboards
-- that show the mirror's freshness.
CREATE VIEW vozagent.sync_status AS
SELECT src.source,
       st.api_order,
       st.newest_started_at,
       st.window_offset,
       st.backfill_offset,
       st.last_backfill_at,
       st.last_pass_at,
       coalesce(c.live_calls, 0) AS live_calls,
       coalesce(c.deleted_calls, 0) AS deleted_calls,
       coalesce(c.in_progress_calls, 0) AS in_progress_calls,
       r.started_at AS last_run_started_at,
       r.outcome AS last_run_outcome,
       r.error AS last_run_error
  FROM (SELECT source FROM vozagent.sync_state
        UNION SELECT source FROM vozagent.sync_runs) src
  LEFT JOIN vozagent.sync_state st USING (source)
  LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE deleted_at IS NULL) AS live_calls,
               count(*) FILTER (WHERE deleted_at IS NOT NULL) AS deleted_calls,
               count(*) FILTER (WHERE deleted_at IS NULL
                                  AND call_status = 'in-progress') AS in_progress_calls
          FROM vozagent.calls WHERE source = src.source) c ON true
  LEFT JOIN LATERAL (
        SELECT started_at, outcome, error FROM vozagent.sync_runs
         WHERE source = src.source ORDER BY id DESC LIMIT 1) r ON true;
