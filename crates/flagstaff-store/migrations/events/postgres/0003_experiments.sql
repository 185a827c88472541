-- Experiments (issue 21): what each running iteration saw, kept so that results are a read of a
-- few rows however many contexts took part.
--
-- Per context, only while the iteration runs (deleted when it closes): its first exposure, and
-- per metric event key its events before and after that exposure (count and sum of
-- metricValue). These rows let the writer know, for each new event, whether it came after the
-- context's exposure and how the context's value changes.
CREATE TABLE experiment_exposures (
    iteration   TEXT    NOT NULL,
    unit_key    TEXT    NOT NULL,
    variation   BIGINT NOT NULL,
    exposed_at  BIGINT NOT NULL,
    PRIMARY KEY (iteration, unit_key)
);
CREATE TABLE experiment_outcomes (
    iteration   TEXT    NOT NULL,
    unit_key    TEXT    NOT NULL,
    event_key   TEXT    NOT NULL,
    pre_count   BIGINT NOT NULL,
    pre_sum     DOUBLE PRECISION NOT NULL,
    post_count  BIGINT NOT NULL,
    post_sum    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (iteration, unit_key, event_key)
);
-- Kept for good: exposures per variation, and per variation, event key and transform
-- ('conversion', 'count', 'sum', 'mean') the sufficient statistics of the per-context values y
-- (after exposure) and covariates x (before exposure, for CUPED): n (contexts with an event
-- after exposure), sums of y, y², x, x² and x·y. The writer keeps them current by adding the
-- difference each changed context makes.
CREATE TABLE experiment_variations (
    iteration   TEXT    NOT NULL,
    variation   BIGINT NOT NULL,
    exposures   BIGINT NOT NULL,
    PRIMARY KEY (iteration, variation)
);
CREATE TABLE experiment_moments (
    iteration   TEXT    NOT NULL,
    variation   BIGINT NOT NULL,
    event_key   TEXT    NOT NULL,
    transform   TEXT    NOT NULL,
    n           BIGINT NOT NULL,
    sum_y       DOUBLE PRECISION NOT NULL,
    sum_y2      DOUBLE PRECISION NOT NULL,
    sum_x       DOUBLE PRECISION NOT NULL,
    sum_x2      DOUBLE PRECISION NOT NULL,
    sum_xy      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (iteration, variation, event_key, transform)
);
