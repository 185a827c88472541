-- Payload IDs of analytics payloads already counted (issue 23): an SDK retries a payload with
-- the same `X-LaunchDarkly-Payload-ID` (ld-protocol.md §6.3), and behind a load balancer the
-- retry may land on another node than the original, whose in-memory set never saw it. The
-- writer claims each payload's ID here before counting it, and a claim that finds the row counts
-- nothing. Rows older than ten minutes are pruned.
CREATE TABLE event_payloads (
    environment TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    seen_at     BIGINT NOT NULL,
    PRIMARY KEY (environment, id)
);
CREATE INDEX event_payloads_by_time ON event_payloads (seen_at);
