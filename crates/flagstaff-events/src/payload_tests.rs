//! Unit tests of `payload.rs`.
use serde_json::json;

use super::fields::read_whole;
use super::*;

const NOW: i64 = 1_800_000_000_000;

fn source(schema: u32) -> Source {
    Source {
        environment: Arc::from("shop/production"),
        sdk: SdkIdentity::default(),
        schema,
        unsummarized: false,
        server_side: true,
        received_at: NOW,
    }
}

fn parse(schema: u32, events: Value) -> Batch {
    parse_analytics(source(schema), events.to_string().as_bytes()).unwrap()
}

#[test]
fn summary_counters_become_counters_and_nonsense_is_skipped() {
    let batch = parse(
        4,
        json!([{
            "kind": "summary", "startDate": NOW - 5000, "endDate": NOW - 1000,
            "features": {
                "checkout": {"default": false, "contextKinds": ["user"], "counters": [
                    {"variation": 1, "version": 7, "value": true, "count": 42},
                    {"variation": 0, "version": 7, "value": false, "count": 3},
                    {"value": false, "unknown": true, "version": 3, "count": 1},
                    {"variation": 0, "version": 7, "value": false, "count": 0},
                    {"variation": 0, "version": 7, "value": false, "count": -2},
                    {"variation": 0, "version": 7, "value": false}
                ]},
                "broken": {"counters": "no"}
            },
            "context": {"kind": "user", "key": "u1", "plan": "gold"}
        }]),
    );
    assert_eq!(batch.events, 1);
    assert_eq!(batch.skipped, 4);
    assert_eq!(batch.counters.len(), 3);
    assert_eq!(
        batch.counters[0],
        Counter {
            flag: "checkout".into(),
            version: Some(7),
            variation: Some(1),
            value: json!(true),
            count: 42,
            at: NOW - 1000,
        }
    );
    assert_eq!(
        batch.counters[2].version, None,
        "unknown flags have no version"
    );
    assert_eq!(batch.counters[2].variation, None);
    assert_eq!(batch.contexts.len(), 1);
    assert_eq!(
        batch.contexts[0].attributes,
        Some(json!({"plan": "gold"}).as_object().unwrap().clone())
    );
}

#[test]
fn implausible_sdk_clocks_fall_back_to_the_arrival_time() {
    let summary = |end: i64| {
        json!([{"kind": "summary", "endDate": end, "features": {"f": {"counters": [
            {"variation": 0, "version": 1, "value": 1, "count": 1}]}}}])
    };
    assert_eq!(parse(4, summary(NOW + 3_600_000)).counters[0].at, NOW);
    assert_eq!(
        parse(4, summary(NOW - 500 * 86_400_000)).counters[0].at,
        NOW
    );
    assert_eq!(
        parse(4, summary(NOW - 86_400_000)).counters[0].at,
        NOW - 86_400_000
    );
}

#[test]
fn feature_events_are_samples_unless_the_sdk_did_not_summarise() {
    let events = json!([
        {"kind": "feature", "creationDate": NOW, "key": "checkout", "version": 7,
         "variation": 1, "value": true, "default": false,
         "context": {"kind": "user", "key": "u1"}},
        {"kind": "feature", "creationDate": NOW, "key": "checkout", "version": 7,
         "variation": 0, "value": false, "default": false, "trackEvents": true,
         "context": {"kind": "user", "key": "u2"}}
    ]);
    let summarised = parse(4, events.clone());
    assert!(summarised.counters.is_empty());
    assert_eq!(summarised.samples.len(), 2);
    for (schema, unsummarized) in [(2, false), (1, false), (4, true)] {
        let mut source = source(schema);
        source.unsummarized = unsummarized;
        let batch = parse_analytics(source, events.to_string().as_bytes()).unwrap();
        assert_eq!(batch.counters.len(), 2, "schema {schema}");
        assert_eq!(batch.counters[0].variation, Some(1));
        assert_eq!(batch.counters[0].count, 1);
        // Only the tracked one is kept in full.
        assert_eq!(batch.samples.len(), 1, "schema {schema}");
        assert_eq!(batch.samples[0].body["context"]["key"], "u2");
    }
}

#[test]
fn private_attributes_are_removed_wherever_a_context_appears() {
    let batch = parse(
        4,
        json!([
            {"kind": "custom", "creationDate": NOW, "key": "purchase", "metricValue": 9.5,
             "data": {"sku": "a"},
             "context": {"kind": "user", "key": "u1", "name": "Ann", "email": "ann@example.com",
               "address": {"city": "Oslo", "street": "Main 1"},
               "_meta": {"privateAttributes": ["email", "/address/street", "key"],
                         "redactedAttributes": ["phone"]}}},
            {"kind": "identify", "creationDate": NOW,
             "context": {"kind": "multi",
               "user": {"key": "u2", "ssn": "123", "_meta": {"privateAttributes": ["ssn"]}},
               "org": {"key": "o1", "name": "Acme"}}}
        ]),
    );
    let text = format!("{:?}", batch);
    for secret in ["ann@example.com", "Main 1", "123"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let ann = &batch.contexts[0];
    assert_eq!(ann.key, "u1");
    assert_eq!(ann.redacted, ["/address/street", "email", "phone"]);
    assert_eq!(
        Value::Object(ann.attributes.clone().unwrap()),
        json!({"name": "Ann", "address": {"city": "Oslo"}})
    );
    let sample = &batch.samples[0];
    assert_eq!(sample.kind, "custom");
    assert_eq!(sample.body["context"]["key"], "u1");
    assert_eq!(sample.body["context"]["kind"], "user");
    assert_eq!(sample.body["data"], json!({"sku": "a"}));
    assert_eq!(batch.custom[0].metric, Some(9.5));
    let kinds: Vec<&str> = batch.contexts.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["user", "org", "user"]);
    assert_eq!(batch.contexts[2].redacted, ["ssn"]);
}

#[test]
fn legacy_users_and_context_keys_are_read() {
    let batch = parse(
        3,
        json!([
            {"kind": "index", "creationDate": NOW,
             "user": {"key": "u1", "name": "Ann", "email": "a@x", "custom": {"plan": "gold"},
                      "privateAttrs": ["phone"], "privateAttributeNames": ["email"]}},
            {"kind": "custom", "creationDate": NOW, "key": "view", "userKey": "u2"},
            {"kind": "custom", "creationDate": NOW, "key": "view",
             "contextKeys": {"user": "u3", "org": "o1"}}
        ]),
    );
    assert_eq!(batch.contexts[0].kind, "user");
    assert_eq!(
        Value::Object(batch.contexts[0].attributes.clone().unwrap()),
        json!({"name": "Ann", "plan": "gold"})
    );
    assert_eq!(batch.contexts[0].redacted, ["email", "phone"]);
    let keyed: Vec<(&str, &str, bool)> = batch.contexts[1..]
        .iter()
        .map(|c| (c.kind.as_str(), c.key.as_str(), c.attributes.is_none()))
        .collect();
    assert_eq!(
        keyed,
        [
            ("user", "u2", true),
            ("org", "o1", true),
            ("user", "u3", true)
        ]
    );
    assert_eq!(batch.custom.len(), 2);
}

#[test]
fn only_the_payload_shape_can_refuse_a_payload() {
    assert!(matches!(
        parse_analytics(source(4), b"[{\"kind\": "),
        Err(PayloadError::NotJson(_))
    ));
    assert_eq!(
        parse_analytics(source(4), b"{}").unwrap_err(),
        PayloadError::NotArray
    );
    assert_eq!(
        parse_diagnostic(source(4), b"[]").unwrap_err(),
        PayloadError::NotObject
    );
    let batch = parse(
        4,
        json!([1, "x", null, {"kind": "new-kind-from-the-future"}, {"kind": "alias"},
               {"kind": "custom"}, {"kind": "feature", "key": ""}]),
    );
    assert_eq!(batch.events, 7);
    assert_eq!(batch.skipped, 6);
}

#[test]
fn sdks_are_named_from_headers_and_diagnostics() {
    let sdk = SdkIdentity::from_headers(Some("PythonClient/9.12.0"), None, None);
    assert_eq!(
        (sdk.name.as_str(), sdk.version.as_str()),
        ("PythonClient", "9.12.0")
    );
    let browser = SdkIdentity::from_headers(
        Some("Mozilla/5.0 (X11; Linux x86_64)"),
        Some("JSClient/3.4.0"),
        Some("react-client-sdk/3.0.0"),
    );
    assert_eq!(browser.name, "JSClient");
    assert_eq!(browser.wrapper, "react-client-sdk/3.0.0");
    let unknown = SdkIdentity::from_headers(Some("Mozilla/5.0"), None, None);
    assert_eq!(unknown.name, "unknown");
    let diagnostic = parse_diagnostic(
        source(4),
        json!({"kind": "diagnostic-init", "sdk": {"name": "go-server-sdk", "version": "7.1.0",
               "wrapperName": "relay"}, "platform": {"name": "Go", "osName": "linux"}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let (identity, platform) = diagnostic.diagnostic.unwrap();
    assert_eq!(identity.name, "go-server-sdk");
    assert_eq!(identity.wrapper, "relay");
    assert!(platform.contains("linux"));
}

#[test]
fn a_huge_array_of_nothing_is_read_one_element_at_a_time_and_skipped() {
    // What a 10 KB gzip bomb inflates to: a million elements that are not events.
    let mut bytes = Vec::with_capacity(2_000_002);
    bytes.push(b'[');
    for i in 0..1_000_000 {
        if i > 0 {
            bytes.push(b',');
        }
        bytes.push(b'0');
    }
    bytes.push(b']');
    let batch = parse_analytics(source(4), &bytes).unwrap();
    assert_eq!(batch.events, 1_000_000);
    assert_eq!(batch.skipped, 1_000_000);
    assert_eq!(batch.kinds[KINDS.len() - 1], 1_000_000, "counted as other");
    assert!(batch.counters.is_empty() && batch.samples.is_empty());
    assert_eq!(
        batch.bytes, 0,
        "it keeps nothing, so it weighs nothing in the queue"
    );
}

#[test]
fn what_is_not_an_array_of_events_is_refused_as_before() {
    for (body, expected) in [
        (&b"{}"[..], PayloadError::NotArray),
        (b"\"events\"", PayloadError::NotArray),
        (b"12", PayloadError::NotArray),
    ] {
        assert_eq!(parse_analytics(source(4), body).unwrap_err(), expected);
    }
    for body in [&b"["[..], b"[1,", b"[1] [2]", b"[1] x", b"nope", b""] {
        assert!(
            matches!(
                parse_analytics(source(4), body),
                Err(PayloadError::NotJson(_))
            ),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(parse_analytics(source(4), b" [ ] ").unwrap().events, 0);
}

#[test]
fn a_custom_event_keeps_small_data_and_only_the_size_of_large_data() {
    let small = json!({"cart": ["a", "b"], "total": 12});
    let large = json!({"blob": "x".repeat(MAX_CUSTOM_DATA_LEN)});
    let batch = parse(
        4,
        json!([
            {"kind": "custom", "creationDate": NOW, "key": "small", "data": small,
             "contextKeys": {"user": "u1"}},
            {"kind": "custom", "creationDate": NOW, "key": "large", "data": large,
             "contextKeys": {"user": "u1"}, "metricValue": 3.0}
        ]),
    );
    assert_eq!(batch.samples[0].body["data"], small);
    let body = &batch.samples[1].body;
    assert!(body.get("data").is_none());
    assert_eq!(
        body["dataOmittedBytes"],
        json!(large.to_string().len()),
        "the sample says how large the data was"
    );
    assert_eq!(
        batch.custom[1].metric,
        Some(3.0),
        "the event still counts, with its metric"
    );
}

#[test]
fn a_batch_weighs_about_the_size_of_its_events() {
    let events = json!([
        {"kind": "custom", "creationDate": NOW, "key": "k", "data": {"text": "x".repeat(1000)},
         "contextKeys": {"user": "u1"}},
        0, "not an event"
    ]);
    let batch = parse(4, events.clone());
    let text = events[0].to_string().len();
    assert!(
        batch.bytes >= text && batch.bytes <= text * 3,
        "{} for {text} bytes of JSON",
        batch.bytes
    );
}

#[test]
fn migration_operations_count_only_from_server_side_sdks() {
    let event = json!([{"kind": "migration_op", "creationDate": NOW, "operation": "read",
        "contextKeys": {"user": "u"}, "evaluation": {"key": "orders-db", "value": "shadow"},
        "measurements": [{"key": "invoked", "values": {"old": true, "new": true}}]}]);
    let server = parse(4, event.clone());
    assert_eq!(server.migration_ops.len(), 1);
    assert_eq!(server.migration_ops[0].stage, "shadow");
    // The same event with the public client-side ID or a mobile key: a known kind, skipped.
    let browser = parse_analytics(
        Source {
            server_side: false,
            ..source(4)
        },
        event.to_string().as_bytes(),
    )
    .unwrap();
    assert!(browser.migration_ops.is_empty());
    assert_eq!(browser.skipped, 1);
    assert_eq!(
        browser.kinds[KINDS.iter().position(|k| *k == "migration_op").unwrap()],
        1
    );
}

/// The top-level fields the reader looks at (and two it does not), each with a value of the
/// type it should have.
const FIELDS: [(&str, &str); 13] = [
    ("key", r#""flag-1""#),
    ("creationDate", "1800000000123"),
    ("version", "7"),
    ("variation", "1"),
    ("value", r#"{"on": true}"#),
    ("reason", r#"{"kind": "FALLTHROUGH", "inExperiment": true}"#),
    ("trackEvents", "true"),
    ("debugEventsUntilDate", "1800000099999"),
    ("metricValue", "12.5"),
    ("userKey", r#""u9""#),
    ("data", r#"{"sku": "b"}"#),
    ("default", "false"),
    ("contextKeys", r#"{"user": "u8", "org": "o8", "device": 3}"#),
];

/// JSON texts of every type a field may have, some of them what the field should be.
fn any_field_value() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just(NOW.to_string()),
        Just((NOW + 10 * 60_000).to_string()),
        Just("-3".to_owned()),
        Just("3".to_owned()),
        Just("4294967296".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("9.5".to_owned()),
        Just("1.8e12".to_owned()),
        Just("-0".to_owned()),
        Just(r#""flag-1""#.to_owned()),
        Just(r#""fl\u0061g-1""#.to_owned()),
        Just(r#""""#.to_owned()),
        Just(format!(r#""{}""#, "k".repeat(600))),
        Just(r#"{"kind": "FALLTHROUGH", "inExperiment": true}"#.to_owned()),
        Just(r#"{"kind": "RULE_MATCH", "inExperiment": "yes"}"#.to_owned()),
        Just(r#"[1, "two", {"three": 3}]"#.to_owned()),
        Just(r#"{"sku": "a", "n": 1}"#.to_owned()),
    ]
}

/// JSON texts of contexts, well formed or not.
fn any_context() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        Just(r#"{"kind": "user", "key": "u1", "name": "Ann", "email": "a@example.com",
                "_meta": {"privateAttributes": ["email"], "redactedAttributes": ["ssn"]}}"#
            .to_owned()),
        Just(r#"{"kind": "multi", "user": {"key": "u2", "plan": "gold"},
                "org": {"key": "o1", "_meta": {"privateAttributes": ["/a/b"]}, "a": {"b": 1, "c": 2}},
                "bad": 3}"#
            .to_owned()),
        Just(r#"{"key": "legacy", "name": "Bo", "custom": {"group": "beta", "name": "x"},
                "privateAttributeNames": ["group"]}"#
            .to_owned()),
        Just(r#"{"kind": "user", "key": ""}"#.to_owned()),
        Just(r#"{"kind": "user", "key": "dup", "key": "twice", "x": 1, "x": 2}"#.to_owned()),
        Just(r#"{"kind": "user", "key": "big", "text": "BIG"}"#.replace("BIG", &"x".repeat(20_000))),
        Just(r#""just a string""#.to_owned()),
        Just("null".to_owned()),
        Just(r#"{"user": "u3", "org": "o2"}"#.to_owned()),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

    /// Reading an event field by field gives exactly what reading it whole gives: the same
    /// counts, contexts, counters, custom events, samples, exposures and metric events.
    #[test]
    fn field_by_field_reading_agrees_with_reading_the_whole_event(
        kind in proptest::sample::select(vec![
            r#""feature""#, r#""debug""#, r#""custom""#, r#""identify""#, r#""index""#,
            r#""click""#, r#""pageview""#, r#""alias""#, r#""summary""#, r#""x""#, "7", "null",
        ]),
        fields in proptest::collection::vec(
            (proptest::bool::weighted(0.6), any_field_value(), proptest::bool::weighted(0.75)),
            FIELDS.len(),
        ),
        context in proptest::option::of((
            proptest::sample::select(vec!["context", "user", "contextKeys"]),
            any_context(),
        )),
        repeat_kind in proptest::bool::ANY,
        schema in 1_u32..=4,
        unsummarized in proptest::bool::ANY,
    ) {
        let mut members = vec![format!(r#""kind": {kind}"#)];
        // Each field is there or not; when there, mostly of its own type, else of any.
        for ((name, typical), (there, any, is_typical)) in FIELDS.iter().zip(&fields) {
            if *there {
                members.push(format!(r#""{name}": {}"#, if *is_typical { typical } else { any.as_str() }));
            }
        }
        if let Some((name, value)) = &context {
            members.push(format!(r#""{name}": {value}"#));
        }
        if repeat_kind {
            members.push(r#""kind": "custom""#.to_owned());
        }
        let text = format!("{{{}}}", members.join(", "));
        let mut source = source(schema);
        source.unsummarized = unsummarized;
        let mut by_fields = Batch::new(source.clone());
        let mut whole = Batch::new(source);
        let read = read_event(&mut by_fields, &text);
        let read_whole = read_whole(&mut whole, &text);
        proptest::prop_assert_eq!(read, read_whole, "{}", text);
        proptest::prop_assert_eq!(format!("{by_fields:?}"), format!("{whole:?}"), "{}", text);
    }
}

/// Nesting far deeper than `serde_json` parses into a tree (128 levels) neither overflows the
/// stack nor refuses the payload: the event counts, and the context that cannot be read is left
/// out, as an unreadable context always is.
#[test]
fn a_deeply_nested_event_is_read_without_its_unreadable_parts() {
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let payload = format!(
        r#"[{{"kind": "custom", "key": "k", "creationDate": {NOW}, "data": {deep},
             "context": {{"kind": "user", "key": "u1", "nested": {deep}}}}},
            {{"kind": "identify", "context": {{"kind": "user", "key": "u2"}}}}]"#
    );
    let batch = parse_analytics_sampling(source(4), payload.as_bytes(), 0).unwrap();
    assert_eq!(batch.events, 2);
    assert_eq!(batch.custom.len(), 1);
    let keys: Vec<&str> = batch.contexts.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["u2"]);
}
