//! Property test: any JSON, and any Segment-shaped event, maps to a plan or a typed rejection;
//! the mapping never panics and its output is always valid JSON of the `map` contract.

use mapping::Settings;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn settings_variants() -> Vec<Settings> {
    [
        json!({"apiKey": "K"}),
        json!({"apiKey": "K", "trackAllPages": true, "trackNamedPages": true,
            "trackCategorizedPages": true, "sendAlias": true, "secretKey": "S",
            "groupTypeTrait": "t", "groupValueTrait": "v", "trackUtmProperties": true,
            "traitsToIncrement": ["n"], "traitsToSetOnce": ["s"], "traitsToAppend": ["a"],
            "traitsToPrepend": ["p"], "mapQueryParams": {"q": "user_properties", "r": "event_properties"},
            "trackProductsOnce": true, "useCustomAmplitudeProperties": true, "endpoint": "eu"}),
        json!({"apiKey": "K", "trackRevenuePerProduct": true, "sendToBatchEndpoint": true,
            "preferAnonymousIdForDeviceId": true}),
        json!({"apiKey": "K", "trackNamedPages": true, "unsetNullTraits": true,
            "traitOperationsOnEvents": true, "traitsToIncrement": ["n"],
            "pageEventNameTemplate": "{{name}} {{properties.t}} {{category", "sendReferrer": true,
            "screenEventNameTemplate": "{{}}{{name}}}}", "includeRawUserAgent": true,
            "libraryFromContext": true, "minIdLength": 100, "groupTypeTrait": "t",
            "groupValueTrait": "v"}),
    ]
    .iter()
    .map(|s| Settings::from_json(s).unwrap())
    .collect()
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("true"),
            Just("2014"),
            Just("$1,000"),
            Just("-0"),
            Just("2020-01-01T00:00:00Z"),
            Just("analytics.js"),
            Just("en-US"),
            Just("$set"),
            Just("ios"),
            Just("")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Keys the mapping looks at, so random objects reach deep into the rules.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "event",
            "userId",
            "anonymousId",
            "previousId",
            "groupId",
            "messageId",
            "timestamp",
            "originalTimestamp",
            "receivedAt",
            "properties",
            "traits",
            "context",
            "integrations",
            "Amplitude",
            "name",
            "category",
            "revenue",
            "price",
            "quantity",
            "total",
            "products",
            "productId",
            "revenueType",
            "address",
            "country",
            "city",
            "device",
            "id",
            "advertisingId",
            "library",
            "version",
            "os",
            "userAgent",
            "locale",
            "location",
            "latitude",
            "page",
            "search",
            "campaign",
            "source",
            "personas",
            "computation_key",
            "groups",
            "session_id",
            "event_id",
            "unmap",
            "paying",
            "$set",
            "$add",
            "t",
            "v",
            "n",
            "s",
            "a",
            "p",
            "q",
            "r",
            "language",
            "fieldsToUnset",
            "clearAll",
            "skip_user_properties_sync",
            "referrer",
            "userAgent",
            "library",
        ])
        .prop_map(String::from),
        "[a-z$_]{1,6}",
    ]
}

fn segment_event() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(vec![
        "track", "page", "screen", "identify", "group", "alias", "delete", "TRACK", "other",
    ]);
    (kind, prop::collection::vec((key(), any_json()), 0..14)).prop_map(|(kind, fields)| {
        let mut m: Map<String, Value> = fields.into_iter().collect();
        m.insert("type".into(), json!(kind));
        Value::Object(m)
    })
}

fn check(message: &Value, settings: &[Settings]) {
    let line = message.to_string();
    for s in settings {
        let mut scratch = mapping::Scratch::default();
        let parsed = mapping::parse(&line, &mut scratch).unwrap();
        match mapping::plan(&parsed, s) {
            Ok(_) => {}
            Err(r) => assert!(["invalid", "unsupported", "configuration"].contains(&r.kind())),
        }
        if let Ok(plan) = mapping::plan(&parsed, s) {
            for request in &plan.requests {
                let body = serde_json::to_value(&request.body).expect("bodies serialise");
                assert!(body.is_array() || body.is_object());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        check(&v, &settings_variants());
    }

    #[test]
    fn segment_shaped_events_never_panic(v in segment_event()) {
        check(&v, &settings_variants());
    }

    #[test]
    fn arbitrary_text_lines_never_panic(line in ".{0,64}") {
        let mut scratch = mapping::Scratch::default();
        if let Ok(parsed) = mapping::parse(&line, &mut scratch) {
            for s in settings_variants() {
                let _ = mapping::plan(&parsed, &s);
            }
        }
    }
}
