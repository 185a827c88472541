-- What SDKs report (ld-protocol.md §6), aggregated. This database is separate from the one that
-- holds flags and the audit log, so that a flood of analytics never competes with a change for
-- the writer lock (ARCHITECTURE.md, "events").

-- Evaluations per flag, variation and flag version in time buckets. `resolution` is 'm', 'h' or
-- 'd' (minute, hour, day), and every count is written to all three, each kept for its own retention.
-- `variation` is -1 when none was served, `version` -1 when the flag was unknown to the SDK.
CREATE TABLE flag_evaluations (
    environment TEXT    NOT NULL,
    flag        TEXT    NOT NULL,
    resolution  TEXT    NOT NULL,
    bucket      INTEGER NOT NULL,
    variation   INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    value       TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (environment, flag, resolution, bucket, variation, version)
);
CREATE INDEX flag_evaluations_by_time ON flag_evaluations (resolution, bucket);

-- When each flag was first and last evaluated in each environment.
CREATE TABLE flag_usage (
    environment     TEXT    NOT NULL,
    flag            TEXT    NOT NULL,
    first_evaluated INTEGER NOT NULL,
    last_evaluated  INTEGER NOT NULL,
    evaluations     INTEGER NOT NULL,
    PRIMARY KEY (environment, flag)
);

-- Which SDKs (name and version, from request headers) evaluated each flag.
CREATE TABLE flag_sdks (
    environment TEXT    NOT NULL,
    flag        TEXT    NOT NULL,
    sdk         TEXT    NOT NULL,
    sdk_version TEXT    NOT NULL,
    last_seen   INTEGER NOT NULL,
    evaluations INTEGER NOT NULL,
    PRIMARY KEY (environment, flag, sdk, sdk_version)
);

-- SDK instances that reported in, from headers and diagnostic events.
CREATE TABLE sdk_reports (
    environment TEXT    NOT NULL,
    sdk         TEXT    NOT NULL,
    sdk_version TEXT    NOT NULL,
    wrapper     TEXT    NOT NULL,
    platform    TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (environment, sdk, sdk_version, wrapper)
);

-- Contexts seen in events, with their attributes minus private ones (never stored).
CREATE TABLE contexts_seen (
    environment TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    attributes  TEXT    NOT NULL,
    redacted    TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (environment, kind, key)
);
CREATE INDEX contexts_seen_by_time ON contexts_seen (environment, last_seen);

-- Custom events (`track`) per key in time buckets, with the sum of their metric values.
CREATE TABLE custom_events (
    environment  TEXT    NOT NULL,
    event_key    TEXT    NOT NULL,
    resolution   TEXT    NOT NULL,
    bucket       INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    metric_count INTEGER NOT NULL,
    metric_sum   REAL    NOT NULL,
    PRIMARY KEY (environment, event_key, resolution, bucket)
);
CREATE INDEX custom_events_by_time ON custom_events (resolution, bucket);

-- A sample of full events (feature, debug, custom) as the SDK sent them, private attributes
-- removed.
CREATE TABLE event_samples (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    body        TEXT    NOT NULL
);
CREATE INDEX event_samples_by_environment ON event_samples (environment, id);
CREATE INDEX event_samples_by_time ON event_samples (at);
