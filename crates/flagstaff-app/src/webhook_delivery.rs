//! Sending webhooks: the outbox filled from the audit log once cluster-wide, each delivery
//! claimed by one node, signed, sent with a client that reaches only public addresses, retried
//! with backoff and logged (`webhooks.rs` holds the resource and why it works this way).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagstaff_store::{NewOutboxItem, OutboxItem, outbox_state};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::changes::Scope;
use crate::model::kinds;
use crate::webhooks::{
    ATTEMPT_TIMEOUT, CURSOR, DELIVERIES_AT_ONCE, DELIVERY_LOG_DAYS, MAX_ATTEMPTS, Webhook,
    entry_resource, is_public, parse_statements,
};
use crate::{App, AuditQuery, Result, decode, uuid_v4};

/// An error for the delivery log, without the request's URL (which may hold credentials).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(inner) = source {
        detail = inner.to_string();
        source = inner.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Resolves names only to public addresses (see the module documentation).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addresses.is_empty() {
                return Err(format!(
                    "{} resolves to no public address (see --webhooks-allow-private)",
                    name.as_str()
                )
                .into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// The HTTP client webhooks are sent with: no redirects (a receiver cannot bounce a delivery
/// to an internal address), a connect timeout, and, unless `allow_private`, only public
/// addresses.
pub fn webhook_client(allow_private: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(ATTEMPT_TIMEOUT);
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder.build().unwrap_or_else(|_| reqwest::Client::new())
}

/// Signs a delivery body: the `X-Flagstaff-Signature` value.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

impl App {
    /// Queues the deliveries of changes committed since the outbox's cursor, for every webhook
    /// whose statements select them; returns how many were queued. Any number of nodes may run
    /// this at once: the cursor moves by compare-and-set, so each stretch is queued once.
    pub async fn fill_webhook_outbox(&self) -> Result<usize> {
        let head = self.head().await?;
        let mut webhooks = Vec::new();
        // A new cursor starts just before the oldest webhook's first change (nothing older is
        // for anyone), or at the head when there are no webhooks.
        let mut start = head;
        let all = self.store.list(kinds::WEBHOOK, "").await?;
        for doc in &all {
            let webhook: Webhook = decode(doc)?;
            start = start.min(webhook.since);
            if !webhook.on {
                continue;
            }
            let filter = match &webhook.statements {
                Some(statements) => Some(parse_statements(statements)?),
                None => None,
            };
            webhooks.push((webhook, filter));
        }
        // Without webhooks there is nothing to queue, and the cursor need not move: a webhook
        // created later receives only changes after its own creation (`since`). (Webhooks that
        // are off still move it: what happens while a webhook is off is never sent.)
        if all.is_empty() {
            return Ok(0);
        }
        let from = self.store.outbox_cursor(CURSOR, start).await?;
        if from >= head {
            return Ok(0);
        }
        let changes = self.changes_after(from, 500).await?;
        let Some(last) = changes.last().map(|c| c.seq) else {
            return Ok(0);
        };
        let mut items = Vec::new();
        let mut tags: std::collections::HashMap<(String, String), Vec<String>> = Default::default();
        for change in &changes {
            for (webhook, filter) in &webhooks {
                if change.seq <= webhook.since {
                    continue;
                }
                if let Some(filter) = filter {
                    let flag_tags = match (&change.kind[..], change.scope.project()) {
                        (kinds::FLAG | kinds::TARGETING, Some(project)) => {
                            let key = (project.to_owned(), change.key.clone());
                            if !tags.contains_key(&key) {
                                let found = self.flag_tags(project, &change.key).await?;
                                tags.insert(key.clone(), found);
                            }
                            tags[&key].clone()
                        }
                        _ => Vec::new(),
                    };
                    let resource =
                        entry_resource(&change.kind, &change.scope, &change.key, &flag_tags);
                    if !filter.decide("updateOn", &resource).allows() {
                        continue;
                    }
                }
                items.push(NewOutboxItem {
                    id: uuid_v4(),
                    target: webhook.id.clone(),
                    seq: change.seq,
                });
            }
        }
        let queued = items.len();
        let won = self
            .store
            .outbox_fill(CURSOR, from, last, &items, self.now_millis())
            .await?;
        Ok(if won { queued } else { 0 })
    }

    /// Sends every due delivery once (each claimed by exactly one node), at most
    /// [`DELIVERIES_AT_ONCE`] at a time; returns how many were attempted.
    pub async fn send_due_webhooks(&self, client: &reqwest::Client) -> Result<usize> {
        let now = self.now_millis();
        let due = self.store.outbox_due(now, 64).await?;
        let limit = Arc::new(tokio::sync::Semaphore::new(DELIVERIES_AT_ONCE));
        let mut tasks = tokio::task::JoinSet::new();
        let mut attempted = 0;
        for item in due {
            let lease = now + ATTEMPT_TIMEOUT.as_millis() as i64 * 3;
            if !self.store.outbox_claim(&item.id, now, lease).await? {
                continue;
            }
            attempted += 1;
            let permit = Arc::clone(&limit).acquire_owned().await;
            let app = self.clone();
            let client = client.clone();
            tasks.spawn(async move {
                let _permit = permit;
                if let Err(error) = app.attempt(&client, item).await {
                    tracing::warn!(%error, "cannot record a webhook delivery");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(attempted)
    }

    /// One attempt of one claimed delivery, and its record.
    async fn attempt(&self, client: &reqwest::Client, mut item: OutboxItem) -> Result<()> {
        item.attempts += 1;
        let webhook = match self
            .store
            .get_live(kinds::WEBHOOK, "", &item.target)
            .await?
        {
            Some(doc) => decode::<Webhook>(&doc)?,
            None => {
                return self
                    .store
                    .outbox_record(&item.id, outbox_state::FAILED, item.next_at, &item.log)
                    .await
                    .map_err(Into::into);
            }
        };
        let entry = self
            .store
            .audit(&AuditQuery {
                after_seq: Some(item.seq.saturating_sub(1)),
                limit: 1,
                ..AuditQuery::default()
            })
            .await?
            .into_iter()
            .next()
            .filter(|e| e.seq == item.seq);
        let Some(entry) = entry else {
            return Ok(self
                .store
                .outbox_record(&item.id, outbox_state::FAILED, item.next_at, &item.log)
                .await?);
        };
        let scope = Scope::parse(&entry.scope);
        let payload = json!({
            "delivery": item.id,
            "webhook": webhook.id,
            "seq": entry.seq,
            "at": entry.at,
            "actor": entry.actor,
            "action": entry.action,
            "kind": entry.kind,
            "project": scope.project(),
            "environment": match &scope { Scope::Environment { environment, .. } => Some(environment.as_str()), _ => None },
            "key": entry.key,
            "comment": entry.comment,
            "before": entry.before,
            "after": entry.after,
        });
        let body = payload.to_string();
        let started = Instant::now();
        let mut request = client
            .post(&webhook.url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("Flagstaff-Webhook/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-flagstaff-delivery", &item.id)
            .header("x-flagstaff-event", &entry.action)
            .timeout(ATTEMPT_TIMEOUT);
        if let Some(secret) = &webhook.secret {
            let t = self.now_millis() / 1000;
            request = request.header(
                "x-flagstaff-signature",
                signature(secret, t, body.as_bytes()),
            );
        }
        let result = match self.check_webhook_url(&webhook.url) {
            Err(e) => Err(e.to_string()),
            Ok(()) => request
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| describe(&e)),
        };
        let ms = started.elapsed().as_millis() as u64;
        let now = self.now_millis();
        let (status, error) = match &result {
            Ok(code) => (Some(*code), None),
            Err(e) => (None, Some(e.clone())),
        };
        let delivered = status.is_some_and(|c| (200..300).contains(&c));
        if let Value::Array(log) = &mut item.log {
            log.push(json!({"at": now, "status": status, "ms": ms, "error": error}));
            // The log is for people; twenty attempts tell the story.
            if log.len() > 20 {
                log.remove(0);
            }
        }
        let (state, next_at) = if delivered {
            (outbox_state::DELIVERED, now)
        } else if item.attempts >= MAX_ATTEMPTS {
            (outbox_state::FAILED, now)
        } else {
            // 1 s, 2 s, 4 s, … up to ten minutes between attempts.
            let backoff = 1000i64 << (item.attempts.saturating_sub(1)).min(20);
            (outbox_state::PENDING, now + backoff.min(600_000))
        };
        tracing::info!(webhook = %webhook.id, delivery = %item.id, ?status, ms, state, "webhook delivery attempt");
        Ok(self
            .store
            .outbox_record(&item.id, state, next_at, &item.log)
            .await?)
    }

    /// Follows the change feed and sends webhooks until the process ends (see the module
    /// documentation); `client` is [`webhook_client`]'s.
    pub async fn run_webhooks(self, client: reqwest::Client) {
        let mut commits = self.watch();
        let mut last_prune = 0i64;
        loop {
            // Without webhooks, one read per wake-up and nothing else: a server that uses none
            // pays (almost) nothing for them.
            let any = match self.store.list(kinds::WEBHOOK, "").await {
                Ok(docs) => !docs.is_empty(),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the webhooks");
                    false
                }
            };
            let mut wait = 1000;
            if any {
                if let Err(error) = self.fill_webhook_outbox().await {
                    tracing::warn!(%error, "cannot queue webhook deliveries");
                }
                if let Err(error) = self.send_due_webhooks(&client).await {
                    tracing::warn!(%error, "cannot send webhook deliveries");
                }
                if let Ok(Some(at)) = self.store.outbox_next_due().await {
                    wait = (at - self.now_millis()).clamp(0, 1000);
                }
            }
            let now = self.now_millis();
            if now - last_prune > 3_600_000 {
                last_prune = now;
                let _ = self
                    .store
                    .outbox_prune(now - DELIVERY_LOG_DAYS * 86_400_000, &[])
                    .await;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                changed = commits.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // A burst of commits (an import) is read as one batch, not one by one.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}
