//! Custom roles and teams: a form for the common case ("turn flags on and off in production"),
//! a JSON editor for the rest (validated by the server, errors naming the statement's field),
//! and teams with their members and roles.

use flagstaff_app::{CustomRole, Team, Versioned};
use serde_json::{Value, json};

use super::*;

/// A role as the page shows it.
struct RoleRow {
    role: CustomRole,
    version: u64,
    /// The policy, pretty-printed for the editor.
    json: String,
}

#[derive(Template)]
#[template(path = "roles.html")]
struct RolesPage {
    nav: Nav,
    roles: Vec<RoleRow>,
    teams: Vec<Versioned<Team>>,
    members: Vec<Member>,
    error: Option<String>,
    field: String,
}

/// The actions the common-case form offers, with what they mean to people.
const SIMPLE_ACTIONS: &[(&str, &str)] = &[
    ("updateOn", "Turn flags on and off"),
    ("updateTargets", "Change individual targets"),
    ("updateRules", "Change rules"),
    ("updateFallthrough", "Change the default rule"),
    ("updateOffVariation", "Change what is served when off"),
    ("updatePrerequisites", "Change prerequisites"),
];

impl RolesPage {
    fn simple_actions(&self) -> &'static [(&'static str, &'static str)] {
        SIMPLE_ACTIONS
    }
}

async fn roles_page(
    dashboard: &Dashboard,
    viewer: &Viewer,
    error: Option<(String, String)>,
) -> Result<Response, PageError> {
    let nav = admin_nav(dashboard, viewer, None, "roles").await?;
    let app = &dashboard.app;
    let roles = app
        .list_roles(&viewer.actor)
        .await?
        .into_iter()
        .map(|r| RoleRow {
            json: serde_json::to_string_pretty(&r.value.policy).unwrap_or_default(),
            version: r.version,
            role: r.value,
        })
        .collect();
    let failed = error.is_some();
    let (error, field) = error.map_or((None, String::new()), |(m, f)| (Some(m), f));
    let mut page = render(&RolesPage {
        nav,
        roles,
        teams: app.list_teams(&viewer.actor).await?,
        members: app.list_members(&viewer.actor).await?,
        error,
        field,
    });
    if failed {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(page)
}

pub(crate) async fn roles(
    State(dashboard): DashState,
    viewer: Viewer,
) -> Result<Response, PageError> {
    roles_page(&dashboard, &viewer, None).await
}

/// The policy the common-case form describes: read the project, and the chosen actions on the
/// flags (optionally only those with a tag) of one environment.
fn simple_policy(fields: &[(String, String)]) -> Value {
    let or_all = |value: &str| {
        if value.is_empty() {
            "*".to_owned()
        } else {
            value.to_owned()
        }
    };
    let project = or_all(field(fields, "project"));
    let environment = or_all(field(fields, "environment"));
    let tag = field(fields, "tag");
    let actions: Vec<&str> = SIMPLE_ACTIONS
        .iter()
        .map(|(action, _)| *action)
        .filter(|action| fields.iter().any(|(k, _)| k == &format!("action_{action}")))
        .collect();
    let mut flags = format!("proj/{project}:env/{environment}:flag/*");
    if !tag.is_empty() {
        flags.push(';');
        flags.push_str(tag);
    }
    json!([
        {"effect": "allow", "actions": ["viewProject"], "resources": [format!("proj/{project}")]},
        {"effect": "allow", "actions": actions, "resources": [flags]}
    ])
}

/// A refusal or invalid input shown on the page (the field named), anything else as an error page.
async fn after(dashboard: &Dashboard, viewer: &Viewer, result: Result<(), AppError>) -> Response {
    match result {
        Ok(()) => Redirect::to("/roles").into_response(),
        Err(AppError::Invalid { field, message, .. }) => {
            roles_page(dashboard, viewer, Some((message, field)))
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
        Err(e @ (AppError::AlreadyExists(_) | AppError::Conflict { .. })) => {
            roles_page(dashboard, viewer, Some((e.to_string(), "key".into())))
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
        Err(e) => PageError(e).into_response(),
    }
}

/// The policy typed in the JSON editor, or the error naming it.
fn typed_policy(text: &str) -> Result<Value, AppError> {
    serde_json::from_str(text).map_err(|e| {
        AppError::invalid(
            flagstaff_app::ErrorCode::InvalidField,
            "policy",
            format!("the policy is not JSON: {e}"),
        )
    })
}

/// Creates a role from the common-case form or from JSON (`mode=json`).
pub(crate) async fn create_role(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(field(&fields, "csrf")))?;
    let result = async {
        let policy = if field(&fields, "mode") == "json" {
            typed_policy(field(&fields, "policy"))?
        } else {
            simple_policy(&fields)
        };
        let role = CustomRole {
            key: field(&fields, "key").to_owned(),
            name: field(&fields, "name").to_owned(),
            description: field(&fields, "description").to_owned(),
            policy,
        };
        dashboard
            .app
            .create_role(&viewer.actor, role, "created in the dashboard")
            .await
            .map(|_| ())
    }
    .await;
    Ok(after(&dashboard, &viewer, result).await)
}

#[derive(Deserialize)]
pub(crate) struct RoleEdit {
    #[serde(default)]
    csrf: String,
    name: String,
    #[serde(default)]
    description: String,
    policy: String,
    version: u64,
}

/// Saves a role's JSON policy (at the version the page showed).
pub(crate) async fn update_role(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(key): Path<String>,
    Form(form): Form<RoleEdit>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let result = async {
        let role = CustomRole {
            key: key.clone(),
            name: form.name.trim().to_owned(),
            description: form.description.trim().to_owned(),
            policy: typed_policy(&form.policy)?,
        };
        dashboard
            .app
            .update_role(
                &viewer.actor,
                &key,
                role,
                form.version,
                "changed in the dashboard",
            )
            .await
            .map(|_| ())
    }
    .await;
    Ok(after(&dashboard, &viewer, result).await)
}

#[derive(Deserialize)]
pub(crate) struct VersionForm {
    #[serde(default)]
    csrf: String,
    version: u64,
}

pub(crate) async fn delete_role(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(key): Path<String>,
    Form(form): Form<VersionForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let result = dashboard
        .app
        .delete_role(
            &viewer.actor,
            &key,
            form.version,
            "deleted in the dashboard",
        )
        .await;
    Ok(after(&dashboard, &viewer, result).await)
}

/// Creates or replaces a team (`version` present: replace) from its form: members and roles
/// are checkboxes (`member_<email>`, `role_<key>`).
pub(crate) async fn save_team(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(field(&fields, "csrf")))?;
    let team = Team {
        key: field(&fields, "key").to_owned(),
        name: field(&fields, "name").to_owned(),
        description: field(&fields, "description").to_owned(),
        members: checked(&fields, "member_"),
        custom_roles: checked(&fields, "role_"),
    };
    let app = &dashboard.app;
    let result = match field(&fields, "version").parse::<u64>() {
        Ok(version) => {
            let key = team.key.clone();
            app.update_team(
                &viewer.actor,
                &key,
                team,
                version,
                "changed in the dashboard",
            )
            .await
        }
        Err(_) => {
            app.create_team(&viewer.actor, team, "created in the dashboard")
                .await
        }
    }
    .map(|_| ());
    Ok(after(&dashboard, &viewer, result).await)
}

pub(crate) async fn delete_team(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(key): Path<String>,
    Form(form): Form<VersionForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let result = dashboard
        .app
        .delete_team(
            &viewer.actor,
            &key,
            form.version,
            "deleted in the dashboard",
        )
        .await;
    Ok(after(&dashboard, &viewer, result).await)
}
