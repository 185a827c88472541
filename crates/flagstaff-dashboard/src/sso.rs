//! OpenID Connect single sign-on: the Authorization Code flow with PKCE (RFC 7636) against any
//! OpenID Provider, configured by `--oidc-issuer`, `--oidc-client-id` and
//! `--oidc-client-secret`.
//!
//! 1. `GET /sso/start` makes a `state`, a `nonce` and a PKCE verifier, keeps them in a short-lived
//!    `HttpOnly` cookie (so that any node behind a load balancer can finish the flow) and
//!    redirects to the provider's authorization endpoint (found by OpenID discovery).
//! 2. `GET /sso/callback` checks that `state` is the cookie's (and clears the cookie, so that a
//!    replayed callback is refused), exchanges the code with the verifier and the client
//!    secret, and validates the ID token: signature by the provider's published keys (asymmetric
//!    algorithms only), issuer, audience (and `azp` when there are several), expiry (one minute
//!    of leeway), and the nonce. An `email_verified: false` is refused.
//! 3. The app signs the person in (`App::sign_in_sso`): provisioning on first sign-in, teams
//!    from the groups claim.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use flagstaff_app::{Role, SsoIdentity, SsoPolicy};

/// How long someone has to come back from the provider.
const FLOW_SECONDS: i64 = 600;

/// Single sign-on settings.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The provider's issuer URL (discovery is `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// This server's client ID at the provider.
    pub client_id: String,
    /// Its client secret (`client_secret_basic`), if the provider gave one.
    pub client_secret: Option<String>,
    /// The base role of members provisioned by their first sign-in.
    pub default_role: Role,
    /// The ID-token claim listing groups that map to teams (e.g. `groups`), if any.
    pub groups_claim: Option<String>,
    /// Extra certificate authorities (PEM) to trust for the provider, beside the system's.
    pub ca_pem: Option<String>,
}

/// Why a sign-in through the provider failed; shown to the person on the sign-in page.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The provider could not be reached or answered nonsense.
    #[error("the identity provider could not be reached: {0}")]
    Provider(String),
    /// The callback does not belong to a sign-in started here (no or other state).
    #[error("this sign-in did not start here or has expired; try again")]
    State,
    /// The provider refused (the person cancelled, or the client is misconfigured).
    #[error("the identity provider refused: {0}")]
    Refused(String),
    /// The ID token failed validation.
    #[error("the identity provider's answer is not valid: {0}")]
    Token(String),
}

/// The endpoints discovery found, and the provider's keys.
#[derive(Clone, Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// What the flow cookie holds between the redirect and the callback.
#[derive(Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    expires: i64,
}

/// The provider client.
#[derive(Debug)]
pub struct Sso {
    config: OidcConfig,
    http: reqwest::Client,
    discovery: tokio::sync::RwLock<Option<Discovery>>,
    keys: tokio::sync::RwLock<Option<(JwkSet, Instant)>>,
}

fn random_b64(bytes: usize) -> String {
    use rand::RngCore;
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

fn provider_error(e: impl std::fmt::Display) -> SsoError {
    SsoError::Provider(e.to_string())
}

impl Sso {
    /// A client for `config`'s provider (nothing is fetched until someone signs in).
    pub fn new(config: OidcConfig) -> Result<Arc<Sso>, SsoError> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &config.ca_pem {
            for certificate in
                reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(provider_error)?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(Arc::new(Sso {
            config,
            http: builder.build().map_err(provider_error)?,
            discovery: tokio::sync::RwLock::default(),
            keys: tokio::sync::RwLock::default(),
        }))
    }

    /// How members are provisioned.
    pub fn policy(&self) -> SsoPolicy {
        SsoPolicy {
            default_role: self.config.default_role,
        }
    }

    async fn discovery(&self) -> Result<Discovery, SsoError> {
        if let Some(found) = self.discovery.read().await.clone() {
            return Ok(found);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let found: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(provider_error)?
            .json()
            .await
            .map_err(provider_error)?;
        // OpenID Connect Discovery §4.3: the issuer must be the one configured.
        if found.issuer.trim_end_matches('/') != self.config.issuer.trim_end_matches('/') {
            return Err(SsoError::Provider(format!(
                "discovery names issuer {:?}, not the configured {:?}",
                found.issuer, self.config.issuer
            )));
        }
        *self.discovery.write().await = Some(found.clone());
        Ok(found)
    }

    /// The provider's keys; fetched again when a token names a key not seen yet (key rotation),
    /// at most once every ten seconds so that forged key ids cannot make us hammer it.
    async fn keys(&self, kid: Option<&str>) -> Result<JwkSet, SsoError> {
        if let Some((set, fetched)) = self.keys.read().await.clone() {
            let known = kid.is_none_or(|kid| set.find(kid).is_some());
            if known || fetched.elapsed() < Duration::from_secs(10) {
                return Ok(set);
            }
        }
        let discovery = self.discovery().await?;
        let set: JwkSet = self
            .http
            .get(&discovery.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(provider_error)?
            .json()
            .await
            .map_err(provider_error)?;
        *self.keys.write().await = Some((set.clone(), Instant::now()));
        Ok(set)
    }

    /// Where to send the browser to sign in, and the flow cookie's value.
    pub async fn start(
        &self,
        redirect_uri: &str,
        next: &str,
        now: i64,
    ) -> Result<(String, String), SsoError> {
        let discovery = self.discovery().await?;
        let flow = Flow {
            state: random_b64(24),
            nonce: random_b64(24),
            verifier: random_b64(32),
            next: next.to_owned(),
            expires: now + FLOW_SECONDS * 1000,
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(flow.verifier.as_bytes()));
        let mut url =
            reqwest::Url::parse(&discovery.authorization_endpoint).map_err(provider_error)?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &flow.state)
            .append_pair("nonce", &flow.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let cookie = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&flow).map_err(provider_error)?);
        Ok((url.into(), cookie))
    }

    /// Finishes a sign-in: the callback's `code` and `state`, the flow cookie, the same
    /// redirect URI. Returns who signed in and where they were going.
    pub async fn finish(
        &self,
        callback: &Callback,
        cookie: Option<&str>,
        redirect_uri: &str,
        now: i64,
    ) -> Result<(SsoIdentity, String), SsoError> {
        let flow: Flow = cookie
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(SsoError::State)?;
        let state_matches = callback
            .state
            .as_deref()
            .is_some_and(|state| crate::session::same_token(state, &flow.state));
        if !state_matches || flow.expires <= now {
            return Err(SsoError::State);
        }
        if let Some(error) = &callback.error {
            return Err(SsoError::Refused(format!(
                "{error}{}",
                callback
                    .error_description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )));
        }
        let code = callback.code.as_deref().ok_or(SsoError::State)?;
        let discovery = self.discovery().await?;
        let mut request = self.http.post(&discovery.token_endpoint).form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", flow.verifier.as_str()),
            ("client_id", self.config.client_id.as_str()),
        ]);
        if let Some(secret) = &self.config.client_secret {
            request = request.basic_auth(&self.config.client_id, Some(secret));
        }
        let response = request.send().await.map_err(provider_error)?;
        let status = response.status();
        let body: Value = response.json().await.map_err(provider_error)?;
        if !status.is_success() {
            return Err(SsoError::Refused(
                body["error"]
                    .as_str()
                    .unwrap_or("token request refused")
                    .to_owned(),
            ));
        }
        let token = body["id_token"]
            .as_str()
            .ok_or_else(|| SsoError::Token("no id_token in the token response".into()))?;
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|e| SsoError::Token(e.to_string()))?
            .kid;
        let keys = self.keys(kid.as_deref()).await?;
        let expected = Expected {
            issuer: &discovery.issuer,
            client_id: &self.config.client_id,
            nonce: &flow.nonce,
            groups_claim: self.config.groups_claim.as_deref(),
        };
        Ok((validate_id_token(token, &keys, &expected)?, flow.next))
    }
}

/// The callback's query.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state sent at the start.
    pub state: Option<String>,
    /// The provider's error code, when it refused.
    pub error: Option<String>,
    /// And its explanation.
    pub error_description: Option<String>,
}

/// What an ID token must say.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The provider's issuer.
    pub issuer: &'a str,
    /// Our client ID (the audience).
    pub client_id: &'a str,
    /// The nonce sent at the start.
    pub nonce: &'a str,
    /// The claim listing groups, if configured.
    pub groups_claim: Option<&'a str>,
}

/// Validates an ID token against the provider's keys (OpenID Connect Core §3.1.3.7) and reads
/// the identity from it.
pub fn validate_id_token(
    token: &str,
    keys: &JwkSet,
    expected: &Expected<'_>,
) -> Result<SsoIdentity, SsoError> {
    let invalid = |why: &str| SsoError::Token(why.to_owned());
    let header = jsonwebtoken::decode_header(token).map_err(|e| SsoError::Token(e.to_string()))?;
    // Only asymmetric signatures: a provider's public key must never be usable as an HMAC
    // secret (algorithm confusion), and "none" is not an algorithm jsonwebtoken parses.
    if matches!(
        header.alg,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return Err(invalid("symmetric signatures are not accepted"));
    }
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or_else(|| invalid("signed with a key the provider does not publish"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| SsoError::Token(e.to_string()))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 60;
    let claims = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
        .map_err(|e| SsoError::Token(e.to_string()))?
        .claims;
    // With several audiences, the authorized party must be us (Core §3.1.3.7, 4–5).
    if claims.get("aud").is_some_and(Value::is_array)
        && claims
            .get("azp")
            .and_then(Value::as_str)
            .is_some_and(|azp| azp != expected.client_id)
    {
        return Err(invalid("the token was issued to another client (azp)"));
    }
    let nonce_matches = claims
        .get("nonce")
        .and_then(Value::as_str)
        .is_some_and(|n| crate::session::same_token(n, expected.nonce));
    if !nonce_matches {
        return Err(invalid(
            "the nonce is not the one this sign-in sent (a replayed token?)",
        ));
    }
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no email claim: ask the provider for the email scope"))?;
    if claims.get("email_verified") == Some(&Value::Bool(false)) {
        return Err(invalid("the provider has not verified this email address"));
    }
    let groups = expected.groups_claim.map(|claim| {
        claims
            .get(claim)
            .and_then(Value::as_array)
            .map(|groups| {
                groups
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    });
    Ok(SsoIdentity {
        email: email.to_owned(),
        name: claims
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
        EllipticCurveKeyType, Jwk,
    };
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    /// A provider's P-256 key: what signs, and the JWK set that publishes it.
    fn provider_key() -> (EncodingKey, JwkSet) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65, "an uncompressed P-256 point");
        let jwk = Jwk {
            common: CommonParameters {
                key_id: Some("k1".into()),
                ..CommonParameters::default()
            },
            algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                key_type: EllipticCurveKeyType::EC,
                curve: EllipticCurve::P256,
                x: URL_SAFE_NO_PAD.encode(&point[1..33]),
                y: URL_SAFE_NO_PAD.encode(&point[33..]),
            }),
        };
        let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("PEM");
        (signing, JwkSet { keys: vec![jwk] })
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }

    fn claims() -> Value {
        json!({"iss": "https://idp.example", "aud": "flagstaff", "sub": "u1", "exp": now() + 300,
               "iat": now(), "nonce": "n-123", "email": "sam@example.com", "name": "Sam",
               "groups": ["support", "staff"]})
    }

    fn sign(key: &EncodingKey, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, claims, key).expect("signed")
    }

    const EXPECTED: Expected<'static> = Expected {
        issuer: "https://idp.example",
        client_id: "flagstaff",
        nonce: "n-123",
        groups_claim: Some("groups"),
    };

    #[test]
    fn a_valid_token_gives_the_identity_and_groups() {
        let (key, keys) = provider_key();
        let identity = validate_id_token(&sign(&key, &claims()), &keys, &EXPECTED).expect("valid");
        assert_eq!(identity.email, "sam@example.com");
        assert_eq!(identity.name.as_deref(), Some("Sam"));
        assert_eq!(
            identity.groups,
            Some(vec!["support".to_owned(), "staff".to_owned()])
        );
    }

    #[test]
    fn every_broken_promise_of_the_token_is_refused() {
        let (key, keys) = provider_key();
        let (other_key, _) = provider_key();
        let mut cases: Vec<(&str, String)> = Vec::new();
        let mut with = |what: &'static str, field: &str, value: Value| {
            let mut c = claims();
            c[field] = value;
            cases.push((what, sign(&key, &c)));
        };
        with("another audience", "aud", json!("someone-else"));
        with("another issuer", "iss", json!("https://evil.example"));
        with("expired beyond the leeway", "exp", json!(now() - 120));
        with("another nonce (replayed)", "nonce", json!("n-999"));
        with("an unverified email", "email_verified", json!(false));
        with(
            "several audiences including ours, no azp",
            "aud",
            json!(["flagstaff", "other"]),
        );
        let mut c = claims();
        c["aud"] = json!(["flagstaff", "other"]);
        c["azp"] = json!("other");
        cases.push(("azp of another client", sign(&key, &c)));
        let mut c = claims();
        c.as_object_mut().unwrap().remove("email");
        cases.push(("no email", sign(&key, &c)));
        cases.push((
            "signed by a key the provider does not publish",
            sign(&other_key, &claims()),
        ));
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"public material"),
        )
        .unwrap();
        cases.push(("a symmetric signature", hs));
        cases.push(("not a token", "a.b.c".to_owned()));
        for (what, token) in cases {
            let outcome = validate_id_token(&token, &keys, &EXPECTED);
            // Several audiences without azp are valid per Core §3.1.3.7 when ours is among them.
            if what == "several audiences including ours, no azp" {
                assert!(outcome.is_ok(), "{what}: {outcome:?}");
                continue;
            }
            assert!(
                matches!(outcome, Err(SsoError::Token(_))),
                "{what}: {outcome:?}"
            );
        }
    }
}
