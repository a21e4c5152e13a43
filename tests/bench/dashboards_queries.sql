-- dashboards_queries.sql: each view's typical dashboard query, as a Grafana
-- panel or an analyst would write it (bench_dashboards.sh times each one).
-- A query starts at its "-- name:" line and ends at the line ending in ";".
-- psql variables: :'source', :'assistant' (an assistant of average volume),
-- :'contact' (the contact with the most calls).

-- name: calls_daily_30d_assistant
-- what: calls per day of one assistant, last 30 days (rollup)
SELECT call_date, sum(calls) AS calls, sum(completed) AS completed, sum(failed) AS failed,
       sum(booked) AS booked, sum(booked)::numeric / nullif(sum(calls), 0) AS booking_rate
  FROM vozagent.calls_daily
 WHERE source = :'source' AND assistant_id = :'assistant' AND call_date > current_date - 30
 GROUP BY call_date ORDER BY call_date;

-- name: calls_live_30d_assistant
-- what: the same from the live calls, filtered on call_started_at (Grafana's time filter)
SELECT call_date, count(*) AS calls, count(*) FILTER (WHERE call_status = 'completed') AS completed,
       count(*) FILTER (WHERE appointment_booked) AS booked, avg(duration_seconds) AS avg_duration
  FROM vozagent.calls_live
 WHERE source = :'source' AND assistant_id = :'assistant'
   AND call_started_at >= now() - interval '30 days'
 GROUP BY call_date ORDER BY call_date;

-- name: calls_live_30d_assistant_by_date
-- what: the same filtered on the derived call_date instead (what an analyst may write)
SELECT call_date, count(*) AS calls, count(*) FILTER (WHERE call_status = 'completed') AS completed,
       count(*) FILTER (WHERE appointment_booked) AS booked, avg(duration_seconds) AS avg_duration
  FROM vozagent.calls_live
 WHERE source = :'source' AND assistant_id = :'assistant' AND call_date > current_date - 30
 GROUP BY call_date ORDER BY call_date;

-- name: daily_totals_12m
-- what: every day of the last 12 months, days without calls included
SELECT call_date, calls, completed, failed, in_progress, booked, booking_rate
  FROM vozagent.daily_totals
 WHERE source = :'source' AND call_date > current_date - 365
 ORDER BY call_date;

-- name: calls_daily_12m_by_status
-- what: calls per day by status, last 12 months, all assistants (rollup)
SELECT call_date, sum(completed) AS completed, sum(failed) AS failed,
       sum(in_progress) AS in_progress, sum(booked) AS booked
  FROM vozagent.calls_daily
 WHERE source = :'source' AND call_date > current_date - 365
 GROUP BY call_date ORDER BY call_date;

-- name: hourly_heatmap
-- what: weekday x hour, all live calls
SELECT weekday, hour_of_day, calls, booked, booking_rate
  FROM vozagent.hourly_heatmap
 WHERE source = :'source'
 ORDER BY weekday, hour_of_day;

-- name: calls_hourly_90d
-- what: weekday x hour over the last 90 days (rollup's hour arrays)
SELECT weekday, hour_of_day, sum(calls) AS calls, sum(booked) AS booked
  FROM vozagent.calls_hourly
 WHERE source = :'source' AND call_date > current_date - 90
 GROUP BY weekday, hour_of_day ORDER BY weekday, hour_of_day;

-- name: lead_funnel_30d
-- what: the funnel per assistant, last 30 days
SELECT assistant_id, sum(calls) AS calls, sum(completed) AS completed,
       sum(qualified) AS qualified, sum(booked) AS booked
  FROM vozagent.lead_funnel
 WHERE source = :'source' AND call_date > current_date - 30
 GROUP BY assistant_id ORDER BY calls DESC;

-- name: assistant_performance_30d
-- what: the assistants' table, last 30 days
SELECT assistant_id, calls, booking_rate, hot_share, warm_share, cold_share,
       avg_duration_seconds, failed_share
  FROM vozagent.assistant_performance
 WHERE source = :'source' AND period = '30 days'
 ORDER BY booking_rate DESC NULLS LAST;

-- name: assistant_performance_all
-- what: every period at once (the whole view)
SELECT * FROM vozagent.assistant_performance WHERE source = :'source';

-- name: contacts_one
-- what: one contact's card (the contact with the most calls)
SELECT contact_id, first_call_at, last_call_at, calls, booked_ever, best_qualification
  FROM vozagent.contacts
 WHERE source = :'source' AND contact_id = :'contact';

-- name: sync_freshness
-- what: the freshness panel
SELECT source, last_success_at, minutes_since, live_calls, in_progress_calls, newest_call_at,
       last_run_outcome, last_error
  FROM vozagent.sync_freshness;

-- name: raw_fields
-- what: the keys of raw, most frequent first
SELECT field, calls, share, first_call_at, last_call_at, first_seen_at, is_column
  FROM vozagent.raw_fields
 WHERE source = :'source'
 ORDER BY calls DESC;

-- name: call_status_durations_7d
-- what: in-progress time of the last 7 days' calls, longest first
SELECT call_id, assistant_id, call_started_at, in_progress_from, in_progress_until,
       final_status, observed_duration, still_in_progress
  FROM vozagent.call_status_durations
 WHERE source = :'source' AND call_started_at >= now() - interval '7 days'
 ORDER BY observed_duration DESC
 LIMIT 100;

-- name: call_status_durations_7d_by_assistant
-- what: the same summed per assistant
SELECT assistant_id, count(*) AS calls, avg(observed_duration) AS avg_in_progress,
       count(*) FILTER (WHERE still_in_progress) AS still
  FROM vozagent.call_status_durations
 WHERE source = :'source' AND call_started_at >= now() - interval '7 days'
 GROUP BY assistant_id ORDER BY calls DESC;

-- name: lead_upgrades_30d
-- what: re-qualifications per day, last 30 days
SELECT date_trunc('day', observed_at) AS day, count(*) AS changes,
       count(*) FILTER (WHERE is_upgrade) AS upgrades
  FROM vozagent.lead_upgrades
 WHERE source = :'source' AND observed_at >= now() - interval '30 days'
 GROUP BY 1 ORDER BY 1;
