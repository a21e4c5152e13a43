-- The read-only role for dashboards, for a database whose `migrate` ran as a
-- role that may not create roles (migration 007 then warns and skips it).
-- Run it as the schema's owner with CREATEROLE (or a superuser), in the
-- mirror's database:
--
--   psql -d vozagent -f docs/reader-role.sql
--
-- The role sees the views and the change history, nothing else: not the raw
-- mirror table, the sync state, the run history or the rejected records
-- (docs/bi.md, "Roles").
CREATE ROLE vozagent_reader NOLOGIN;
SELECT vozagent.grant_reader();
