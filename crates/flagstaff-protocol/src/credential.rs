//! The three credentials of an environment and what each may see (`ld-protocol.md` §1, §5.6).
//!
//! One type for the whole server: the app stores and rotates credentials by it, delivery
//! authorizes requests by it, and the evaluation engine decides by it which flags a client sees.

use crate::{ClientSideAvailability, Flag};

/// Which credential a request presents; each grants different data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// The server-side SDK key (`sdk-…`): a trusted server that receives every flag's rules.
    Sdk,
    /// The mobile key (`mob-…`): a mobile app, evaluated results of flags marked
    /// `usingMobileKey` only.
    Mobile,
    /// The client-side ID (24 hex digits, public by design): a browser, evaluated results of
    /// flags marked `usingEnvironmentId` only.
    ClientSide,
}

impl CredentialKind {
    /// Every kind.
    pub const ALL: [CredentialKind; 3] = [
        CredentialKind::Sdk,
        CredentialKind::Mobile,
        CredentialKind::ClientSide,
    ];

    /// The stored type name (`sdk`, `mobile`, `client-side`), also the word in
    /// `…/keys/{kind}/rotate`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Sdk => "sdk",
            CredentialKind::Mobile => "mobile",
            CredentialKind::ClientSide => "client-side",
        }
    }

    /// The kind a stored type name names.
    pub fn parse(text: &str) -> Option<CredentialKind> {
        CredentialKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Whether a client holding this credential may see a flag at all (§5.6). Servers see
    /// everything; browsers and mobile apps only what the flag's availability allows.
    pub fn sees(self, flag: &Flag) -> bool {
        let ClientSideAvailability {
            using_mobile_key,
            using_environment_id,
        } = flag.client_side_availability();
        match self {
            CredentialKind::Sdk => true,
            CredentialKind::Mobile => using_mobile_key,
            CredentialKind::ClientSide => using_environment_id,
        }
    }

    /// Whether the credential is a secret that can be replaced. The client-side ID is in every
    /// web page that uses the browser SDK; replacing it would protect nothing.
    pub fn rotates(self) -> bool {
        !matches!(self, CredentialKind::ClientSide)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_only_secrets_rotate() {
        for kind in CredentialKind::ALL {
            assert_eq!(CredentialKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(CredentialKind::parse("clientSide"), None);
        assert!(CredentialKind::Sdk.rotates() && CredentialKind::Mobile.rotates());
        assert!(!CredentialKind::ClientSide.rotates());
    }

    #[test]
    fn each_credential_sees_what_the_flag_allows() {
        let flag = |mobile: bool, browser: bool| {
            serde_json::from_value::<Flag>(serde_json::json!({
                "key": "f", "version": 1, "variations": [true],
                "clientSideAvailability": {"usingMobileKey": mobile, "usingEnvironmentId": browser}
            }))
            .expect("a flag")
        };
        for (mobile, browser) in [(false, false), (true, false), (false, true), (true, true)] {
            let f = flag(mobile, browser);
            assert!(CredentialKind::Sdk.sees(&f));
            assert_eq!(CredentialKind::Mobile.sees(&f), mobile);
            assert_eq!(CredentialKind::ClientSide.sees(&f), browser);
        }
    }
}
