//! SDK credentials: reading them from requests and remembering what they grant.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;
use flagstaff_app::{AppError, CredentialKind, Grant};

use crate::Source;

/// The secret in an `Authorization` header: the bare key, or the key after `api_key ` (the form
/// mobile SDKs use). Any other value with a space in it is not a key (`ld-protocol.md` §1).
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let value = value.trim();
    if value.eq_ignore_ascii_case("api_key") {
        return None;
    }
    let key = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("api_key") => rest.trim(),
        Some(_) => return None,
        None => value,
    };
    (!key.is_empty() && !key.contains(' ')).then_some(key)
}

/// What credential fingerprints granted when last looked up. Lookups are by SHA-256 of the
/// secret (what the store keeps), so this cache holds no secrets. An entry is used only while
/// this process has committed nothing since it was read (so a key revoked through this node is
/// refused by the very next request) and only until its expiry; the change-feed worker also
/// empties the cache when a credential changes, which covers changes made on other nodes.
#[derive(Debug, Default)]
pub(crate) struct GrantCache {
    entries: Mutex<HashMap<(String, u8), (Grant, u64)>>,
}

fn kind_tag(kind: CredentialKind) -> u8 {
    match kind {
        CredentialKind::Sdk => 0,
        CredentialKind::Mobile => 1,
        CredentialKind::ClientSide => 2,
    }
}

impl GrantCache {
    /// What the credential with this fingerprint grants now, if anything.
    pub async fn lookup(
        &self,
        source: &Source,
        fingerprint: &str,
        kind: CredentialKind,
    ) -> Result<Option<Grant>, AppError> {
        let cache_key = (fingerprint.to_owned(), kind_tag(kind));
        let now = source.now_millis();
        let commit = source.last_commit();
        if let Some((grant, _)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
            .filter(|(grant, read_at)| *read_at == commit && grant.valid_at(now))
        {
            return Ok(Some(grant.clone()));
        }
        // Unknown keys are not remembered: a key created a moment ago must work at once.
        let grant = source.grant(fingerprint, kind).await?;
        if let Some(grant) = &grant {
            self.entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(cache_key, (grant.clone(), commit));
        }
        Ok(grant)
    }

    /// Forgets everything (a credential, environment or project changed).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::AUTHORIZATION,
            value.parse().expect("header value"),
        );
        headers
    }

    #[test]
    fn bare_keys_and_the_api_key_form_are_accepted() {
        assert_eq!(presented_key(&headers("sdk-123")), Some("sdk-123"));
        assert_eq!(presented_key(&headers("api_key mob-1")), Some("mob-1"));
        assert_eq!(presented_key(&headers("API_KEY  mob-1 ")), Some("mob-1"));
        assert_eq!(presented_key(&headers(" sdk-9 ")), Some("sdk-9"));
    }

    #[test]
    fn other_schemes_and_empty_values_are_not_keys() {
        assert_eq!(presented_key(&headers("Bearer sdk-123")), None);
        assert_eq!(presented_key(&headers("api_key a b")), None);
        assert_eq!(presented_key(&headers("")), None);
        assert_eq!(presented_key(&headers("api_key ")), None);
        assert_eq!(presented_key(&HeaderMap::new()), None);
    }
}
