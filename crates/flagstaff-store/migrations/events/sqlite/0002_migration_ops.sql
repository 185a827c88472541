-- Migration operations (`migration_op` events, ld-protocol.md §6.4) that SDK migrators ran,
-- counted per flag, stage and operation ('read' or 'write') in minute, hour and day buckets like
-- flag_evaluations. For each origin (old and new system): how often it was invoked, how often it
-- failed, and its latency (count, sum and maximum in milliseconds, for the mean and the worst).
-- `checks` counts reads whose results were compared, `inconsistent` those that differed.
CREATE TABLE migration_ops (
    environment        TEXT    NOT NULL,
    flag               TEXT    NOT NULL,
    resolution         TEXT    NOT NULL,
    bucket             INTEGER NOT NULL,
    operation          TEXT    NOT NULL,
    stage              TEXT    NOT NULL,
    operations         INTEGER NOT NULL,
    invoked_old        INTEGER NOT NULL,
    invoked_new        INTEGER NOT NULL,
    errors_old         INTEGER NOT NULL,
    errors_new         INTEGER NOT NULL,
    checks             INTEGER NOT NULL,
    inconsistent       INTEGER NOT NULL,
    latency_old_count  INTEGER NOT NULL,
    latency_old_sum    REAL NOT NULL,
    latency_old_max    REAL NOT NULL,
    latency_new_count  INTEGER NOT NULL,
    latency_new_sum    REAL NOT NULL,
    latency_new_max    REAL NOT NULL,
    PRIMARY KEY (environment, flag, resolution, bucket, operation, stage)
);
CREATE INDEX migration_ops_by_time ON migration_ops (resolution, bucket);
