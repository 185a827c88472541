//! The experiments part of the document (issue 21): experiments, their iterations and results.

use serde_json::{Map, Value, json};

use super::{body, create, delete, ok, operation, reference, versioned_update_as};

/// The schemas of these resources.
pub(super) fn schemas() -> Map<String, Value> {
    let string = json!({"type": "string"});
    let number = json!({"type": "number"});
    let variation = json!({"type": "integer", "minimum": 0});
    let bounds = json!({"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": ["number", "null"]},
        "description": "[low, high]; a bound is null until there is enough data"});
    let audience = json!({"oneOf": [{"const": "fallthrough"},
        {"type": "object", "required": ["ruleId"], "additionalProperties": false, "properties": {"ruleId": string}}],
        "description": "Who takes part: contexts reaching the fallthrough, or those matching one rule (by its id)"});
    let design = json!({
        "key": {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"}, "name": string,
        "hypothesis": string, "flag": string,
        "metrics": {"type": "array", "minItems": 1, "maxItems": 10, "items": string, "description": "Project metric keys"},
        "primaryMetric": {"type": "string", "description": "The deciding metric (default: the first)"},
        "controlVariation": variation,
        "treatmentVariations": {"type": "array", "minItems": 1, "maxItems": 9, "items": variation},
        "audience": audience,
        "weights": {"type": "array", "items": {"type": "number", "minimum": 1},
            "description": "Traffic per arm, control first, in percent summing to 100 (default: equal)"},
        "randomizationUnit": {"type": "string", "description": "The context kind randomized and counted (default user)"}});
    let mut new_experiment = json!({"type": "object", "additionalProperties": false,
        "required": ["key", "name", "flag", "metrics", "controlVariation", "treatmentVariations"],
        "description": "A design; status, iterations and version as GET returns them are accepted and ignored",
        "properties": design.clone()});
    for ignored in ["status", "iterations", "version"] {
        new_experiment["properties"][ignored] = json!({});
    }
    let weighted = json!({"type": "object", "properties": {"variation": {"type": "integer"}, "weight": {"type": "integer"}}});
    let iteration = json!({"type": "object", "required": ["id", "number", "startedAt", "arms", "seed"], "properties": {
        "id": string, "number": {"type": "integer", "minimum": 1}, "startedAt": {"type": "integer"}, "startedBy": string,
        "stoppedAt": {"type": "integer"}, "stoppedBy": string, "shippedVariation": variation,
        "arms": {"type": "array", "items": weighted, "description": "Rollout weights (100000 is everyone), control first"},
        "seed": {"type": "integer"}, "metrics": {"type": "array", "items": string},
        "previousServe": reference("VariationOrRollout")}});
    let mut experiment = json!({"type": "object", "properties": design});
    experiment["properties"]["status"] = json!({"enum": ["notStarted", "running", "stopped"]});
    experiment["properties"]["iterations"] = json!({"type": "array", "items": iteration});
    experiment["properties"]["version"] = json!({"type": "integer", "readOnly": true});
    let metric_result = json!({"type": "object", "required": ["metric", "n", "mean", "ci"], "properties": {
        "metric": string, "n": number, "mean": {"type": "number", "description": "Per context as observed (the rate for conversions)"},
        "ci": bounds,
        "difference": number, "differenceCi": bounds, "relativeLift": number, "relativeLiftCi": bounds,
        "pValue": number, "adjustedPValue": {"type": "number", "description": "Holm across treatments × metrics"},
        "probabilityToBeatControl": number, "expectedLoss": number,
        "sequential": {"type": "object", "properties": {"ci": bounds, "excludesZero": {"type": "boolean"}},
            "description": "The anytime-valid (asymptotic confidence sequence) interval of the difference"},
        "varianceReduction": {"type": "number", "description": "Share of variance CUPED removed"}},
        "description": "Comparison fields are absent on the control and until both sides have data"});
    let results = json!({"type": "object", "required": ["experiment", "iteration", "variations", "verdict"], "properties": {
        "experiment": string,
        "iteration": {"type": "object", "properties": {"id": string, "number": {"type": "integer"}, "startedAt": {"type": "integer"},
            "stoppedAt": {"type": ["integer", "null"]}, "shippedVariation": {"type": ["integer", "null"]}}},
        "srm": {"type": ["object", "null"], "properties": {"chiSquared": number, "pValue": number, "detected": {"type": "boolean"}},
            "description": "Sample-ratio mismatch (χ² against the weights, detected at p < 0.001); null before exposures"},
        "primaryMetric": string, "alpha": number, "correction": string,
        "variations": {"type": "array", "items": {"type": "object", "properties": {
            "variation": {"type": "integer"}, "name": string, "control": {"type": "boolean"}, "weight": number,
            "exposures": {"type": "integer"}, "metrics": {"type": "array", "items": metric_result}}}},
        "verdict": string}});
    let step = json!({"type": "object", "required": ["percent"], "additionalProperties": false, "properties": {
        "percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100, "description": "Share of the fallthrough served the new variation"},
        "minDurationMs": {"type": "integer", "minimum": 0}, "minSample": {"type": "integer", "minimum": 0,
            "description": "Contexts served the new variation in this step before it may advance"}}});
    let guard = json!({"type": "object", "required": ["metric"], "additionalProperties": false, "properties": {
        "metric": string, "tolerance": {"type": "number", "minimum": 0, "maximum": 10,
            "description": "The regression tolerated, relative to the control's mean (0.1: 10 % worse)"}}});
    let evidence = json!({"type": "object", "properties": {"metric": string,
        "exposures": {"type": "array", "items": {"type": "integer"}, "description": "[control, new variation]"},
        "controlMean": number, "treatmentMean": number,
        "sequential": {"type": ["array", "null"], "items": number, "description": "Anytime-valid interval of new − control"},
        "margin": {"type": "number", "description": "The worst difference tolerated, signed in the direction of harm"},
        "regression": {"type": "boolean"}}});
    let record = json!({"type": "object", "properties": {"step": {"type": "integer"}, "percent": number, "iteration": string,
        "startedAt": {"type": "integer"}, "endedAt": {"type": "integer"},
        "outcome": {"enum": ["advanced", "completed", "rolledBack", "aborted"]},
        "evidence": {"type": "array", "items": evidence}}});
    let mut map = Map::new();
    map.insert("NewGuardedRollout".into(), json!({"type": "object", "required": ["treatmentVariation", "steps", "guards"],
        "additionalProperties": false, "properties": {
            "treatmentVariation": variation, "controlVariation": {"type": "integer", "minimum": 0, "description": "Default: what the fallthrough serves now"},
            "steps": {"type": "array", "minItems": 1, "maxItems": 20, "items": step, "description": "Growing percentages; the last is 100"},
            "guards": {"type": "array", "minItems": 1, "maxItems": 10, "items": guard},
            "randomizationUnit": string}}));
    map.insert("GuardedRollout".into(), json!({"type": "object", "properties": {
        "flag": string, "controlVariation": variation, "treatmentVariation": variation, "randomizationUnit": string,
        "steps": {"type": "array", "items": step}, "guards": {"type": "array", "items": guard},
        "status": {"enum": ["running", "paused", "completed", "rolledBack", "aborted"]},
        "currentStep": {"type": "integer"}, "seed": {"type": "integer"}, "previousServe": reference("VariationOrRollout"),
        "history": {"type": "array", "items": record, "description": "Every step as it ran; the current step's evidence is live"},
        "createdBy": string, "version": {"type": "integer", "readOnly": true}}}));
    map.insert("NewExperiment".into(), new_experiment);
    map.insert("Experiment".into(), experiment);
    map.insert("ExperimentResults".into(), results);
    map.insert(
        "ShipVariation".into(),
        json!({"type": "object", "required": ["variation"], "additionalProperties": false,
               "properties": {"variation": variation}}),
    );
    map
}

/// The paths of these resources.
pub(super) fn add_paths(paths: &mut Value) {
    let base = "/projects/{project}/environments/{environment}/experiments";
    let Some(paths) = paths.as_object_mut() else {
        return;
    };
    let tag = "experiments";
    let state = |mut op: Value, description: &str| {
        op["responses"]["409"] = json!({"description": description,
            "content": {"application/json": {"schema": reference("Error")}}});
        op["parameters"] = json!([{"$ref": "#/components/parameters/Comment"}]);
        op
    };
    paths.insert(
        base.into(),
        json!({
            "get": operation("List the environment's experiments", tag, None,
                ("200", ok("Experiments", super::list("Experiment"))), false),
            "post": create("Design an experiment on a flag (writer: createExperiment)", tag, "NewExperiment", "Experiment")}),
    );
    paths.insert(
        format!("{base}/{{key}}"),
        json!({
            "get": operation("Get an experiment with its iterations", tag, None, ("200", ok("The experiment", reference("Experiment"))), false),
            "put": versioned_update_as("Replace an experiment's design, not while it runs (writer: updateExperiment)", tag, "NewExperiment", "Experiment"),
            "delete": delete("Delete an experiment and its results, not while it runs (writer: deleteExperiment)", tag)}),
    );
    paths.insert(
        format!("{base}/{{key}}/start"),
        json!({"post": state(operation(
            "Start an iteration: the audience becomes an experiment rollout of the arms with a fresh seed, an audited targeting change (updateExperiment and the targeting rights)",
            tag, None, ("200", ok("Running", reference("Experiment"))), true),
            "invalid_state: already running; approval_required: the environment requires approval")}),
    );
    paths.insert(
        format!("{base}/{{key}}/stop"),
        json!({"post": state(operation(
            "Close the running iteration; the audience keeps the same split as a plain rollout",
            tag, None, ("200", ok("Stopped", reference("Experiment"))), true),
            "invalid_state: not running")}),
    );
    paths.insert(
        format!("{base}/{{key}}/ship"),
        json!({"post": state(operation(
            "Close the running iteration and serve one of its arms to the whole audience",
            tag, Some(body(reference("ShipVariation"))), ("200", ok("Shipped", reference("Experiment"))), true),
            "invalid_state: not running")}),
    );
    let mut results = operation(
        "An iteration's results: exposures, per metric mean, intervals, lift, p-values, anytime-valid interval, probability to beat control, expected loss, CUPED, and the sample-ratio check",
        tag,
        None,
        ("200", ok("Results", reference("ExperimentResults"))),
        false,
    );
    results["parameters"] = json!([{"name": "iteration", "in": "query", "required": false,
        "description": "The iteration number (default: the last)", "schema": {"type": "integer", "minimum": 1}}]);
    results["responses"]["409"] = json!({"description": "invalid_state: never started",
        "content": {"application/json": {"schema": reference("Error")}}});
    paths.insert(format!("{base}/{{key}}/results"), json!({"get": results}));

    let guarded = "/projects/{project}/environments/{environment}/flags/{key}/guarded-rollout";
    let tag = "guarded rollouts";
    paths.insert(
        guarded.into(),
        json!({
            "get": operation("The flag's guarded rollout with its timeline and the current step's live evidence", tag, None,
                ("200", ok("The plan", reference("GuardedRollout"))), false),
            "post": state(create("Start a guarded rollout on the fallthrough: each step advances when its guards hold for its duration and sample; a regression (anytime-valid) rolls back to the control at once (updateFallthrough)",
                tag, "NewGuardedRollout", "GuardedRollout"), "invalid_state: one is in progress; approval_required: the environment requires approval")}),
    );
    for (action, what) in [
        (
            "pause",
            "Hold a running plan: no automatic step or rollback until resumed",
        ),
        ("resume", "Resume a paused plan"),
        (
            "abort",
            "Stop a plan by hand: the control serves the whole fallthrough",
        ),
    ] {
        paths.insert(
            format!("{guarded}/{action}"),
            json!({"post": state(operation(what, tag, None, ("200", ok("The plan", reference("GuardedRollout"))), true),
                "invalid_state: the plan is not in a state that allows this")}),
        );
    }
}
