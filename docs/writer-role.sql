-- The rights of the role that `run`, `once`, `backfill` and `status` connect as
-- (the writer), once `vozagent-sync migrate` has created the schema as its owner.
-- Run it as the schema's owner, in the mirror's database, after each `migrate`
-- (running it again is harmless, and narrows the rights an older version of
-- this script granted):
--
--   psql -d vozagent -v writer=vozagent_writer -f docs/writer-role.sql
--
-- The writer needs no CREATE on the database or on the schema: only the owner
-- migrates. It gets exactly what the daemon's statements (src/store.c) and the
-- functions they call use, and nothing more; `vozagent-sync check` names any of
-- these the role lacks. The tests run the daemon as a role with exactly these
-- rights.

-- TEMPORARY: each session stages its batch of calls in a temporary table.
GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO :"writer";
GRANT USAGE ON SCHEMA vozagent TO :"writer";

-- Start from nothing on the schema's tables and views, then grant per table.
REVOKE ALL ON ALL TABLES IN SCHEMA vozagent FROM :"writer";

-- The mirror: merge_batch inserts and updates calls (reading them first),
-- finish_backfill marks unseen ones deleted; calls are never deleted.
GRANT SELECT, INSERT, UPDATE ON vozagent.calls TO :"writer";
-- The cursor, written with INSERT .. ON CONFLICT DO UPDATE; the call counters
-- of the triggers on calls (they run with the writer's rights).
GRANT SELECT, INSERT, UPDATE ON vozagent.sync_state TO :"writer";
-- One row per pass, updated as it goes; DELETE: history_retention.
GRANT SELECT, INSERT, UPDATE, DELETE ON vozagent.sync_runs TO :"writer";
-- Rejected records, upserted by merge_batch; DELETE: history_retention.
GRANT SELECT, INSERT, UPDATE, DELETE ON vozagent.rejects TO :"writer";
-- What an unfinished backfill has seen: a row per batch, dropped at its end.
GRANT SELECT, INSERT, DELETE ON vozagent.backfill_seen_batches TO :"writer";
-- The schema's version (every command reads it), and `status`.
GRANT SELECT ON vozagent.schema_migrations, vozagent.sync_status TO :"writer";
-- Nothing on the reporting tables (calls_daily_rollup, call_changes,
-- raw_field_stats) nor on the reader's views: their triggers and
-- configure_source / prune_changes are SECURITY DEFINER and write them with
-- the owner's rights, in the writer's transactions.

-- The ids of sync_runs and rejects.
GRANT USAGE ON ALL SEQUENCES IN SCHEMA vozagent TO :"writer";

-- The functions the daemon calls (and backfill_seen_ids, which two of them
-- call with the writer's rights).
GRANT EXECUTE ON FUNCTION
    vozagent.merge_batch(text, bigint, bigint, bigint[], bigint[], text[], text[], text[]),
    vozagent.finish_backfill(text, bigint), vozagent.backfill_unseen(text, bigint),
    vozagent.backfill_seen_ids(text, bigint), vozagent.configure_source(text, text, boolean),
    vozagent.prune_changes(text, timestamptz, bigint) TO :"writer";

-- What a later `migrate` (run by this same owner) creates gets only what is
-- safe to hand out in advance: EXECUTE on functions, USAGE on sequences, and
-- SELECT on tables. A migration that needs the writer to write a new table
-- says so in its release notes: run this script (updated) again then. The
-- REVOKE undoes the INSERT, UPDATE, DELETE an older version of this script
-- set as defaults.
ALTER DEFAULT PRIVILEGES IN SCHEMA vozagent
    REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLES FROM :"writer";
ALTER DEFAULT PRIVILEGES IN SCHEMA vozagent GRANT SELECT ON TABLES TO :"writer";
ALTER DEFAULT PRIVILEGES IN SCHEMA vozagent GRANT USAGE ON SEQUENCES TO :"writer";
ALTER DEFAULT PRIVILEGES IN SCHEMA vozagent GRANT EXECUTE ON FUNCTIONS TO :"writer";
