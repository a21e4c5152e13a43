-- 004: bounded growth: run history and rejects that the daemon can prune,
-- one reject row per record, and status counters kept as calls change.

-- No write to the mirror between counting it below and the triggers taking
-- over (the migration holds this lock until it commits).
LOCK TABLE vozagent.calls IN SHARE ROW EXCLUSIVE MODE;

-- Per-source counts of the mirror, so that reading the status never counts
-- vozagent.calls. Kept exact by the triggers below, whatever statement writes
-- the calls (the daemon's functions, a person with psql, a future migration).
ALTER TABLE vozagent.sync_state
    ADD COLUMN live_calls bigint NOT NULL DEFAULT 0,
    ADD COLUMN deleted_calls bigint NOT NULL DEFAULT 0,
    ADD COLUMN in_progress_calls bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN vozagent.sync_state.live_calls IS
    'Calls of the source with deleted_at NULL; maintained by triggers on vozagent.calls.';
COMMENT ON COLUMN vozagent.sync_state.deleted_calls IS
    'Calls of the source with deleted_at set; maintained by triggers on vozagent.calls.';
COMMENT ON COLUMN vozagent.sync_state.in_progress_calls IS
    'Live calls of the source whose call_status is in-progress; maintained by triggers.';

-- Adds what a statement changed, per source, to the counters. A source
-- without a sync_state row gets one with its cursor columns NULL, which reads
-- exactly like no row at all (the cursor compare-and-set compares with IS NOT
-- DISTINCT FROM). A statement that changes no count writes nothing here.
CREATE FUNCTION vozagent.calls_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE vozagent.sync_state SET live_calls = 0, deleted_calls = 0, in_progress_calls = 0
         WHERE live_calls <> 0 OR deleted_calls <> 0 OR in_progress_calls <> 0;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO vozagent.sync_state AS s (source, live_calls, deleted_calls, in_progress_calls)
        SELECT source, count(*) FILTER (WHERE deleted_at IS NULL),
               count(*) FILTER (WHERE deleted_at IS NOT NULL),
               count(*) FILTER (WHERE deleted_at IS NULL AND call_status = 'in-progress')
          FROM calls_new GROUP BY source
        ON CONFLICT (source) DO UPDATE SET
            live_calls = s.live_calls + EXCLUDED.live_calls,
            deleted_calls = s.deleted_calls + EXCLUDED.deleted_calls,
            in_progress_calls = s.in_progress_calls + EXCLUDED.in_progress_calls;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE vozagent.sync_state s SET
            live_calls = s.live_calls - d.live,
            deleted_calls = s.deleted_calls - d.deleted,
            in_progress_calls = s.in_progress_calls - d.in_progress
          FROM (SELECT source, count(*) FILTER (WHERE deleted_at IS NULL) AS live,
                       count(*) FILTER (WHERE deleted_at IS NOT NULL) AS deleted,
                       count(*) FILTER (WHERE deleted_at IS NULL
                                          AND call_status = 'in-progress') AS in_progress
                  FROM calls_old GROUP BY source) d
         WHERE s.source = d.source;
    ELSE
        -- an update may move a call between sources, so both sides count
        INSERT INTO vozagent.sync_state AS s (source, live_calls, deleted_calls, in_progress_calls)
        SELECT source, sum(live)::bigint, sum(deleted)::bigint, sum(in_progress)::bigint
          FROM (SELECT source, count(*) FILTER (WHERE deleted_at IS NULL) AS live,
                       count(*) FILTER (WHERE deleted_at IS NOT NULL) AS deleted,
                       count(*) FILTER (WHERE deleted_at IS NULL
                                          AND call_status = 'in-progress') AS in_progress
                  FROM calls_new GROUP BY source
                UNION ALL
                SELECT source, -count(*) FILTER (WHERE deleted_at IS NULL),
                       -count(*) FILTER (WHERE deleted_at IS NOT NULL),
                       -count(*) FILTER (WHERE deleted_at IS NULL
                                           AND call_status = 'in-progress')
                  FROM calls_old GROUP BY source) d
         GROUP BY source
        HAVING sum(live) <> 0 OR sum(deleted) <> 0 OR sum(in_progress) <> 0
        ON CONFLICT (source) DO UPDATE SET
            live_calls = s.live_calls + EXCLUDED.live_calls,
            deleted_calls = s.deleted_calls + EXCLUDED.deleted_calls,
            in_progress_calls = s.in_progress_calls + EXCLUDED.in_progress_calls;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER calls_count_insert AFTER INSERT ON vozagent.calls
    REFERENCING NEW TABLE AS calls_new
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_count();
CREATE TRIGGER calls_count_update AFTER UPDATE ON vozagent.calls
    REFERENCING OLD TABLE AS calls_old NEW TABLE AS calls_new
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_count();
CREATE TRIGGER calls_count_delete AFTER DELETE ON vozagent.calls
    REFERENCING OLD TABLE AS calls_old
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_count();
CREATE TRIGGER calls_count_truncate AFTER TRUNCATE ON vozagent.calls
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_count();

-- The counters start from the mirror as it is.
INSERT INTO vozagent.sync_state AS s (source, live_calls, deleted_calls, in_progress_calls)
SELECT source, count(*) FILTER (WHERE deleted_at IS NULL),
       count(*) FILTER (WHERE deleted_at IS NOT NULL),
       count(*) FILTER (WHERE deleted_at IS NULL AND call_status = 'in-progress')
  FROM vozagent.calls GROUP BY source
ON CONFLICT (source) DO UPDATE SET
    live_calls = EXCLUDED.live_calls,
    deleted_calls = EXCLUDED.deleted_calls,
    in_progress_calls = EXCLUDED.in_progress_calls;

-- The oldest unfinished call of a source is one probe of this small index.
CREATE INDEX calls_unfinished_started_idx ON vozagent.calls (source, call_started_at)
    WHERE call_status = 'in-progress' AND deleted_at IS NULL;
-- The last run of a source, and the pruning of its history.
CREATE INDEX sync_runs_source_id_idx ON vozagent.sync_runs (source, id);

-- Same columns as 002's view; the counts come from sync_state. A source with
-- runs but no sync_state row (its first pass failed before writing anything)
-- is still listed: its name is found by skipping through the run index, one
-- probe per source, instead of reading every run.
CREATE OR REPLACE VIEW vozagent.sync_status AS
WITH RECURSIVE run_sources(source) AS (
    (SELECT source FROM vozagent.sync_runs ORDER BY source LIMIT 1)
    UNION ALL
    SELECT (SELECT r.source FROM vozagent.sync_runs r WHERE r.source > p.source
             ORDER BY r.source LIMIT 1)
      FROM run_sources p WHERE p.source IS NOT NULL
)
SELECT src.source,
       st.api_order,
       st.newest_started_at,
       st.window_offset,
       st.backfill_offset,
       st.last_backfill_at,
       st.last_pass_at,
       coalesce(st.live_calls, 0) AS live_calls,
       coalesce(st.deleted_calls, 0) AS deleted_calls,
       coalesce(st.in_progress_calls, 0) AS in_progress_calls,
       r.started_at AS last_run_started_at,
       r.outcome AS last_run_outcome,
       r.error AS last_run_error,
       (SELECT min(c.call_started_at) FROM vozagent.calls c
         WHERE c.source = src.source AND c.call_status = 'in-progress'
           AND c.deleted_at IS NULL) AS oldest_in_progress_started_at
  FROM (SELECT source FROM vozagent.sync_state
        UNION SELECT source FROM run_sources WHERE source IS NOT NULL) src
  LEFT JOIN vozagent.sync_state st USING (source)
  LEFT JOIN LATERAL (
        SELECT started_at, outcome, error FROM vozagent.sync_runs
         WHERE source = src.source ORDER BY id DESC LIMIT 1) r ON true;

-- Rejects: one row per record instead of one per distinct raw text, so a bad
-- record whose content changes every pass no longer adds a row every pass. A
-- record is known by its id when it has a non-empty string id, else by its
-- position in the listing it was read from (page offset + index in the page).
ALTER TABLE vozagent.rejects
    ADD COLUMN record_id text,
    ADD COLUMN list_position bigint,
    ADD COLUMN times_seen bigint NOT NULL DEFAULT 1,
    ADD COLUMN last_seen_at timestamptz;
COMMENT ON COLUMN vozagent.rejects.record_id IS
    'The record''s string id; NULL when it has none (it is then known by list_position).';
COMMENT ON COLUMN vozagent.rejects.list_position IS
    'Where the record was last read: offset of its page + its index in the page, from 0.';
COMMENT ON COLUMN vozagent.rejects.times_seen IS
    'How many passes rejected this record (rows from before 004: how many copies were merged).';
COMMENT ON COLUMN vozagent.rejects.rejected_at IS 'When the record was first rejected.';
COMMENT ON COLUMN vozagent.rejects.last_seen_at IS 'When a pass last rejected it.';

-- Rows from before: the id comes from the raw text when it is a whole JSON
-- object with a string id; their position in the page was not kept, so a row
-- without an id stays on its own (keyed by its row id) until retention
-- removes it.
CREATE FUNCTION pg_temp.reject_raw_id(raw text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v jsonb;
BEGIN
    v := raw::jsonb;
    IF jsonb_typeof(v -> 'id') = 'string' AND v ->> 'id' <> '' THEN
        RETURN v ->> 'id';
    END IF;
    RETURN NULL;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
UPDATE vozagent.rejects SET record_id = pg_temp.reject_raw_id(raw), last_seen_at = rejected_at;
DROP FUNCTION pg_temp.reject_raw_id(text);

-- Collapse the copies of one record into the one rejected last.
WITH grp AS (
    SELECT id, first_value(id) OVER (w ORDER BY rejected_at DESC, id DESC) AS keep_id,
           count(*) OVER w AS n, min(rejected_at) OVER w AS first_at,
           max(rejected_at) OVER w AS last_at
      FROM vozagent.rejects WHERE record_id IS NOT NULL
    WINDOW w AS (PARTITION BY source, record_id)
), kept AS (
    UPDATE vozagent.rejects r SET times_seen = g.n, rejected_at = g.first_at,
           last_seen_at = g.last_at
      FROM grp g WHERE r.id = g.id AND g.id = g.keep_id AND g.n > 1
)
DELETE FROM vozagent.rejects r USING grp g WHERE r.id = g.id AND g.id <> g.keep_id;

ALTER TABLE vozagent.rejects
    ALTER COLUMN last_seen_at SET NOT NULL,
    ALTER COLUMN last_seen_at SET DEFAULT now(),
    ADD COLUMN reject_key text NOT NULL GENERATED ALWAYS AS (
        CASE WHEN record_id IS NOT NULL THEN 'id ' || record_id
             WHEN list_position IS NOT NULL THEN 'position ' || list_position
             ELSE 'row ' || id END) STORED;
DROP INDEX vozagent.rejects_once_idx;
-- md5: an id may be longer than a btree entry can hold
CREATE UNIQUE INDEX rejects_record_idx ON vozagent.rejects (source, md5(reject_key));
CREATE INDEX rejects_source_seen_idx ON vozagent.rejects (source, last_seen_at);
