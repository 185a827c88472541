//! Webhooks: every change (audit entry) a webhook's statements select is POSTed to its URL as
//! JSON, signed, retried, and logged.
//!
//! Delivery never slows a write: writes only append to the audit log, as always. A dispatcher
//! on every node follows the log and fills the durable outbox (`flagstaff-store`'s `outbox`:
//! one row per entry per webhook, whose id is the delivery id the receiver sees), moving a
//! shared cursor by compare-and-set so that each entry is queued once cluster-wide, even when
//! a node dies between reading and queueing (the entry is simply queued by the next run). A
//! node then claims a due row with a lease, sends it, and records the outcome; a node that dies
//! mid-attempt leaves the lease to run out and the row is sent again with the same delivery id
//! (at least once, never lost; receivers that must act once deduplicate on
//! `X-Flagstaff-Delivery`).
//!
//! With a secret, `X-Flagstaff-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>` lets a receiver check origin and integrity, and reject replays of old
//! deliveries by their timestamp (LaunchDarkly's signature has no timestamp). The secret must
//! be kept as given to sign with it, so it is the one secret Flagstaff stores in the clear; it
//! is never shown again after creation (only its last characters).
//!
//! Webhook URLs may not point at loopback, private or link-local addresses (checked when
//! created, and again at every connection, on every address a name resolves to, so a DNS
//! answer cannot turn a public name into an internal one), unless the server runs with
//! `--webhooks-allow-private`.

use std::net::IpAddr;
use std::time::Duration;

use flagstaff_store::{Expect, OutboxItem, Write, outbox_state};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use crate::webhook_delivery::{signature, webhook_client};

use crate::access::manage;
use crate::changes::{Action, Scope};
use crate::model::kinds;
use crate::policy::{Policy, Resource};
use crate::{
    Actor, App, AppError, ErrorCode, Result, Versioned, body, decode, draft, hint, random_hex,
};

/// Attempts per delivery before it is given up (about 45 minutes of retries in all).
pub const MAX_ATTEMPTS: u32 = 12;
/// How long one attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries sent at once per node.
pub const DELIVERIES_AT_ONCE: usize = 8;
/// Most webhooks.
pub const MAX_WEBHOOKS: usize = 100;
/// Finished deliveries are kept this long for their logs.
pub const DELIVERY_LOG_DAYS: i64 = 14;
pub(crate) const CURSOR: &str = "webhooks";

/// A webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Its id.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Where changes are POSTed.
    pub url: String,
    /// The signing secret (never serialized in answers; see [`WebhookView`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Whether it receives changes.
    pub on: bool,
    /// Which changes it receives (policy statements over resources; all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statements: Option<Value>,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: i64,
    /// It receives changes after this position of the change feed (its creation).
    pub since: u64,
}

/// A webhook as answers show it: the secret only by its last characters.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// The last characters of the secret, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_hint: Option<String>,
    /// On or off.
    pub on: bool,
    /// Its filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statements: Option<Value>,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: i64,
    /// Its version.
    pub version: u64,
}

impl WebhookView {
    fn of(webhook: &Webhook, version: u64) -> WebhookView {
        WebhookView {
            id: webhook.id.clone(),
            name: webhook.name.clone(),
            url: webhook.url.clone(),
            secret_hint: webhook.secret.as_deref().map(hint),
            on: webhook.on,
            statements: webhook.statements.clone(),
            created_by: webhook.created_by.clone(),
            created_at: webhook.created_at,
            version,
        }
    }
}

/// A request for a webhook, or (with `PUT`) its new state.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewWebhook {
    /// A name.
    #[serde(default)]
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// The signing secret (absent on update: unchanged).
    #[serde(default)]
    pub secret: Option<String>,
    /// On (default) or off.
    #[serde(default = "yes")]
    pub on: bool,
    /// Which changes (absent: all).
    #[serde(default)]
    pub statements: Option<Value>,
}

fn yes() -> bool {
    true
}

/// One delivery and its attempts.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The delivery id (`X-Flagstaff-Delivery`).
    pub id: String,
    /// The change it carries (audit sequence number).
    pub seq: u64,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due, while pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    /// Each attempt: `at`, `status` (the response code, if any), `ms`, `error`.
    pub log: Value,
    /// When it was queued.
    pub created_at: i64,
}

impl From<OutboxItem> for Delivery {
    fn from(item: OutboxItem) -> Delivery {
        Delivery {
            next_attempt_at: (item.state == outbox_state::PENDING).then_some(item.next_at),
            id: item.id,
            seq: item.seq,
            state: item.state,
            attempts: item.attempts,
            log: item.log,
            created_at: item.created_at,
        }
    }
}

/// Whether an address is one webhooks may reach without `--webhooks-allow-private`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::invalid(ErrorCode::InvalidField, field, message)
}

/// The resource an audit entry is about, for webhook statements.
pub(crate) fn entry_resource(kind: &str, scope: &Scope, key: &str, tags: &[String]) -> Resource {
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    match (kind, scope) {
        (kinds::PROJECT, _) => Resource::new().with("proj", key, &[]),
        (kinds::ENVIRONMENT, Scope::Project(p)) => {
            Resource::new().with("proj", p, &[]).with("env", key, &[])
        }
        (kinds::FLAG, Scope::Project(p)) => Resource::new()
            .with("proj", p, &[])
            .with("env", "*", &[])
            .with("flag", key, &tags),
        (
            kinds::SEGMENT,
            Scope::Environment {
                project,
                environment,
            },
        ) => Resource::new()
            .with("proj", project, &[])
            .with("env", environment, &[])
            .with("segment", key, &[]),
        (
            _,
            Scope::Environment {
                project,
                environment,
            },
        ) => {
            let env = Resource::new()
                .with("proj", project, &[])
                .with("env", environment, &[]);
            match kind {
                kinds::TARGETING => env.with("flag", key, &tags),
                _ => env,
            }
        }
        (_, Scope::Project(p)) => Resource::new().with("proj", p, &[]),
        (kinds::MEMBER | kinds::INVITATION, Scope::Global) => {
            Resource::new().with("member", key, &[])
        }
        (kinds::TEAM, Scope::Global) => Resource::new().with("team", key, &[]),
        (kinds::ROLE, Scope::Global) => Resource::new().with("role", key, &[]),
        (kinds::WEBHOOK, Scope::Global) => Resource::new().with("webhook", key, &[]),
        (_, Scope::Global) => Resource::new().with("token", key, &[]),
    }
}

/// A webhook's filter, parsed: statements over resources, whose actions must be `*` (audit
/// entries are not policy actions, so any other action list would silently match nothing).
pub(crate) fn parse_statements(statements: &Value) -> Result<Policy> {
    let policy = Policy::parse(statements).map_err(|e| crate::prefix_field(e, "statements"))?;
    for (i, statement) in statements.as_array().into_iter().flatten().enumerate() {
        if statement.get("actions") != Some(&json!(["*"])) {
            return Err(invalid(
                &format!("statements[{i}].actions"),
                "webhook statements select resources: their actions are [\"*\"]",
            ));
        }
    }
    Ok(policy)
}

impl App {
    /// Checks a webhook URL: http(s), and not an internal address unless allowed.
    pub(crate) fn check_webhook_url(&self, url: &str) -> Result<()> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| invalid("url", format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || url.len() > 2000 {
            return Err(invalid(
                "url",
                "an http:// or https:// URL of at most 2000 characters",
            ));
        }
        let host = parsed.host_str().unwrap_or_default();
        if host.is_empty() {
            return Err(invalid("url", "a URL with a host"));
        }
        if !self.webhooks_allow_private {
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = literal.parse::<IpAddr>() {
                if !is_public(ip) {
                    return Err(invalid(
                        "url",
                        "loopback, private and link-local addresses are refused (the server's --webhooks-allow-private allows them)",
                    ));
                }
            } else if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") {
                return Err(invalid(
                    "url",
                    "localhost is refused (see --webhooks-allow-private)",
                ));
            }
        }
        Ok(())
    }

    fn checked_webhook(&self, new: &NewWebhook) -> Result<()> {
        self.check_webhook_url(&new.url)?;
        if new.name.chars().count() > 200 {
            return Err(invalid("name", "at most 200 characters"));
        }
        if let Some(secret) = &new.secret
            && (secret.len() < 16 || secret.len() > 512)
        {
            return Err(invalid("secret", "16 to 512 characters"));
        }
        if let Some(statements) = &new.statements {
            parse_statements(statements)?;
        }
        Ok(())
    }

    /// Creates a webhook (`createWebhook`, admins by default); it receives changes from now on.
    pub async fn create_webhook(
        &self,
        actor: &Actor,
        new: NewWebhook,
        comment: &str,
    ) -> Result<WebhookView> {
        actor.authorize("createWebhook", &Resource::new().with("webhook", "*", &[]))?;
        self.checked_webhook(&new)?;
        if self.store.list(kinds::WEBHOOK, "").await?.len() >= MAX_WEBHOOKS {
            return Err(invalid("url", format!("at most {MAX_WEBHOOKS} webhooks")));
        }
        let webhook = Webhook {
            id: random_hex(12),
            name: new.name,
            url: new.url,
            secret: new.secret,
            on: new.on,
            statements: new.statements,
            created_by: actor.id.clone(),
            created_at: self.now_millis(),
            since: self.head().await?,
        };
        let versions = self
            .commit(
                actor,
                vec![Write::Put {
                    kind: kinds::WEBHOOK.into(),
                    scope: String::new(),
                    key: webhook.id.clone(),
                    body: body(&webhook)?,
                    expect: Expect::Absent,
                }],
                draft(
                    Action::WebhookCreate,
                    "",
                    &webhook.id,
                    comment,
                    None,
                    Some(body(&WebhookView::of(&webhook, 1))?),
                ),
            )
            .await?;
        Ok(WebhookView::of(&webhook, versions[0]))
    }

    /// Every webhook (those who manage webhooks).
    pub async fn webhooks(&self, actor: &Actor) -> Result<Vec<WebhookView>> {
        actor.authorize_manage("webhook", manage::WEBHOOK)?;
        self.store
            .list(kinds::WEBHOOK, "")
            .await?
            .iter()
            .map(|doc| Ok(WebhookView::of(&decode(doc)?, doc.version)))
            .collect()
    }

    async fn load_webhook(&self, actor: &Actor, id: &str) -> Result<Versioned<Webhook>> {
        actor.authorize_manage("webhook", manage::WEBHOOK)?;
        self.load(kinds::WEBHOOK, "", id, || format!("webhook {id:?}"))
            .await
    }

    /// One webhook.
    pub async fn webhook(&self, actor: &Actor, id: &str) -> Result<WebhookView> {
        let webhook = self.load_webhook(actor, id).await?;
        Ok(WebhookView::of(&webhook.value, webhook.version))
    }

    /// Replaces a webhook's name, URL, filter, state and (when given) secret.
    pub async fn update_webhook(
        &self,
        actor: &Actor,
        id: &str,
        update: NewWebhook,
        expected: u64,
        comment: &str,
    ) -> Result<WebhookView> {
        let current = self.load_webhook(actor, id).await?;
        actor.authorize("updateWebhook", &Resource::new().with("webhook", id, &[]))?;
        self.checked_webhook(&update)?;
        if current.version != expected {
            return Err(AppError::Conflict {
                current: Some(current.version),
            });
        }
        let after = Webhook {
            name: update.name,
            url: update.url,
            secret: update.secret.or_else(|| current.value.secret.clone()),
            on: update.on,
            statements: update.statements,
            ..current.value.clone()
        };
        let versions = self
            .commit(
                actor,
                vec![Write::Put {
                    kind: kinds::WEBHOOK.into(),
                    scope: String::new(),
                    key: id.to_owned(),
                    body: body(&after)?,
                    expect: Expect::Version(expected),
                }],
                draft(
                    Action::WebhookUpdate,
                    "",
                    id,
                    comment,
                    Some(body(&WebhookView::of(&current.value, current.version))?),
                    Some(body(&WebhookView::of(&after, current.version + 1))?),
                ),
            )
            .await?;
        Ok(WebhookView::of(&after, versions[0]))
    }

    /// Deletes a webhook; its pending deliveries are dropped.
    pub async fn delete_webhook(&self, actor: &Actor, id: &str, comment: &str) -> Result<()> {
        let current = self.load_webhook(actor, id).await?;
        actor.authorize("deleteWebhook", &Resource::new().with("webhook", id, &[]))?;
        self.commit(
            actor,
            vec![Write::Delete {
                kind: kinds::WEBHOOK.into(),
                scope: String::new(),
                key: id.to_owned(),
                expect: Expect::Version(current.version),
            }],
            draft(
                Action::WebhookDelete,
                "",
                id,
                comment,
                Some(body(&WebhookView::of(&current.value, current.version))?),
                None,
            ),
        )
        .await?;
        self.store.outbox_prune(i64::MIN, &[id.to_owned()]).await?;
        Ok(())
    }

    /// A webhook's newest deliveries (at most `limit`), newest first.
    pub async fn webhook_deliveries(
        &self,
        actor: &Actor,
        id: &str,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        self.load_webhook(actor, id).await?;
        Ok(self
            .store
            .outbox_of(id, limit.clamp(1, 200))
            .await?
            .into_iter()
            .map(Delivery::from)
            .collect())
    }

    /// Sends a delivery again (same delivery id), now.
    pub async fn redeliver(&self, actor: &Actor, id: &str, delivery: &str) -> Result<Delivery> {
        self.load_webhook(actor, id).await?;
        actor.authorize("updateWebhook", &Resource::new().with("webhook", id, &[]))?;
        let item = self
            .store
            .outbox_item(delivery)
            .await?
            .filter(|i| i.target == id)
            .ok_or_else(|| AppError::NotFound(format!("delivery {delivery:?}")))?;
        if !self.store.outbox_retry(&item.id, self.now_millis()).await? {
            return Err(AppError::invalid(
                ErrorCode::InvalidState,
                "",
                "this delivery is being attempted already",
            ));
        }
        Ok(Delivery::from(
            self.store.outbox_item(delivery).await?.unwrap_or(item),
        ))
    }
}
