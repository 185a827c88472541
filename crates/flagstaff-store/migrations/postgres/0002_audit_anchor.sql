-- The anchored head of the audit chain: the newest entry's sequence number and hash, with an
-- HMAC over both under a key that lives outside the database (--audit-key-file). Written in
-- the transaction of every change when the server has the key, so deleting the newest entries
-- (which leaves an intact but shorter chain) is detected by `flagstaff audit verify`.
CREATE TABLE audit_anchor (
    id   BIGINT  PRIMARY KEY,
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL,
    mac  TEXT    NOT NULL
);
