//! Flag triggers: a secret URL that turns one flag on or off in one environment, for monitoring
//! tools (New Relic, Datadog, Grafana alerts) that can call a URL but hold no API token.
//!
//! The URL's secret is stored only as its SHA-256 (a `credential` of type `trigger`), shown
//! once at creation or re-keying. A call with the secret executes the trigger's instruction as
//! an ordinary targeting change made by the trigger's creator with their rights at that moment
//! (the audit log names `trigger:<id> by <creator>`), at most `TRIGGER_CALLS_PER_MINUTE` times a
//! minute per trigger on each node. Triggers are the emergency path, so they pass an
//! environment's approval requirement, as LaunchDarkly's do; creating one needs
//! `createTriggers` and the right to turn the flag on or off.

use std::collections::HashMap;

use flagstaff_store::{Expect, Write};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::access::fingerprint;
use crate::approvals::Origin;
use crate::changes::Action;
use crate::deferred::{Parsed, Target};
use crate::model::kinds;
use crate::{
    Actor, App, AppError, ErrorCode, FlagRef, Result, body, decode, draft, hint, random_hex,
};

/// Calls one trigger may make per minute on one node; more get `429`.
pub const TRIGGER_CALLS_PER_MINUTE: u32 = 10;
/// Most triggers per flag and environment.
pub const MAX_TRIGGERS_PER_FLAG: usize = 20;
/// The prefix of trigger secrets.
pub const TRIGGER_PREFIX: &str = "trg-";

/// What a trigger does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TriggerAction {
    /// Turn targeting off (the kill switch).
    TurnFlagOff,
    /// Turn targeting on.
    TurnFlagOn,
}

/// A trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// Its id.
    pub id: String,
    /// The project.
    pub project: String,
    /// The environment.
    pub environment: String,
    /// The flag.
    pub flag: String,
    /// What it does.
    pub action: TriggerAction,
    /// Why it exists (the audit comment of what it does).
    #[serde(default)]
    pub comment: String,
    /// Off: calls are refused as if the URL did not exist.
    pub enabled: bool,
    /// The last characters of its secret, to recognise the URL.
    pub hint: String,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: i64,
    /// When it last changed the flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_triggered_at: Option<i64>,
    /// The SHA-256 of its secret: the key of the credential that finds it. Kept in the stored
    /// document only (answers clear it).
    #[serde(
        default,
        rename = "secretSha256",
        skip_serializing_if = "String::is_empty"
    )]
    pub(crate) fingerprint: String,
}

impl Trigger {
    fn scope(&self) -> String {
        crate::env_scope(&self.project, &self.environment)
    }

    /// The trigger as answers show it.
    fn shown(mut self) -> Trigger {
        self.fingerprint.clear();
        self
    }
}

/// A trigger with its URL, shown once.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewTriggerUrl {
    /// The trigger.
    #[serde(flatten)]
    pub trigger: Trigger,
    /// The path to `POST` to (append it to the server's address). Shown only now.
    pub trigger_url: String,
}

/// A request for a trigger.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTrigger {
    /// Turn the flag off or on.
    pub action: TriggerAction,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

/// A change to a trigger; absent fields stay.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerUpdate {
    /// On or off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// A new comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Replace the secret (the old URL stops working at once).
    #[serde(default)]
    pub reset_url: bool,
}

/// What a call did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerOutcome {
    /// The flag.
    pub flag: String,
    /// The environment.
    pub environment: String,
    /// Whether the flag changed (it may already have been as the trigger leaves it).
    pub changed: bool,
    /// The targeting's version now.
    pub version: u64,
}

/// Calls per trigger in the current minute, per node.
#[derive(Debug, Default)]
pub(crate) struct TriggerCalls(std::sync::Mutex<HashMap<String, (i64, u32)>>);

impl TriggerCalls {
    /// Counts a call; `Err(ms)` to wait when over the limit.
    fn admit(&self, id: &str, now: i64) -> std::result::Result<(), i64> {
        let mut calls = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if calls.len() > 10_000 {
            calls.retain(|_, (start, _)| now - *start < 60_000);
        }
        let entry = calls.entry(id.to_owned()).or_insert((now, 0));
        if now - entry.0 >= 60_000 {
            *entry = (now, 0);
        }
        if entry.1 >= TRIGGER_CALLS_PER_MINUTE {
            return Err(60_000 - (now - entry.0));
        }
        entry.1 += 1;
        Ok(())
    }
}

fn credential_write(secret_fingerprint: &str, trigger: &Trigger) -> Write {
    Write::Put {
        kind: kinds::CREDENTIAL.into(),
        scope: String::new(),
        key: secret_fingerprint.to_owned(),
        body: json!({"type": "trigger", "trigger": trigger.id, "project": trigger.project,
                     "environment": trigger.environment}),
        expect: Expect::Absent,
    }
}

fn new_secret() -> String {
    format!("{TRIGGER_PREFIX}{}", random_hex(24))
}

fn url_of(secret: &str) -> String {
    format!("/api/v1/triggers/{secret}")
}

impl App {
    async fn trigger_target(&self, actor: &Actor, flag: FlagRef<'_>) -> Result<()> {
        let target = Target::flag(flag.project, flag.environment, flag.key);
        let (resource, _) = self
            .target_resource(actor, &target, "createTriggers")
            .await?;
        actor.authorize("createTriggers", &resource)?;
        actor.authorize("updateOn", &resource)?;
        Ok(())
    }

    /// Creates a trigger; its URL is in the answer and nowhere else.
    pub async fn create_trigger(
        &self,
        actor: &Actor,
        flag: FlagRef<'_>,
        new: NewTrigger,
    ) -> Result<NewTriggerUrl> {
        self.trigger_target(actor, flag).await?;
        // The flag must exist in this environment.
        self.draft_of(&Target::flag(flag.project, flag.environment, flag.key))
            .await?;
        if self.triggers_of(flag).await?.len() >= MAX_TRIGGERS_PER_FLAG {
            return Err(AppError::invalid(
                ErrorCode::InvalidField,
                "action",
                format!("at most {MAX_TRIGGERS_PER_FLAG} triggers per flag and environment"),
            ));
        }
        let secret = new_secret();
        let trigger = Trigger {
            id: random_hex(12),
            project: flag.project.to_owned(),
            environment: flag.environment.to_owned(),
            flag: flag.key.to_owned(),
            action: new.action,
            comment: new.comment,
            enabled: true,
            hint: hint(&secret),
            created_by: actor.id.clone(),
            created_at: self.now_millis(),
            last_triggered_at: None,
            fingerprint: fingerprint(&secret),
        };
        let after = body(&trigger)?;
        self.commit(
            actor,
            vec![
                Write::Put {
                    kind: kinds::TRIGGER.into(),
                    scope: trigger.scope(),
                    key: trigger.id.clone(),
                    body: after.clone(),
                    expect: Expect::Absent,
                },
                credential_write(&trigger.fingerprint, &trigger),
            ],
            draft(
                Action::TriggerCreate,
                &crate::env_scope(flag.project, flag.environment),
                &trigger.id,
                &trigger.comment,
                None,
                Some(after),
            ),
        )
        .await?;
        Ok(NewTriggerUrl {
            trigger: trigger.shown(),
            trigger_url: url_of(&secret),
        })
    }

    async fn triggers_of(&self, flag: FlagRef<'_>) -> Result<Vec<Trigger>> {
        let mut out = Vec::new();
        for doc in self
            .store
            .list(
                kinds::TRIGGER,
                &crate::env_scope(flag.project, flag.environment),
            )
            .await?
        {
            let trigger: Trigger = decode(&doc)?;
            if trigger.project == flag.project
                && trigger.environment == flag.environment
                && trigger.flag == flag.key
            {
                out.push(trigger);
            }
        }
        Ok(out)
    }

    /// A flag's triggers in one environment (never their URLs).
    pub async fn triggers(&self, actor: &Actor, flag: FlagRef<'_>) -> Result<Vec<Trigger>> {
        actor.authorize_view(flag.project, Some(flag.environment))?;
        Ok(self
            .triggers_of(flag)
            .await?
            .into_iter()
            .map(Trigger::shown)
            .collect())
    }

    async fn trigger_for_change(
        &self,
        actor: &Actor,
        flag: FlagRef<'_>,
        id: &str,
    ) -> Result<crate::Versioned<Trigger>> {
        self.trigger_target(actor, flag).await?;
        let trigger: crate::Versioned<Trigger> = self
            .load(
                kinds::TRIGGER,
                &crate::env_scope(flag.project, flag.environment),
                id,
                || format!("trigger {id:?}"),
            )
            .await?;
        if trigger.value.project != flag.project
            || trigger.value.environment != flag.environment
            || trigger.value.flag != flag.key
        {
            return Err(AppError::NotFound(format!("trigger {id:?}")));
        }
        Ok(trigger)
    }

    /// Turns a trigger on or off, changes its comment, or gives it a new URL (returned).
    pub async fn update_trigger(
        &self,
        actor: &Actor,
        flag: FlagRef<'_>,
        id: &str,
        update: TriggerUpdate,
    ) -> Result<(Trigger, Option<String>)> {
        let current = self.trigger_for_change(actor, flag, id).await?;
        let mut after = current.value.clone();
        if let Some(enabled) = update.enabled {
            after.enabled = enabled;
        }
        if let Some(comment) = update.comment {
            after.comment = comment;
        }
        let mut writes = Vec::new();
        let mut url = None;
        if update.reset_url {
            writes.push(Write::Delete {
                kind: kinds::CREDENTIAL.into(),
                scope: String::new(),
                key: current.value.fingerprint.clone(),
                expect: Expect::Any,
            });
            let secret = new_secret();
            after.hint = hint(&secret);
            after.fingerprint = fingerprint(&secret);
            writes.push(credential_write(&after.fingerprint, &after));
            url = Some(url_of(&secret));
        }
        writes.insert(
            0,
            Write::Put {
                kind: kinds::TRIGGER.into(),
                scope: current.value.scope(),
                key: id.to_owned(),
                body: body(&after)?,
                expect: Expect::Version(current.version),
            },
        );
        self.commit(
            actor,
            writes,
            draft(
                Action::TriggerUpdate,
                &crate::env_scope(flag.project, flag.environment),
                id,
                "",
                Some(body(&current.value)?),
                Some(body(&after)?),
            ),
        )
        .await?;
        Ok((after.shown(), url))
    }

    /// Deletes a trigger; its URL stops working at once.
    pub async fn delete_trigger(&self, actor: &Actor, flag: FlagRef<'_>, id: &str) -> Result<()> {
        let current = self.trigger_for_change(actor, flag, id).await?;
        let mut writes = vec![Write::Delete {
            kind: kinds::TRIGGER.into(),
            scope: current.value.scope(),
            key: id.to_owned(),
            expect: Expect::Version(current.version),
        }];
        writes.push(Write::Delete {
            kind: kinds::CREDENTIAL.into(),
            scope: String::new(),
            key: current.value.fingerprint.clone(),
            expect: Expect::Any,
        });
        self.commit(
            actor,
            writes,
            draft(
                Action::TriggerDelete,
                &crate::env_scope(flag.project, flag.environment),
                id,
                "",
                Some(body(&current.value)?),
                None,
            ),
        )
        .await?;
        Ok(())
    }

    /// A call to a trigger URL. Unknown, revoked and disabled secrets are all `NotFound`, so
    /// that a caller learns nothing about which it was.
    pub async fn fire_trigger(&self, secret: &str) -> Result<TriggerOutcome> {
        let not_found = || AppError::NotFound("trigger".into());
        if !secret.starts_with(TRIGGER_PREFIX) || secret.len() > 100 {
            return Err(not_found());
        }
        let credential = self
            .store
            .get_live(kinds::CREDENTIAL, "", &fingerprint(secret))
            .await?
            .filter(|c| c.body["type"] == "trigger")
            .ok_or_else(not_found)?;
        let field = |name: &str| credential.body[name].as_str().unwrap_or_default();
        let doc = self
            .store
            .get_live(
                kinds::TRIGGER,
                &crate::env_scope(field("project"), field("environment")),
                field("trigger"),
            )
            .await?
            .ok_or_else(not_found)?;
        let trigger: Trigger = decode(&doc)?;
        if !trigger.enabled {
            return Err(not_found());
        }
        if let Err(wait) = self.trigger_calls.admit(&trigger.id, self.now_millis()) {
            return Err(AppError::RateLimited {
                retry_after_ms: wait,
            });
        }
        let mut actor = self
            .actor_named(&trigger.created_by)
            .await?
            .ok_or_else(|| {
                AppError::Forbidden(
                    format!(
                        "{} who made this trigger no longer exists; make a new one",
                        trigger.created_by
                    )
                    .into(),
                )
            })?;
        actor.id = format!("trigger:{} by {}", trigger.id, trigger.created_by);
        let target = Target::flag(&trigger.project, &trigger.environment, &trigger.flag);
        let (version, current) = self.draft_of(&target).await?;
        let on = trigger.action == TriggerAction::TurnFlagOn;
        if matches!(current, crate::deferred::Draft::Flag(ref t) if t.on == on) {
            return Ok(TriggerOutcome {
                flag: trigger.flag,
                environment: trigger.environment,
                changed: false,
                version,
            });
        }
        let instruction = match trigger.action {
            TriggerAction::TurnFlagOff => json!({"kind": "turnFlagOff"}),
            TriggerAction::TurnFlagOn => json!({"kind": "turnFlagOn"}),
        };
        let parsed = Parsed::parse(target.kind, &[instruction])?;
        let mut fired = trigger.clone();
        fired.last_triggered_at = Some(self.now_millis());
        let extra = vec![Write::Put {
            kind: kinds::TRIGGER.into(),
            scope: trigger.scope(),
            key: trigger.id.clone(),
            body: body(&fired)?,
            expect: Expect::Any,
        }];
        let version = self
            .execute_parsed(
                &target,
                &parsed,
                &actor,
                &trigger.comment,
                Origin::approved(extra),
            )
            .await?;
        Ok(TriggerOutcome {
            flag: trigger.flag,
            environment: trigger.environment,
            changed: true,
            version,
        })
    }
}
