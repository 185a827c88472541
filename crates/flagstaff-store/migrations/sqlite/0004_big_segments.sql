-- Big segments (issue 22): the members of unbounded segments, too many to live in the segment's
-- document. One row per (segment, context key), included (1) or excluded (0). The second index
-- answers "which big segments name this context key" in one lookup at evaluation time.
CREATE TABLE big_segment_members (
    project TEXT NOT NULL,
    environment TEXT NOT NULL,
    segment TEXT NOT NULL,
    context_key TEXT NOT NULL,
    included BIGINT NOT NULL,
    PRIMARY KEY (project, environment, segment, context_key)
);
CREATE INDEX big_segment_members_by_key ON big_segment_members (project, environment, context_key);
