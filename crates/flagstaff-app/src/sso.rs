//! Single sign-on: what happens once an identity provider vouched for someone (the OpenID
//! Connect protocol itself, with its redirects and token checks, is the dashboard's `sso.rs`).
//!
//! The first sign-in provisions a member with the configured default role and no password (an
//! empty hash, which no password matches). With a groups claim configured, the member's team
//! memberships follow it at every sign-in: they are in exactly the existing teams whose keys the
//! claim names, so that the identity provider stays the one place where people are grouped.

use serde::Serialize;

use flagstaff_store::{Expect, Write};

use crate::access::{Actor, Role};
use crate::changes::Action;
use crate::error::Result;
use crate::members::{Session, StoredMember};
use crate::model::kinds;
use crate::roles::Team;
use crate::{App, decode, draft};

/// Someone an identity provider signed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoIdentity {
    /// Their verified email address.
    pub email: String,
    /// Their name, if the provider gave one.
    pub name: Option<String>,
    /// The groups claim, when one is configured (`None`: team memberships are left alone).
    pub groups: Option<Vec<String>>,
}

/// How single sign-on provisions members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SsoPolicy {
    /// The base role of members created by their first sign-in.
    pub default_role: Role,
}

impl App {
    /// Signs in someone the identity provider vouched for: provisions them on first sign-in,
    /// brings their teams in line with their groups, and issues a session as
    /// [`App::sign_in`] does.
    pub async fn sign_in_sso(&self, identity: SsoIdentity, policy: &SsoPolicy) -> Result<Session> {
        let email = crate::members::normalise_email(&identity.email)?;
        let actor = Actor::with_role(format!("member:{email}"), Role::NoAccess);
        let comment = "single sign-on";
        if self
            .store
            .get_live(kinds::MEMBER, "", &email)
            .await?
            .is_none()
        {
            let name = identity
                .name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| email.clone());
            let member = StoredMember::without_password(&email, &name, policy.default_role);
            let shown = crate::Member::from(&member);
            self.commit(
                &actor,
                vec![Write::Put {
                    kind: kinds::MEMBER.into(),
                    scope: String::new(),
                    key: email.clone(),
                    body: crate::body(&member)?,
                    expect: Expect::Absent,
                }],
                draft(
                    Action::MemberCreate,
                    "",
                    &email,
                    "first single sign-on",
                    None,
                    Some(crate::body(&shown)?),
                ),
            )
            .await?;
        }
        if let Some(groups) = &identity.groups {
            for doc in self.store.list(kinds::TEAM, "").await? {
                let team: Team = decode(&doc)?;
                let wanted = groups.contains(&team.key);
                let member = team.members.contains(&email);
                if wanted == member {
                    continue;
                }
                let mut after = team.clone();
                if wanted {
                    after.members.push(email.clone());
                    after.members.sort();
                } else {
                    after.members.retain(|m| *m != email);
                }
                self.commit(
                    &actor,
                    vec![Write::Put {
                        kind: kinds::TEAM.into(),
                        scope: String::new(),
                        key: team.key.clone(),
                        body: crate::body(&after)?,
                        expect: Expect::Version(doc.version),
                    }],
                    draft(
                        Action::TeamUpdate,
                        "",
                        &team.key,
                        comment,
                        Some(crate::body(&team)?),
                        Some(crate::body(&after)?),
                    ),
                )
                .await?;
            }
        }
        let member = self
            .stored_member(&email)
            .await?
            .ok_or_else(|| crate::AppError::NotFound(format!("member {email:?}")))?;
        self.session_for(&member, "single sign-on").await
    }
}
