-- 007: ready for dashboards: per-source reporting settings, a daily rollup and
-- per-field change history kept by triggers in the transaction that changes the
-- mirror, views for BI tools, and a read-only role to hand out (docs/bi.md).

-- No write to the mirror between filling the new tables from it below and the
-- triggers taking over (the migration holds this lock until it commits).
LOCK TABLE vozagent.calls IN SHARE ROW EXCLUSIVE MODE;

-- Per source: the zone its days and hours are reported in, and whether its
-- changes are recorded. Written by configure_source, which the daemon calls at
-- the start of every pass with its configuration.
ALTER TABLE vozagent.sync_state
    ADD COLUMN report_time_zone text NOT NULL DEFAULT 'UTC',
    ADD COLUMN history boolean NOT NULL DEFAULT true;
COMMENT ON COLUMN vozagent.sync_state.report_time_zone IS
    'IANA zone the source''s call_date, hour_of_day and rollup days are reported in.';
COMMENT ON COLUMN vozagent.sync_state.history IS
    'Whether changes to the source''s calls are recorded in vozagent.call_changes.';

------------------------------------------------------------------------------
-- The daily rollup
------------------------------------------------------------------------------

-- One row per source, day (in the source's report_time_zone), assistant and
-- call type that has at least one live call with a start time. A NULL
-- assistant or call type is a group of its own. Dashboards read it through
-- calls_daily and the views built on it, never scanning vozagent.calls.
CREATE TABLE vozagent.calls_daily_rollup (
    source                      text NOT NULL,
    call_date                   date NOT NULL,
    assistant_id                text,
    call_type                   text,
    calls                       integer NOT NULL,
    completed                   integer NOT NULL,
    failed                      integer NOT NULL,
    in_progress                 integer NOT NULL,
    booked                      integer NOT NULL,
    hot                         integer NOT NULL,
    warm                        integer NOT NULL,
    cold                        integer NOT NULL,
    qualified_completed         integer NOT NULL,   -- completed, and hot or warm
    booked_qualified_completed  integer NOT NULL,   -- that, and booked
    duration_sum                numeric,
    duration_n                  integer NOT NULL,   -- calls with a duration
    duration_median             double precision,
    duration_p90                double precision,
    hour_calls                  integer[] NOT NULL, -- [1] = local hour 0 .. [24] = hour 23
    hour_booked                 integer[] NOT NULL,
    durations                   double precision[] NOT NULL -- sorted, for the percentiles
);
CREATE UNIQUE INDEX calls_daily_rollup_key ON vozagent.calls_daily_rollup
    (source, call_date, assistant_id, call_type) NULLS NOT DISTINCT;
-- groups left empty by a statement, removed at its end
CREATE INDEX calls_daily_rollup_empty_idx ON vozagent.calls_daily_rollup (source)
    WHERE calls = 0;
COMMENT ON TABLE vozagent.calls_daily_rollup IS
    'Live calls per source, day, assistant and call type; kept exact by triggers on vozagent.calls (read it through vozagent.calls_daily).';

-- The zone a source reports in ('UTC' for a source without settings).
CREATE FUNCTION vozagent.source_zone(p_source text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT s.report_time_zone FROM vozagent.sync_state s
                      WHERE s.source = p_source), 'UTC')
$$;

-- A duration as the percentiles take it. numeric holds what double precision
-- cannot (1e309, 1e-400, both valid JSON the mirror stores): such a value
-- becomes an infinity or 0 here, the same way for the row that adds it and the
-- row that removes it, instead of failing the batch.
CREATE FUNCTION vozagent.duration_float(d numeric) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN d > 1e308 THEN 'Infinity'::float8
                WHEN d < -1e308 THEN '-Infinity'::float8
                WHEN abs(d) < 1e-300 THEN 0
                ELSE d::float8 END
$$;

-- Adds rows to the rollup, given column-wise: one element per live call,
-- p_sign +1 for a row that now counts and -1 for one that no longer does.
-- Each touched group's new row is aggregated from its current row and the
-- given rows, without reading vozagent.calls: the counts are sums, the hours
-- 24 sums, and the durations a sorted multiset (value, multiplicity) from
-- which the median and p90 are exact. The caller holds rollup_lock for the
-- sources. Planned once per session: the statement's shape never changes.
CREATE FUNCTION vozagent.rollup_add(p_source text[], p_started timestamptz[],
                                    p_assistant text[], p_type text[], p_status text[],
                                    p_duration numeric[], p_booked boolean[], p_lead text[],
                                    p_sign integer[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (
        SELECT x.source, l.day, x.assistant_id, x.call_type, x.call_status,
               x.duration_seconds, coalesce(x.appointment_booked, false) AS booked,
               x.lead_qualification, x.sign, extract(hour FROM l.local)::int AS hour,
               concat_ws(',', quote_nullable(x.source), l.day, quote_nullable(x.assistant_id),
                         quote_nullable(x.call_type)) COLLATE "C" AS g
          FROM unnest(p_source, p_started, p_assistant, p_type, p_status, p_duration,
                      p_booked, p_lead, p_sign)
                 AS x(source, call_started_at, assistant_id, call_type, call_status,
                      duration_seconds, appointment_booked, lead_qualification, sign)
          LEFT JOIN vozagent.sync_state s ON s.source = x.source,
               LATERAL (SELECT x.call_started_at AT TIME ZONE coalesce(s.report_time_zone, 'UTC'))
                 AS z(local),
               LATERAL (SELECT z.local::date, z.local) AS l(day, local)
    ), k AS (
        SELECT DISTINCT ON (g) g, source, day, assistant_id, call_type FROM x
    ), cur AS (
        SELECT k.g, t.*
          FROM k JOIN vozagent.calls_daily_rollup t
            ON t.source = k.source AND t.call_date = k.day
           AND t.assistant_id IS NOT DISTINCT FROM k.assistant_id
           AND t.call_type IS NOT DISTINCT FROM k.call_type
    ), sums AS (
        SELECT g, sum(calls)::int AS calls, sum(completed)::int AS completed,
               sum(failed)::int AS failed, sum(in_progress)::int AS in_progress,
               sum(booked)::int AS booked, sum(hot)::int AS hot, sum(warm)::int AS warm,
               sum(cold)::int AS cold, sum(qc)::int AS qc, sum(bqc)::int AS bqc,
               sum(duration_sum) AS duration_sum, sum(duration_n)::int AS duration_n
          FROM (SELECT g, calls, completed, failed, in_progress, booked, hot, warm, cold,
                       qualified_completed AS qc, booked_qualified_completed AS bqc,
                       duration_sum, duration_n
                  FROM cur
                UNION ALL
                SELECT g, sign, sign * (call_status IS NOT DISTINCT FROM 'completed')::int,
                       sign * (call_status IS NOT DISTINCT FROM 'failed')::int,
                       sign * (call_status IS NOT DISTINCT FROM 'in-progress')::int,
                       sign * booked::int,
                       sign * (lead_qualification IS NOT DISTINCT FROM 'hot')::int,
                       sign * (lead_qualification IS NOT DISTINCT FROM 'warm')::int,
                       sign * (lead_qualification IS NOT DISTINCT FROM 'cold')::int,
                       sign * coalesce(call_status = 'completed'
                                       AND lead_qualification IN ('hot', 'warm'), false)::int,
                       sign * coalesce(call_status = 'completed'
                                       AND lead_qualification IN ('hot', 'warm') AND booked,
                                       false)::int,
                       coalesce(sign * duration_seconds, 0),
                       sign * (duration_seconds IS NOT NULL)::int
                  FROM x) p
         GROUP BY g
    ), hours AS (
        SELECT g, array_agg(n ORDER BY hour) AS hour_calls, array_agg(b ORDER BY hour) AS hour_booked
          FROM (SELECT g, hour, sum(n)::int AS n, sum(b)::int AS b
                  FROM (SELECT g, (h.i - 1)::int AS hour, h.n, h.b
                          FROM cur, unnest(cur.hour_calls, cur.hour_booked)
                                      WITH ORDINALITY AS h(n, b, i)
                        UNION ALL
                        SELECT g, hour, sign, sign * booked::int FROM x
                        UNION ALL
                        SELECT k.g, hr.i, 0, 0 FROM k, generate_series(0, 23) AS hr(i)) p
                 GROUP BY g, hour) q
         GROUP BY g
    ), durs AS (
        -- the multiset: each value's multiplicity, then the values it leaves
        SELECT g, array_agg(v ORDER BY v) AS durations,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS median,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY v) AS p90
          FROM (SELECT g, v, sum(m) AS m
                  FROM (SELECT g, unnest(durations) AS v, 1 AS m FROM cur
                        UNION ALL
                        SELECT g, vozagent.duration_float(duration_seconds), sign FROM x
                         WHERE duration_seconds IS NOT NULL) p
                 GROUP BY g, v) q,
               generate_series(1, q.m::int)
         GROUP BY g
    )
    INSERT INTO vozagent.calls_daily_rollup AS t
    SELECT k.source, k.day, k.assistant_id, k.call_type, s.calls, s.completed, s.failed,
           s.in_progress, s.booked, s.hot, s.warm, s.cold, s.qc, s.bqc, s.duration_sum,
           s.duration_n, d.median, d.p90, h.hour_calls, h.hour_booked,
           coalesce(d.durations, '{}')
      FROM k JOIN sums s USING (g) JOIN hours h USING (g) LEFT JOIN durs d USING (g)
    ON CONFLICT (source, call_date, assistant_id, call_type) DO UPDATE SET
        calls = EXCLUDED.calls, completed = EXCLUDED.completed, failed = EXCLUDED.failed,
        in_progress = EXCLUDED.in_progress, booked = EXCLUDED.booked, hot = EXCLUDED.hot,
        warm = EXCLUDED.warm, cold = EXCLUDED.cold,
        qualified_completed = EXCLUDED.qualified_completed,
        booked_qualified_completed = EXCLUDED.booked_qualified_completed,
        duration_sum = EXCLUDED.duration_sum, duration_n = EXCLUDED.duration_n,
        duration_median = EXCLUDED.duration_median, duration_p90 = EXCLUDED.duration_p90,
        hour_calls = EXCLUDED.hour_calls, hour_booked = EXCLUDED.hour_booked,
        durations = EXCLUDED.durations;
    DELETE FROM vozagent.calls_daily_rollup WHERE calls = 0;
END
$$;

-- Writers of one source's rollup take turns (a transaction adds to rows
-- another may be adding to): taken by every writer, in source order.
CREATE FUNCTION vozagent.rollup_lock(p_sources text[]) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(1450146386, hashtext(s))  -- 'VozR'
      FROM (SELECT DISTINCT unnest(p_sources) AS s ORDER BY 1) x
$$;

-- What a statement on vozagent.calls changed, added to the rollup: its live
-- rows after (+1) and before (-1). Of an update, only the rows whose reported
-- columns changed count (the mirror never changes an id).
CREATE FUNCTION vozagent.calls_rollup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET enable_nestloop = on SET jit = off AS $$
DECLARE
    a_source text[]; a_started timestamptz[]; a_assistant text[]; a_type text[];
    a_status text[]; a_duration numeric[]; a_booked boolean[]; a_lead text[];
    a_sign integer[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM vozagent.calls_daily_rollup;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT array_agg(source), array_agg(call_started_at), array_agg(assistant_id),
               array_agg(call_type), array_agg(call_status), array_agg(duration_seconds),
               array_agg(appointment_booked), array_agg(lead_qualification), array_agg(1)
          INTO a_source, a_started, a_assistant, a_type, a_status, a_duration, a_booked,
               a_lead, a_sign
          FROM calls_new WHERE deleted_at IS NULL AND call_started_at IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(source), array_agg(call_started_at), array_agg(assistant_id),
               array_agg(call_type), array_agg(call_status), array_agg(duration_seconds),
               array_agg(appointment_booked), array_agg(lead_qualification), array_agg(-1)
          INTO a_source, a_started, a_assistant, a_type, a_status, a_duration, a_booked,
               a_lead, a_sign
          FROM calls_old WHERE deleted_at IS NULL AND call_started_at IS NOT NULL;
    ELSE
        SELECT array_agg(v.source), array_agg(v.call_started_at), array_agg(v.assistant_id),
               array_agg(v.call_type), array_agg(v.call_status), array_agg(v.duration_seconds),
               array_agg(v.appointment_booked), array_agg(v.lead_qualification), array_agg(v.sign)
          INTO a_source, a_started, a_assistant, a_type, a_status, a_duration, a_booked,
               a_lead, a_sign
          FROM calls_old o JOIN calls_new n ON n.id = o.id,
               LATERAL (VALUES (n.source, n.call_started_at, n.assistant_id, n.call_type,
                                n.call_status, n.duration_seconds, n.appointment_booked,
                                n.lead_qualification, 1, n.deleted_at),
                               (o.source, o.call_started_at, o.assistant_id, o.call_type,
                                o.call_status, o.duration_seconds, o.appointment_booked,
                                o.lead_qualification, -1, o.deleted_at))
                 AS v(source, call_started_at, assistant_id, call_type, call_status,
                      duration_seconds, appointment_booked, lead_qualification, sign, deleted_at)
         WHERE v.deleted_at IS NULL AND v.call_started_at IS NOT NULL
           -- a call whose reported columns did not change adds nothing
           AND (o.source, o.call_started_at, o.assistant_id, o.call_type, o.call_status,
                o.duration_seconds, o.appointment_booked, o.lead_qualification,
                o.deleted_at IS NULL)
               IS DISTINCT FROM
               (n.source, n.call_started_at, n.assistant_id, n.call_type, n.call_status,
                n.duration_seconds, n.appointment_booked, n.lead_qualification,
                n.deleted_at IS NULL);
    END IF;
    IF a_source IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM vozagent.rollup_lock(a_source);
    PERFORM vozagent.rollup_add(a_source, a_started, a_assistant, a_type, a_status, a_duration,
                                a_booked, a_lead, a_sign);
    RETURN NULL;
END
$$;

-- Adds every live call of a source (all sources when NULL) to the rollup, a
-- slice of calls at a time.
CREATE FUNCTION vozagent.rollup_add_calls(p_source text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_from text := '';
    v_to text;
BEGIN
    LOOP
        SELECT max(id) INTO v_to
          FROM (SELECT id FROM vozagent.calls
                 WHERE id > v_from AND (p_source IS NULL OR source = p_source)
                 ORDER BY id LIMIT 100000) x;
        EXIT WHEN v_to IS NULL;
        PERFORM vozagent.rollup_add(array_agg(source), array_agg(call_started_at),
                                    array_agg(assistant_id), array_agg(call_type),
                                    array_agg(call_status), array_agg(duration_seconds),
                                    array_agg(appointment_booked), array_agg(lead_qualification),
                                    array_agg(1))
           FROM vozagent.calls
          WHERE id > v_from AND id <= v_to AND (p_source IS NULL OR source = p_source)
            AND deleted_at IS NULL AND call_started_at IS NOT NULL
         HAVING count(*) > 0;
        v_from := v_to;
    END LOOP;
END
$$;

------------------------------------------------------------------------------
-- Change history
------------------------------------------------------------------------------

-- One row per changed top-level field of raw per call per committed batch,
-- written in the transaction that changed the mirror. observed_at is when the
-- mirror saw the change (the transaction's start), not when the vendor made
-- it; a change undone between two passes is never seen.
CREATE TABLE vozagent.call_changes (
    source       text NOT NULL,
    call_id      text NOT NULL,
    run_id       bigint,               -- the sync_runs row of the pass; NULL when not the daemon
    observed_at  timestamptz NOT NULL DEFAULT now(),
    op           text NOT NULL CHECK (op IN ('insert', 'update', 'delete', 'undelete')),
    field        text,                 -- a top-level key of raw; NULL for insert/delete/undelete
    old_value    jsonb,                -- SQL NULL: the key was absent; jsonb null: it was null
    new_value    jsonb
);
COMMENT ON TABLE vozagent.call_changes IS
    'Per-field history of the mirror: one row per changed top-level field of raw, per call, per committed batch (vozagent-sync).';
COMMENT ON COLUMN vozagent.call_changes.observed_at IS
    'When the mirror saw the change (its transaction''s start), not when the vendor made it.';
COMMENT ON COLUMN vozagent.call_changes.op IS
    'insert: the call appeared (one row, no field); update: field changed from old_value to new_value; delete/undelete: the call left or came back to the list.';
-- A call's history (the field rows; insert/delete rows are found by time).
CREATE INDEX call_changes_call_idx ON vozagent.call_changes (call_id, field, observed_at)
    WHERE field IS NOT NULL;
-- Time filters and retention: rows arrive in observed_at order.
CREATE INDEX call_changes_observed_idx ON vozagent.call_changes USING brin (observed_at);

-- The run id the daemon sets with SET LOCAL vozagent.run_id in each batch.
CREATE FUNCTION vozagent.current_run_id() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN v ~ '^[0-9]{1,18}$' THEN v::bigint END
      FROM (SELECT current_setting('vozagent.run_id', true) AS v) s
$$;

-- Records what a statement on vozagent.calls changed, for the sources whose
-- history is on.
CREATE FUNCTION vozagent.calls_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET enable_nestloop = on SET jit = off AS $$
DECLARE
    v_run bigint := vozagent.current_run_id();
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO vozagent.call_changes (source, call_id, run_id, op)
        SELECT n.source, n.id, v_run, 'insert'
          FROM calls_new n
         WHERE NOT EXISTS (SELECT 1 FROM vozagent.sync_state s
                            WHERE s.source = n.source AND NOT s.history);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO vozagent.call_changes (source, call_id, run_id, op)
        SELECT o.source, o.id, v_run, 'delete'
          FROM calls_old o
         WHERE NOT EXISTS (SELECT 1 FROM vozagent.sync_state s
                            WHERE s.source = o.source AND NOT s.history);
    ELSE
        WITH pairs AS (
            SELECT n.source, n.id, o.raw AS old_raw, n.raw AS new_raw,
                   o.deleted_at IS NULL AS was_live, n.deleted_at IS NULL AS is_live
              FROM calls_old o JOIN calls_new n ON n.id = o.id
             WHERE (o.raw IS DISTINCT FROM n.raw
                    OR (o.deleted_at IS NULL) <> (n.deleted_at IS NULL))
               AND NOT EXISTS (SELECT 1 FROM vozagent.sync_state s
                                WHERE s.source = n.source AND NOT s.history)
        )
        INSERT INTO vozagent.call_changes (source, call_id, run_id, op, field, old_value, new_value)
        SELECT p.source, p.id, v_run,
               CASE WHEN p.is_live THEN 'undelete' ELSE 'delete' END, NULL, NULL, NULL
          FROM pairs p WHERE p.was_live <> p.is_live
        UNION ALL
        SELECT p.source, p.id, v_run, 'update', k.field, p.old_raw -> k.field, p.new_raw -> k.field
          FROM pairs p,
               LATERAL (SELECT jsonb_object_keys(CASE WHEN jsonb_typeof(p.old_raw) = 'object'
                                                      THEN p.old_raw ELSE '{}' END)
                        UNION
                        SELECT jsonb_object_keys(CASE WHEN jsonb_typeof(p.new_raw) = 'object'
                                                      THEN p.new_raw ELSE '{}' END)) AS k(field)
         WHERE p.old_raw IS DISTINCT FROM p.new_raw
           AND (p.old_raw -> k.field) IS DISTINCT FROM (p.new_raw -> k.field)
        UNION ALL
        -- raw that is not an object (only a person can store one): the whole value
        SELECT p.source, p.id, v_run, 'update', NULL, p.old_raw, p.new_raw
          FROM pairs p
         WHERE p.old_raw IS DISTINCT FROM p.new_raw
           AND (jsonb_typeof(p.old_raw) <> 'object' OR jsonb_typeof(p.new_raw) <> 'object');
    END IF;
    RETURN NULL;
END
$$;

-- Removes up to p_max rows of the source's history observed before p_before;
-- returns how many. The daemon calls it in batches (change_retention).
CREATE FUNCTION vozagent.prune_changes(p_source text, p_before timestamptz, p_max bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM vozagent.call_changes
     WHERE ctid = ANY (ARRAY(SELECT ctid FROM vozagent.call_changes
                              WHERE source = p_source AND observed_at < p_before
                              LIMIT p_max));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE EXECUTE ON FUNCTION vozagent.prune_changes(text, timestamptz, bigint) FROM PUBLIC;

------------------------------------------------------------------------------
-- Which keys raw holds
------------------------------------------------------------------------------

-- Per source and top-level key of raw: how many live calls have it, and when
-- it was first and last carried (by call start), so that an analyst finds a
-- field the vendor added. Kept by triggers from the rows each statement wrote.
CREATE TABLE vozagent.raw_field_stats (
    source         text NOT NULL,
    field          text NOT NULL,
    calls          bigint NOT NULL,          -- live calls whose raw has the key
    first_call_at  timestamptz,              -- earliest call_started_at of a call stored with it
    last_call_at   timestamptz,              -- latest one (calls since deleted included)
    first_seen_at  timestamptz NOT NULL,     -- when the mirror first stored a call with it
    PRIMARY KEY (source, field)
);
COMMENT ON TABLE vozagent.raw_field_stats IS
    'Top-level keys of vozagent.calls.raw per source; kept by triggers (read it through vozagent.raw_fields).';

-- Counts the live keys a statement wrote (+1) and replaced (-1). The rows of
-- an update that count are those whose raw or liveness changed (the mirror
-- never changes an id). The one statement below reads whichever transition
-- tables the event has.
CREATE FUNCTION vozagent.calls_fields() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET enable_nestloop = on SET jit = off AS $$
DECLARE
    v_rows text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE vozagent.raw_field_stats SET calls = 0 WHERE calls <> 0;
        RETURN NULL;
    END IF;
    v_rows := CASE TG_OP
        WHEN 'INSERT' THEN
            'SELECT n.source, n.raw, n.call_started_at, (n.deleted_at IS NULL)::int AS sign,
                    true AS stored FROM calls_new n'
        WHEN 'DELETE' THEN
            'SELECT o.source, o.raw, o.call_started_at, -(o.deleted_at IS NULL)::int, false
               FROM calls_old o'
        ELSE
            'SELECT n.source, n.raw, n.call_started_at, (n.deleted_at IS NULL)::int, true
               FROM calls_new n JOIN calls_old o ON o.id = n.id
              WHERE o.raw IS DISTINCT FROM n.raw OR o.source IS DISTINCT FROM n.source
                 OR (o.deleted_at IS NULL) <> (n.deleted_at IS NULL)
             UNION ALL
             SELECT o.source, o.raw, o.call_started_at, -(o.deleted_at IS NULL)::int, false
               FROM calls_old o JOIN calls_new n ON n.id = o.id
              WHERE o.raw IS DISTINCT FROM n.raw OR o.source IS DISTINCT FROM n.source
                 OR (o.deleted_at IS NULL) <> (n.deleted_at IS NULL)'
        END;
    -- Rows grouped by their set of keys first: the rows of a batch share a
    -- handful of sets, and joining every row to its keys cost 3x as much.
    EXECUTE format($q$
        WITH g AS (
            SELECT x.source, ARRAY(SELECT jsonb_object_keys(x.raw)) AS keys,
                   sum(x.sign) AS delta,
                   min(x.call_started_at) FILTER (WHERE x.stored) AS first_at,
                   max(x.call_started_at) FILTER (WHERE x.stored) AS last_at,
                   bool_or(x.stored) AS stored
              FROM (%s) AS x(source, raw, call_started_at, sign, stored)
             WHERE jsonb_typeof(x.raw) = 'object'
             GROUP BY 1, 2
        ), d AS (
            SELECT g.source, k.field, sum(g.delta)::bigint AS delta,
                   min(g.first_at) AS first_at, max(g.last_at) AS last_at,
                   bool_or(g.stored) AS stored
              FROM g, unnest(g.keys) AS k(field)
             GROUP BY g.source, k.field
        )
        INSERT INTO vozagent.raw_field_stats AS f
               (source, field, calls, first_call_at, last_call_at, first_seen_at)
        SELECT d.source, d.field, d.delta, d.first_at, d.last_at, now()
          FROM d WHERE d.delta <> 0 OR d.stored
        ON CONFLICT (source, field) DO UPDATE SET
            calls = f.calls + EXCLUDED.calls,
            first_call_at = least(f.first_call_at, EXCLUDED.first_call_at),
            last_call_at = greatest(f.last_call_at, EXCLUDED.last_call_at)
        $q$, v_rows);
    RETURN NULL;
END
$$;

-- AFTER statement triggers: they run in the transaction of the statement that
-- wrote the calls (the daemon's batch, a backfill's deletion marks, a person's
-- psql), so the rollup, the history and the field counts never disagree with
-- the mirror. Their functions run with the owner's rights: the daemon's role
-- needs no rights on these tables.
-- They plan with nested loops allowed even when fired by finish_backfill or
-- backfill_unseen (006), which turn them off for their own anti-joins: a SET
-- of a function lasts through the triggers its statements fire, and the small
-- per-statement joins then took seconds (their cost estimates then also
-- crossed jit_above_cost: compiling them took longer than running them).
CREATE TRIGGER calls_rollup_insert AFTER INSERT ON vozagent.calls
    REFERENCING NEW TABLE AS calls_new
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_rollup();
CREATE TRIGGER calls_rollup_update AFTER UPDATE ON vozagent.calls
    REFERENCING OLD TABLE AS calls_old NEW TABLE AS calls_new
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_rollup();
CREATE TRIGGER calls_rollup_delete AFTER DELETE ON vozagent.calls
    REFERENCING OLD TABLE AS calls_old
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_rollup();
CREATE TRIGGER calls_rollup_truncate AFTER TRUNCATE ON vozagent.calls
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_rollup();

CREATE TRIGGER calls_history_insert AFTER INSERT ON vozagent.calls
    REFERENCING NEW TABLE AS calls_new
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_history();
CREATE TRIGGER calls_history_update AFTER UPDATE ON vozagent.calls
    REFERENCING OLD TABLE AS calls_old NEW TABLE AS calls_new
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_history();
CREATE TRIGGER calls_history_delete AFTER DELETE ON vozagent.calls
    REFERENCING OLD TABLE AS calls_old
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_history();

CREATE TRIGGER calls_fields_insert AFTER INSERT ON vozagent.calls
    REFERENCING NEW TABLE AS calls_new
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_fields();
CREATE TRIGGER calls_fields_update AFTER UPDATE ON vozagent.calls
    REFERENCING OLD TABLE AS calls_old NEW TABLE AS calls_new
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_fields();
CREATE TRIGGER calls_fields_delete AFTER DELETE ON vozagent.calls
    REFERENCING OLD TABLE AS calls_old
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_fields();
CREATE TRIGGER calls_fields_truncate AFTER TRUNCATE ON vozagent.calls
    FOR EACH STATEMENT EXECUTE FUNCTION vozagent.calls_fields();

-- Writes a source's settings (nothing when they are unchanged). A new zone
-- moves calls between days: the source's rollup is rebuilt in the same
-- transaction, and true is returned. The daemon calls it at each pass.
CREATE FUNCTION vozagent.configure_source(p_source text, p_time_zone text, p_history boolean)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_zone text := vozagent.source_zone(p_source);
BEGIN
    -- the common case, every pass: nothing to write (an upsert would still lock the row)
    IF EXISTS (SELECT 1 FROM vozagent.sync_state
                WHERE source = p_source AND report_time_zone = p_time_zone
                  AND history = p_history) THEN
        RETURN false;
    END IF;
    -- the rollup's lock before the sync_state row, in the order every writer
    -- of the source takes them (its rollup trigger, then the cursor)
    PERFORM vozagent.rollup_lock(ARRAY[p_source]);
    IF p_time_zone IS DISTINCT FROM v_zone
       AND NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_time_zone) THEN
        RAISE EXCEPTION 'report_time_zone "%" is not a time zone PostgreSQL knows (see pg_timezone_names)',
            p_time_zone USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO vozagent.sync_state AS s (source, report_time_zone, history)
    VALUES (p_source, p_time_zone, p_history)
    ON CONFLICT (source) DO UPDATE SET
        report_time_zone = EXCLUDED.report_time_zone, history = EXCLUDED.history
    WHERE (s.report_time_zone, s.history) IS DISTINCT FROM
          (EXCLUDED.report_time_zone, EXCLUDED.history);
    IF p_time_zone IS NOT DISTINCT FROM v_zone THEN
        RETURN false;
    END IF;
    DELETE FROM vozagent.calls_daily_rollup WHERE source = p_source;
    PERFORM vozagent.rollup_add_calls(p_source);
    RETURN true;
END
$$;
REVOKE EXECUTE ON FUNCTION vozagent.configure_source(text, text, boolean) FROM PUBLIC;

-- The mirror as it is when this migration runs: the rollup in UTC (the
-- default zone; the daemon's first pass rebuilds a source configured with
-- another), the field counts from every call. History starts now.
SELECT vozagent.rollup_add_calls(NULL);
INSERT INTO vozagent.raw_field_stats (source, field, calls, first_call_at, last_call_at, first_seen_at)
SELECT c.source, k.field, count(*) FILTER (WHERE c.deleted_at IS NULL),
       min(c.call_started_at), max(c.call_started_at), min(c.first_seen_at)
  FROM vozagent.calls c,
       LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof(c.raw) = 'object'
                                      THEN c.raw ELSE '{}' END) AS k(field)
 GROUP BY c.source, k.field;

-- Looking up one contact's calls (vozagent.contacts).
CREATE INDEX calls_contact_idx ON vozagent.calls (contact_id);

------------------------------------------------------------------------------
-- Views for BI tools (docs/bi.md). Days, hours and weekdays are local to the
-- source's report_time_zone; "live" means not marked deleted.
------------------------------------------------------------------------------

CREATE VIEW vozagent.calls_live AS
SELECT c.id, c.source, c.contact_id, c.assistant_id, c.call_type, c.call_status,
       c.duration_seconds, c.call_started_at, c.call_ended_at, c.appointment_booked,
       c.lead_qualification, c.call_intent, c.raw, c.first_seen_at, c.updated_at,
       z.zone AS report_time_zone,
       (c.call_started_at AT TIME ZONE z.zone)::date AS call_date,
       extract(hour FROM c.call_started_at AT TIME ZONE z.zone)::int AS hour_of_day,
       extract(isodow FROM c.call_started_at AT TIME ZONE z.zone)::int AS weekday,
       c.call_status <> 'in-progress' AS is_finished,
       round(c.duration_seconds / 60, 2) AS duration_minutes,
       c.lead_qualification IN ('hot', 'warm') AS is_qualified
  FROM vozagent.calls c
  LEFT JOIN vozagent.sync_state st ON st.source = c.source,
       LATERAL (SELECT coalesce(st.report_time_zone, 'UTC') AS zone) z
 WHERE c.deleted_at IS NULL;
COMMENT ON VIEW vozagent.calls_live IS
    'Calls not marked deleted, with day, hour and weekday in the source''s report_time_zone. Filter on call_started_at (indexed) rather than call_date for speed.';

CREATE VIEW vozagent.calls_daily AS
SELECT r.source, r.call_date, r.assistant_id, r.call_type, r.calls, r.completed, r.failed,
       r.in_progress, r.booked,
       round(r.booked::numeric / r.calls, 4) AS booking_rate,
       r.duration_sum AS total_duration_seconds,
       round(r.duration_sum / nullif(r.duration_n, 0), 2) AS avg_duration_seconds,
       r.duration_median::numeric AS median_duration_seconds,
       r.duration_p90::numeric AS p90_duration_seconds,
       r.hot, r.warm, r.cold
  FROM vozagent.calls_daily_rollup r;
COMMENT ON VIEW vozagent.calls_daily IS
    'Live calls per day (report_time_zone), assistant and call type; booking_rate = booked / calls. Only days with calls.';

CREATE VIEW vozagent.daily_totals AS
WITH d AS (
    SELECT source, call_date, sum(calls)::int AS calls, sum(completed)::int AS completed,
           sum(failed)::int AS failed, sum(in_progress)::int AS in_progress,
           sum(booked)::int AS booked
      FROM vozagent.calls_daily_rollup GROUP BY source, call_date
), span AS (
    -- the source's today, in its zone (its settings are joined here, not read
    -- by a function: a view reads with its owner's rights, a function would not)
    SELECT d.source, min(d.call_date) AS first_day,
           (now() AT TIME ZONE coalesce(min(st.report_time_zone), 'UTC'))::date AS today
      FROM d LEFT JOIN vozagent.sync_state st ON st.source = d.source
     GROUP BY d.source
), days AS (
    -- the days without calls from the first call to today, at most ten years
    -- back (a call dated 0001-01-01 by a vendor's bug would make 740000 of
    -- them); every day with calls, whenever it is
    SELECT s.source, g.day::date AS call_date
      FROM span s,
           generate_series(greatest(s.first_day, s.today - 3653), s.today, interval '1 day')
             AS g(day)
    UNION
    SELECT source, call_date FROM d
)
SELECT x.source, x.call_date,
       coalesce(d.calls, 0) AS calls, coalesce(d.completed, 0) AS completed,
       coalesce(d.failed, 0) AS failed, coalesce(d.in_progress, 0) AS in_progress,
       coalesce(d.booked, 0) AS booked,
       round(d.booked::numeric / nullif(d.calls, 0), 4) AS booking_rate
  FROM days x
  LEFT JOIN d ON d.source = x.source AND d.call_date = x.call_date;
COMMENT ON VIEW vozagent.daily_totals IS
    'Live calls per source and day: every day from the first call (at most ten years back) to today, days without calls as zeros, and any other day with calls.';

CREATE VIEW vozagent.assistant_performance AS
SELECT r.source, r.assistant_id, p.period, p.days AS period_days,
       sum(r.calls)::int AS calls, sum(r.completed)::int AS completed,
       sum(r.failed)::int AS failed, sum(r.booked)::int AS booked,
       round(sum(r.booked)::numeric / sum(r.calls), 4) AS booking_rate,
       sum(r.hot)::int AS hot, sum(r.warm)::int AS warm, sum(r.cold)::int AS cold,
       round(sum(r.hot)::numeric / sum(r.calls), 4) AS hot_share,
       round(sum(r.warm)::numeric / sum(r.calls), 4) AS warm_share,
       round(sum(r.cold)::numeric / sum(r.calls), 4) AS cold_share,
       round(sum(r.duration_sum) / nullif(sum(r.duration_n), 0), 2) AS avg_duration_seconds,
       round(sum(r.failed)::numeric / sum(r.calls), 4) AS failed_share
  FROM (VALUES ('7 days', 7), ('30 days', 30), ('90 days', 90)) AS p(period, days)
 CROSS JOIN vozagent.calls_daily_rollup r
  LEFT JOIN vozagent.sync_state st ON st.source = r.source
 WHERE r.call_date > (now() AT TIME ZONE coalesce(st.report_time_zone, 'UTC'))::date - p.days
   AND r.call_date <= (now() AT TIME ZONE coalesce(st.report_time_zone, 'UTC'))::date
 GROUP BY r.source, r.assistant_id, p.period, p.days;
COMMENT ON VIEW vozagent.assistant_performance IS
    'Per assistant over the last 7, 30 and 90 days (today included, in report_time_zone).';

CREATE VIEW vozagent.lead_funnel AS
SELECT source, call_date, assistant_id,
       sum(calls)::int AS calls, sum(completed)::int AS completed,
       sum(qualified_completed)::int AS qualified,
       sum(booked_qualified_completed)::int AS booked
  FROM vozagent.calls_daily_rollup
 GROUP BY source, call_date, assistant_id;
COMMENT ON VIEW vozagent.lead_funnel IS
    'Nested stages per day and assistant: calls, of which completed, of which hot or warm (qualified), of which booked.';

CREATE VIEW vozagent.contacts AS
SELECT c.source, c.contact_id, min(c.call_started_at) AS first_call_at,
       max(c.call_started_at) AS last_call_at, count(*)::int AS calls,
       bool_or(coalesce(c.appointment_booked, false)) AS booked_ever,
       (ARRAY['cold', 'warm', 'hot'])[max(CASE c.lead_qualification WHEN 'cold' THEN 1
                                            WHEN 'warm' THEN 2 WHEN 'hot' THEN 3 END)]
           AS best_qualification
  FROM vozagent.calls c
 WHERE c.deleted_at IS NULL AND c.contact_id IS NOT NULL
 GROUP BY c.source, c.contact_id;
COMMENT ON VIEW vozagent.contacts IS
    'Per contact: first and last call, calls, whether any call booked, the best qualification reached (hot > warm > cold).';

CREATE VIEW vozagent.calls_hourly AS
SELECT r.source, r.call_date, extract(isodow FROM r.call_date)::int AS weekday,
       (h.i - 1)::int AS hour_of_day, r.assistant_id, r.call_type, h.calls, h.booked
  FROM vozagent.calls_daily_rollup r,
       unnest(r.hour_calls, r.hour_booked) WITH ORDINALITY AS h(calls, booked, i)
 WHERE h.calls > 0;
COMMENT ON VIEW vozagent.calls_hourly IS
    'Live calls per day, local hour, assistant and call type (hours with calls only).';

-- Summed per weekday first (24 + 24 sums over the rollup rows in one pass),
-- then the 7 x 24 cells unnested: unnesting every rollup row's hours first
-- was 3x slower at 1M calls.
CREATE VIEW vozagent.hourly_heatmap AS
WITH w AS (
    SELECT r.source, extract(isodow FROM r.call_date)::int AS weekday,
           ARRAY[sum(r.hour_calls[1]), sum(r.hour_calls[2]), sum(r.hour_calls[3]), sum(r.hour_calls[4]), sum(r.hour_calls[5]), sum(r.hour_calls[6]),
                 sum(r.hour_calls[7]), sum(r.hour_calls[8]), sum(r.hour_calls[9]), sum(r.hour_calls[10]), sum(r.hour_calls[11]), sum(r.hour_calls[12]),
                 sum(r.hour_calls[13]), sum(r.hour_calls[14]), sum(r.hour_calls[15]), sum(r.hour_calls[16]), sum(r.hour_calls[17]), sum(r.hour_calls[18]),
                 sum(r.hour_calls[19]), sum(r.hour_calls[20]), sum(r.hour_calls[21]), sum(r.hour_calls[22]), sum(r.hour_calls[23]), sum(r.hour_calls[24])] AS c,
           ARRAY[sum(r.hour_booked[1]), sum(r.hour_booked[2]), sum(r.hour_booked[3]), sum(r.hour_booked[4]), sum(r.hour_booked[5]), sum(r.hour_booked[6]),
                 sum(r.hour_booked[7]), sum(r.hour_booked[8]), sum(r.hour_booked[9]), sum(r.hour_booked[10]), sum(r.hour_booked[11]), sum(r.hour_booked[12]),
                 sum(r.hour_booked[13]), sum(r.hour_booked[14]), sum(r.hour_booked[15]), sum(r.hour_booked[16]), sum(r.hour_booked[17]), sum(r.hour_booked[18]),
                 sum(r.hour_booked[19]), sum(r.hour_booked[20]), sum(r.hour_booked[21]), sum(r.hour_booked[22]), sum(r.hour_booked[23]), sum(r.hour_booked[24])] AS b
      FROM vozagent.calls_daily_rollup r
     GROUP BY r.source, extract(isodow FROM r.call_date)::int
)
SELECT w.source, w.weekday, (h.i - 1)::int AS hour_of_day, h.calls::int AS calls,
       h.booked::int AS booked, round(h.booked::numeric / h.calls, 4) AS booking_rate
  FROM w, unnest(w.c, w.b) WITH ORDINALITY AS h(calls, booked, i)
 WHERE h.calls > 0;
COMMENT ON VIEW vozagent.hourly_heatmap IS
    'All live calls by ISO weekday (1 = Monday) and local hour; for a time range use calls_hourly.';

CREATE VIEW vozagent.sync_freshness AS
SELECT s.source, s.last_pass_at AS last_success_at,
       round((extract(epoch FROM now() - s.last_pass_at) / 60)::numeric, 1) AS minutes_since,
       s.live_calls, s.in_progress_calls, st.newest_started_at AS newest_call_at,
       s.last_run_outcome,
       (SELECT r.error FROM vozagent.sync_runs r
         WHERE r.source = s.source AND r.outcome = 'failed'
           AND (s.last_pass_at IS NULL OR r.started_at > s.last_pass_at)
         ORDER BY r.id DESC LIMIT 1) AS last_error
  FROM vozagent.sync_status s
  LEFT JOIN vozagent.sync_state st USING (source);
-- sync_freshness' last error without reading back through every run of the
-- retention window: only failed runs are indexed.
CREATE INDEX sync_runs_failed_idx ON vozagent.sync_runs (source, id) WHERE outcome = 'failed';
COMMENT ON VIEW vozagent.sync_freshness IS
    'Per source: when the last pass succeeded and how long ago, live rows, and the error of a failed pass since.';

CREATE VIEW vozagent.raw_fields AS
SELECT f.source, f.field, f.calls,
       round(f.calls::numeric / nullif(s.live_calls, 0), 4) AS share,
       f.first_call_at, f.last_call_at, f.first_seen_at,
       f.field IN ('id', 'contact_id', 'assistant_id', 'call_type', 'call_status',
                   'duration_seconds', 'call_started_at', 'call_ended_at',
                   'appointment_booked', 'lead_qualification', 'call_intent') AS is_column
  FROM vozagent.raw_field_stats f
  LEFT JOIN vozagent.sync_state s USING (source)
 WHERE f.calls > 0;
COMMENT ON VIEW vozagent.raw_fields IS
    'Top-level keys of raw among live calls: how many carry each, when first and last carried; is_column = already a typed column.';

CREATE VIEW vozagent.call_status_durations AS
SELECT ch.source, ch.call_id, c.assistant_id, c.call_started_at,
       coalesce((SELECT max(p.observed_at) FROM vozagent.call_changes p
                  WHERE p.call_id = ch.call_id AND p.field = 'call_status'
                    AND p.observed_at < ch.observed_at), c.first_seen_at) AS in_progress_from,
       ch.observed_at AS in_progress_until,
       ch.new_value #>> '{}' AS final_status,
       ch.observed_at - coalesce((SELECT max(p.observed_at) FROM vozagent.call_changes p
                                   WHERE p.call_id = ch.call_id AND p.field = 'call_status'
                                     AND p.observed_at < ch.observed_at), c.first_seen_at)
           AS observed_duration,
       false AS still_in_progress
  FROM vozagent.call_changes ch
  JOIN vozagent.calls c ON c.id = ch.call_id
 WHERE ch.field = 'call_status' AND ch.old_value = '"in-progress"'
UNION ALL
SELECT c.source, c.id, c.assistant_id, c.call_started_at, f.since, NULL, NULL,
       now() - f.since, true
  FROM vozagent.calls c,
       LATERAL (SELECT coalesce((SELECT max(p.observed_at) FROM vozagent.call_changes p
                                  WHERE p.call_id = c.id AND p.field = 'call_status'),
                                c.first_seen_at) AS since) f
 WHERE c.call_status = 'in-progress' AND c.deleted_at IS NULL;
COMMENT ON VIEW vozagent.call_status_durations IS
    'Each spell a call spent in progress as the mirror observed it (from first seen or the change into in-progress, to the change out of it); still_in_progress rows end now.';

CREATE VIEW vozagent.lead_upgrades AS
SELECT ch.source, ch.call_id, c.contact_id, c.assistant_id, ch.observed_at, ch.run_id,
       ch.old_value #>> '{}' AS from_qualification,
       ch.new_value #>> '{}' AS to_qualification,
       coalesce(CASE ch.new_value #>> '{}' WHEN 'cold' THEN 1 WHEN 'warm' THEN 2
                                           WHEN 'hot' THEN 3 END, 0)
       > coalesce(CASE ch.old_value #>> '{}' WHEN 'cold' THEN 1 WHEN 'warm' THEN 2
                                             WHEN 'hot' THEN 3 END, 0) AS is_upgrade
  FROM vozagent.call_changes ch
  LEFT JOIN vozagent.calls c ON c.id = ch.call_id
 WHERE ch.field = 'lead_qualification';
COMMENT ON VIEW vozagent.lead_upgrades IS
    'Every change of a call''s lead_qualification the mirror observed; is_upgrade when it rose (hot > warm > cold > none).';

------------------------------------------------------------------------------
-- The role to hand out to dashboards: the views and the history, nothing else.
------------------------------------------------------------------------------
-- What the reader may read. A later migration that adds a view for it
-- replaces this function and calls it again.
CREATE FUNCTION vozagent.grant_reader() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    GRANT USAGE ON SCHEMA vozagent TO vozagent_reader;
    GRANT SELECT ON vozagent.calls_live, vozagent.calls_daily, vozagent.daily_totals,
                    vozagent.assistant_performance, vozagent.lead_funnel, vozagent.contacts,
                    vozagent.calls_hourly, vozagent.hourly_heatmap, vozagent.sync_freshness,
                    vozagent.raw_fields, vozagent.call_status_durations,
                    vozagent.lead_upgrades, vozagent.call_changes
        TO vozagent_reader;
END
$$;
REVOKE EXECUTE ON FUNCTION vozagent.grant_reader() FROM PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vozagent_reader') THEN
        BEGIN
            CREATE ROLE vozagent_reader NOLOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'cannot create the role vozagent_reader: the migrating role may not create roles; an administrator can run docs/reader-role.sql';
            RETURN;
        END;
    END IF;
    PERFORM vozagent.grant_reader();
END
$$;
