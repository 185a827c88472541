//! Administration: environments and their keys, members and API tokens, one module each.
//!
//! Keys are stored only as hashes, so the SDK and mobile keys can be shown (and copied) exactly
//! once: when they are rotated here. The client-side ID is public by design (it is in every web
//! page that uses the browser SDK) and can be copied at any time.

mod environments;
mod members;
mod roles;
mod tokens;
mod webhooks;

pub(crate) use environments::{
    create_environment, delete_environment, environment_settings, environments, environments_page,
    rotate,
};
pub(crate) use members::{change_roles, invite, members, remove_member, revoke_invitation};
pub(crate) use roles::{create_role, delete_role, delete_team, roles, save_team, update_role};
pub(crate) use tokens::{create_token, revoke_token, tokens};
pub(crate) use webhooks::{create_webhook, webhook_action, webhooks};

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use flagstaff_app::{AppError, CredentialKind, EnvironmentSettings, Member, Role, TokenInfo};
use flagstaff_app::{EnvRef, NewToken, WriteMeta};
use serde::Deserialize;

use crate::session::{self, Viewer};
use crate::{DashState, Dashboard, Nav, PageError, render, time};

#[derive(Deserialize, Default)]
pub(crate) struct ProjectQuery {
    project: Option<String>,
}

/// The frame for pages outside any project: the viewer's first project (or the one named).
async fn admin_nav(
    dashboard: &Dashboard,
    viewer: &Viewer,
    project: Option<String>,
    tab: &'static str,
) -> Result<Nav, PageError> {
    if !viewer.is_admin() {
        return Err(PageError(AppError::Forbidden(
            "members, roles, API tokens and webhooks are managed by admins".into(),
        )));
    }
    let project = match project {
        Some(p) => p,
        None => dashboard
            .app
            .list_projects(&viewer.actor)
            .await?
            .first()
            .map(|p| p.key.clone())
            .unwrap_or_default(),
    };
    Nav::new(dashboard, viewer, &project, None, tab, format!("/{tab}")).await
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// A form field sent as a list of pairs (forms with checkboxes named after keys), trimmed;
/// empty when absent.
fn field<'f>(fields: &'f [(String, String)], name: &str) -> &'f str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.trim())
}

/// The keys of the checked checkboxes named `<prefix><key>` (`role_support`, `member_ann@…`).
fn checked(fields: &[(String, String)], prefix: &str) -> Vec<String> {
    fields
        .iter()
        .filter_map(|(name, _)| name.strip_prefix(prefix).map(str::to_owned))
        .collect()
}

fn role(text: &str) -> Role {
    match text {
        "admin" => Role::Admin,
        "writer" => Role::Writer,
        "noAccess" => Role::NoAccess,
        _ => Role::Reader,
    }
}
