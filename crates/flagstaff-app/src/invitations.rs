//! Invitations: an administrator invites someone by email and hands them a one-time link; the
//! invitee chooses their own name and password. No administrator ever types, sees or sends
//! another person's password, and no mail server is needed (the link is shown once, to be
//! passed on however the organisation passes on such things).
//!
//! The link carries a 128-bit random secret. The store keeps only its SHA-256 (the
//! `invitation` document's key), as for API tokens, so a leaked database holds no usable link.
//! An invitation expires after [`INVITATION_HOURS`], works once, and can be revoked; expired
//! ones are removed with expired tokens (`expiry.rs`).

use serde::{Deserialize, Serialize};

use flagstaff_store::{Expect, Write};

use crate::access::{Actor, Role, fingerprint, manage};
use crate::changes::Action;
use crate::error::{AppError, Result};
use crate::members::Session;
use crate::model::kinds;
use crate::policy::Resource;
use crate::{App, decode, draft, random_hex};

/// How long an invitation link works.
pub const INVITATION_HOURS: i64 = 72;

/// An invitation as stored and shown (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    /// Names the invitation in lists, revocation and the audit log (not secret).
    pub id: String,
    /// Who is invited (lower case).
    pub email: String,
    /// The base role they will have.
    pub role: Role,
    /// The custom roles they will hold.
    #[serde(default)]
    pub custom_roles: Vec<String>,
    /// The projects they will be limited to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<String>>,
    /// Who invited them.
    pub invited_by: String,
    /// When the link stops working (Unix ms).
    pub expires_at: i64,
}

/// Whom to invite, with what rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInvitation {
    /// Their email address.
    pub email: String,
    /// Their base role.
    pub role: Role,
    /// Custom roles they will hold.
    pub custom_roles: Vec<String>,
    /// Projects they will be limited to, if any.
    pub projects: Option<Vec<String>>,
}

/// The prefix of invitation secrets, so that people and secret scanners recognise them.
const INVITATION_PREFIX: &str = "fsi_";

impl App {
    /// Invites someone (`createMember` on `member/<email>`, and the right to grant the roles):
    /// returns the invitation and its one-time secret, shown only now. Inviting an existing
    /// member is refused; inviting someone again replaces nothing (both links work until used,
    /// and the first one used wins).
    pub async fn invite(
        &self,
        actor: &Actor,
        new: NewInvitation,
        comment: &str,
    ) -> Result<(Invitation, String)> {
        if !self.password_sign_in() {
            return Err(AppError::Forbidden(
                "password sign-in is turned off: people join through single sign-on instead".into(),
            ));
        }
        let email = crate::members::normalise_email(&new.email)?;
        actor.authorize("createMember", &Resource::new().with("member", &email, &[]))?;
        self.authorize_grant(actor, Some(new.role), &new.custom_roles, "customRoles")
            .await?;
        if self
            .store
            .get_live(kinds::MEMBER, "", &email)
            .await?
            .is_some()
        {
            return Err(AppError::AlreadyExists(format!("member {email:?}")));
        }
        let secret = format!("{INVITATION_PREFIX}{}", random_hex(16));
        let invitation = Invitation {
            id: format!("inv-{}", random_hex(8)),
            email,
            role: new.role,
            custom_roles: new.custom_roles,
            projects: new.projects,
            invited_by: actor.id.clone(),
            expires_at: self.now_millis() + INVITATION_HOURS * 3_600_000,
        };
        let after = crate::body(&invitation)?;
        self.commit(
            actor,
            vec![Write::Put {
                kind: kinds::INVITATION.into(),
                scope: String::new(),
                key: fingerprint(&secret),
                body: after.clone(),
                expect: Expect::Absent,
            }],
            draft(
                Action::InvitationCreate,
                "",
                &invitation.id,
                comment,
                None,
                Some(after),
            ),
        )
        .await?;
        Ok((invitation, secret))
    }

    /// Pending invitations (for those who manage members), expired ones left out.
    pub async fn list_invitations(&self, actor: &Actor) -> Result<Vec<Invitation>> {
        actor.authorize_manage("member", manage::MEMBER)?;
        let now = self.now_millis();
        Ok(self
            .store
            .list(kinds::INVITATION, "")
            .await?
            .iter()
            .map(decode::<Invitation>)
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|i| i.expires_at > now)
            .collect())
    }

    /// Revokes a pending invitation: its link stops working at once.
    pub async fn revoke_invitation(&self, actor: &Actor, id: &str, comment: &str) -> Result<()> {
        actor.authorize_manage("member", manage::MEMBER)?;
        let doc = self
            .store
            .list(kinds::INVITATION, "")
            .await?
            .into_iter()
            .find(|d| d.body["id"] == id)
            .ok_or_else(|| AppError::NotFound(format!("invitation {id:?}")))?;
        actor.authorize(
            "deleteMember",
            &Resource::new().with("member", doc.body["email"].as_str().unwrap_or("*"), &[]),
        )?;
        self.commit(
            actor,
            vec![Write::Delete {
                kind: kinds::INVITATION.into(),
                scope: String::new(),
                key: doc.key.clone(),
                expect: Expect::Version(doc.version),
            }],
            draft(
                Action::InvitationRevoke,
                "",
                id,
                comment,
                Some(doc.body),
                None,
            ),
        )
        .await?;
        Ok(())
    }

    /// The invitation a secret opens, if it is pending (for the page that asks for a name and
    /// password). Unknown, used, revoked and expired secrets are all `NotFound`, alike.
    pub async fn invitation(&self, secret: &str) -> Result<Invitation> {
        let gone = || AppError::NotFound("invitation (it may have expired or been used)".into());
        if !secret.starts_with(INVITATION_PREFIX) {
            return Err(gone());
        }
        let doc = self
            .store
            .get_live(kinds::INVITATION, "", &fingerprint(secret))
            .await?
            .ok_or_else(gone)?;
        let invitation: Invitation = decode(&doc)?;
        if invitation.expires_at <= self.now_millis() {
            return Err(gone());
        }
        Ok(invitation)
    }

    /// Accepts an invitation: creates the member with the name and password the invitee chose,
    /// uses the invitation up (one transaction: a link works once even when clicked twice at
    /// the same moment) and signs them in.
    pub async fn accept_invitation(
        &self,
        secret: &str,
        name: &str,
        password: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<Session> {
        let invitation = self.invitation(secret).await?;
        let key = fingerprint(secret);
        let doc = self
            .store
            .get_live(kinds::INVITATION, "", &key)
            .await?
            .ok_or_else(|| AppError::NotFound("invitation".into()))?;
        let member = crate::members::StoredMember::new(
            &invitation.email,
            name,
            invitation.role,
            invitation.projects.clone(),
            invitation.custom_roles.clone(),
            password,
        )?;
        let shown = crate::Member::from(&member);
        let joining = Actor::with_role(format!("member:{}", invitation.email), Role::NoAccess);
        self.commit(
            &joining,
            vec![
                Write::Delete {
                    kind: kinds::INVITATION.into(),
                    scope: String::new(),
                    key,
                    expect: Expect::Version(doc.version),
                },
                Write::Put {
                    kind: kinds::MEMBER.into(),
                    scope: String::new(),
                    key: invitation.email.clone(),
                    body: crate::body(&member)?,
                    expect: Expect::Absent,
                },
            ],
            draft(
                Action::MemberCreate,
                "",
                &invitation.email,
                &format!(
                    "accepted invitation {} from {}",
                    invitation.id, invitation.invited_by
                ),
                None,
                Some(crate::body(&shown)?),
            ),
        )
        .await
        .map_err(|e| match e {
            AppError::Conflict { .. } => {
                AppError::NotFound("invitation (it may have expired or been used)".into())
            }
            other => other,
        })?;
        self.sign_in(&invitation.email, password, from).await
    }
}
