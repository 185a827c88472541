//! Environments and their keys: create (keys shown once), settings (name, colour, critical,
//! secure mode, approvals, the FDv1 fallback), delete behind a typed confirmation, and rotation that shows the new
//! key once.

use super::*;

pub(crate) struct ShownEnvironment {
    pub key: String,
    pub name: String,
    pub client_side_id: String,
    pub sdk_key_hint: String,
    pub mobile_key_hint: String,
    pub secure_mode: bool,
    /// SDKs that ask for FDv2 are told to use FDv1 (`X-LD-FD-Fallback`).
    pub fdv1_fallback: bool,
    pub critical: bool,
    pub approvals: flagstaff_app::model::ApprovalSettings,
    /// `#rrggbb`, or empty.
    pub color: String,
}

#[derive(Template)]
#[template(path = "environments.html")]
struct EnvironmentsPage {
    nav: Nav,
    environments: Vec<ShownEnvironment>,
    /// Keys just made: (environment, what, the key), shown once.
    revealed: Vec<(String, String, String)>,
    error: Option<String>,
}

/// The page, with keys just made (shown once) or an error.
pub(crate) async fn environments_page(
    dashboard: &Dashboard,
    viewer: &Viewer,
    project: &str,
    revealed: Vec<(String, String, String)>,
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
            fdv1_fallback: e.fdv1_fallback,
            critical: e.critical,
            approvals: e.approvals.clone(),
            color: e.color.clone().unwrap_or_default(),
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
    environments_page(&dashboard, &viewer, &project, Vec::new(), None).await
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
                vec![(environment, label.to_owned(), key)],
                None,
            )
            .await
        }
        Err(e @ AppError::Forbidden(_)) => Err(PageError(e)),
        Err(e) => {
            environments_page(&dashboard, &viewer, &project, Vec::new(), Some(said(&e))).await
        }
    };
    page.map_err(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    color: Option<String>,
    #[serde(default)]
    critical: Option<String>,
    #[serde(default)]
    secure_mode: Option<String>,
    #[serde(default)]
    fdv1_fallback: Option<String>,
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
            form.name
                .as_deref()
                .map(str::trim)
                .unwrap_or(&current.value.name),
            EnvironmentSettings {
                secure_mode: Some(form.secure_mode.is_some()),
                critical: Some(form.critical.is_some()),
                approvals: Some(form.approvals()),
                color: form.color.clone(),
                fdv1_fallback: Some(form.fdv1_fallback.is_some()),
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
        Err(e) => environments_page(&dashboard, &viewer, &project, Vec::new(), Some(said(&e)))
            .await
            .map_err(IntoResponse::into_response),
    }
}

/// An error said for people: the field as they see it, short.
fn said(error: &AppError) -> String {
    match error {
        AppError::Invalid { field, message, .. } => crate::errors::humane(field, message),
        AppError::AlreadyExists(what) => format!("There is already an {what}."),
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
pub(crate) struct NewEnvironmentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    name: String,
}

/// Creates an environment and shows its secret keys, once.
pub(crate) async fn create_environment(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(project): Path<String>,
    Form(form): Form<NewEnvironmentForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let name = form.name.trim();
    let key = if form.key.trim().is_empty() {
        crate::flags::key_from_name(name)
    } else {
        form.key.trim().to_owned()
    };
    let result = match flagstaff_app::validate::name("name", name) {
        Ok(()) => {
            dashboard
                .app
                .create_environment(
                    &viewer.actor,
                    &project,
                    &key,
                    name,
                    "created in the dashboard",
                )
                .await
        }
        Err(e) => Err(e),
    };
    let page = match result {
        Ok(created) => {
            let env = created.environment.name;
            let revealed = vec![
                (env.clone(), "SDK key".to_owned(), created.keys.sdk_key),
                (env, "mobile key".to_owned(), created.keys.mobile_key),
            ];
            environments_page(&dashboard, &viewer, &project, revealed, None).await
        }
        Err(e @ AppError::Forbidden(_)) => Err(PageError(e)),
        Err(e) => {
            environments_page(&dashboard, &viewer, &project, Vec::new(), Some(said(&e))).await
        }
    };
    page.map_err(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub(crate) struct DeleteEnvironmentForm {
    #[serde(default)]
    csrf: String,
    /// The environment's key, typed to confirm.
    #[serde(default)]
    confirm: String,
}

/// Deletes an environment with its targeting, segments and keys, once its key is typed.
pub(crate) async fn delete_environment(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path((project, environment)): Path<(String, String)>,
    Form(form): Form<DeleteEnvironmentForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let app = &dashboard.app;
    let result = async {
        let current = app
            .environment(&viewer.actor, &project, &environment)
            .await?;
        if form.confirm.trim() != environment {
            return Err(AppError::invalid(
                flagstaff_app::validate::codes::INVALID_FIELD,
                "confirm",
                format!(
                    "To delete {}, type its key “{environment}” exactly",
                    crate::excerpt(&current.value.name)
                ),
            ));
        }
        app.delete_environment(
            &viewer.actor,
            &project,
            &environment,
            current.version,
            "deleted in the dashboard",
        )
        .await
    }
    .await;
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/projects/{project}/environments")).into_response()),
        Err(e @ AppError::Forbidden(_)) => Err(PageError(e).into_response()),
        Err(e) => environments_page(&dashboard, &viewer, &project, Vec::new(), Some(said(&e)))
            .await
            .map_err(IntoResponse::into_response),
    }
}
