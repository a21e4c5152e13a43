-- dashboards_load.sql: a realistic call log of :calls calls for source 'bench',
-- written into a migrated database as its owner (bench_dashboards.sh runs it
-- with psql -v calls=N -v days=D -v tz=ZONE). Deterministic (setseed).
--
-- The calls go into vozagent.calls one day per statement (~2500 rows a
-- statement at 1M calls over 13 months, about the daemon's batch_rows), each
-- statement its own transaction, in the order of time, as a backfill writes
-- them: the BI triggers keep the rollup and the raw field statistics as they
-- would for the daemon. The history is off for the source meanwhile and
-- written afterwards by SQL: its triggers would stamp every row with the
-- load's now(), and the views over it filter by observed_at.
--
-- The mix: 13 months to today (the report zone's), weekdays ~2.5x weekend
-- days, 40% more calls a day at the end than at the start; 90% of calls
-- between 08:00 and 20:00 local (peak early afternoon), 10% at any hour;
-- 12 assistants, the busiest ~8x the quietest; 60% inbound; finished calls
-- 85% completed, 15% failed; in progress: 30% of the last hour's calls and
-- 1.5% of all (stuck); 2% soft-deleted; leads hot/warm/cold 20/35/45% of the
-- 70% qualified completed calls, 15% JSON null, 15% absent; booking by lead;
-- 250000 contacts, the most frequent ~250 calls; a 'sentiment' key in raw
-- only in the last 60 days (a field the vendor added). 12% of finished calls
-- were first seen in progress (history: the change to their final state),
-- 3% of qualified calls were re-qualified later (lead_upgrades).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

SELECT setseed(0.4242);

DROP SCHEMA IF EXISTS bench_gen CASCADE;
CREATE SCHEMA bench_gen;

-- The source's settings, as configure_source would write them; history off for the load.
INSERT INTO vozagent.sync_state (source, report_time_zone, history)
VALUES ('bench', :'tz', false)
ON CONFLICT (source) DO UPDATE SET report_time_zone = EXCLUDED.report_time_zone, history = false;

CREATE TABLE bench_gen.params AS
SELECT now() AS t_now, :'tz'::text AS tz, (now() AT TIME ZONE :'tz')::date AS today,
       :calls::bigint AS calls, :days::int AS days;

-- How many calls each day holds.
CREATE TABLE bench_gen.days AS
WITH d AS (
    SELECT g::date AS day, row_number() OVER (ORDER BY g) AS i
      FROM bench_gen.params p, generate_series(p.today - p.days, p.today, interval '1 day') g
), w AS (
    SELECT d.day,
           CASE extract(isodow FROM d.day) WHEN 6 THEN 0.45 WHEN 7 THEN 0.3 ELSE 1.0 END
           * (0.8 + 0.4 * d.i / (p.days + 1))
           * (0.85 + 0.3 * random())
           * CASE WHEN d.day = p.today
                  THEN extract(epoch FROM p.t_now - (p.today::timestamp AT TIME ZONE p.tz)) / 86400
                  ELSE 1 END AS w
      FROM d, bench_gen.params p
), n AS (
    SELECT day, round(p.calls * w / sum(w) OVER ())::bigint AS n FROM w, bench_gen.params p
)
SELECT day, n, sum(n) OVER (ORDER BY day) - n AS first_pos FROM n;
-- rounding: the busiest day takes the difference
UPDATE bench_gen.days SET n = n + (SELECT p.calls - sum(n) FROM bench_gen.days, bench_gen.params p GROUP BY p.calls)
 WHERE day = (SELECT day FROM bench_gen.days ORDER BY n DESC LIMIT 1);
UPDATE bench_gen.days d SET first_pos = s.first_pos
  FROM (SELECT day, sum(n) OVER (ORDER BY day) - n AS first_pos FROM bench_gen.days) s
 WHERE s.day = d.day;

-- Every call, in the shape the daemon stores them, generated in one statement
-- (planned once) into a staging table that the day statements below read.
CREATE UNLOGGED TABLE bench_gen.src AS
-- MATERIALIZED: inlined, each step would copy the previous one's expressions
-- into every use of its columns, exponentially.
WITH p AS (SELECT * FROM bench_gen.params),
d AS (
    SELECT dd.day AS p_day, dd.first_pos + k AS pos, random() AS u_h, random() AS u_h2, random() AS u_hs,
           random() AS u_m, random() AS u_a, random() AS u_t, random() AS u_s, random() AS u_d,
           random() AS u_b, random() AS u_l, random() AS u_l2, random() AS u_i, random() AS u_i2,
           random() AS u_c, random() AS u_del, random() AS u_del2, random() AS u_seen,
           random() AS u_ip
      FROM bench_gen.days dd, generate_series(1, dd.n) k
), s AS MATERIALIZED (
    SELECT d.*, p.t_now,
           CASE WHEN p_day = p.today
                THEN (p_day::timestamp AT TIME ZONE p.tz)
                     + u_m * (p.t_now - interval '2 minutes' - (p_day::timestamp AT TIME ZONE p.tz))
                ELSE (p_day + make_interval(hours => CASE WHEN u_hs < 0.1 THEN floor(u_h * 24)::int
                                                        ELSE 8 + floor(6 * (u_h + u_h2))::int END)
                      + u_m * interval '1 hour') AT TIME ZONE p.tz
           END AS started,
           md5('assistant' || floor(12 * power(u_a, 1.6))::int)::uuid::text AS asst,
           md5('contact' || floor(250000 * power(u_c, 1.5))::int)::uuid::text AS contact,
           CASE WHEN u_t < 0.6 THEN 'inbound' ELSE 'outbound' END AS ctype,
           CASE WHEN u_i < 0.6 THEN (ARRAY['sales', 'support', 'billing', 'appointment',
                'information', 'complaint', 'renewal', 'other'])[1 + floor(u_i2 * 8)::int] END AS intent
      FROM d, p
), st AS MATERIALIZED (
    SELECT s.*,
           CASE WHEN (started > t_now - interval '1 hour' AND u_ip < 0.3) OR u_ip < 0.015
                THEN 'in-progress'
                WHEN u_s < 0.15 THEN 'failed' ELSE 'completed' END AS status
      FROM s
), f AS MATERIALIZED (
    SELECT st.*,
           CASE status WHEN 'completed' THEN round((15 + -ln(1 - u_d) * 170)::numeric, 1)
                       WHEN 'failed' THEN floor(u_d * 20)::numeric END AS dur,
           CASE WHEN status = 'completed' AND u_l < 0.7
                THEN CASE WHEN u_l2 < 0.2 THEN 'hot' WHEN u_l2 < 0.55 THEN 'warm' ELSE 'cold' END
                WHEN status = 'failed' AND u_l < 0.2 THEN 'cold' END AS lead,
           -- the key: 'v' a value, 'n' JSON null, 'a' absent
           CASE WHEN status = 'completed' THEN CASE WHEN u_l < 0.7 THEN 'v' WHEN u_l < 0.85 THEN 'n' ELSE 'a' END
                WHEN status = 'failed' THEN CASE WHEN u_l < 0.2 THEN 'v' ELSE 'a' END
                ELSE CASE WHEN u_l < 0.3 THEN 'n' ELSE 'a' END END AS lead_key
      FROM st
), g AS MATERIALIZED (
    SELECT f.*,
           CASE WHEN status = 'in-progress' THEN NULL
                WHEN status = 'failed' THEN false
                ELSE u_b < CASE lead WHEN 'hot' THEN 0.55 WHEN 'warm' THEN 0.3 WHEN 'cold' THEN 0.06
                                     ELSE 0.1 END END AS booked,
           started + dur * interval '1 second' AS ended,
           md5('call' || pos)::uuid::text AS cid,
           -- first seen: in progress (all that are, 12% of the finished ones) or finished
           status <> 'in-progress' AND u_seen < 0.12 AS seen_in_progress
      FROM f
), h AS MATERIALIZED (
    SELECT g.*,
           least(t_now, CASE WHEN status = 'in-progress' THEN started + (30 + u_seen * 60) * interval '1 second'
                             WHEN seen_in_progress THEN started + least(dur / 2, 60) * interval '1 second'
                             ELSE ended + (5 + u_seen * 300) * interval '1 second' END) AS seen,
           CASE WHEN u_del < 0.02 THEN least(t_now, started + u_del2 * interval '30 days') END AS deleted
      FROM g
)
SELECT p_day AS day, cid AS id, contact AS contact_id, asst AS assistant_id, ctype AS call_type,
       status AS call_status, dur AS duration_seconds, started AS call_started_at,
       ended AS call_ended_at, booked AS appointment_booked, lead AS lead_qualification,
       intent AS call_intent,
       jsonb_build_object('id', cid, 'contact_id', contact, 'assistant_id', asst, 'call_type', ctype,
                          'call_status', status,
                          'call_started_at', to_char(started AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
       || CASE WHEN dur IS NULL THEN '{"duration_seconds": null}'::jsonb
               ELSE jsonb_build_object('duration_seconds', dur,
                        'call_ended_at', to_char(ended AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')) END
       || CASE WHEN booked IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('appointment_booked', booked) END
       || CASE lead_key WHEN 'v' THEN jsonb_build_object('lead_qualification', lead)
                        WHEN 'n' THEN '{"lead_qualification": null}'::jsonb ELSE '{}'::jsonb END
       || CASE WHEN intent IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('call_intent', intent) END
       || jsonb_build_object('metadata', jsonb_build_object('campaign', 'c-' || (pos % 17),
                                                            'channel', CASE WHEN u_t < 0.6 THEN 'phone' ELSE 'dialer' END),
                             'recording_url', 'https://recordings.example.com/' || cid || '.mp3')
       || CASE WHEN started > t_now - interval '60 days' AND dur IS NOT NULL
               THEN jsonb_build_object('sentiment', round(u_d::numeric, 3)) ELSE '{}'::jsonb END AS raw,
       'bench'::text AS source, seen AS first_seen_at,
       CASE WHEN seen_in_progress THEN least(t_now, ended + (5 + u_seen * 300) * interval '1 second')
            ELSE seen END AS updated_at,
       deleted AS deleted_at
  FROM h;
CREATE INDEX ON bench_gen.src (day);

-- One statement, one transaction per day, oldest first.
SELECT format('INSERT INTO vozagent.calls (id, contact_id, assistant_id, call_type, call_status,
                   duration_seconds, call_started_at, call_ended_at, appointment_booked,
                   lead_qualification, call_intent, raw, source, first_seen_at, updated_at,
                   deleted_at)
               SELECT id, contact_id, assistant_id, call_type, call_status,
                   duration_seconds, call_started_at, call_ended_at, appointment_booked,
                   lead_qualification, call_intent, raw, source, first_seen_at, updated_at,
                   deleted_at
                 FROM bench_gen.src WHERE day = %L ORDER BY call_started_at', day)
  FROM bench_gen.days WHERE n > 0 ORDER BY day
\gexec

-- The daemon's passes: one every 5 minutes, 1% failed; runs older than the
-- default retention (90 days) pruned. Ids count passes from the first day, so
-- a history row's run_id is the pass that saw it.
INSERT INTO vozagent.sync_runs (id, source, mode, started_at, finished_at, requests, pages,
                                records_seen, inserted, updated, outcome, error)
SELECT i, 'bench', 'incremental', t, t + interval '2 seconds', 3, 2, 40, 3, 2,
       CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'ok' END,
       CASE WHEN i % 100 = 0 THEN 'GET /v1/calls: HTTP 503 (after 5 attempts)' END
  FROM bench_gen.params p,
       LATERAL (SELECT (p.today - p.days)::timestamp AT TIME ZONE p.tz AS t0) z,
       LATERAL generate_series(1, (extract(epoch FROM p.t_now - z.t0) / 300)::bigint) i,
       LATERAL (SELECT z.t0 + (i - 1) * interval '5 minutes' AS t) tt
 WHERE t > p.t_now - interval '90 days' AND t + interval '2 seconds' < p.t_now;
SELECT setval(pg_get_serial_sequence('vozagent.sync_runs', 'id'), max(id)) FROM vozagent.sync_runs;

CREATE FUNCTION bench_gen.run_of(p_t timestamptz) RETURNS bigint LANGUAGE sql STABLE AS $f$
    SELECT 1 + floor(extract(epoch FROM p_t - ((p.today - p.days)::timestamp AT TIME ZONE p.tz)) / 300)::bigint
      FROM bench_gen.params p
$f$;

-- The history the triggers would have written, observed when the mirror saw
-- each change, in one statement so that the rows lie in observed_at order as
-- the daemon's batches append them (call_changes' BRIN index relies on it).
INSERT INTO vozagent.call_changes (source, call_id, run_id, observed_at, op, field, old_value, new_value)
SELECT source, call_id, bench_gen.run_of(observed_at), observed_at, op, field, old_value, new_value
  FROM (
        SELECT source, id AS call_id, first_seen_at AS observed_at, 'insert' AS op,
               NULL::text AS field, NULL::jsonb AS old_value, NULL::jsonb AS new_value
          FROM vozagent.calls
        UNION ALL
        -- first seen in progress, finished a pass later
        SELECT c.source, c.id, c.updated_at, 'update', v.field, v.old, v.new
          FROM vozagent.calls c,
               LATERAL (VALUES ('call_status', '"in-progress"'::jsonb, c.raw -> 'call_status'),
                               ('duration_seconds', 'null'::jsonb, c.raw -> 'duration_seconds'),
                               ('call_ended_at', NULL, c.raw -> 'call_ended_at'),
                               ('appointment_booked', NULL, c.raw -> 'appointment_booked'),
                               ('lead_qualification', NULL, c.raw -> 'lead_qualification'),
                               ('sentiment', NULL, c.raw -> 'sentiment')) v(field, old, new)
         WHERE c.call_status <> 'in-progress' AND c.first_seen_at < c.call_ended_at
           AND v.new IS NOT NULL
        UNION ALL
        -- re-qualified after a follow-up, 1 to 14 days later
        SELECT source, id, t, 'update', 'lead_qualification',
               CASE WHEN lead_qualification = 'hot' AND random() < 0.5 THEN '"warm"'::jsonb
                    ELSE '"cold"'::jsonb END,
               to_jsonb(lead_qualification)
          FROM (SELECT c.*, c.call_ended_at + (1 + random() * 13) * interval '1 day' AS t
                  FROM vozagent.calls c
                 WHERE c.lead_qualification IN ('hot', 'warm') AND random() < 0.03) x
         WHERE t < now()
        UNION ALL
        -- deleted by a reconciliation
        SELECT source, id, deleted_at, 'delete', NULL, NULL, NULL
          FROM vozagent.calls WHERE deleted_at IS NOT NULL
       ) h
 ORDER BY observed_at;

UPDATE vozagent.sync_state s
   SET history = true, newest_started_at = (SELECT max(call_started_at) FROM vozagent.calls),
       last_pass_at = (SELECT max(finished_at) FROM vozagent.sync_runs WHERE outcome = 'ok')
 WHERE source = 'bench';

DROP SCHEMA bench_gen CASCADE;
