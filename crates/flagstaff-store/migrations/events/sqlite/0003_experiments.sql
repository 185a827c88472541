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
    variation   INTEGER NOT NULL,
    exposed_at  INTEGER NOT NULL,
    PRIMARY KEY (iteration, unit_key)
);
CREATE TABLE experiment_outcomes (
    iteration   TEXT    NOT NULL,
    unit_key    TEXT    NOT NULL,
    event_key   TEXT    NOT NULL,
    pre_count   INTEGER NOT NULL,
    pre_sum     REAL NOT NULL,
    post_count  INTEGER NOT NULL,
    post_sum    REAL NOT NULL,
    PRIMARY KEY (iteration, unit_key, event_key)
);
-- Kept for good: exposures per variation, and per variation, event key and transform
-- ('conversion', 'count', 'sum', 'mean') the sufficient statistics of the per-context values y
-- (after exposure) and covariates x (before exposure, for CUPED): n (contexts with an event
-- after exposure), sums of y, y², x, x² and x·y. The writer keeps them current by adding the
-- difference each changed context makes.
CREATE TABLE experiment_variations (
    iteration   TEXT    NOT NULL,
    variation   INTEGER NOT NULL,
    exposures   INTEGER NOT NULL,
    PRIMARY KEY (iteration, variation)
);
CREATE TABLE experiment_moments (
    iteration   TEXT    NOT NULL,
    variation   INTEGER NOT NULL,
    event_key   TEXT    NOT NULL,
    transform   TEXT    NOT NULL,
    n           INTEGER NOT NULL,
    sum_y       REAL NOT NULL,
    sum_y2      REAL NOT NULL,
    sum_x       REAL NOT NULL,
    sum_x2      REAL NOT NULL,
    sum_xy      REAL NOT NULL,
    PRIMARY KEY (iteration, variation, event_key, transform)
);
