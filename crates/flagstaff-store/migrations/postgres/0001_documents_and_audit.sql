-- Every stored object is a versioned JSON document. Deleting keeps a tombstone, so a key's
-- version keeps growing across delete and re-create (ld-protocol.md §2.6).
CREATE TABLE documents (
    kind       TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    deleted    BIGINT  NOT NULL,
    body       TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (kind, scope, key)
);

-- The audit log: one row per change, written in the change's transaction, hash-chained.
CREATE TABLE audit_log (
    seq       BIGINT  PRIMARY KEY,
    at        BIGINT  NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    scope     TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    comment   TEXT    NOT NULL,
    before    TEXT,
    after     TEXT,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);
CREATE INDEX audit_by_resource ON audit_log (kind, scope, key, seq);
CREATE INDEX audit_by_actor ON audit_log (actor, seq);
CREATE INDEX audit_by_time ON audit_log (at, seq);
