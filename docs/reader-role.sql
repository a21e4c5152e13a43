-- The read-only role for dashboards, for a database whose `migrate` ran as a
-- role that may not create roles (migration 007 then warns and skips it).
-- Run it as a role with CREATEROLE that owns the vozagent schema (or a
-- superuser), in the mirror's database:
--
--   psql -d vozagent -f docs/reader-role.sql
--
-- The role sees the views and the change history, nothing else: not the raw
-- mirror table, the sync state, the run history or the rejected records.
CREATE ROLE vozagent_reader NOLOGIN;
GRANT USAGE ON SCHEMA vozagent TO vozagent_reader;
GRANT SELECT ON vozagent.calls_live, vozagent.calls_daily, vozagent.daily_totals,
                vozagent.assistant_performance, vozagent.lead_funnel, vozagent.contacts,
                vozagent.calls_hourly, vozagent.hourly_heatmap, vozagent.sync_freshness,
                vozagent.raw_fields, vozagent.call_status_durations,
                vozagent.lead_upgrades, vozagent.call_changes
    TO vozagent_reader;
