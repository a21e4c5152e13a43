-- 005: a backfill reconciles only against what it read itself, and asks before a mass deletion.

-- Which backfill saw the id: the run id of the pass (its generation). A
-- backfill marks deleted only calls its own pass did not see, never trusting
-- ids a killed predecessor read before the list changed. Rows of other
-- generations are overwritten as the pass sees the id, and all go when a
-- backfill ends.
ALTER TABLE vozagent.backfill_seen ADD COLUMN gen bigint NOT NULL DEFAULT 0;

-- A backfill reads a full circle of the list from where the last one
-- stopped: to the end, then from offset 0 again. While it re-reads from the
-- start, backfill_wrap_to is the offset it began at (NULL before it wraps).
ALTER TABLE vozagent.sync_state ADD COLUMN backfill_wrap_to bigint;
-- The full circle replaces what 002 kept to check a resumed backfill against:
-- the last ids of its last page. Nothing reads them any more.
ALTER TABLE vozagent.sync_state DROP COLUMN backfill_anchor;
-- The last backfill would have marked more calls deleted than
-- max_delete_fraction allows, and marked none: when, and the message.
-- Cleared by the next backfill that completes.
ALTER TABLE vozagent.sync_state ADD COLUMN backfill_refused_at timestamptz;
ALTER TABLE vozagent.sync_state ADD COLUMN backfill_refusal text;

-- Fresh statistics of the seen sets. ANALYZE needs the table's owner, and the
-- writer role is not: this one statement runs with the owner's rights, with a
-- search_path no caller can put objects in ahead of pg_catalog.
CREATE FUNCTION vozagent.analyze_backfill_seen() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    ANALYZE vozagent.backfill_seen;
END
$$;
-- Only the roles granted it (docs/writer-role.sql) may have the owner analyze.
REVOKE EXECUTE ON FUNCTION vozagent.analyze_backfill_seen() FROM PUBLIC;

-- Calls of the source a backfill generation did not see, and the live calls
-- it would mark them among. Read-only: the caller decides whether to mark.
CREATE FUNCTION vozagent.backfill_unseen(p_source text, p_gen bigint,
                                         OUT unseen bigint, OUT live bigint)
LANGUAGE plpgsql AS $$
BEGIN
    -- The set was just filled: without fresh statistics the planner can pick
    -- a nested loop over it that is quadratic in the size of the mirror.
    PERFORM vozagent.analyze_backfill_seen();
    SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM vozagent.backfill_seen s
                                               WHERE s.source = p_source AND s.id = c.id
                                                 AND s.gen = p_gen)),
           count(*)
      INTO unseen, live
      FROM vozagent.calls c
     WHERE c.source = p_source AND c.deleted_at IS NULL;
END
$$;

-- A backfill generation has read the whole list: mark the calls it did not
-- see (rows are never deleted), forget every seen set of the source, and say
-- how many were marked.
CREATE FUNCTION vozagent.finish_backfill(p_source text, p_gen bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    marked bigint;
BEGIN
    UPDATE vozagent.calls c SET deleted_at = now()
     WHERE c.source = p_source AND c.deleted_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM vozagent.backfill_seen s
                        WHERE s.source = p_source AND s.id = c.id AND s.gen = p_gen);
    GET DIAGNOSTICS marked = ROW_COUNT;
    DELETE FROM vozagent.backfill_seen WHERE source = p_source;
    RETURN marked;
END
$$;
