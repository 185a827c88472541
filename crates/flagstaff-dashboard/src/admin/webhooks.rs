//! Webhooks: receivers of every change, with each one's newest deliveries and redelivery.

use super::*;
use flagstaff_app::{Delivery, NewWebhook, WebhookView};

pub(crate) struct ShownWebhook {
    pub webhook: WebhookView,
    pub filter: String,
    pub deliveries: Vec<ShownDelivery>,
}

pub(crate) struct ShownDelivery {
    pub id: String,
    pub seq: u64,
    pub state: String,
    pub attempts: u32,
    /// Each attempt: when, the response code or the error, how long.
    pub log: Vec<String>,
}

impl From<Delivery> for ShownDelivery {
    fn from(d: Delivery) -> ShownDelivery {
        let log = d
            .log
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let outcome = match (a["status"].as_u64(), a["error"].as_str()) {
                    (Some(code), _) => format!("HTTP {code}"),
                    (None, Some(error)) => error.to_owned(),
                    _ => "no answer".to_owned(),
                };
                format!(
                    "{} · {outcome} · {} ms",
                    time(a["at"].as_i64().unwrap_or(0)),
                    a["ms"].as_u64().unwrap_or(0)
                )
            })
            .collect();
        ShownDelivery {
            id: d.id,
            seq: d.seq,
            state: d.state,
            attempts: d.attempts,
            log,
        }
    }
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    nav: Nav,
    webhooks: Vec<ShownWebhook>,
    error: Option<String>,
}

async fn webhooks_page(
    dashboard: &Dashboard,
    viewer: &Viewer,
    error: Option<String>,
) -> Result<Response, PageError> {
    let nav = admin_nav(dashboard, viewer, None, "webhooks").await?;
    let app = &dashboard.app;
    let mut webhooks = Vec::new();
    for webhook in app.webhooks(&viewer.actor).await? {
        let deliveries = app
            .webhook_deliveries(&viewer.actor, &webhook.id, 20)
            .await?
            .into_iter()
            .map(ShownDelivery::from)
            .collect();
        let filter = match &webhook.statements {
            None => "every change".to_owned(),
            Some(statements) => statements
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["resources"].as_array().cloned().unwrap_or_default())
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
        };
        webhooks.push(ShownWebhook {
            webhook,
            filter,
            deliveries,
        });
    }
    let failed = error.is_some();
    let mut page = render(&WebhooksPage {
        nav,
        webhooks,
        error,
    });
    if failed {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(page)
}

pub(crate) async fn webhooks(
    State(dashboard): DashState,
    viewer: Viewer,
) -> Result<Response, PageError> {
    webhooks_page(&dashboard, &viewer, None).await
}

#[derive(Deserialize)]
pub(crate) struct WebhookForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    url: String,
    #[serde(default)]
    secret: String,
    /// Resource specifiers, comma-separated (empty: every change).
    #[serde(default)]
    resources: String,
}

pub(crate) async fn create_webhook(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Form(form): Form<WebhookForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let resources: Vec<&str> = form
        .resources
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    let new = NewWebhook {
        name: form.name.trim().to_owned(),
        url: form.url.trim().to_owned(),
        secret: Some(form.secret.trim().to_owned()).filter(|s| !s.is_empty()),
        on: true,
        statements: (!resources.is_empty()).then(
            || serde_json::json!([{"effect": "allow", "actions": ["*"], "resources": resources}]),
        ),
    };
    match dashboard
        .app
        .create_webhook(&viewer.actor, new, "created in the dashboard")
        .await
    {
        Ok(_) => Ok(Redirect::to("/webhooks").into_response()),
        Err(e @ AppError::Invalid { .. }) => {
            webhooks_page(&dashboard, &viewer, Some(e.to_string()))
                .await
                .map_err(IntoResponse::into_response)
        }
        Err(e) => Err(PageError(e).into_response()),
    }
}

#[derive(Deserialize)]
pub(crate) struct WebhookActionForm {
    #[serde(default)]
    csrf: String,
    /// `delete`, or a delivery id to send again.
    op: String,
}

pub(crate) async fn webhook_action(
    State(dashboard): DashState,
    headers: HeaderMap,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<WebhookActionForm>,
) -> Result<Response, Response> {
    viewer.check_csrf(&headers, Some(&form.csrf))?;
    let app = &dashboard.app;
    let result = match form.op.as_str() {
        "delete" => {
            app.delete_webhook(&viewer.actor, &id, "deleted in the dashboard")
                .await
        }
        delivery => app
            .redeliver(&viewer.actor, &id, delivery)
            .await
            .map(|_| ()),
    };
    result.map_err(|e| PageError(e).into_response())?;
    Ok(Redirect::to("/webhooks").into_response())
}
