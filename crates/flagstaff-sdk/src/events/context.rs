//! Contexts as analytics events carry them (`ld-protocol.md` §6.5): the evaluation context's
//! JSON with private attributes removed and listed under `_meta.redactedAttributes`.
//!
//! Private attributes come from three places: the SDK's `all_attributes_private`, the SDK's
//! `private_attributes`, and the context's own `_meta.privateAttributes`. `kind`, `key`,
//! `anonymous` and `_meta` are never redacted; `name` can be. A nested reference
//! (`/address/city`) removes only that property. For an anonymous context, feature events leave
//! out every optional attribute ("anonymous redaction" of newer LaunchDarkly SDKs).

use flagstaff_protocol::{Context, IndividualContext};
use serde_json::{Map, Value, json};

use crate::config::EventsConfig;

/// How much of a context an event may show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Redaction {
    /// The configured and the context's own private attributes.
    Private,
    /// As `Private`, and every optional attribute of an anonymous context (feature events).
    PrivateAndAnonymous,
}

/// The event JSON of `context`.
pub(crate) fn event_context(context: &Context, config: &EventsConfig, mode: Redaction) -> Value {
    if context.is_multi() {
        let mut object = Map::new();
        object.insert("kind".into(), json!("multi"));
        for individual in context.individuals() {
            let mut inner = individual_json(individual, config, mode);
            inner.remove("kind");
            object.insert(individual.kind().as_str().to_owned(), Value::Object(inner));
        }
        Value::Object(object)
    } else {
        let individual = &context.individuals()[0];
        Value::Object(individual_json(individual, config, mode))
    }
}

fn individual_json(
    individual: &IndividualContext,
    config: &EventsConfig,
    mode: Redaction,
) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("kind".into(), json!(individual.kind().as_str()));
    object.insert("key".into(), json!(individual.key()));
    let mut optional = Map::new();
    if let Some(name) = individual.name() {
        optional.insert("name".into(), json!(name));
    }
    for (name, value) in individual.attributes() {
        optional.insert(name.clone(), value.clone());
    }
    let mut redacted: Vec<String> = Vec::new();
    let everything = config.all_attributes_private
        || (mode == Redaction::PrivateAndAnonymous && individual.anonymous());
    if everything {
        redacted.extend(optional.keys().cloned());
        optional.clear();
    } else {
        for reference in config
            .private_attributes
            .iter()
            .chain(individual.private_attributes())
        {
            if reference.remove_from(&mut optional)
                && !redacted.iter().any(|r| r == reference.as_str())
            {
                redacted.push(reference.as_str().to_owned());
            }
        }
    }
    object.extend(optional);
    if individual.anonymous() {
        object.insert("anonymous".into(), json!(true));
    }
    if !redacted.is_empty() {
        object.insert("_meta".into(), json!({"redactedAttributes": redacted}));
    }
    object
}

#[cfg(test)]
mod tests {
    use flagstaff_protocol::AttrRef;

    use super::*;

    fn context(value: Value) -> Context {
        Context::from_json(&value).unwrap()
    }

    fn config(private: &[&str], all: bool) -> EventsConfig {
        EventsConfig {
            all_attributes_private: all,
            private_attributes: private.iter().map(|p| AttrRef::new(p)).collect(),
            ..EventsConfig::default()
        }
    }

    #[test]
    fn configured_and_own_private_attributes_are_removed_and_listed() {
        let c = context(
            json!({"kind": "user", "key": "u1", "name": "Ann", "email": "a@x",
            "address": {"city": "Oslo", "street": "Main"}, "plan": "gold",
            "_meta": {"privateAttributes": ["plan", "missing"]}}),
        );
        let out = event_context(
            &c,
            &config(&["email", "/address/city"], false),
            Redaction::Private,
        );
        assert_eq!(
            out,
            json!({"kind": "user", "key": "u1", "name": "Ann", "address": {"street": "Main"},
                   "_meta": {"redactedAttributes": ["email", "/address/city", "plan"]}})
        );
    }

    #[test]
    fn all_private_keeps_only_kind_key_and_anonymous() {
        let c = context(
            json!({"kind": "org", "key": "o", "name": "Acme", "anonymous": true, "tier": 3}),
        );
        let out = event_context(&c, &config(&[], true), Redaction::Private);
        assert_eq!(
            out,
            json!({"kind": "org", "key": "o", "anonymous": true,
                   "_meta": {"redactedAttributes": ["name", "tier"]}})
        );
    }

    #[test]
    fn built_in_attributes_cannot_be_redacted() {
        let c = context(json!({"kind": "user", "key": "u", "anonymous": true}));
        let out = event_context(
            &c,
            &config(&["key", "kind", "anonymous", "_meta"], false),
            Redaction::Private,
        );
        assert_eq!(out, json!({"kind": "user", "key": "u", "anonymous": true}));
    }

    #[test]
    fn anonymous_contexts_lose_optional_attributes_in_feature_events_only() {
        let c = context(json!({"kind": "multi",
            "user": {"key": "u", "anonymous": true, "country": "NZ"},
            "org": {"key": "o", "tier": "gold"}}));
        let feature = event_context(&c, &config(&[], false), Redaction::PrivateAndAnonymous);
        assert_eq!(
            feature,
            json!({"kind": "multi",
                   "org": {"key": "o", "tier": "gold"},
                   "user": {"key": "u", "anonymous": true, "_meta": {"redactedAttributes": ["country"]}}})
        );
        let index = event_context(&c, &config(&[], false), Redaction::Private);
        assert_eq!(index["user"]["country"], json!("NZ"));
    }
}
