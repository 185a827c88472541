//! Attribute references (`ld-protocol.md` §2.8).
//!
//! A reference names an attribute of a context, possibly nested inside JSON objects. The string
//! `"/address/city"` is a path of two components; `"a/b"` (no leading slash) is the literal
//! attribute name `a/b`. Inside a path, `~1` stands for `/` and `~0` for `~`.
//!
//! Whether a string from flag data is parsed as a path depends on its neighbours: a clause's
//! `attribute`, a rollout's `bucketBy` and a segment rule's `bucketBy` are paths only when the
//! sibling context kind is present (legacy data predates paths). Callers choose with
//! [`AttrRef::new`] (reference syntax) or [`AttrRef::literal`].

use std::fmt;

/// Why an attribute reference cannot be used. Evaluating a clause with an invalid reference is a
/// `MALFORMED_FLAG` error, not a silent non-match (§3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttrRefError {
    /// The reference is the empty string (or `/` alone): it names no attribute.
    #[error("attribute reference is empty")]
    Empty,
    /// A path has an empty component, as in `//` or a trailing `/`.
    #[error("attribute reference has an empty path component")]
    EmptyComponent,
    /// A `~` is followed by something other than `0` or `1`.
    #[error("attribute reference has an invalid escape sequence")]
    InvalidEscape,
}

/// A parsed attribute reference. Parsing never fails outright: an invalid reference remembers its
/// error so that the evaluator can report `MALFORMED_FLAG` exactly where LaunchDarkly would.
#[derive(Clone, PartialEq, Eq)]
pub struct AttrRef {
    raw: String,
    parsed: Result<Box<[String]>, AttrRefError>,
}

impl AttrRef {
    /// Removes the attribute this reference points at from a context's attributes, for
    /// redaction (§6.5): a nested reference (`/address/city`) removes only that sub-property.
    /// Returns whether there was one. `kind`, `key`, `anonymous` and `_meta` are never removed,
    /// and an invalid reference removes nothing.
    pub fn remove_from(&self, attributes: &mut serde_json::Map<String, serde_json::Value>) -> bool {
        if self.error().is_some() {
            return false;
        }
        let Some((last, path)) = self.components().split_last() else {
            return false;
        };
        if path.is_empty() && matches!(last.as_str(), "kind" | "key" | "anonymous" | "_meta") {
            return false;
        }
        let mut object = attributes;
        for component in path {
            match object.get_mut(component.as_str()) {
                Some(serde_json::Value::Object(inner)) => object = inner,
                _ => return false,
            }
        }
        object.remove(last.as_str()).is_some()
    }

    /// Parses `s` in reference syntax: a leading `/` makes it a path, anything else a literal name.
    pub fn new(s: &str) -> AttrRef {
        let parsed = if s.is_empty() || s == "/" {
            Err(AttrRefError::Empty)
        } else if let Some(path) = s.strip_prefix('/') {
            path.split('/').map(unescape_component).collect()
        } else {
            Ok(vec![s.to_owned()].into_boxed_slice())
        };
        AttrRef {
            raw: s.to_owned(),
            parsed,
        }
    }

    /// Treats `name` as a literal attribute name even if it starts with `/` (legacy clauses and
    /// `privateAttributeNames` of legacy users).
    pub fn literal(name: &str) -> AttrRef {
        let parsed = if name.is_empty() {
            Err(AttrRefError::Empty)
        } else {
            Ok(vec![name.to_owned()].into_boxed_slice())
        };
        AttrRef {
            raw: name.to_owned(),
            parsed,
        }
    }

    /// The string this reference was parsed from.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The error, if the reference is invalid.
    pub fn error(&self) -> Option<AttrRefError> {
        self.parsed.as_ref().err().copied()
    }

    /// The unescaped path components; empty for an invalid reference.
    pub fn components(&self) -> &[String] {
        match &self.parsed {
            Ok(components) => components,
            Err(_) => &[],
        }
    }

    /// True when this reference is exactly the one-component name `name`.
    pub fn is_name(&self, name: &str) -> bool {
        matches!(self.components(), [only] if only == name)
    }
}

fn unescape_component(component: &str) -> Result<String, AttrRefError> {
    if component.is_empty() {
        return Err(AttrRefError::EmptyComponent);
    }
    if !component.contains('~') {
        return Ok(component.to_owned());
    }
    let mut out = String::with_capacity(component.len());
    let mut chars = component.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err(AttrRefError::InvalidEscape),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl fmt::Debug for AttrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.parsed {
            Ok(components) => write!(f, "AttrRef({:?} -> {:?})", self.raw, components),
            Err(e) => write!(f, "AttrRef({:?}: {e})", self.raw),
        }
    }
}

impl fmt::Display for AttrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_and_paths() {
        assert_eq!(AttrRef::new("name").components(), ["name"]);
        assert_eq!(AttrRef::new("a/b").components(), ["a/b"]);
        assert_eq!(AttrRef::new("/a/b").components(), ["a", "b"]);
        assert_eq!(AttrRef::new("/a~1b/c~0d").components(), ["a/b", "c~d"]);
        assert_eq!(AttrRef::literal("/a/b").components(), ["/a/b"]);
    }

    #[test]
    fn invalid_references_keep_their_error() {
        assert_eq!(AttrRef::new("").error(), Some(AttrRefError::Empty));
        assert_eq!(AttrRef::new("/").error(), Some(AttrRefError::Empty));
        assert_eq!(
            AttrRef::new("///").error(),
            Some(AttrRefError::EmptyComponent)
        );
        assert_eq!(
            AttrRef::new("/a/").error(),
            Some(AttrRefError::EmptyComponent)
        );
        assert_eq!(
            AttrRef::new("/a~b").error(),
            Some(AttrRefError::InvalidEscape)
        );
        assert_eq!(
            AttrRef::new("/a~").error(),
            Some(AttrRefError::InvalidEscape)
        );
        assert_eq!(AttrRef::literal("").error(), Some(AttrRefError::Empty));
        // A literal name may contain anything, including what would be bad escapes in a path.
        assert_eq!(AttrRef::new("a~b").error(), None);
    }
}
