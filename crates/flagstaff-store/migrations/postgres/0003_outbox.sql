-- Webhook deliveries: one row per change (audit entry) per webhook, written by whichever node
-- first reads that change from the audit log, then delivered and retried from here. The row's
-- id is the delivery id receivers see, stable across retries, and `lease_until` is the claim of the
-- node sending it now, so that several nodes never send the same attempt twice.
CREATE TABLE outbox (
    id          TEXT    PRIMARY KEY,
    target      TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    state       TEXT    NOT NULL,
    attempts    BIGINT  NOT NULL,
    next_at     BIGINT  NOT NULL,
    lease_until BIGINT  NOT NULL,
    log         TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    UNIQUE (target, seq)
);
CREATE INDEX outbox_due ON outbox (state, next_at);
CREATE INDEX outbox_by_target ON outbox (target, created_at);
-- How far into the audit log the outbox has been filled, by name, moved by compare-and-set.
CREATE TABLE outbox_cursor (
    name TEXT   PRIMARY KEY,
    seq  BIGINT NOT NULL
);
