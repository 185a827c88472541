//! Members: people who sign in with an email address and a password.
//!
//! Passwords are hashed with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes, as OWASP
//! recommends) in PHC format, never stored or logged in clear. Signing in issues an API token
//! with the member's role that expires after [`SESSION_HOURS`]; the dashboard will keep it in an
//! `HttpOnly` cookie. A sign-in for an unknown email still verifies a hash, so that response
//! times do not reveal which accounts exist.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

use flagstaff_store::{Expect, Write};

use crate::access::{Actor, Role, manage};
use crate::changes::Action;
use crate::error::{AppError, Result};
use crate::model::kinds;
use crate::policy::Resource;
use crate::tokens::{TokenInfo, TokenSpec};
use crate::validate::codes;
use crate::{App, decode, draft};

/// How long a sign-in lasts.
pub const SESSION_HOURS: i64 = 12;

/// Shortest password accepted.
const MIN_PASSWORD_CHARS: usize = 12;

/// A member as stored (the API never shows `password_hash`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredMember {
    email: String,
    name: String,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    projects: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    custom_roles: Vec<String>,
    password_hash: String,
}

/// A member as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Sign-in name, lower case.
    pub email: String,
    /// Display name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The projects they are limited to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<String>>,
    /// Custom roles they hold themselves (teams may give them more).
    #[serde(default)]
    pub custom_roles: Vec<String>,
}

impl From<&StoredMember> for Member {
    fn from(m: &StoredMember) -> Member {
        Member {
            email: m.email.clone(),
            name: m.name.clone(),
            role: m.role,
            projects: m.projects.clone(),
            custom_roles: m.custom_roles.clone(),
        }
    }
}

/// What changes about a member; `None` leaves a part as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberChange {
    /// A new base role.
    pub role: Option<Role>,
    /// New custom roles (replacing the old ones).
    pub custom_roles: Option<Vec<String>>,
    /// A new project limit (`Some(None)` removes it).
    pub projects: Option<Option<Vec<String>>>,
}

/// A signed-in session.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// The API token to send as `Authorization: Bearer`.
    pub token: String,
    /// When it stops working (Unix milliseconds).
    pub expires_at: i64,
    /// Who signed in.
    pub member: Member,
}

fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AppError::invalid(
            codes::INVALID_FIELD,
            "password",
            format!("passwords have at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AppError::invalid(codes::INVALID_FIELD, "password", e.to_string()))
}

/// A fixed hash to verify against when the email is unknown, so that an unknown email costs one
/// argon2 verification like a known one (and always fails). Made once: making it is itself an
/// argon2 hash, which would make unknown emails take twice as long and tell them apart.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::encode_b64(b"flagstaff-decoy!")
            .unwrap_or_else(|_| SaltString::generate(&mut OsRng));
        Argon2::default()
            .hash_password(b"no such member", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Whether `password` matches `hash` (argon2id; CPU-bound, run on the blocking pool).
fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

impl StoredMember {
    /// A member provisioned by single sign-on: no password can sign them in.
    pub(crate) fn without_password(email: &str, name: &str, role: Role) -> StoredMember {
        StoredMember {
            email: email.to_owned(),
            name: name.to_owned(),
            role,
            projects: None,
            custom_roles: Vec::new(),
            password_hash: String::new(),
        }
    }

    /// A new member with a freshly hashed password (validated: long enough; a name).
    pub(crate) fn new(
        email: &str,
        name: &str,
        role: Role,
        projects: Option<Vec<String>>,
        custom_roles: Vec<String>,
        password: &str,
    ) -> Result<StoredMember> {
        if name.trim().is_empty() {
            return Err(AppError::invalid(
                codes::INVALID_FIELD,
                "name",
                "a member needs a name",
            ));
        }
        Ok(StoredMember {
            email: normalise_email(email)?,
            name: name.trim().to_owned(),
            role,
            projects,
            custom_roles,
            password_hash: hash_password(password)?,
        })
    }
}

pub(crate) fn normalise_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
        });
    if valid {
        Ok(email)
    } else {
        Err(AppError::invalid(
            codes::INVALID_FIELD,
            "email",
            "not an email address",
        ))
    }
}

impl App {
    /// Adds a member (admins).
    pub async fn create_member(
        &self,
        actor: &Actor,
        member: Member,
        password: &str,
        comment: &str,
    ) -> Result<Member> {
        let email = normalise_email(&member.email)?;
        actor.authorize("createMember", &Resource::new().with("member", &email, &[]))?;
        self.authorize_grant(
            actor,
            Some(member.role),
            &member.custom_roles,
            "customRoles",
        )
        .await?;
        let stored = StoredMember::new(
            &email,
            &member.name,
            member.role,
            member.projects,
            member.custom_roles,
            password,
        )?;
        let shown = Member::from(&stored);
        let after = crate::body(&shown)?;
        let write = Write::Put {
            kind: kinds::MEMBER.into(),
            scope: String::new(),
            key: email.clone(),
            body: crate::body(&stored)?,
            expect: Expect::Absent,
        };
        self.commit(
            actor,
            vec![write],
            draft(Action::MemberCreate, "", &email, comment, None, Some(after)),
        )
        .await
        .map_err(|e| match e {
            AppError::Conflict { .. } => AppError::AlreadyExists(format!("member {email:?}")),
            other => other,
        })?;
        Ok(shown)
    }

    /// The members (admins).
    pub async fn list_members(&self, actor: &Actor) -> Result<Vec<Member>> {
        actor.authorize_manage("member", manage::MEMBER)?;
        let docs = self.store.list(kinds::MEMBER, "").await?;
        docs.iter()
            .map(|d| decode::<StoredMember>(d).map(|m| Member::from(&m)))
            .collect()
    }

    /// Changes a member's base role, custom roles or project limit (`updateMemberRole`); their
    /// open sessions follow at their next request.
    pub async fn update_member(
        &self,
        actor: &Actor,
        email: &str,
        change: MemberChange,
        comment: &str,
    ) -> Result<Member> {
        let email = normalise_email(email)?;
        actor.authorize(
            "updateMemberRole",
            &crate::policy::Resource::new().with("member", &email, &[]),
        )?;
        let doc = self
            .store
            .get_live(kinds::MEMBER, "", &email)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("member {email:?}")))?;
        let before: StoredMember = decode(&doc)?;
        let mut after = before.clone();
        if let Some(role) = change.role {
            after.role = role;
        }
        if let Some(custom_roles) = change.custom_roles {
            after.custom_roles = custom_roles;
        }
        if let Some(projects) = change.projects {
            after.projects = projects;
        }
        // Granting is checked for what is new, so that an administrator limited to a project
        // can still lower a member's role, but nobody can raise one above their own.
        let new_roles: Vec<String> = after
            .custom_roles
            .iter()
            .filter(|r| !before.custom_roles.contains(r))
            .cloned()
            .collect();
        let raised = (after.role > before.role).then_some(after.role);
        self.authorize_grant(actor, raised, &new_roles, "customRoles")
            .await?;
        if after.projects.is_none() && before.projects.is_some() && !actor.is_unlimited() {
            return Err(AppError::Forbidden(
                "removing a member's project limit needs an administrator without limits".into(),
            ));
        }
        let shown = Member::from(&after);
        self.commit(
            actor,
            vec![Write::Put {
                kind: kinds::MEMBER.into(),
                scope: String::new(),
                key: email.clone(),
                body: crate::body(&after)?,
                expect: Expect::Version(doc.version),
            }],
            draft(
                Action::MemberUpdate,
                "",
                &email,
                comment,
                Some(crate::body(&Member::from(&before))?),
                Some(crate::body(&shown)?),
            ),
        )
        .await?;
        Ok(shown)
    }

    /// The actor a member's session acts as: their base role and project limit, with the
    /// custom roles they hold and those of their teams. `None` if there is no such member.
    pub(crate) async fn member_actor(&self, email: &str) -> Result<Option<Actor>> {
        let email = email.trim().to_lowercase();
        let Some(doc) = self.store.get_live(kinds::MEMBER, "", &email).await? else {
            return Ok(None);
        };
        let member: StoredMember = decode(&doc)?;
        let mut keys = member.custom_roles.clone();
        keys.extend(self.team_roles_of(&email).await?);
        Ok(Some(Actor {
            id: format!("member:{email}"),
            role: member.role,
            projects: member.projects,
            environments: None,
            custom_roles: self.held_roles(&keys).await?,
        }))
    }

    /// Removes a member (admins). Their sessions stop at once.
    pub async fn delete_member(&self, actor: &Actor, email: &str, comment: &str) -> Result<()> {
        let email = normalise_email(email)?;
        actor.authorize("deleteMember", &Resource::new().with("member", &email, &[]))?;
        let doc = self
            .store
            .get_live(kinds::MEMBER, "", &email)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("member {email:?}")))?;
        let before = crate::body(&Member::from(&decode::<StoredMember>(&doc)?))?;
        let mut writes = vec![Write::Delete {
            kind: kinds::MEMBER.into(),
            scope: String::new(),
            key: email.clone(),
            expect: Expect::Version(doc.version),
        }];
        for token in self.store.list(kinds::TOKEN, "").await? {
            let info: TokenInfo = decode(&token)?;
            if info.member.as_deref() == Some(email.as_str()) {
                writes.extend(self.token_removal(&info.id).await?);
            }
        }
        self.commit(
            actor,
            writes,
            draft(
                Action::MemberDelete,
                "",
                &email,
                comment,
                Some(before),
                None,
            ),
        )
        .await?;
        Ok(())
    }

    /// Signs a member in: checks the password and issues a session token. `from` is the
    /// client's address when known: failures are throttled per account and per address
    /// (`throttle.rs`), and a throttled attempt is refused before its password is checked.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<Session> {
        if !self.password_sign_in {
            return Err(AppError::Forbidden(
                "password sign-in is turned off here: sign in with single sign-on".into(),
            ));
        }
        let email = email.trim().to_lowercase();
        if let Err(retry_after_ms) = self.sign_in_throttle.check(&email, from, self.now_millis()) {
            return Err(AppError::RateLimited { retry_after_ms });
        }
        let stored = match self.store.get_live(kinds::MEMBER, "", &email).await? {
            Some(doc) => Some(decode::<StoredMember>(&doc)?),
            None => None,
        };
        // Members provisioned by single sign-on have no password (an empty hash): they are
        // checked against the decoy like unknown emails, so that the time taken does not tell
        // them apart, and refused whatever the decoy says.
        let has_password = stored.as_ref().is_some_and(|m| !m.password_hash.is_empty());
        let hash = stored
            .as_ref()
            .filter(|_| has_password)
            .map_or_else(|| decoy_hash().to_owned(), |m| m.password_hash.clone());
        let verified = {
            // A closed semaphore never happens (the app owns it); treat it as a failed check.
            let Ok(_permit) = self.password_checks.acquire().await else {
                return Err(AppError::Unauthorized);
            };
            let password = password.to_owned();
            tokio::task::spawn_blocking(move || password_matches(&hash, &password))
                .await
                .unwrap_or(false)
        };
        let Some(member) = stored.filter(|_| verified && has_password) else {
            self.sign_in_throttle
                .failed(&email, from, self.now_millis());
            return Err(AppError::Unauthorized);
        };
        self.sign_in_throttle.succeeded(&email, from);
        self.session_for(&member, "sign-in").await
    }

    /// Issues a session for a member who proved who they are (a password here, or an identity
    /// provider, `sso.rs`).
    pub(crate) async fn session_for(&self, member: &StoredMember, how: &str) -> Result<Session> {
        let email = member.email.clone();
        let expires_at = self.now_millis() + SESSION_HOURS * 3_600_000;
        let actor = Actor {
            projects: member.projects.clone(),
            ..Actor::with_role(format!("member:{email}"), member.role)
        };
        let spec = TokenSpec {
            name: format!("session of {email}"),
            role: member.role,
            custom_roles: Vec::new(),
            projects: member.projects.clone(),
            environments: None,
            expires_at: Some(expires_at),
            member: Some(email.clone()),
        };
        let (_, token) = self.issue_token(&actor, spec, how).await?;
        Ok(Session {
            token,
            expires_at,
            member: Member::from(member),
        })
    }

    /// The stored member with this email, if any.
    pub(crate) async fn stored_member(&self, email: &str) -> Result<Option<StoredMember>> {
        match self.store.get_live(kinds::MEMBER, "", email).await? {
            Some(doc) => Ok(Some(decode(&doc)?)),
            None => Ok(None),
        }
    }
}
