-- Migration operations (`migration_op` events, ld-protocol.md §6.4) that SDK migrators ran,
-- counted per flag, stage and operation ('read' or 'write') in minute, hour and day buckets like
-- flag_evaluations. For each origin (old and new system): how often it was invoked, how often it
-- failed, and its latency (count, sum and maximum in milliseconds, for the mean and the worst).
-- `checks` counts reads whose results were compared, `inconsistent` those that differed.
CREATE TABLE migration_ops (
    environment        TEXT    NOT NULL,
    flag               TEXT    NOT NULL,
    resolution         TEXT    NOT NULL,
    bucket             BIGINT NOT NULL,
    operation          TEXT    NOT NULL,
    stage              TEXT    NOT NULL,
    operations         BIGINT NOT NULL,
    invoked_old        BIGINT NOT NULL,
    invoked_new        BIGINT NOT NULL,
    errors_old         BIGINT NOT NULL,
    errors_new         BIGINT NOT NULL,
    checks             BIGINT NOT NULL,
    inconsistent       BIGINT NOT NULL,
    latency_old_count  BIGINT NOT NULL,
    latency_old_sum    DOUBLE PRECISION NOT NULL,
    latency_old_max    DOUBLE PRECISION NOT NULL,
    latency_new_count  BIGINT NOT NULL,
    latency_new_sum    DOUBLE PRECISION NOT NULL,
    latency_new_max    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (environment, flag, resolution, bucket, operation, stage)
);
CREATE INDEX migration_ops_by_time ON migration_ops (resolution, bucket);
