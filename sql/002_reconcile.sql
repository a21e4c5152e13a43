-- 002: reconciliation and drift-proof resumption.

-- Ids a backfill has seen so far, per source. Filled in the same transaction
-- as each page, so an interrupted backfill resumes with what it had seen; when
-- the backfill completes, calls of the source that are not in it are marked
-- deleted, and the set is emptied. A logged table on purpose: after a crash
-- it must still hold what the committed pages saw.
CREATE TABLE vozagent.backfill_seen (
    source  text NOT NULL,
    id      text NOT NULL,
    PRIMARY KEY (source, id)
);

-- The last ids of the last committed backfill page: a resumed backfill checks
-- that they are still where it left them before going on (offset drift).
ALTER TABLE vozagent.sync_state ADD COLUMN backfill_anchor text[];

ALTER TABLE vozagent.sync_runs ADD COLUMN marked_deleted bigint NOT NULL DEFAULT 0;
ALTER TABLE vozagent.sync_runs ADD COLUMN drift_rereads integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN vozagent.sync_runs.drift_rereads IS
    'Pages read again because the list shifted under the pass (offset drift).';

DROP FUNCTION vozagent.merge_stage(text);

-- As in 001, plus: during a backfill, remember every id of the page.
CREATE FUNCTION vozagent.merge_stage(p_source text, p_backfill boolean,
                                     OUT inserted bigint, OUT updated bigint)
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

    IF p_backfill THEN
        INSERT INTO vozagent.backfill_seen (source, id)
        SELECT p_source, s.id FROM pg_temp.calls_stage s
        ON CONFLICT DO NOTHING;
    END IF;
END
$$;

-- A backfill has listed everything: calls of the source it did not see are
-- no longer listed by the API. Mark them (rows are never deleted), forget the
-- seen set, and say how many were marked.
CREATE FUNCTION vozagent.finish_backfill(p_source text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    marked bigint;
BEGIN
    -- The set was just filled: without fresh statistics the planner can pick
    -- a nested loop over it that is quadratic in the size of the mirror.
    ANALYZE vozagent.backfill_seen;
    UPDATE vozagent.calls c SET deleted_at = now()
     WHERE c.source = p_source AND c.deleted_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM vozagent.backfill_seen s
                        WHERE s.source = p_source AND s.id = c.id);
    GET DIAGNOSTICS marked = ROW_COUNT;
    DELETE FROM vozagent.backfill_seen WHERE source = p_source;
    RETURN marked;
END
$$;

-- 001's view, plus the unfinished calls the incremental passes track.
CREATE OR REPLACE VIEW vozagent.sync_status AS
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
       r.error AS last_run_error,
       c.oldest_in_progress_started_at
  FROM (SELECT source FROM vozagent.sync_state
        UNION SELECT source FROM vozagent.sync_runs) src
  LEFT JOIN vozagent.sync_state st USING (source)
  LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE deleted_at IS NULL) AS live_calls,
               count(*) FILTER (WHERE deleted_at IS NOT NULL) AS deleted_calls,
               count(*) FILTER (WHERE deleted_at IS NULL
                                  AND call_status = 'in-progress') AS in_progress_calls,
               min(call_started_at) FILTER (WHERE deleted_at IS NULL
                                  AND call_status = 'in-progress') AS oldest_in_progress_started_at
          FROM vozagent.calls WHERE source = src.source) c ON true
  LEFT JOIN LATERAL (
        SELECT started_at, outcome, error FROM vozagent.sync_runs
         WHERE source = src.source ORDER BY id DESC LIMIT 1) r ON true;

-- The newest call mirrored when the last complete pass started. The next
-- pass re-reads from `lookback` before it, so a call that arrived late while
-- a pass was paging (behind its position) is still inside the next window.
ALTER TABLE vozagent.sync_state ADD COLUMN window_base_at timestamptz;
