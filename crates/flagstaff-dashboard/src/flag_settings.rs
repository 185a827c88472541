//! A flag's settings after creation: name, description, tags, maintainer, temporary or
//! permanent, client-side availability, and its variations (add, edit, name, describe, remove,
//! reorder).
//!
//! One form, which works without scripts: "Move up", "Remove" and "Add a variation" are submit
//! buttons that return the form with the rows changed, "Review" shows the change in words, and
//! "Save" writes it through `App::update_flag_mapped`. Each row carries the position the
//! variation had when the page was loaded (`origin`), so that the application can re-map every
//! environment's targeting and other flags' prerequisites, or refuse the removal of a variation
//! that is still served, naming where.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::AppError;
use flagstaff_app::model::{FlagDefinition, FlagKind, Variation};
use flagstaff_protocol::ClientSideAvailability;
use serde_json::Value;

use crate::flags::EnvQuery;
use crate::session::Viewer;
use crate::{DashState, Nav, PageError, render};

/// Longest value or text a form field may hold, so that nothing unbounded is parsed or echoed.
const FIELD_LIMIT: usize = 10_000;
/// Most variations a flag may be given here (the API's own limit applies too).
const MAX_VARIATIONS: usize = 100;

/// One variation row of the form.
#[derive(Clone, Debug, Default)]
pub(crate) struct Row {
    /// The value as typed (JSON text for non-strings).
    pub value: String,
    pub name: String,
    pub description: String,
    /// Its position (from 0) when the page was loaded; empty for an added row.
    pub origin: String,
}

/// The form's state, as posted.
#[derive(Clone, Debug, Default)]
pub(crate) struct SettingsForm {
    pub csrf: String,
    pub env: String,
    pub version: u64,
    pub name: String,
    pub description: String,
    pub tags: String,
    pub maintainer: String,
    pub temporary: bool,
    pub browsers: bool,
    pub mobile: bool,
    /// How values are read: `string`, `number` or `json` (multivariate flags).
    pub value_type: String,
    pub rows: Vec<Row>,
    pub comment: String,
    pub op: String,
}

impl SettingsForm {
    fn from_definition(d: &FlagDefinition, version: u64, env: &str) -> SettingsForm {
        let value_type = if d.variations.iter().all(|v| v.value.is_string()) {
            "string"
        } else if d.variations.iter().all(|v| v.value.is_number()) {
            "number"
        } else {
            "json"
        };
        SettingsForm {
            env: env.to_owned(),
            version,
            name: d.name.clone(),
            description: d.description.clone(),
            tags: d.tags.join(", "),
            maintainer: d.maintainer.clone().unwrap_or_default(),
            temporary: d.temporary,
            browsers: d.client_side_availability.using_environment_id,
            mobile: d.client_side_availability.using_mobile_key,
            value_type: value_type.into(),
            rows: d
                .variations
                .iter()
                .enumerate()
                .map(|(i, v)| Row {
                    value: match &v.value {
                        Value::String(s) if value_type == "string" => s.clone(),
                        other => other.to_string(),
                    },
                    name: v.name.clone().unwrap_or_default(),
                    description: v.description.clone().unwrap_or_default(),
                    origin: i.to_string(),
                })
                .collect(),
            ..SettingsForm::default()
        }
    }

    /// Reads the posted pairs in order: rows are the repeated `value`, `vname`, `vdesc`,
    /// `origin` fields, one group per row, starting with `value` (the template's order).
    fn from_pairs(pairs: Vec<(String, String)>) -> SettingsForm {
        let mut form = SettingsForm::default();
        let clip = |s: String| -> String {
            if s.len() > FIELD_LIMIT {
                let mut end = FIELD_LIMIT;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s[..end].to_owned()
            } else {
                s
            }
        };
        for (name, value) in pairs {
            let value = clip(value);
            match name.as_str() {
                "csrf" => form.csrf = value,
                "env" => form.env = value,
                "version" => form.version = value.parse().unwrap_or(0),
                "name" => form.name = value,
                "description" => form.description = value,
                "tags" => form.tags = value,
                "maintainer" => form.maintainer = value,
                "temporary" => form.temporary = true,
                "browsers" => form.browsers = true,
                "mobile" => form.mobile = true,
                "value_type" => form.value_type = value,
                "comment" => form.comment = value,
                "op" => form.op = value,
                "value" if form.rows.len() < MAX_VARIATIONS => form.rows.push(Row {
                    value,
                    ..Row::default()
                }),
                "vname" => {
                    if let Some(row) = form.rows.last_mut() {
                        row.name = value;
                    }
                }
                "vdesc" => {
                    if let Some(row) = form.rows.last_mut() {
                        row.description = value;
                    }
                }
                "origin" => {
                    if let Some(row) = form.rows.last_mut() {
                        row.origin = value;
                    }
                }
                _ => {}
            }
        }
        form
    }

    /// Applies a row operation (`up:2`, `down:0`, `remove:1`, `add`); false when `op` is none.
    fn edit_rows(&mut self, op: &str) -> bool {
        let (verb, at) = op.split_once(':').unwrap_or((op, ""));
        let at: Option<usize> = at.parse().ok().filter(|&i| i < self.rows.len());
        match (verb, at) {
            ("add", _) => {
                if self.rows.len() < MAX_VARIATIONS {
                    self.rows.push(Row::default());
                }
            }
            ("up", Some(i)) if i > 0 => self.rows.swap(i, i - 1),
            ("down", Some(i)) if i + 1 < self.rows.len() => self.rows.swap(i, i + 1),
            ("remove", Some(i)) => {
                self.rows.remove(i);
            }
            ("up" | "down" | "remove", _) => {}
            _ => return false,
        }
        true
    }
}

/// Reads one typed value as the form's type. Errors name the variation as people count it.
fn parse_value(text: &str, value_type: &str, position: usize) -> Result<Value, AppError> {
    let field = format!("variations[{}]", position - 1);
    let shown = crate::excerpt(text);
    match value_type {
        "number" => {
            let n: f64 = text.trim().parse().map_err(|_| {
                AppError::invalid(
                    flagstaff_app::validate::codes::INVALID_FIELD,
                    &field,
                    format!("Variation {position}: “{shown}” is not a number"),
                )
            })?;
            serde_json::Number::from_f64(n)
                .map(|n| flagstaff_app::model::integral(Value::Number(n)))
                .ok_or_else(|| {
                    AppError::invalid(
                        flagstaff_app::validate::codes::INVALID_FIELD,
                        &field,
                        format!("Variation {position}: numbers must be finite"),
                    )
                })
        }
        "json" => serde_json::from_str(text).map_err(|_| {
            AppError::invalid(
                flagstaff_app::validate::codes::INVALID_FIELD,
                &field,
                format!("Variation {position}: “{shown}” is not JSON (strings need quotes)"),
            )
        }),
        _ => Ok(Value::String(text.to_owned())),
    }
}

/// The definition and variation origins the form describes.
fn definition_of(
    form: &SettingsForm,
    current: &FlagDefinition,
) -> Result<(FlagDefinition, Vec<Option<usize>>), AppError> {
    let mut variations = Vec::with_capacity(form.rows.len());
    let mut origins = Vec::with_capacity(form.rows.len());
    for (i, row) in form.rows.iter().enumerate() {
        let origin: Option<usize> = row.origin.parse().ok();
        // Boolean and migration flags keep their values; only names and descriptions are
        // edited.
        let value = match (current.kind, origin.and_then(|o| current.variations.get(o))) {
            (FlagKind::Boolean | FlagKind::Migration, Some(old)) => old.value.clone(),
            _ => parse_value(&row.value, &form.value_type, i + 1)?,
        };
        variations.push(Variation {
            value,
            name: Some(row.name.trim().to_owned()).filter(|s| !s.is_empty()),
            description: Some(row.description.trim().to_owned()).filter(|s| !s.is_empty()),
        });
        origins.push(origin);
    }
    let definition = FlagDefinition {
        key: current.key.clone(),
        name: form.name.trim().to_owned(),
        description: form.description.trim().to_owned(),
        tags: form
            .tags
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        kind: current.kind,
        variations,
        temporary: form.temporary,
        maintainer: Some(form.maintainer.trim().to_owned()).filter(|m| !m.is_empty()),
        client_side_availability: ClientSideAvailability {
            using_environment_id: form.browsers,
            using_mobile_key: form.mobile,
        },
        archived: current.archived,
        migration: current.migration,
    };
    Ok((definition, origins))
}

fn label(v: &Variation) -> String {
    let value = match &v.value {
        Value::String(s) => format!("“{}”", crate::excerpt(s)),
        other => crate::excerpt(&other.to_string()),
    };
    match &v.name {
        Some(name) => format!("{name} ({value})"),
        None => value,
    }
}

/// The change in words, one line per difference, for the review.
pub(crate) fn describe_changes(
    before: &FlagDefinition,
    after: &FlagDefinition,
    origins: &[Option<usize>],
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut text = |what: &str, a: &str, b: &str| {
        if a != b {
            lines.push(match (a.is_empty(), b.is_empty()) {
                (true, _) => format!("{what} set to “{}”", crate::excerpt(b)),
                (_, true) => format!("{what} cleared (was “{}”)", crate::excerpt(a)),
                _ => format!(
                    "{what} changes from “{}” to “{}”",
                    crate::excerpt(a),
                    crate::excerpt(b)
                ),
            });
        }
    };
    text("Name", &before.name, &after.name);
    text("Description", &before.description, &after.description);
    text("Tags", &before.tags.join(", "), &after.tags.join(", "));
    text(
        "Maintainer",
        before.maintainer.as_deref().unwrap_or(""),
        after.maintainer.as_deref().unwrap_or(""),
    );
    if before.temporary != after.temporary {
        lines.push(if after.temporary {
            "Becomes temporary: it will be reported as stale once it serves one value".into()
        } else {
            "Becomes permanent: it will not be reported as stale".into()
        });
    }
    let availability =
        |a: ClientSideAvailability| match (a.using_environment_id, a.using_mobile_key) {
            (true, true) => "browsers and mobile apps",
            (true, false) => "browsers only",
            (false, true) => "mobile apps only",
            (false, false) => "server-side SDKs only",
        };
    if before.client_side_availability != after.client_side_availability {
        lines.push(format!(
            "Available to {} (was {})",
            availability(after.client_side_availability),
            availability(before.client_side_availability)
        ));
    }
    for (old, v) in before.variations.iter().enumerate() {
        if !origins.contains(&Some(old)) {
            lines.push(format!("Variation {} {} is removed", old + 1, label(v)));
        }
    }
    for (new, (v, origin)) in after.variations.iter().zip(origins).enumerate() {
        let Some(old) = *origin else {
            lines.push(format!("Variation {} {} is added", new + 1, label(v)));
            continue;
        };
        let Some(was) = before.variations.get(old) else {
            continue;
        };
        if was.value != v.value {
            lines.push(format!(
                "Variation {}'s value changes from {} to {}: everyone it is served to gets the new value",
                old + 1,
                label(was),
                label(v)
            ));
        }
        if was.name != v.name {
            lines.push(match &v.name {
                Some(name) => format!(
                    "Variation {} {} is named “{}”",
                    old + 1,
                    label(was),
                    crate::excerpt(name)
                ),
                None => format!("Variation {} {} loses its name", old + 1, label(was)),
            });
        }
        if was.description != v.description {
            lines.push(match &v.description {
                Some(d) => format!(
                    "Variation {} {} is described as “{}”",
                    old + 1,
                    label(was),
                    crate::excerpt(d)
                ),
                None => format!("Variation {} {} loses its description", old + 1, label(was)),
            });
        }
        if old != new {
            lines.push(format!(
                "Variation {} moves from position {} to {}; targeting follows it",
                label(v),
                old + 1,
                new + 1
            ));
        }
    }
    lines
}

#[derive(Template)]
#[template(path = "flag_settings.html")]
struct SettingsPage {
    nav: Nav,
    key: String,
    /// Boolean and migration flags: values fixed, names and descriptions editable.
    fixed: bool,
    form: SettingsForm,
    /// The change in words when reviewing; empty while editing.
    review: Vec<String>,
    reviewing: bool,
    error: Option<String>,
    /// The field the error is about, `variations[i]` counting from 0 as the rows do.
    field: String,
}

impl SettingsPage {
    /// Whether row `i` is the faulty field.
    fn row_invalid(&self, i: &usize) -> bool {
        self.field == format!("variations[{i}]")
    }
}

pub(crate) async fn page(
    State(dashboard): DashState,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Query(q): Query<EnvQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        q.env.as_deref(),
        "flags",
        format!("/projects/{project}/flags/{key}/settings"),
    )
    .await?;
    let current = dashboard.app.flag(&viewer.actor, &project, &key).await?;
    let form = SettingsForm::from_definition(&current.value, current.version, &nav.environment);
    Ok(render(&SettingsPage {
        nav,
        key,
        fixed: current.value.kind != FlagKind::Multivariate,
        form,
        review: Vec::new(),
        reviewing: false,
        error: None,
        field: String::new(),
    }))
}

/// Every button of the form posts here: a row operation, "review" or "save".
pub(crate) async fn post(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, Response> {
    let mut form = SettingsForm::from_pairs(pairs);
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let env = Some(form.env.as_str()).filter(|e| !e.is_empty());
    let nav = Nav::new(
        &dashboard,
        &viewer,
        &project,
        env,
        "flags",
        format!("/projects/{project}/flags/{key}/settings"),
    )
    .await
    .map_err(IntoResponse::into_response)?;
    let current = dashboard
        .app
        .flag(&viewer.actor, &project, &key)
        .await
        .map_err(|e| PageError(e).into_response())?;
    let fixed = current.value.kind != FlagKind::Multivariate;
    let op = std::mem::take(&mut form.op);
    let mut page = SettingsPage {
        nav,
        key: key.clone(),
        fixed,
        form,
        review: Vec::new(),
        reviewing: false,
        error: None,
        field: String::new(),
    };
    if !fixed && page.form.edit_rows(&op) {
        return Ok(render(&page));
    }
    let result = definition_of(&page.form, &current.value);
    let (definition, origins) = match result {
        Ok(parts) => parts,
        Err(e) => return Ok(refused(page, e)),
    };
    if op != "save" {
        page.review = describe_changes(&current.value, &definition, &origins);
        page.reviewing = true;
        return Ok(render(&page));
    }
    let comment = if page.form.comment.trim().is_empty() {
        "settings changed in the dashboard".to_owned()
    } else {
        page.form.comment.trim().to_owned()
    };
    match dashboard
        .app
        .update_flag_mapped(
            &viewer.actor,
            &project,
            &key,
            definition,
            Some(origins),
            page.form.version,
            &comment,
        )
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!(
            "/projects/{project}/flags/{key}?env={}",
            crate::url_encode(&page.nav.environment)
        ))
        .into_response()),
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict { .. })) => Ok(refused(page, e)),
        Err(e) => Err(PageError(e).into_response()),
    }
}

/// The form again, with the error said in words and its field marked.
fn refused(mut page: SettingsPage, error: AppError) -> Response {
    let (field, message) = match error {
        AppError::Invalid { field, message, .. } => (field, message),
        AppError::Conflict { .. } => (
            String::new(),
            "Someone changed this flag since you opened the page. Open its settings again to \
             start from what is saved now."
                .to_owned(),
        ),
        other => (String::new(), other.to_string()),
    };
    page.field = field;
    page.error = Some(crate::errors::humane(&page.field, &message));
    page.reviewing = false;
    let mut response = render(&page);
    *response.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flag(values: Value) -> FlagDefinition {
        serde_json::from_value(
            json!({"key": "colour", "name": "Colour", "kind": "multivariate",
            "variations": values}),
        )
        .unwrap()
    }

    #[test]
    fn rows_move_and_keep_where_they_came_from() {
        let current = flag(json!([{"value": "red"}, {"value": "green"}, {"value": "blue"}]));
        let mut form = SettingsForm::from_definition(&current, 3, "production");
        assert!(form.edit_rows("up:2"));
        assert!(form.edit_rows("remove:2"));
        assert!(form.edit_rows("add"));
        form.rows[2].value = "pink".into();
        assert!(!form.edit_rows("review"));
        let (after, origins) = definition_of(&form, &current).unwrap();
        assert_eq!(origins, vec![Some(0), Some(2), None]);
        let lines = describe_changes(&current, &after, &origins);
        assert_eq!(
            lines,
            vec![
                "Variation 2 “green” is removed",
                "Variation “blue” moves from position 3 to 2; targeting follows it",
                "Variation 3 “pink” is added",
            ]
        );
    }

    #[test]
    fn posted_pairs_group_into_rows_and_long_input_is_clipped() {
        let long = "x".repeat(FIELD_LIMIT + 5);
        let pairs = vec![
            ("name".to_owned(), long),
            ("value".into(), "1".into()),
            ("vname".into(), "One".into()),
            ("origin".into(), "0".into()),
            ("value".into(), "2".into()),
            ("origin".into(), "".into()),
            ("temporary".into(), "on".into()),
        ];
        let form = SettingsForm::from_pairs(pairs);
        assert_eq!(form.name.len(), FIELD_LIMIT);
        assert_eq!(form.rows.len(), 2);
        assert_eq!(form.rows[0].name, "One");
        assert_eq!(form.rows[1].origin, "");
        assert!(form.temporary && !form.mobile);
    }

    #[test]
    fn a_bad_number_is_named_as_people_count_and_not_echoed_whole() {
        let e = parse_value(&"9".repeat(5000).replace('9', "z"), "number", 2).unwrap_err();
        let AppError::Invalid { field, message, .. } = e else {
            panic!()
        };
        assert_eq!(field, "variations[1]");
        assert!(message.starts_with("Variation 2: "), "{message}");
        assert!(message.len() < 200, "{message}");
        assert_eq!(
            parse_value("1000", "number", 1).unwrap().to_string(),
            "1000"
        );
    }
}
