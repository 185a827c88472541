//! Evaluation contexts (`ld-protocol.md` §2.7).
//!
//! A context is what a flag is evaluated for: a user, an organisation, a device, or several of
//! those at once (a multi-kind context). Three JSON shapes are accepted, told apart by the `kind`
//! property: single-kind (`kind` is a kind name), multi-kind (`kind` is `"multi"`) and the legacy
//! user format (no `kind` at all), which is converted on the way in.

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::attr_ref::AttrRef;

/// A context kind name such as `user` or `org`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind(String);

impl Kind {
    /// The kind every context had before multi-kind contexts existed, and the default wherever
    /// flag data leaves a context kind unspecified.
    pub const USER: &'static str = "user";

    /// Validates a kind name: `[A-Za-z0-9._-]+`, and neither `kind` nor `multi`.
    pub fn new(name: &str) -> Result<Kind, ContextError> {
        let valid_chars = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if name.is_empty() || !valid_chars || name == "kind" || name == "multi" {
            return Err(ContextError::new(
                "kind",
                format!(
                    "{name:?} is not a valid context kind (letters, digits, '.', '_' or '-'; not \"kind\" or \"multi\")"
                ),
            ));
        }
        Ok(Kind(name.to_owned()))
    }

    /// The `user` kind.
    pub fn user() -> Kind {
        Kind(Kind::USER.to_owned())
    }

    /// The kind name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Why a JSON document is not a valid context. SDKs answer such a context with
/// `ERROR / USER_NOT_SPECIFIED` (§3.1); our endpoints answer with a 400 naming `field`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ContextError {
    /// Where in the context JSON the problem is, e.g. `org.key` or `_meta.privateAttributes[1]`.
    pub field: String,
    /// What is wrong there.
    pub message: String,
}

impl ContextError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> ContextError {
        ContextError {
            field: field.into(),
            message: message.into(),
        }
    }

    fn within(mut self, prefix: &str) -> ContextError {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

/// The value of an attribute, borrowed from the context. Built-in attributes are not stored as
/// JSON, so they come back as plain strings and booleans; this keeps attribute lookup free of
/// allocation on the evaluation hot path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttrValue<'a> {
    /// A string attribute (built-in or custom).
    Str(&'a str),
    /// A boolean attribute (built-in `anonymous`).
    Bool(bool),
    /// Any custom attribute value other than JSON `null`.
    Json(&'a Value),
}

impl<'a> AttrValue<'a> {
    /// The string, if this is a string.
    pub fn as_str(self) -> Option<&'a str> {
        match self {
            AttrValue::Str(s) => Some(s),
            AttrValue::Json(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The JSON array, if this is one.
    pub fn as_array(self) -> Option<&'a [Value]> {
        match self {
            AttrValue::Json(Value::Array(items)) => Some(items),
            _ => None,
        }
    }

    /// An owned JSON copy, for diagnostics and events.
    pub fn to_json(self) -> Value {
        match self {
            AttrValue::Str(s) => Value::String(s.to_owned()),
            AttrValue::Bool(b) => Value::Bool(b),
            AttrValue::Json(v) => v.clone(),
        }
    }
}

/// One kind's part of a context.
#[derive(Clone, Debug, PartialEq)]
pub struct IndividualContext {
    kind: Kind,
    key: String,
    name: Option<String>,
    anonymous: bool,
    /// Custom attributes; JSON `null` values are dropped on the way in because a null attribute
    /// means "not set" everywhere in the protocol.
    attributes: Attributes,
    private_attributes: Vec<AttrRef>,
    /// The legacy `secondary` key, kept only for legacy bucketing (§3.8.4); not addressable.
    secondary: Option<String>,
}

impl IndividualContext {
    /// Starts a context of `kind` with `key` and no other attributes.
    pub fn new(kind: Kind, key: impl Into<String>) -> IndividualContext {
        IndividualContext {
            kind,
            key: key.into(),
            name: None,
            anonymous: false,
            attributes: Attributes::default(),
            private_attributes: Vec::new(),
            secondary: None,
        }
    }

    /// Sets a custom attribute (a `null` value removes it).
    pub fn with_attribute(mut self, name: &str, value: Value) -> IndividualContext {
        match name {
            "name" => self.name = value.as_str().map(str::to_owned),
            "anonymous" => self.anonymous = value.as_bool().unwrap_or(false),
            _ if value.is_null() => {
                self.attributes.remove(name);
            }
            _ => {
                self.attributes.insert(name.to_owned(), value);
            }
        }
        self
    }

    /// The kind.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The key, unique within the kind.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The optional display name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether the context is anonymous (false when never set).
    pub fn anonymous(&self) -> bool {
        self.anonymous
    }

    /// The custom attributes (never containing `null` values).
    pub fn attributes(&self) -> &Attributes {
        &self.attributes
    }

    /// The attributes to redact from events.
    pub fn private_attributes(&self) -> &[AttrRef] {
        &self.private_attributes
    }

    /// The legacy secondary key, if this context came from legacy user JSON that had one.
    pub fn secondary(&self) -> Option<&str> {
        self.secondary.as_deref()
    }

    /// Looks up an attribute by reference (§2.7 "Attribute lookup"): `kind`, `key`, `name` and
    /// `anonymous` are built in (`anonymous` is always defined); deeper path components descend
    /// into JSON objects only, never into arrays. `None` means "not found"; an invalid reference
    /// finds nothing.
    pub fn get(&self, reference: &AttrRef) -> Option<AttrValue<'_>> {
        let (first, rest) = reference.components().split_first()?;
        let top = match first.as_str() {
            "kind" => AttrValue::Str(self.kind.as_str()),
            "key" => AttrValue::Str(&self.key),
            "name" => AttrValue::Str(self.name.as_deref()?),
            "anonymous" => AttrValue::Bool(self.anonymous),
            other => AttrValue::Json(self.attributes.get(other)?),
        };
        if rest.is_empty() {
            return Some(top);
        }
        let AttrValue::Json(mut value) = top else {
            return None;
        };
        for component in rest {
            value = value.as_object()?.get(component.as_str())?;
        }
        (!value.is_null()).then_some(AttrValue::Json(value))
    }

    fn fully_qualified_key_into(&self, out: &mut String) {
        out.push_str(self.kind.as_str());
        out.push(':');
        escape_key_into(&self.key, out);
    }
}

fn escape_key_into(key: &str, out: &mut String) {
    for c in key.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
}

/// An evaluation context: one or more individual contexts of distinct kinds, sorted by kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Context {
    individuals: Vec<IndividualContext>,
}

impl Context {
    /// A single-kind context.
    pub fn single(individual: IndividualContext) -> Context {
        Context {
            individuals: vec![individual],
        }
    }

    /// A multi-kind context; fails on duplicate kinds or an empty list. A list of one is the same
    /// as that single context.
    pub fn multi(mut individuals: Vec<IndividualContext>) -> Result<Context, ContextError> {
        if individuals.is_empty() {
            return Err(ContextError::new(
                "kind",
                "a multi-kind context needs at least one kind",
            ));
        }
        individuals.sort_by(|a, b| a.kind.cmp(&b.kind));
        if let Some(pair) = individuals.windows(2).find(|w| w[0].kind == w[1].kind) {
            return Err(ContextError::new(
                pair[0].kind.as_str(),
                "the same kind appears twice in a multi-kind context",
            ));
        }
        Ok(Context { individuals })
    }

    /// Parses any of the three JSON shapes (single-kind, multi-kind, legacy user).
    pub fn from_json(value: &Value) -> Result<Context, ContextError> {
        let Some(object) = value.as_object() else {
            return Err(ContextError::new(
                "(context)",
                "a context must be a JSON object",
            ));
        };
        match object.get("kind") {
            None => parse_legacy_user(object).map(Context::single),
            Some(Value::String(kind)) if kind == "multi" => {
                let mut individuals = Vec::with_capacity(object.len().saturating_sub(1));
                for (kind, nested) in object.iter().filter(|(k, _)| k.as_str() != "kind") {
                    let kind =
                        Kind::new(kind).map_err(|e| ContextError::new(kind.clone(), e.message))?;
                    let Some(nested_object) = nested.as_object() else {
                        return Err(ContextError::new(
                            kind.as_str(),
                            "each kind of a multi-kind context must be a JSON object",
                        ));
                    };
                    let prefix = kind.0.clone();
                    individuals
                        .push(parse_single(kind, nested_object).map_err(|e| e.within(&prefix))?);
                }
                Context::multi(individuals)
            }
            Some(Value::String(kind)) => {
                let kind = Kind::new(kind)?;
                parse_single(kind, object).map(Context::single)
            }
            Some(_) => Err(ContextError::new("kind", "must be a string")),
        }
    }

    /// True for a multi-kind context with more than one kind.
    pub fn is_multi(&self) -> bool {
        self.individuals.len() > 1
    }

    /// The individual contexts, sorted by kind.
    pub fn individuals(&self) -> &[IndividualContext] {
        &self.individuals
    }

    /// The individual context of `kind`, if the context has one.
    #[inline]
    pub fn individual(&self, kind: &str) -> Option<&IndividualContext> {
        self.individuals.iter().find(|c| c.kind.as_str() == kind)
    }

    /// The kind, as the `kind` attribute reports it: `multi` for a multi-kind context.
    pub fn kind_name(&self) -> &str {
        match self.individuals.as_slice() {
            [only] => only.kind.as_str(),
            _ => "multi",
        }
    }

    /// The fully-qualified key (§2.7) used for secure-mode hashes, event de-duplication and
    /// per-context caches: a `user` context's bare key, `kind:key` for other kinds, and the
    /// sorted `kind:key` pairs joined with `:` for multi-kind contexts.
    pub fn fully_qualified_key(&self) -> String {
        match self.individuals.as_slice() {
            [only] if only.kind.as_str() == Kind::USER => only.key.clone(),
            individuals => {
                let mut out = String::new();
                for (i, individual) in individuals.iter().enumerate() {
                    if i > 0 {
                        out.push(':');
                    }
                    individual.fully_qualified_key_into(&mut out);
                }
                out
            }
        }
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Context::from_json(&value).map_err(serde::de::Error::custom)
    }
}

fn optional_string(
    object: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, ContextError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ContextError::new(name, "must be a string or null")),
    }
}

fn optional_bool(object: &Map<String, Value>, name: &str) -> Result<bool, ContextError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ContextError::new(name, "must be a boolean or null")),
    }
}

/// Parses one kind's object. The `kind` property (if present) has already been read.
fn parse_single(
    kind: Kind,
    object: &Map<String, Value>,
) -> Result<IndividualContext, ContextError> {
    let key = match object.get("key") {
        Some(Value::String(key)) if !key.is_empty() => key.clone(),
        Some(Value::String(_)) => return Err(ContextError::new("key", "must not be empty")),
        None => return Err(ContextError::new("key", "is required")),
        Some(_) => return Err(ContextError::new("key", "must be a string")),
    };
    let name = optional_string(object, "name")?;
    let anonymous = optional_bool(object, "anonymous")?;
    let mut private_attributes = Vec::new();
    match object.get("_meta") {
        None | Some(Value::Null) => {}
        Some(Value::Object(meta)) => match meta.get("privateAttributes") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(reference) = item.as_str() else {
                        return Err(ContextError::new(
                            format!("_meta.privateAttributes[{i}]"),
                            "must be a string",
                        ));
                    };
                    private_attributes.push(AttrRef::new(reference));
                }
            }
            Some(_) => {
                return Err(ContextError::new(
                    "_meta.privateAttributes",
                    "must be an array of attribute references",
                ));
            }
        },
        Some(_) => return Err(ContextError::new("_meta", "must be an object")),
    }
    let attributes = object
        .iter()
        .filter(|(name, value)| {
            !matches!(
                name.as_str(),
                "kind" | "key" | "name" | "anonymous" | "_meta"
            ) && !value.is_null()
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    Ok(IndividualContext {
        kind,
        key,
        name,
        anonymous,
        attributes,
        private_attributes,
        secondary: None,
    })
}

/// A context's custom attributes, sorted by name, in one allocation of exactly their size.
///
/// A context has few attributes, and browser and mobile streams keep their context for as long
/// as they are open (hours, ten thousand of them per node): a `BTreeMap` would take a node of
/// about 640 bytes for a single attribute, this takes 56 (issue 23, point 5). Lookups are a
/// binary search, and iteration is in name order, as a `BTreeMap`'s is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes(Box<[(String, Value)]>);

impl Attributes {
    /// The attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let found = self
            .0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()?;
        Some(&self.0[found].1)
    }

    /// The attributes in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `name` (replacing any value it had).
    fn insert(&mut self, name: String, value: Value) {
        let mut all = std::mem::take(&mut self.0).into_vec();
        match all.binary_search_by(|(k, _)| k.cmp(&name)) {
            Ok(found) => all[found].1 = value,
            Err(at) => all.insert(at, (name, value)),
        }
        self.0 = all.into_boxed_slice();
    }

    /// Removes `name`, if set.
    fn remove(&mut self, name: &str) {
        if let Ok(found) = self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            let mut all = std::mem::take(&mut self.0).into_vec();
            all.remove(found);
            self.0 = all.into_boxed_slice();
        }
    }
}

impl FromIterator<(String, Value)> for Attributes {
    /// Collects attributes; of two with one name, the later wins (as inserting into a map).
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(items: I) -> Attributes {
        let mut all: Vec<(String, Value)> = items.into_iter().collect();
        // Later ones first, a stable sort keeps that order among equal names, and `dedup_by`
        // keeps the first of each run: the one given last.
        all.reverse();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.dedup_by(|a, b| a.0 == b.0);
        Attributes(all.into_boxed_slice())
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a String, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Value)>,
        fn(&'a (String, Value)) -> (&'a String, &'a Value),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// The built-in string attributes of the legacy user format, which become top-level attributes.
const LEGACY_STRING_ATTRIBUTES: [&str; 6] =
    ["firstName", "lastName", "email", "country", "avatar", "ip"];

/// Converts legacy user JSON (§2.7 "Legacy user JSON"). Unlike new-format contexts, a legacy user
/// may have an empty key, and its private attribute names are literal names, not references.
fn parse_legacy_user(object: &Map<String, Value>) -> Result<IndividualContext, ContextError> {
    let key = match object.get("key") {
        Some(Value::String(key)) => key.clone(),
        None | Some(Value::Null) => return Err(ContextError::new("key", "is required")),
        Some(_) => return Err(ContextError::new("key", "must be a string")),
    };
    // Gathered, then sorted once (`Attributes::from_iter`): a custom attribute named like a
    // built-in one is given later and wins, as it did in a map.
    let mut attributes = Vec::new();
    for name in LEGACY_STRING_ATTRIBUTES {
        if let Some(value) = optional_string(object, name)? {
            attributes.push((name.to_owned(), Value::String(value)));
        }
    }
    match object.get("custom") {
        None | Some(Value::Null) => {}
        Some(Value::Object(custom)) => {
            for (name, value) in custom {
                let reserved = matches!(
                    name.as_str(),
                    "kind" | "key" | "name" | "anonymous" | "_meta"
                );
                if !reserved && !value.is_null() {
                    attributes.push((name.clone(), value.clone()));
                }
            }
        }
        Some(_) => return Err(ContextError::new("custom", "must be an object")),
    }
    let private_attributes = match object.get("privateAttributeNames") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().map(AttrRef::literal).ok_or_else(|| {
                    ContextError::new(format!("privateAttributeNames[{i}]"), "must be a string")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ContextError::new(
                "privateAttributeNames",
                "must be an array of strings",
            ));
        }
    };
    Ok(IndividualContext {
        kind: Kind::user(),
        key,
        name: optional_string(object, "name")?,
        anonymous: optional_bool(object, "anonymous")?,
        attributes: attributes.into_iter().collect(),
        private_attributes,
        secondary: optional_string(object, "secondary")?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Result<Context, ContextError> {
        Context::from_json(&value)
    }

    #[test]
    fn attributes_are_kept_sorted_and_the_last_of_a_name_wins() {
        let legacy = parse(json!({"key": "u", "country": "NZ",
            "custom": {"country": "FR", "zeta": 1, "alpha": true, "gone": null}}))
        .unwrap();
        let user = &legacy.individuals()[0];
        let names: Vec<&String> = user.attributes().iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["alpha", "country", "zeta"]);
        assert_eq!(user.attributes().get("country"), Some(&json!("FR")));
        assert_eq!(user.attributes().get("gone"), None);
        assert_eq!(user.attributes().get("missing"), None);
        let built = IndividualContext::new(Kind::user(), "k")
            .with_attribute("b", json!(2))
            .with_attribute("a", json!(1))
            .with_attribute("c", json!(3))
            .with_attribute("b", json!(20))
            .with_attribute("c", Value::Null);
        let pairs: Vec<(&String, &Value)> = built.attributes().into_iter().collect();
        assert_eq!(
            pairs,
            [(&"a".to_owned(), &json!(1)), (&"b".to_owned(), &json!(20))]
        );
        assert_eq!(built.attributes().len(), 2);
        let collected: Attributes = [("x", 1), ("y", 2), ("x", 3)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        assert_eq!(collected.get("x"), Some(&json!(3)));
        assert_eq!(collected.len(), 2);
    }

    #[test]
    fn single_kind_with_nested_attributes() {
        let context = parse(
            json!({"kind": "org", "key": "o1", "address": {"city": "Wellington"}, "tags": null}),
        )
        .unwrap();
        let org = context.individual("org").unwrap();
        assert_eq!(
            org.get(&AttrRef::new("/address/city")),
            Some(AttrValue::Json(&json!("Wellington")))
        );
        assert_eq!(
            org.get(&AttrRef::new("address/city")),
            None,
            "a literal name with a slash is not a path"
        );
        assert_eq!(org.get(&AttrRef::new("tags")), None, "null means not set");
        assert_eq!(
            org.get(&AttrRef::new("anonymous")),
            Some(AttrValue::Bool(false))
        );
        assert_eq!(org.get(&AttrRef::new("kind")), Some(AttrValue::Str("org")));
        assert_eq!(context.fully_qualified_key(), "org:o1");
    }

    #[test]
    fn arrays_are_not_indexable() {
        let context = parse(json!({"kind": "user", "key": "u", "list": [{"a": 1}]})).unwrap();
        assert_eq!(context.individuals()[0].get(&AttrRef::new("/list/0")), None);
    }

    #[test]
    fn multi_kind_is_sorted_and_keys_are_escaped() {
        let context =
            parse(json!({"kind": "multi", "user": {"key": "a:b"}, "org": {"key": "100%"}}))
                .unwrap();
        assert!(context.is_multi());
        assert_eq!(context.kind_name(), "multi");
        assert_eq!(context.fully_qualified_key(), "org:100%25:user:a%3Ab");
    }

    #[test]
    fn multi_kind_of_one_is_single() {
        let context = parse(json!({"kind": "multi", "org": {"key": "o"}})).unwrap();
        assert!(!context.is_multi());
        assert_eq!(context.kind_name(), "org");
    }

    #[test]
    fn legacy_user_conversion() {
        let context = parse(json!({
            "key": "", "email": "e@x", "secondary": "s", "anonymous": null,
            "custom": {"plan": "gold", "kind": "dropped", "name": "dropped"},
            "privateAttributeNames": ["/email"]
        }))
        .unwrap();
        let user = context.individual("user").unwrap();
        assert_eq!(user.key(), "", "legacy users may have an empty key");
        assert_eq!(
            user.get(&AttrRef::new("plan")),
            Some(AttrValue::Json(&json!("gold")))
        );
        assert_eq!(
            user.get(&AttrRef::new("kind")),
            Some(AttrValue::Str("user"))
        );
        assert_eq!(user.name(), None);
        assert_eq!(user.secondary(), Some("s"));
        assert_eq!(user.private_attributes()[0].components(), ["/email"]);
    }

    #[test]
    fn invalid_contexts_name_the_field() {
        let cases = [
            (json!({"kind": "user"}), "key"),
            (json!({"kind": "user", "key": ""}), "key"),
            (json!({"kind": "user", "key": 3}), "key"),
            (json!({"kind": "", "key": "k"}), "kind"),
            (json!({"kind": "multi", "key": "k"}), "key"),
            (json!({"kind": "multi"}), "kind"),
            (json!({"kind": "kind", "key": "k"}), "kind"),
            (json!({"kind": "user", "key": "k", "name": 5}), "name"),
            (
                json!({"kind": "user", "key": "k", "anonymous": "yes"}),
                "anonymous",
            ),
            (json!({"kind": "multi", "org": {"key": 1}}), "org.key"),
            (
                json!({"kind": "user", "key": "k", "_meta": {"privateAttributes": [1]}}),
                "_meta.privateAttributes[0]",
            ),
            (json!({"key": null}), "key"),
            (json!([1]), "(context)"),
        ];
        for (json, field) in cases {
            let error = parse(json.clone()).expect_err(&json.to_string());
            assert_eq!(error.field, field, "{json}");
        }
    }
}
