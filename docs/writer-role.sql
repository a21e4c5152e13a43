-- The rights of the role that `run`, `once`, `backfill` and `status` connect as
-- (the writer), once `vozagent-sync migrate` has created the schema as its owner.
-- Run it as the schema's owner, in the mirror's database:
--
--   psql -d vozagent -v writer=vozagent_writer -f docs/writer-role.sql
--
-- The writer needs no CREATE on the database or on the schema: only the owner
-- migrates. The tests run the daemon as a role with exactly these rights.

-- TEMPORARY: each session stages its batch of calls in a temporary table.
GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO :"writer";
GRANT USAGE ON SCHEMA vozagent TO :"writer";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA vozagent TO :"writer";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA vozagent TO :"writer";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA vozagent TO :"writer";

-- What a later `migrate` (run by this same owner) creates gets the same rights.
ALTER DEFAULT PRIVILEGES IN SCHEMA vozagent
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"writer";
ALTER DEFAULT PRIVILEGES IN SCHEMA vozagent GRANT USAGE ON SEQUENCES TO :"writer";
ALTER DEFAULT PRIVILEGES IN SCHEMA vozagent GRANT EXECUTE ON FUNCTIONS TO :"writer";
