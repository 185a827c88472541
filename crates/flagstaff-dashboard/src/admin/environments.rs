//! Environments and their keys: settings, and rotation that shows the new key once.

use super::*;

pub(crate) struct ShownEnvironment {
    pub key: String,
    pub name: String,
    pub client_side_id: String,
    pub sdk_key_hint: String,
    pub mobile_key_hint: String,
    pub secure_mode: bool,
    pub critical: bool,
    pub approvals: flagstaff_app::model::ApprovalSettings,
}

#[derive(Template)]
#[template(path = "environments.html")]
struct EnvironmentsPage {
    nav: Nav,
    environments: Vec<ShownEnvironment>,
    /// A key just rotated: (environment, what, the key), shown once.
    revealed: Option<(String, String, String)>,
    error: Option<String>,
}

async fn environments_page(
    dashboard: &Dashboard,
    viewer: &Viewer,
    project: &str,
    revealed: Option<(String, String, String)>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let nav = Nav::new(
        dashboard,
        viewer,
        project,
        None,
        "environments",
        format!("/projects/{project}/environments"),
    )
    .await?;
    let environments = nav
        .environments
        .iter()
        .map(|e| ShownEnvironment {
            key: e.key.clone(),
            name: e.name.clone(),
            client_side_id: e.client_side_id.clone(),
            sdk_key_hint: e.sdk_key_hint.clone(),
            mobile_key_hint: e.mobile_key_hint.clone(),
            secure_mode: e.secure_mode,
            critical: e.critical,
            approvals: e.approvals.clone(),
        })
        .collect();
    let failed = error.is_some();
    let mut page = render(&EnvironmentsPage {
        nav,
        environments,
        revealed,
        error,
    });
    if failed {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(page)
}

pub(crate) async fn environments(
    State(dashboard): DashState,
    viewer: Viewer,
    Path(project): Path<String>,
) -> Result<Response, PageError> {
    environments_page(&dashboard, &viewer, &project, None, None).await
}

#[derive(Deserialize)]
pub(crate) struct RotateForm {
    #[serde(default)]
    csrf: String,
    kind: String,
    #[serde(default)]
    grace_hours: u64,
}

pub(crate) async fn rotate(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, environment)): Path<(String, String)>,
    Form(form): Form<RotateForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let (kind, label) = match form.kind.as_str() {
        "mobile" => (CredentialKind::Mobile, "mobile key"),
        _ => (CredentialKind::Sdk, "SDK key"),
    };
    let result = dashboard
        .app
        .rotate_key(
            &viewer.actor,
            &project,
            &environment,
            kind,
            form.grace_hours.min(24 * 7) * 3600,
            "rotated in the dashboard",
        )
        .await;
    let page = match result {
        Ok(key) => {
            environments_page(
                &dashboard,
                &viewer,
                &project,
                Some((environment, label.to_owned(), key)),
                None,
            )
            .await
        }
        Err(e @ AppError::Forbidden(_)) => Err(PageError(e)),
        Err(e) => environments_page(&dashboard, &viewer, &project, None, Some(e.to_string())).await,
    };
    page.map_err(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    critical: Option<String>,
    #[serde(default)]
    secure_mode: Option<String>,
    #[serde(default)]
    approvals_required: Option<String>,
    #[serde(default)]
    min_approvals: Option<String>,
    #[serde(default)]
    can_review_own: Option<String>,
    #[serde(default)]
    bypass_role: Option<String>,
}

impl SettingsForm {
    /// The approval rules the form describes; a number that is not one is refused by the use
    /// case's validation (0 approvals), never read as a default.
    fn approvals(&self) -> flagstaff_app::model::ApprovalSettings {
        flagstaff_app::model::ApprovalSettings {
            required: self.approvals_required.is_some(),
            min_approvals: self
                .min_approvals
                .as_deref()
                .map_or(Some(1), |n| n.trim().parse().ok())
                .unwrap_or(0),
            can_review_own: self.can_review_own.is_some(),
            bypass_role: match self.bypass_role.as_deref() {
                Some("admin") => Some(Role::Admin),
                Some("writer") => Some(Role::Writer),
                _ => None,
            },
        }
    }
}

pub(crate) async fn environment_settings(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, environment)): Path<(String, String)>,
    Form(form): Form<SettingsForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let app = &dashboard.app;
    let result = async {
        let current = app
            .environment(&viewer.actor, &project, &environment)
            .await?;
        app.update_environment(
            EnvRef {
                project: &project,
                environment: &environment,
            },
            &current.value.name,
            EnvironmentSettings {
                secure_mode: Some(form.secure_mode.is_some()),
                critical: Some(form.critical.is_some()),
                approvals: Some(form.approvals()),
            },
            WriteMeta {
                actor: &viewer.actor,
                expected: current.version,
                comment: "changed in the dashboard",
            },
        )
        .await
    }
    .await;
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/projects/{project}/environments")).into_response()),
        Err(e @ AppError::Forbidden(_)) => Err(PageError(e).into_response()),
        Err(e) => environments_page(&dashboard, &viewer, &project, None, Some(e.to_string()))
            .await
            .map_err(IntoResponse::into_response),
    }
}
