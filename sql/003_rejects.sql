-- 003: records the mirror could not store, kept for a person to look at.

-- A record without a string id, repeating an id already in its page, or
-- holding what PostgreSQL cannot (nesting deeper than the parser's limit, a
-- number beyond numeric's range). The rest of its page is mirrored as usual.
-- The same record read again by a later pass is not stored twice.
CREATE TABLE vozagent.rejects (
    id           bigserial PRIMARY KEY,
    source       text NOT NULL,
    run_id       bigint,
    list_offset  bigint,
    reason       text NOT NULL,
    raw          text NOT NULL,       -- the record as received (partial when it could not be read whole)
    rejected_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX rejects_once_idx ON vozagent.rejects (source, md5(raw));
