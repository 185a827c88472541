//! Lenient semantic versions for the `semVer*` operators (`ld-protocol.md` §3.6).
//!
//! LaunchDarkly parses versions with "missing minor and patch allowed": `2` and `2-rc` mean
//! `2.0.0` and `2.0.0-rc`. Everything else is strict SemVer 2.0: no leading zeros, no `v`
//! prefix, no fourth component. Build metadata is validated and then ignored in comparisons
//! (the `semver` crate would compare it, which is why this is our own small parser). A parsed
//! version borrows its pre-release text, so parsing a context value never allocates.

use std::cmp::Ordering;

/// A parsed version. The pre-release part is kept as the original text and compared identifier
/// by identifier on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SemVer<'a> {
    major: u64,
    minor: u64,
    patch: u64,
    pre: &'a str,
}

/// An owned version, for clause values compiled once.
#[derive(Clone, Debug)]
pub(crate) struct OwnedSemVer {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Box<str>,
}

impl OwnedSemVer {
    pub(crate) fn parse(text: &str) -> Option<OwnedSemVer> {
        let v = SemVer::parse(text)?;
        Some(OwnedSemVer {
            major: v.major,
            minor: v.minor,
            patch: v.patch,
            pre: v.pre.into(),
        })
    }

    pub(crate) fn borrow(&self) -> SemVer<'_> {
        SemVer {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre: &self.pre,
        }
    }
}

fn numeric_identifier(s: &str) -> Option<u64> {
    let valid =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if valid { s.parse().ok() } else { None }
}

fn valid_identifiers(s: &str, check_leading_zeros: bool) -> bool {
    s.split('.').all(|id| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !(check_leading_zeros
                && id.len() > 1
                && id.starts_with('0')
                && id.bytes().all(|b| b.is_ascii_digit()))
    })
}

impl<'a> SemVer<'a> {
    pub(crate) fn parse(text: &'a str) -> Option<SemVer<'a>> {
        let (rest, build) = match text.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (text, None),
        };
        if build.is_some_and(|b| !valid_identifiers(b, false)) {
            return None;
        }
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) => {
                if !valid_identifiers(pre, true) {
                    return None;
                }
                (core, pre)
            }
            None => (rest, ""),
        };
        let mut parts = core.split('.');
        let major = numeric_identifier(parts.next()?)?;
        let minor = parts.next().map_or(Some(0), numeric_identifier)?;
        let patch = parts.next().map_or(Some(0), numeric_identifier)?;
        if parts.next().is_some() {
            return None;
        }
        Some(SemVer {
            major,
            minor,
            patch,
            pre,
        })
    }
}

impl Ord for SemVer<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| compare_pre_release(self.pre, other.pre))
    }
}

impl PartialOrd for SemVer<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// SemVer 2.0 §11: a version without pre-release ranks higher; identifiers compare numerically
/// when both are numeric, numeric ranks below alphanumeric, otherwise ASCII order; a longer list
/// of equal identifiers ranks higher.
fn compare_pre_release(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (false, false) => {}
    }
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (
                    x.parse::<u64>()
                        .ok()
                        .filter(|_| x.bytes().all(|c| c.is_ascii_digit())),
                    y.parse::<u64>()
                        .ok()
                        .filter(|_| y.bytes().all(|c| c.is_ascii_digit())),
                ) {
                    (Some(m), Some(n)) => m.cmp(&n),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> SemVer<'_> {
        SemVer::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn lenient_missing_components() {
        assert_eq!(v("2").cmp(&v("2.0.0")), Ordering::Equal);
        assert_eq!(v("2-rc").cmp(&v("2.0.0-rc")), Ordering::Equal);
        assert_eq!(v("2.0-rc").cmp(&v("2.0.0-rc")), Ordering::Equal);
        assert_eq!(v("2.0.0+build").cmp(&v("2.0.0")), Ordering::Equal);
    }

    #[test]
    fn rejects_invalid_syntax() {
        for bad in [
            "",
            "02.0.0",
            "v2.0.0",
            "2.0.0.0",
            "2.0.0-",
            "2.0.0-01",
            "2.0.0+",
            "2..0",
            "2.0.0-a..b",
            "２.0.0",
            "-1.0.0",
            "1.0.0+a+b",
        ] {
            assert!(SemVer::parse(bad).is_none(), "{bad} should not parse");
        }
    }

    #[test]
    fn precedence_follows_semver_2() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                v(pair[0]).cmp(&v(pair[1])),
                Ordering::Less,
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
    }
}
