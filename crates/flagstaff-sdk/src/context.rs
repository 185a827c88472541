//! Building evaluation contexts (`ld-protocol.md` §2.7) without writing JSON.

use flagstaff_protocol::{Context, ContextError};
use serde_json::{Map, Value, json};

/// Builds a single-kind [`Context`]; [`ContextBuilder::multi`] combines several.
///
/// ```
/// use flagstaff_sdk::ContextBuilder;
/// let user = ContextBuilder::new("user-42").name("Ann").set("country", "NZ").private("email")
///     .set("email", "ann@example.com").build().unwrap();
/// let org = ContextBuilder::new("acme").kind("org").set("plan", "gold").build().unwrap();
/// let both = ContextBuilder::multi([user, org]).unwrap();
/// assert!(both.is_multi());
/// ```
#[derive(Clone, Debug)]
pub struct ContextBuilder {
    kind: String,
    key: String,
    attributes: Map<String, Value>,
    private: Vec<String>,
}

impl ContextBuilder {
    /// A context of kind `user` with `key`.
    pub fn new(key: impl Into<String>) -> ContextBuilder {
        ContextBuilder {
            kind: "user".into(),
            key: key.into(),
            attributes: Map::new(),
            private: Vec::new(),
        }
    }

    /// The kind (`user`, `org`, `device`, …; letters, digits, `.`, `_`, `-`).
    pub fn kind(mut self, kind: &str) -> ContextBuilder {
        kind.clone_into(&mut self.kind);
        self
    }

    /// The display name.
    pub fn name(self, name: &str) -> ContextBuilder {
        self.set("name", name)
    }

    /// Marks the context anonymous.
    pub fn anonymous(self, anonymous: bool) -> ContextBuilder {
        self.set("anonymous", anonymous)
    }

    /// Sets an attribute to any JSON value (`null` removes it).
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> ContextBuilder {
        self.attributes.insert(name.to_owned(), value.into());
        self
    }

    /// Keeps an attribute out of analytics events (an attribute reference: `email`,
    /// `/address/city`). Targeting still sees it.
    pub fn private(mut self, reference: &str) -> ContextBuilder {
        self.private.push(reference.to_owned());
        self
    }

    /// The context, or what is wrong with it (empty key, invalid kind).
    pub fn build(self) -> Result<Context, ContextError> {
        let mut object = self.attributes;
        object.insert("kind".into(), json!(self.kind));
        object.insert("key".into(), json!(self.key));
        if !self.private.is_empty() {
            object.insert("_meta".into(), json!({"privateAttributes": self.private}));
        }
        Context::from_json(&Value::Object(object))
    }

    /// A multi-kind context from single ones (each kind at most once).
    pub fn multi(contexts: impl IntoIterator<Item = Context>) -> Result<Context, ContextError> {
        Context::multi(
            contexts
                .into_iter()
                .flat_map(|c| c.individuals().to_vec())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_contexts_equal_their_json() {
        let built = ContextBuilder::new("u1")
            .name("Ann")
            .set("tier", 3)
            .private("tier")
            .build()
            .unwrap();
        let parsed = Context::from_json(
            &json!({"kind": "user", "key": "u1", "name": "Ann", "tier": 3,
            "_meta": {"privateAttributes": ["tier"]}}),
        )
        .unwrap();
        assert_eq!(built, parsed);
        assert!(ContextBuilder::new("").build().is_err());
        assert!(ContextBuilder::new("k").kind("kind").build().is_err());
        let a = ContextBuilder::new("a").build().unwrap();
        assert!(ContextBuilder::multi([a.clone(), a]).is_err());
    }
}
