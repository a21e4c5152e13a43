-- 006: cheap writes: a batch of many pages per transaction, nothing written
-- for a call that did not change, and a backfill's seen set kept per batch.

-- The ids a backfill pass has seen: one row per committed batch, holding the
-- batch's ids (its calls and its rejected records that have an id), tagged
-- with the pass's run id (its generation). 005 kept a row per id, so every
-- backfill inserted and deleted a row and an index entry per call.
CREATE TABLE vozagent.backfill_seen_batches (
    source  text NOT NULL,
    gen     bigint NOT NULL,
    ids     text[] NOT NULL
);
CREATE INDEX backfill_seen_batches_source_gen_idx ON vozagent.backfill_seen_batches (source, gen);
COMMENT ON TABLE vozagent.backfill_seen_batches IS
    'Ids an unfinished backfill pass has seen, one row per committed batch (vozagent-sync, internal).';

-- What an interrupted backfill saw is never trusted by the next one (a new
-- generation), so 005's per-id set has nothing worth carrying over.
DROP FUNCTION vozagent.merge_stage(text, boolean);
DROP FUNCTION vozagent.analyze_backfill_seen();
DROP TABLE vozagent.backfill_seen;

-- Merges one batch, staged by the daemon in pg_temp.calls_stage (several pages;
-- seq numbers the rows in reading order), and records its rejects:
--  * a call staged twice counts once, as last read (the larger seq);
--  * a call whose raw equals the mirror's live row is filtered out by reading
--    vozagent.calls, so it is neither written nor locked (an INSERT .. ON
--    CONFLICT locks every conflicting row, even one its WHERE then skips, and
--    that lock writes the row's tuple header: a resync dirtied the whole table);
--  * the rest is merged as before; the ON CONFLICT's WHERE still guards a
--    row another session changed in between;
--  * the rejects (arrays, one element per record, in reading order) are one
--    row per record, as 004 keys them, the last reading of a record winning;
--  * for a backfill (p_gen >= 0), the batch's ids are remembered as seen by
--    generation p_gen, and what older generations saw is dropped (a new pass
--    never trusts them).
-- The mirror lookups are a nested loop over the staged rows by construction
-- (LATERAL .. LIMIT 1): the staging table has no statistics, and a hash join
-- would read all of vozagent.calls for each batch.
CREATE FUNCTION vozagent.merge_batch(p_source text, p_run_id bigint, p_gen bigint,
                                     p_reject_offsets bigint[], p_reject_positions bigint[],
                                     p_reject_ids text[], p_reject_reasons text[],
                                     p_reject_raws text[],
                                     OUT inserted bigint, OUT updated bigint)
LANGUAGE plpgsql AS $$
BEGIN
    WITH latest AS (
        SELECT DISTINCT ON (s.id COLLATE "C") s.*
          FROM pg_temp.calls_stage s ORDER BY s.id COLLATE "C", s.seq DESC
    ), changed AS (
        SELECT l.* FROM latest l
          LEFT JOIN LATERAL (SELECT c.raw, c.deleted_at FROM vozagent.calls c
                              WHERE c.id = l.id LIMIT 1) m ON true
         WHERE m.raw IS DISTINCT FROM l.raw OR m.deleted_at IS NOT NULL
    ), merged AS (
        INSERT INTO vozagent.calls AS c
            (id, contact_id, assistant_id, call_type, call_status, duration_seconds,
             call_started_at, call_ended_at, appointment_booked, lead_qualification,
             call_intent, raw, source)
        SELECT s.id, s.contact_id, s.assistant_id, s.call_type, s.call_status,
               s.duration_seconds, s.call_started_at, s.call_ended_at,
               s.appointment_booked, s.lead_qualification, s.call_intent, s.raw, p_source
          FROM changed s
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

    IF cardinality(p_reject_raws) > 0 THEN
        -- times_seen counts the passes that rejected a record, not the pages
        -- (pages overlap, and may be re-read)
        INSERT INTO vozagent.rejects AS r (source, run_id, list_offset, list_position,
                                           record_id, reason, raw)
        SELECT DISTINCT ON (k) p_source, p_run_id, j.list_offset, j.list_position,
               j.record_id, j.reason, j.raw
          FROM unnest(p_reject_offsets, p_reject_positions, p_reject_ids, p_reject_reasons,
                      p_reject_raws) WITH ORDINALITY
                 AS j(list_offset, list_position, record_id, reason, raw, ord),
               LATERAL (SELECT CASE WHEN j.record_id IS NOT NULL THEN 'id ' || j.record_id
                                    ELSE 'position ' || j.list_position END) AS key(k)
         ORDER BY k, j.ord DESC
        ON CONFLICT (source, md5(reject_key)) DO UPDATE SET
            times_seen = r.times_seen + (r.run_id IS DISTINCT FROM EXCLUDED.run_id)::int,
            run_id = EXCLUDED.run_id, list_offset = EXCLUDED.list_offset,
            list_position = EXCLUDED.list_position, reason = EXCLUDED.reason,
            raw = EXCLUDED.raw, last_seen_at = now();
    END IF;

    IF p_gen >= 0 THEN
        DELETE FROM vozagent.backfill_seen_batches WHERE source = p_source AND gen <> p_gen;
        -- listed, even if not storable: a rejected call with an id was seen
        INSERT INTO vozagent.backfill_seen_batches (source, gen, ids)
        SELECT p_source, p_gen, array_agg(x.id)
          FROM (SELECT s.id FROM pg_temp.calls_stage s
                UNION ALL
                SELECT i FROM unnest(p_reject_ids) AS i WHERE i IS NOT NULL) x
        HAVING count(*) > 0;
    END IF;
END
$$;

-- The ids generation p_gen of the source's backfill has seen (with repeats).
CREATE FUNCTION vozagent.backfill_seen_ids(p_source text, p_gen bigint)
RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT unnest(b.ids) FROM vozagent.backfill_seen_batches b
     WHERE b.source = p_source AND b.gen = p_gen
$$;

-- As in 005: the calls of the source generation p_gen did not see, among the
-- live ones; read-only. Each is one hash anti-join (the seen ids hashed once,
-- repeats and all, the calls read once): a mirror just filled has no
-- statistics yet, and the planner's guess can be a nested loop that is
-- quadratic in its size.
CREATE OR REPLACE FUNCTION vozagent.backfill_unseen(p_source text, p_gen bigint,
                                                    OUT unseen bigint, OUT live bigint)
LANGUAGE plpgsql SET enable_nestloop = off AS $$
BEGIN
    SELECT count(*) INTO live
      FROM vozagent.calls c WHERE c.source = p_source AND c.deleted_at IS NULL;
    SELECT count(*) INTO unseen
      FROM vozagent.calls c
     WHERE c.source = p_source AND c.deleted_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM vozagent.backfill_seen_ids(p_source, p_gen) AS s(id)
                        WHERE s.id = c.id);
END
$$;

-- As in 005: mark the calls generation p_gen did not see (rows are never
-- deleted), forget every seen set of the source, say how many were marked.
-- Planned as backfill_unseen is.
CREATE OR REPLACE FUNCTION vozagent.finish_backfill(p_source text, p_gen bigint)
RETURNS bigint
LANGUAGE plpgsql SET enable_nestloop = off AS $$
DECLARE
    marked bigint;
BEGIN
    UPDATE vozagent.calls c SET deleted_at = now()
     WHERE c.source = p_source AND c.deleted_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM vozagent.backfill_seen_ids(p_source, p_gen) AS s(id)
                        WHERE s.id = c.id);
    GET DIAGNOSTICS marked = ROW_COUNT;
    DELETE FROM vozagent.backfill_seen_batches WHERE source = p_source;
    RETURN marked;
END
$$;
