//! One test per mapping rule that has no classic conformance case, named by its section of
//! `../shared/spec/mapping.md`. Each asserts the exact output of the `map` contract.

use mapping::{Body, Request, Settings};
use serde_json::{Value, json};

/// The `map` command's record for one message, `{"index", "requests", "error"}`, with the API
/// key `K` (the record format is the CLI's `output.rs`; its own tests drive the process).
fn map(settings: Value, message: Value) -> Value {
    map_text(settings, &message.to_string())
}

/// [`map`] for a message as sent, read as the functions read it (`mapping::parse`).
fn map_text(settings: Value, text: &str) -> Value {
    let settings = Settings::from_json(&settings).expect("valid test settings");
    let mut scratch = mapping::Scratch::default();
    let parsed = mapping::parse(text, &mut scratch).unwrap();
    match mapping::plan(&parsed, &settings) {
        Ok(plan) => {
            let requests: Vec<Value> = plan.requests.iter().map(request_record).collect();
            let mut record = json!({"index": 0, "requests": requests, "error": null});
            if let Some(why) = plan.skipped {
                record["skipped"] = json!(why);
            }
            record
        }
        Err(r) => json!({"index": 0, "requests": [],
            "error": {"kind": r.kind(), "message": r.message()}}),
    }
}

fn request_record(r: &Request<'_>) -> Value {
    let body = match &r.body {
        Body::Events(e) => json!({"api_key": "K", "events": e}),
        Body::Identify(i) => json!({"api_key": "K", "identification": i}),
        Body::GroupIdentify(g) => json!({"api_key": "K", "identification": g}),
        Body::UserMap(m) => json!({"api_key": "K", "mapping": m}),
        Body::Deletion(d) => json!({"user_ids": d.user_ids, "requester": "segment"}),
    };
    json!({"endpoint": r.endpoint.as_str(), "method": "POST", "url": r.url, "body": body})
}

/// The bodies' objects of the one request a message becomes.
fn only_request(settings: Value, message: Value) -> Value {
    let record = map(settings, message);
    assert_eq!(record["error"], Value::Null, "{record}");
    let requests = record["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{record}");
    requests[0].clone()
}

fn events(settings: Value, message: Value) -> Vec<Value> {
    only_request(settings, message)["body"]["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// Why a message is skipped: the plan sends nothing, and says why (the answer to Segment lists
/// the reason; `map` prints it as `skipped`).
fn skip_reason(settings: Value, message: Value) -> Value {
    let record = map(settings, message);
    assert_eq!(
        (&record["requests"], &record["error"]),
        (&json!([]), &Value::Null),
        "{record}"
    );
    record["skipped"].clone()
}

fn error(settings: Value, message: Value) -> Value {
    let record = map(settings, message);
    assert_eq!(record["requests"], json!([]), "{record}");
    record["error"].clone()
}

fn key() -> Value {
    json!({"apiKey": "K"})
}

fn with(extra: Value) -> Value {
    let mut s = key();
    s.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    s
}

// §0 Reading Segment JSON -----------------------------------------------------------------------

/// A key an object names twice keeps its last value, at its first place, as Segment's own
/// code (`JSON.parse`) reads it: the call type, the ids, the event name, a context field and a
/// property are all the last ones sent, and Amplitude gets each property once. (The specs are
/// silent; the decision is in the README, Mapping decisions.)
#[test]
fn s0_2_a_repeated_key_keeps_its_last_value() {
    let text = r#"{"type":"identify","type":"track","event":"First","event":"Last",
        "userId":"user-first","userId":"user-last","messageId":"m1",
        "context":{"ip":"192.0.2.1","ip":"192.0.2.2"},
        "properties":{"a":1,"b":{"c":1,"c":2},"a":3}}"#;
    let record = map_text(key(), text);
    assert_eq!(record["error"], Value::Null, "{record}");
    assert_eq!(
        record["requests"][0]["body"]["events"],
        json!([{"user_id": "user-last", "library": "segment", "ip": "192.0.2.2",
            "event_type": "Last", "insert_id": "m1",
            "event_properties": {"a": 3, "b": {"c": 2}},
            "user_properties": {"id": "user-last"}}])
    );
    // As written on the wire (a comparison of parsed JSON would hide a key written twice).
    let mut scratch = mapping::Scratch::default();
    let parsed = mapping::parse(text, &mut scratch).unwrap();
    let plan = mapping::plan(&parsed, &Settings::from_json(&key()).unwrap()).unwrap();
    let Body::Events(events) = &plan.requests[0].body else {
        panic!("events")
    };
    assert_eq!(
        serde_json::to_string(&events[0].event_properties).unwrap(),
        r#"{"a":3,"b":{"c":2}}"#
    );
}

/// A string cut in the middle of an emoji (a `\u` escape of a lone UTF-16 surrogate) is read
/// with U+FFFD in its place, as Segment's tracking API reads it, instead of the message being
/// rejected as not JSON. (The specs are silent; README, Mapping decisions.)
#[test]
fn s0_2_a_lone_surrogate_is_the_replacement_character() {
    let text = r#"{"type":"track","event":"Joy \ud83d","userId":"user-1","messageId":"m1",
        "properties":{"emoji":"\ud83d\ude00","cut":"\ude00"}}"#;
    assert_eq!(
        map_text(key(), text)["requests"][0]["body"]["events"],
        json!([{"user_id": "user-1", "library": "segment", "event_type": "Joy \u{fffd}",
            "insert_id": "m1", "event_properties": {"emoji": "😀", "cut": "\u{fffd}"},
            "user_properties": {"id": "user-1"}}])
    );
}

// §1 Settings ---------------------------------------------------------------------------------

#[test]
fn s1_all_37_seed_settings_are_accepted() {
    let all = json!({
        "apiKey": "K", "appendFieldsToEventProps": {}, "batchEvents": false,
        "deviceIdFromUrlParam": false, "enableLocationListening": true, "endpoint": "",
        "eventUploadPeriodMillis": 30000, "eventUploadThreshold": 30, "forceHttps": true,
        "groupTypeTrait": "", "groupValueTrait": "", "mapQueryParams": {},
        "preferAnonymousIdForDeviceId": false, "saveParamsReferrerOncePerSession": true,
        "secretKey": "", "sendAlias": false, "sendToBatchEndpoint": false,
        "trackAllPages": false, "trackAllPagesV2": true, "trackCategorizedPages": true,
        "trackGclid": false, "trackNamedPages": true, "trackProductsOnce": false,
        "trackReferrer": false, "trackRevenuePerProduct": false, "trackSessionEvents": false,
        "trackUtmProperties": true, "traitsToAppend": [], "traitsToIncrement": [],
        "traitsToPrepend": [], "traitsToSetOnce": [], "unsetParamsReferrerOnNewSession": false,
        "useAdvertisingIdForDeviceId": false, "useAmplitudeReferral": false,
        "useCustomAmplitudeProperties": false, "useLogRevenueV2": true, "versionName": "1.0"
    });
    assert_eq!(all.as_object().unwrap().len(), 37);
    let s = Settings::from_json(&all).unwrap();
    assert!(s.track_named_pages && s.track_categorized_pages && !s.track_all_pages);
    assert_eq!(
        mapping::DEVICE_MODE_ONLY_KEYS.len() + 20,
        37,
        "20 cloud settings + 17 device-mode-only ones"
    );
}

#[test]
fn s1_1_display_name_aliases_and_canonical_key_wins() {
    let s = Settings::from_json(&json!({"apiKey": "K", "enableAlias": true,
        "sendCustomLanguageAndCountry": true, "trackAllScreens": true}))
    .unwrap();
    assert!(s.send_alias && s.use_custom_amplitude_properties);
    let s = Settings::from_json(&json!({"apiKey": "K", "sendAlias": false, "enableAlias": true}))
        .unwrap();
    assert!(!s.send_alias);
}

#[test]
fn s1_configuration_errors_name_the_key() {
    // `apiKey` itself is the `map` command's to check (shared/cli/tests/map.rs): the keys
    // never reach the mapping.
    let err = |v: Value| Settings::from_json(&v).unwrap_err().to_string();
    assert_eq!(
        err(json!({"apiKey": "K", "trackAllPages": "yes"})),
        "settings: `trackAllPages` must be true or false"
    );
    assert_eq!(
        err(json!({"apiKey": "K", "traitsToAppend": "a"})),
        "settings: `traitsToAppend` must be an array of trait names"
    );
    assert_eq!(
        err(json!({"apiKey": "K", "endpoint": "asia"})),
        "settings: `endpoint` has the unknown value \"asia\" (expected \"\", \"standard\", \"north_america\", \"us\", \"europe\" or \"eu\")"
    );
    assert_eq!(
        err(json!([1])),
        "settings: the settings must be a JSON object"
    );
}

#[test]
fn s1_2_trait_lists_accept_object_elements_and_ignore_empty_names() {
    let s = Settings::from_json(&json!({"apiKey": "K",
        "traitsToIncrement": [{"traits": "logins"}, "", "visits"]}))
    .unwrap();
    assert_eq!(s.traits_to_increment, vec!["logins", "visits"]);
}

#[test]
fn s1_secrets_never_appear_in_debug_output() {
    let s =
        Settings::from_json(&json!({"apiKey": "SECRET-API", "secretKey": "SECRET-KEY"})).unwrap();
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("SECRET-API") && !debug.contains("SECRET-KEY"),
        "{debug}"
    );
}

// §2 Endpoints ---------------------------------------------------------------------------------

#[test]
fn s2_2_eu_region_hosts_for_every_endpoint() {
    let eu = with(
        json!({"endpoint": "europe", "sendAlias": true, "secretKey": "S",
        "groupTypeTrait": "t", "groupValueTrait": "v"}),
    );
    let url = |m: Value| -> Vec<String> {
        map(eu.clone(), m)["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["url"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        url(json!({"type": "track", "event": "e", "userId": "user-u"})),
        ["https://api.eu.amplitude.com/2/httpapi"]
    );
    assert_eq!(
        url(json!({"type": "identify", "userId": "user-u"})),
        ["https://api.eu.amplitude.com/identify"]
    );
    assert_eq!(
        url(
            json!({"type": "group", "userId": "user-u", "groupId": "g", "traits": {"t": "org", "v": "acme"}})
        ),
        [
            "https://api.eu.amplitude.com/identify",
            "https://api.eu.amplitude.com/groupidentify"
        ]
    );
    assert_eq!(
        url(json!({"type": "alias", "userId": "user-u", "previousId": "p"})),
        ["https://api.eu.amplitude.com/usermap"]
    );
    assert_eq!(
        url(json!({"type": "delete", "userId": "user-u"})),
        ["https://analytics.eu.amplitude.com/api/2/deletions/users"]
    );
}

#[test]
fn s2_3_batch_endpoint_takes_the_same_body() {
    let r = only_request(
        with(json!({"sendToBatchEndpoint": true})),
        json!({"type": "track", "event": "e", "userId": "user-u", "messageId": "m"}),
    );
    assert_eq!(
        r,
        json!({"endpoint": "batch", "method": "POST", "url": "https://api2.amplitude.com/batch",
            "body": {"api_key": "K", "events": [{"user_id": "user-u", "library": "segment",
            "event_type": "e", "insert_id": "m", "event_properties": {},
            "user_properties": {"id": "user-u"}}]}})
    );
}

#[test]
fn s2_6_amplitude_false_skips_but_all_false_does_not() {
    let skipped = map(
        key(),
        json!({"type": "track", "event": "e", "userId": "user-u", "integrations": {"Amplitude": false}}),
    );
    assert_eq!(
        skipped,
        json!({"index": 0, "requests": [], "error": null,
            "skipped": "`integrations.Amplitude` is false: the sender turned this destination off for it"})
    );
    assert_eq!(
        skip_reason(
            key(),
            json!({"type": "identify", "userId": "user-u", "integrations": {"Amplitude": false}})
        ),
        "`integrations.Amplitude` is false: the sender turned this destination off for it"
    );
    let engage = events(
        key(),
        json!({"type": "track", "event": "e", "userId": "user-u", "integrations": {"All": false, "Webhook": true}}),
    );
    assert_eq!(engage.len(), 1);
}

// §3 Shared fields ----------------------------------------------------------------------------

#[test]
fn s3_1_numbers_as_ids_and_odd_contexts() {
    for context in [json!(null), json!([]), json!("x")] {
        let e = &events(
            key(),
            json!({"type": "track", "event": "e", "userId": 42000, "anonymousId": 70000, "context": context}),
        )[0];
        assert_eq!(
            e,
            &json!({"user_id": "42000", "device_id": "70000", "library": "segment", "event_type": "e",
                "event_properties": {}, "user_properties": {"id": "42000"}})
        );
    }
}

/// §0.3.3: a number sent where Amplitude takes text is written as JavaScript writes it (what
/// Segment's destinations, on Node, make of it); whole numbers of 64 bits keep every digit.
#[test]
fn s0_3_3_numbers_as_text_are_written_as_javascript_writes_them() {
    for (sent, text) in [
        ("1.5e300", "1.5e+300"),
        ("1e21", "1e+21"),
        ("123456789012345680000.0", "123456789012345680000"),
        ("1e-7", "1e-7"),
        ("0.000001", "0.000001"),
        ("2.0", "2"),
        ("-0.0", "0"),
        ("17.1", "17.1"),
        ("0.30000000000000004", "0.30000000000000004"),
        ("12345678901234567890", "12345678901234567890"),
        ("-9223372036854775808", "-9223372036854775808"),
    ] {
        let line = format!(
            r#"{{"type":"track","event":{sent},"userId":{sent},"anonymousId":"anon-1","context":{{"app":{{"version":{sent}}}}}}}"#
        );
        let record = map_text(key(), &line);
        let e = &record["requests"][0]["body"]["events"][0];
        assert_eq!(
            (&e["event_type"], &e["app_version"]),
            (&json!(text), &json!(text)),
            "{sent}: {record}"
        );
    }
    // Ids are text by the same rule (this one was a 301-digit user id).
    let e = &events(
        key(),
        json!({"type": "track", "event": "e", "userId": 1.5e300, "anonymousId": 70000.5}),
    )[0];
    assert_eq!(
        (&e["user_id"], &e["device_id"], &e["user_properties"]["id"]),
        (&json!("1.5e+300"), &json!("70000.5"), &json!("1.5e+300"))
    );
}

#[test]
fn s3_2_prefer_anonymous_id_for_device_id() {
    let msg = json!({"type": "track", "event": "e", "anonymousId": "anon-1",
        "context": {"device": {"id": "device-1"}}});
    assert_eq!(events(key(), msg.clone())[0]["device_id"], "device-1");
    assert_eq!(
        events(with(json!({"preferAnonymousIdForDeviceId": true})), msg)[0]["device_id"],
        "anon-1"
    );
}

#[test]
fn s3_3_time_falls_back_to_original_timestamp_then_received_at() {
    let e = &events(
        key(),
        json!({"type": "track", "event": "e", "userId": "user-u", "timestamp": "garbage",
            "originalTimestamp": "2020-01-01T00:00:00+01:00", "receivedAt": "2021"}),
    )[0];
    assert_eq!(e["time"], 1_577_833_200_000i64);
    let e = &events(
        key(),
        json!({"type": "track", "event": "e", "userId": "user-u", "receivedAt": 1_600_000_000}),
    )[0];
    assert_eq!(e["time"], 1_600_000_000_000i64);
}

#[test]
fn s3_4_insert_id_is_message_id_suffixed_per_extra_event() {
    let evs = events(
        with(
            json!({"trackAllPages": true, "trackCategorizedPages": true, "trackNamedPages": true}),
        ),
        json!({"type": "page", "userId": "user-u", "messageId": "abc", "name": "Settings", "category": "Merchant"}),
    );
    let got: Vec<(&str, &str)> = evs
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap(),
                e["insert_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("Loaded a Page", "abc"),
            ("Viewed Merchant Page", "abc-2"),
            ("Viewed Merchant Settings Page", "abc-3")
        ]
    );
}

#[test]
fn s3_7_context_location_first_then_locale_country() {
    let e = &events(
        key(),
        json!({"type": "track", "event": "e", "userId": "user-u",
            "properties": {"city": "Paris"},
            "context": {"location": {"city": "Berlin", "region": "BE"}, "locale": "de-DE",
                "traits": {"address": {"region": "ignored"}}}}),
    )[0];
    assert_eq!(
        (&e["city"], &e["region"], &e["country"], &e["language"]),
        (
            &json!("Berlin"),
            &json!("BE"),
            &json!("Germany"),
            &json!("German")
        )
    );
}

#[test]
fn s3_7_numeric_string_coordinates_become_numbers() {
    let e = &events(
        key(),
        json!({"type": "track", "event": "e", "userId": "user-u",
            "context": {"location": {"latitude": "52.5", "longitude": "x"}}}),
    )[0];
    assert_eq!(e["location_lat"], json!(52.5));
    assert!(e.get("location_lng").is_none());
}

#[test]
fn s3_11_session_id_digits_iso_and_session_plugin() {
    let sid = |integrations: Value| {
        events(
            key(),
            json!({"type": "track", "event": "e", "userId": "user-u", "integrations": integrations}),
        )[0]
        .get("session_id")
        .cloned()
    };
    assert_eq!(
        sid(json!({"Amplitude": {"session_id": "1577836800000"}})),
        Some(json!(1_577_836_800_000i64))
    );
    assert_eq!(
        sid(json!({"Amplitude": {"sessionId": "2020-01-01T00:00:00Z"}})),
        Some(json!(1_577_836_800_000i64))
    );
    assert_eq!(
        sid(json!({"Actions Amplitude": {"session_id": 1234}})),
        Some(json!(1234))
    );
    assert_eq!(sid(json!({"Amplitude": {"session_id": "abc"}})), None);
}

#[test]
fn s3_11_session_id_text_that_looks_like_a_go_offset_is_dropped_not_a_crash() {
    // Found by mutating ordinary events: a byte slice inside `€` used to abort the process.
    let e = events(
        key(),
        json!({"type": "track", "event": "e", "userId": "user-u",
            "integrations": {"Amplitude": {"session_id": "a b +a€"}}}),
    );
    assert_eq!(
        e,
        vec![
            json!({"user_id": "user-u", "library": "segment", "event_type": "e",
            "event_properties": {}, "user_properties": {"id": "user-u"}})
        ]
    );
}

#[test]
fn s3_13_advertising_id_by_os() {
    let e = |os: &str| {
        events(
            key(),
            json!({"type": "track", "event": "e", "userId": "user-u",
                "context": {"os": {"name": os}, "device": {"advertisingId": "AD"}}}),
        )[0]
        .clone()
    };
    assert_eq!(
        (e("iOS").get("idfa"), e("iOS").get("adid")),
        (Some(&json!("AD")), None)
    );
    assert_eq!(
        (e("android").get("adid"), e("android").get("idfa")),
        (Some(&json!("AD")), None)
    );
    assert_eq!(
        (e("Linux").get("adid"), e("Linux").get("idfa")),
        (None, None)
    );
}

#[test]
fn s3_15_event_level_groups_stay_off_the_user() {
    let e = &events(
        key(),
        json!({"type": "track", "event": "e", "userId": "user-u",
            "integrations": {"Amplitude": {"groups": {"company": "acme"}}}}),
    )[0];
    assert_eq!(e["groups"], json!({"company": "acme"}));
    assert_eq!(e["user_properties"], json!({"id": "user-u"}));
}

// §4 Event properties -------------------------------------------------------------------------

#[test]
fn s4_2_custom_language_and_country_are_kept() {
    let msg = json!({"type": "track", "event": "e", "userId": "user-u",
        "properties": {"language": "fr", "country": "FR", "event_id": 3}});
    assert_eq!(events(key(), msg.clone())[0]["event_properties"], json!({}));
    let kept = &events(with(json!({"useCustomAmplitudeProperties": true})), msg)[0];
    assert_eq!(
        kept["event_properties"],
        json!({"language": "fr", "country": "FR"})
    );
    assert!(
        kept.get("country").is_none(),
        "properties.country is skipped as a source"
    );
}

#[test]
fn s4_4_query_params_to_user_properties_on_track_and_all_entries_apply() {
    let e = &events(
        with(json!({"mapQueryParams": {"qs": "user_properties", "query": "event_properties"}})),
        json!({"type": "track", "event": "e", "userId": "user-u",
            "context": {"page": {"search": "?a=1"}, "traits": {"qs": "old"}}}),
    )[0];
    assert_eq!(e["user_properties"], json!({"id": "user-u", "qs": "?a=1"}));
    assert_eq!(e["event_properties"], json!({"query": "?a=1"}));
}

#[test]
fn s4_4_query_param_does_not_overwrite_an_event_property() {
    let e = &events(
        with(json!({"mapQueryParams": {"search": "event_properties"}})),
        json!({"type": "track", "event": "e", "userId": "user-u", "properties": {"search": "mine"},
            "context": {"page": {"search": ""}}}),
    )[0];
    assert_eq!(e["event_properties"], json!({"search": "mine"}));
}

// §5 Revenue ----------------------------------------------------------------------------------

#[test]
fn s5_2_revenue_strings_are_parsed_strictly() {
    let e = &events(
        key(),
        json!({"type": "track", "event": "Bought", "userId": "user-u",
            "properties": {"revenue": "$1,000.50", "quantity": "2", "price": "500.25"}}),
    )[0];
    assert_eq!(
        (
            &e["revenue"],
            &e["price"],
            &e["quantity"],
            &e["event_properties"]
        ),
        (
            &json!(1000.5),
            &json!(500.25),
            &json!(2),
            &json!({"revenue": "$1,000.50"})
        )
    );
    let none = &events(
        key(),
        json!({"type": "track", "event": "Bought", "userId": "user-u", "properties": {"revenue": "12abc"}}),
    )[0];
    assert!(none.get("revenue").is_none() && none.get("price").is_none());
}

#[test]
fn s5_2_zero_revenue_is_no_revenue_and_order_falls_back_to_total() {
    let zero = &events(
        key(),
        json!({"type": "track", "event": "Bought", "userId": "user-u", "properties": {"revenue": 0, "price": 2}}),
    )[0];
    assert_eq!(zero["event_properties"], json!({"revenue": 0, "price": 2}));
    let order = &events(
        key(),
        json!({"type": "track", "event": "order_completed", "userId": "user-u", "properties": {"total": 30}}),
    )[0];
    assert_eq!(
        (
            &order["revenue"],
            &order["price"],
            &order["quantity"],
            &order["revenueType"]
        ),
        (&json!(30), &json!(30), &json!(1), &json!("Purchase"))
    );
}

#[test]
fn s5_3_quantity_is_rounded_half_away_from_zero() {
    let e = &events(
        key(),
        json!({"type": "track", "event": "e", "userId": "user-u",
            "properties": {"revenue": 10, "price": 4, "quantity": 2.5, "product_id": "p", "revenue_type": "refund"}}),
    )[0];
    assert_eq!(
        (
            &e["quantity"],
            &e["productId"],
            &e["revenueType"],
            &e["event_properties"]
        ),
        (
            &json!(3),
            &json!("p"),
            &json!("refund"),
            &json!({"revenue": 10})
        )
    );
}

// §6 Order Completed ---------------------------------------------------------------------------

fn order() -> Value {
    json!({"type": "track", "event": "Order Completed", "userId": "user-u", "messageId": "m",
        "properties": {"orderId": "o1", "revenue": 25, "currency": "USD", "products": [
            {"productId": "p1", "price": 19, "quantity": 1},
            {"productId": "p2", "price": 3, "quantity": 2}]}})
}

#[test]
fn s6_7_order_completed_revenue_on_the_order() {
    assert_eq!(
        events(key(), order()),
        vec![
            json!({"user_id": "user-u", "library": "segment", "event_type": "Order Completed",
                "insert_id": "m", "event_properties": {"orderId": "o1", "revenue": 25, "currency": "USD"},
                "user_properties": {"id": "user-u"}, "revenue": 25, "price": 25, "quantity": 1,
                "revenueType": "Purchase"}),
            json!({"user_id": "user-u", "library": "segment", "event_type": "Product Purchased",
                "insert_id": "m-2", "event_properties": {"productId": "p1", "price": 19, "quantity": 1},
                "user_properties": {"id": "user-u"}}),
            json!({"user_id": "user-u", "library": "segment", "event_type": "Product Purchased",
                "insert_id": "m-3", "event_properties": {"productId": "p2", "price": 3, "quantity": 2},
                "user_properties": {"id": "user-u"}}),
        ]
    );
}

#[test]
fn s6_7_track_revenue_per_product() {
    assert_eq!(
        events(with(json!({"trackRevenuePerProduct": true})), order()),
        vec![
            json!({"user_id": "user-u", "library": "segment", "event_type": "Order Completed",
                "insert_id": "m", "event_properties": {"orderId": "o1", "revenue": 25, "currency": "USD"},
                "user_properties": {"id": "user-u"}}),
            json!({"user_id": "user-u", "library": "segment", "event_type": "Product Purchased",
                "insert_id": "m-2", "event_properties": {}, "user_properties": {"id": "user-u"},
                "price": 19, "quantity": 1, "revenue": 19, "productId": "p1", "revenueType": "Purchase"}),
            json!({"user_id": "user-u", "library": "segment", "event_type": "Product Purchased",
                "insert_id": "m-3", "event_properties": {}, "user_properties": {"id": "user-u"},
                "price": 3, "quantity": 2, "revenue": 6, "productId": "p2", "revenueType": "Purchase"}),
        ]
    );
}

#[test]
fn s6_5_track_products_once() {
    assert_eq!(
        events(
            with(json!({"trackProductsOnce": true, "trackRevenuePerProduct": true})),
            order()
        ),
        vec![
            json!({"user_id": "user-u", "library": "segment", "event_type": "Order Completed",
            "insert_id": "m", "event_properties": {"orderId": "o1", "revenue": 25, "currency": "USD",
            "products": [{"productId": "p1", "price": 19, "quantity": 1},
                         {"productId": "p2", "price": 3, "quantity": 2}]},
            "user_properties": {"id": "user-u"}, "revenue": 25, "price": 25, "quantity": 1,
            "revenueType": "Purchase"})
        ]
    );
}

#[test]
fn s6_3_product_without_price_or_revenue_still_produces_its_event() {
    let evs = events(
        with(json!({"trackRevenuePerProduct": true})),
        json!({"type": "track", "event": "Completed Order", "userId": "user-u",
            "properties": {"revenueType": "gift", "products": [{"sku": "s"}, {"revenue": 5}, "junk"]}}),
    );
    assert_eq!(evs.len(), 3);
    assert_eq!(evs[1]["event_properties"], json!({"sku": "s"}));
    assert!(evs[1].get("revenue").is_none());
    assert_eq!(
        (
            &evs[2]["revenue"],
            &evs[2]["price"],
            &evs[2]["quantity"],
            &evs[2]["revenueType"]
        ),
        (&json!(5), &json!(5), &json!(1), &json!("gift"))
    );
}

// §7 Page and screen ----------------------------------------------------------------------------

#[test]
fn s7_3_page_settings_combinations() {
    let names = |settings: Value, msg: Value| -> Vec<String> {
        map(with(settings), msg)["requests"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["body"]["events"].as_array().unwrap().clone())
            .map(|e| e["event_type"].as_str().unwrap().to_owned())
            .collect()
    };
    let named = json!({"type": "screen", "userId": "user-u", "name": "Cart"});
    let both =
        json!({"type": "page", "userId": "user-u", "name": "Settings", "category": "Merchant"});
    assert_eq!(
        names(json!({"trackNamedPages": true}), named.clone()),
        ["Viewed Cart Screen"]
    );
    assert_eq!(
        names(json!({"trackCategorizedPages": true}), named.clone()),
        Vec::<String>::new()
    );
    assert_eq!(
        names(
            json!({"trackAllPages": true, "trackNamedPages": true}),
            named
        ),
        ["Loaded a Screen", "Viewed Cart Screen"]
    );
    assert_eq!(
        names(
            json!({"trackCategorizedPages": true, "trackNamedPages": true}),
            both
        ),
        ["Viewed Merchant Page", "Viewed Merchant Settings Page"]
    );
}

/// §7.2: a page or screen that no page setting sends is skipped, and the reason names each
/// setting: off, or on and missing what it needs.
#[test]
fn s7_2_a_page_no_setting_sends_says_why() {
    assert_eq!(
        skip_reason(
            key(),
            json!({"type": "page", "userId": "user-u", "name": "Home"})
        ),
        "page: no page setting sends it: `trackAllPages` is off, `trackCategorizedPages` is off, \
         `trackNamedPages` is off"
    );
    assert_eq!(
        skip_reason(
            with(json!({"trackNamedPages": true, "trackCategorizedPages": true})),
            json!({"type": "screen", "userId": "user-u", "properties": {"name": "Home"}})
        ),
        "screen: no page setting sends it: `trackAllPages` is off, it has no `category` \
         (`trackCategorizedPages`), it has no `name` (`trackNamedPages`)"
    );
    assert_eq!(
        skip_reason(
            with(json!({"trackNamedPages": true})),
            json!({"type": "page", "userId": "user-u", "name": {"not": "text"}, "category": "Docs"})
        ),
        "page: no page setting sends it: `trackAllPages` is off, `trackCategorizedPages` is off, \
         it has no `name` (`trackNamedPages`)"
    );
}

// §8 Identify -----------------------------------------------------------------------------------

fn identification(settings: Value, message: Value) -> Value {
    let r = only_request(settings, message);
    assert_eq!(r["endpoint"], "identify");
    let ids = r["body"]["identification"].as_array().unwrap();
    assert_eq!(ids.len(), 1);
    ids[0].clone()
}

#[test]
fn s8_2_trait_operations_example() {
    // The classic `/identify` path; the default sends these as `$identify` events (§8.1.4).
    let i = identification(
        with(
            json!({"traitsToIncrement": ["logins"], "traitsToSetOnce": ["first_seen"],
            "idempotentTraitOperations": false}),
        ),
        json!({"type": "identify", "userId": "user-1",
            "traits": {"logins": 1, "first_seen": "2020-01-01", "plan": "pro"}}),
    );
    assert_eq!(
        i["user_properties"],
        json!({"$add": {"logins": 1}, "$setOnce": {"first_seen": "2020-01-01"},
            "$set": {"plan": "pro", "id": "user-1"}})
    );
}

#[test]
fn s8_2_first_list_wins_and_non_numeric_increment_falls_through() {
    let i = identification(
        with(
            json!({"traitsToIncrement": ["a", "b"], "traitsToAppend": ["b", "c"],
            "traitsToPrepend": ["c", "d"], "idempotentTraitOperations": false}),
        ),
        json!({"type": "identify", "anonymousId": "anon-x",
            "traits": {"a": "5", "b": "tag", "c": 1, "d": [2]}}),
    );
    assert_eq!(
        i["user_properties"],
        json!({"$add": {"a": 5}, "$append": {"b": "tag", "c": 1}, "$prepend": {"d": [2]}})
    );
}

#[test]
fn s8_1_4_non_idempotent_operations_travel_as_an_identify_event_with_insert_id() {
    let settings =
        with(json!({"traitsToIncrement": ["logins"], "traitsToSetOnce": ["first_seen"]}));
    let message = json!({"type": "identify", "userId": "user-1", "anonymousId": "anon-1",
        "messageId": "m-7", "timestamp": "2024-05-01T10:00:00Z",
        "traits": {"logins": 1, "first_seen": "2020-01-01", "plan": "pro"},
        "integrations": {"Amplitude": {"paying": true, "start_version": "1.0",
            "groups": {"team": "red"}, "session_id": 5}}});
    let record = map(settings.clone(), message.clone());
    assert_eq!(
        record["requests"],
        json!([{"endpoint": "httpapi", "method": "POST", "url": "https://api2.amplitude.com/2/httpapi",
            "body": {"api_key": "K", "events": [{
                "user_id": "user-1", "device_id": "anon-1", "time": 1_714_557_600_000_i64, "library": "segment",
                "event_type": "$identify", "insert_id": "m-7",
                "user_properties": {
                    "$set": {"plan": "pro", "id": "user-1", "team": "red", "paying": true},
                    "$setOnce": {"first_seen": "2020-01-01", "start_version": "1.0"},
                    "$add": {"logins": 1}},
                "groups": {"team": "red"}}]}}])
    );
    // With Send To Batch Endpoint the event goes to /batch, like every other event.
    let batch = map(
        with(json!({"traitsToIncrement": ["logins"], "sendToBatchEndpoint": true})),
        message.clone(),
    );
    assert_eq!(
        batch["requests"][0]["url"],
        "https://api2.amplitude.com/batch"
    );
    // `$append` and `$prepend` are not idempotent either.
    for list in ["traitsToAppend", "traitsToPrepend"] {
        let r = map(with(json!({list: ["plan"]})), message.clone());
        assert_eq!(r["requests"][0]["endpoint"], "httpapi", "{list}");
    }
    // The setting off keeps the classic /identify path.
    let classic = identification(
        with(json!({"traitsToIncrement": ["logins"], "idempotentTraitOperations": false})),
        message,
    );
    assert_eq!(classic["user_properties"]["$add"], json!({"logins": 1}));
    assert_eq!(
        (classic["paying"].clone(), classic["start_version"].clone()),
        (json!(true), json!("1.0"))
    );
}

#[test]
fn s8_1_4_idempotent_operations_keep_the_identify_api() {
    let i = identification(
        with(json!({"traitsToSetOnce": ["first_seen"], "trackUtmProperties": true})),
        json!({"type": "identify", "userId": "user-1", "messageId": "m",
            "traits": {"first_seen": "2020", "$unset": {"old": "-"}},
            "context": {"campaign": {"source": "ads"}}}),
    );
    assert_eq!(
        i["user_properties"],
        json!({"$set": {"id": "user-1", "utm_source": "ads"},
            "$setOnce": {"first_seen": "2020", "initial_utm_source": "ads"},
            "$unset": {"old": "-"}})
    );
    // A trait named `$add` without an object of keys is a plain trait, not an operation.
    let plain = map(
        with(json!({})),
        json!({"type": "identify", "userId": "user-1", "messageId": "m", "traits": {"$add": 5}}),
    );
    assert_eq!(plain["requests"][0]["endpoint"], "identify");
}

#[test]
fn s8_1_4_setting_must_be_a_boolean() {
    assert_eq!(
        Settings::from_json(&with(json!({"idempotentTraitOperations": "yes"})))
            .unwrap_err()
            .to_string(),
        "settings: `idempotentTraitOperations` must be true or false"
    );
}

#[test]
fn s3_14_3_normal_form_with_a_caller_set() {
    let i = identification(
        key(),
        json!({"type": "identify", "userId": "user-u",
            "traits": {"$set": {"plan": "caller"}, "plan": "plain", "$unset": {"old": "-"}, "age": 3}}),
    );
    assert_eq!(
        i["user_properties"],
        json!({"$set": {"plan": "caller", "id": "user-u", "age": 3}, "$unset": {"old": "-"}})
    );
}

/// §3.14.3: a plain trait named like an operation (its value is not an object of keys) must not
/// reach Amplitude as an operation: it goes under `$set`, with every other plain key. Sent flat,
/// `"$clearAll": true` would clear the user's properties, again on every resend of `/identify`.
#[test]
fn s3_14_3_a_plain_trait_named_like_an_operation_goes_under_set() {
    for (name, value) in [
        ("$clearAll", json!(true)),
        ("$unset", json!("old")),
        ("$add", json!(5)),
        ("$remove", json!(["a"])),
    ] {
        let i = identification(
            key(),
            json!({"type": "identify", "userId": "user-u", "traits": {name: value.clone(), "plan": "pro"}}),
        );
        assert_eq!(
            i["user_properties"],
            json!({"$set": {name: value, "plan": "pro", "id": "user-u"}}),
            "{name}"
        );
    }
    // On events too (`context.traits`); a `$` key Amplitude has no operation for stays flat.
    let e = &events(
        key(),
        json!({"type": "track", "event": "e", "userId": "user-u",
            "context": {"traits": {"$clearAll": true}}}),
    )[0];
    assert_eq!(
        e["user_properties"],
        json!({"$set": {"$clearAll": true, "id": "user-u"}})
    );
    let e = &events(
        key(),
        json!({"type": "track", "event": "e", "userId": "user-u",
            "context": {"traits": {"$plan": "pro"}}}),
    )[0];
    assert_eq!(
        e["user_properties"],
        json!({"$plan": "pro", "id": "user-u"})
    );
}

#[test]
fn s11_1_utm_from_context_campaign_when_enabled() {
    let msg = json!({"type": "identify", "userId": "user-u",
        "context": {"campaign": {"source": "google", "name": "spring", "medium": ""}}});
    assert_eq!(
        identification(key(), msg.clone())["user_properties"],
        json!({"id": "user-u"})
    );
    assert_eq!(
        identification(with(json!({"trackUtmProperties": true})), msg)["user_properties"],
        json!({"$set": {"id": "user-u", "utm_source": "google", "utm_campaign": "spring"},
            "$setOnce": {"initial_utm_source": "google", "initial_utm_campaign": "spring"}})
    );
}

#[test]
fn s8_1_identify_options_paying_start_version_and_no_event_fields() {
    let i = identification(
        key(),
        json!({"type": "identify", "userId": "user-u", "messageId": "m",
            "integrations": {"Amplitude": {"paying": true, "startVersion": "1.0", "session_id": 5}}}),
    );
    assert_eq!(
        i,
        json!({"user_id": "user-u", "library": "segment", "user_properties": {"id": "user-u"},
            "paying": true, "start_version": "1.0"})
    );
}

#[test]
fn s8_3_engage_audience_identify_with_string_booleans() {
    let msg = |value: Value| {
        json!({"type": "identify", "userId": "user-u", "traits": {"first_time_shopper": value},
            "context": {"personas": {"computation_class": "audience",
                "computation_key": "first_time_shopper", "computation_id": "aud_1"}},
            "integrations": {"All": false, "My Webhook": true}})
    };
    for (value, expect) in [
        (json!("true"), true),
        (json!("false"), false),
        (json!(true), true),
    ] {
        assert_eq!(
            identification(key(), msg(value))["user_properties"],
            json!({"first_time_shopper": expect, "id": "user-u"})
        );
    }
    let computed = identification(
        key(),
        json!({"type": "identify", "userId": "user-u", "traits": {"ltv": "true", "orders": 4},
            "context": {"personas": {"computation_class": "trait", "computation_key": "orders"}}}),
    );
    assert_eq!(
        computed["user_properties"],
        json!({"ltv": "true", "orders": 4, "id": "user-u"})
    );
}

// §9 Group --------------------------------------------------------------------------------------

fn typed() -> Value {
    with(json!({"groupTypeTrait": "kind", "groupValueTrait": "name"}))
}

#[test]
fn s9_typed_group_links_user_and_sends_group_properties() {
    let record = map(
        typed(),
        json!({"type": "group", "userId": "user-u", "groupId": "g1", "timestamp": "2014",
            "traits": {"kind": "company", "name": "Acme", "employees": 10}}),
    );
    assert_eq!(
        record["requests"],
        json!([
            {"endpoint": "identify", "method": "POST", "url": "https://api2.amplitude.com/identify",
             "body": {"api_key": "K", "identification": [{"user_id": "user-u", "time": 1_388_534_400_000i64,
                "groups": {"company": "Acme"}, "user_properties": {"company": "Acme"}}]}},
            {"endpoint": "groupidentify", "method": "POST", "url": "https://api2.amplitude.com/groupidentify",
             "body": {"api_key": "K", "identification": [{"group_type": "company", "group_value": "Acme",
                "group_properties": {"kind": "company", "name": "Acme", "employees": 10}}]}}
        ])
    );
}

#[test]
fn s9_4_typed_group_without_ids_sends_one_group_identification_per_array_element() {
    let record = map(
        typed(),
        json!({"type": "group", "groupId": "g1", "traits": {"kind": "team", "name": ["a", "b", "", "a"]}}),
    );
    let requests = record["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1);
    let properties = json!({"kind": "team", "name": ["a", "b", "", "a"]});
    assert_eq!(
        requests[0]["body"]["identification"],
        json!([{"group_type": "team", "group_value": "a", "group_properties": properties},
            {"group_type": "team", "group_value": "b", "group_properties": properties}])
    );
}

#[test]
fn s9_4_an_array_value_links_the_user_to_every_group() {
    let record = map(
        typed(),
        json!({"type": "group", "userId": "user-1", "groupId": "g1",
            "traits": {"kind": "team", "name": ["red", "blue"]}}),
    );
    assert_eq!(
        record["requests"][0]["body"]["identification"],
        json!([{"user_id": "user-1", "groups": {"team": ["red", "blue"]},
            "user_properties": {"team": ["red", "blue"]}}])
    );
    let values: Vec<_> = record["requests"][1]["body"]["identification"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["group_value"].clone())
        .collect();
    assert_eq!(values, [json!("red"), json!("blue")]);
}

/// §9.4 (decision): a group value whose identifications (each repeating the group's traits,
/// which hold the array) would pass about 64 MB is refused with a reason naming the trait and
/// the limit; repeated elements count once, and a value under the limit is sent whole.
#[test]
fn s9_4_a_group_value_past_the_fan_out_limit_is_refused_with_the_reason() {
    let group = |names: Vec<String>, pad_kb: usize| {
        json!({"type": "group", "userId": "user-1", "groupId": "g1",
            "traits": {"kind": "team", "name": names, "pad": "p".repeat(pad_kb * 1024)}})
    };
    let distinct = |n: usize| (0..n).map(|i| format!("g{i}")).collect::<Vec<_>>();
    assert_eq!(
        map(typed(), group(distinct(3_000), 0))["error"],
        json!({"kind": "invalid", "message": "group: `traits.name` has 3000 distinct values, which would become as many group identifications each repeating the group's 22 KB of traits: about 65 MB, over this destination's limit of 64 MB for one message"})
    );
    assert_eq!(
        map(typed(), group(distinct(5_000), 16))["error"],
        json!({"kind": "invalid", "message": "group: `traits.name` has 5000 distinct values, which would become as many group identifications each repeating the group's 54 KB of traits: about 264 MB, over this destination's limit of 64 MB for one message"})
    );
    let under = map(typed(), group(distinct(2_000), 0));
    assert_eq!(under["error"], Value::Null);
    let identifications = under["requests"][1]["body"]["identification"]
        .as_array()
        .unwrap();
    assert_eq!(identifications.len(), 2_000);
    assert_eq!(identifications[1_999]["group_value"], "g1999");
    let repeated: Vec<String> = (0..20_000).map(|i| format!("g{}", i % 2)).collect();
    let record = map(typed(), group(repeated, 0));
    assert_eq!(
        record["requests"][1]["body"]["identification"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// §9.4 (decision 2026-12-02, as §8.1.4 for users): a group whose traits hold `$add`,
/// `$append` or `$prepend` has its properties sent as `$groupidentify` events (HTTP V2, one per
/// group value, `insert_id` by §3.4), which Amplitude deduplicates; `/groupidentify` would apply
/// the increment again on every resend. Plain traits go under `$set` beside the operations. The
/// link to the user stays on `/identify`.
#[test]
fn s9_4_group_operations_applied_twice_travel_as_groupidentify_events() {
    let message = json!({"type": "group", "userId": "user-1", "anonymousId": "anon-1",
        "groupId": "g1", "messageId": "m-9", "timestamp": "2024-05-01T10:00:00Z",
        "traits": {"kind": "team", "name": ["red", "blue"], "$add": {"seats": 2},
            "$set": {"plan": "pro"}}});
    let record = map(typed(), message.clone());
    let event = |value: &str, insert_id: &str| {
        json!({"user_id": "user-1", "device_id": "anon-1", "time": 1_714_557_600_000_i64,
            "library": "segment", "event_type": "$groupidentify", "insert_id": insert_id,
            "groups": {"team": value},
            "group_properties": {"$set": {"plan": "pro", "kind": "team", "name": ["red", "blue"]},
                "$add": {"seats": 2}}})
    };
    assert_eq!(
        record["requests"],
        json!([
            {"endpoint": "identify", "method": "POST", "url": "https://api2.amplitude.com/identify",
             "body": {"api_key": "K", "identification": [{"user_id": "user-1", "device_id": "anon-1",
                "time": 1_714_557_600_000_i64, "groups": {"team": ["red", "blue"]},
                "user_properties": {"team": ["red", "blue"]}}]}},
            {"endpoint": "httpapi", "method": "POST", "url": "https://api2.amplitude.com/2/httpapi",
             "body": {"api_key": "K", "events": [event("red", "m-9"), event("blue", "m-9-2")]}}
        ])
    );
    // With Send To Batch Endpoint the events go to /batch, like every other event.
    let batch = map(
        with(
            json!({"groupTypeTrait": "kind", "groupValueTrait": "name", "sendToBatchEndpoint": true}),
        ),
        message.clone(),
    );
    assert_eq!(
        batch["requests"][1]["url"],
        "https://api2.amplitude.com/batch"
    );
    // `$append` and `$prepend` are not idempotent either; `$set`, `$setOnce`, `$unset` are.
    for (op, endpoint) in [
        ("$append", "httpapi"),
        ("$prepend", "httpapi"),
        ("$setOnce", "groupidentify"),
        ("$unset", "groupidentify"),
    ] {
        let r = map(
            typed(),
            json!({"type": "group", "userId": "user-1", "groupId": "g1",
                "traits": {"kind": "team", "name": "red", op: {"tags": "x"}}}),
        );
        assert_eq!(r["requests"][1]["endpoint"], endpoint, "{op}");
    }
    // A key named `$add` without an object of keys is no operation: `/groupidentify`.
    let plain = map(
        typed(),
        json!({"type": "group", "userId": "user-1", "groupId": "g1",
            "traits": {"kind": "team", "name": "red", "$add": 5}}),
    );
    assert_eq!(plain["requests"][1]["endpoint"], "groupidentify");
    // The setting off keeps `/groupidentify`, the traits as they are.
    let classic = map(
        with(json!({"groupTypeTrait": "kind", "groupValueTrait": "name",
            "idempotentTraitOperations": false})),
        message.clone(),
    );
    assert_eq!(classic["requests"][1]["endpoint"], "groupidentify");
    assert_eq!(
        classic["requests"][1]["body"]["identification"][0]["group_properties"],
        message["traits"]
    );
    // An event needs a user or device id: without one the properties keep `/groupidentify`.
    let anonymous = map(
        typed(),
        json!({"type": "group", "groupId": "g1",
            "traits": {"kind": "team", "name": "red", "$add": {"seats": 2}}}),
    );
    assert_eq!(
        anonymous["requests"],
        json!([{"endpoint": "groupidentify", "method": "POST", "url": "https://api2.amplitude.com/groupidentify",
            "body": {"api_key": "K", "identification": [{"group_type": "team", "group_value": "red",
                "group_properties": {"kind": "team", "name": "red", "$add": {"seats": 2}}}]}}])
    );
}

/// §9.4 (decision): each `$groupidentify` event counts toward the calling user's event rate,
/// which Amplitude throttles, so a group value naming more than ten groups keeps
/// `/groupidentify`; ten go as ten events.
#[test]
fn s9_4_more_than_ten_groups_keep_groupidentify() {
    let group = |n: usize| {
        let names: Vec<String> = (0..n).map(|i| format!("g{i}")).collect();
        map(
            typed(),
            json!({"type": "group", "userId": "user-1", "groupId": "g1", "messageId": "m",
                "traits": {"kind": "team", "name": names, "$add": {"seats": 1}}}),
        )
    };
    let ten = group(10);
    assert_eq!(ten["requests"][1]["endpoint"], "httpapi");
    let events = ten["requests"][1]["body"]["events"].as_array().unwrap();
    assert_eq!(
        (events.len(), &events[9]["insert_id"], &events[9]["groups"]),
        (10, &json!("m-10"), &json!({"team": "g9"}))
    );
    let eleven = group(11);
    assert_eq!(eleven["requests"][1]["endpoint"], "groupidentify");
    assert_eq!(
        eleven["requests"][1]["body"]["identification"]
            .as_array()
            .unwrap()
            .len(),
        11
    );
}

#[test]
fn s9_2_missing_type_trait_falls_back_to_legacy_group() {
    let r = only_request(
        typed(),
        json!({"type": "group", "anonymousId": "anon-1", "groupId": 99, "traits": {"name": "Acme"}}),
    );
    assert_eq!(
        r["body"]["identification"],
        json!([{"device_id": "anon-1", "groups": {"[Segment] Group": "99"},
            "user_properties": {"[Segment] Group": "99"}}])
    );
}

// §10 Alias -------------------------------------------------------------------------------------

#[test]
fn s10_alias_maps_previous_id_to_user_id() {
    let r = only_request(
        with(json!({"sendAlias": true})),
        json!({"type": "alias", "previousId": "old", "userId": "new"}),
    );
    assert_eq!(
        r,
        json!({"endpoint": "usermap", "method": "POST", "url": "https://api.amplitude.com/usermap",
            "body": {"api_key": "K", "mapping": [{"user_id": "old", "global_user_id": "new"}]}})
    );
}

#[test]
fn s10_2_unmap() {
    let r = only_request(
        with(json!({"sendAlias": true})),
        json!({"type": "alias", "previousId": "old", "userId": "new",
            "integrations": {"Amplitude": {"unmap": "old"}}}),
    );
    assert_eq!(
        r["body"]["mapping"],
        json!([{"user_id": "old", "unmap": true}])
    );
}

#[test]
fn s10_2_an_unmap_option_that_names_no_id_is_refused_not_mapped() {
    let alias = |unmap: Value| {
        json!({"type": "alias", "previousId": "old", "userId": "new",
            "integrations": {"Amplitude": {"unmap": unmap}}})
    };
    let alias_on = || with(json!({"sendAlias": true}));
    for says_whom_not in [json!(true), json!({"id": "old"}), json!(["old"])] {
        assert_eq!(
            error(alias_on(), alias(says_whom_not)),
            json!({"kind": "invalid",
                "message": "alias: `integrations.Amplitude.unmap` must be the id to unmap (a string)"})
        );
    }
    // No unmap asked: mapped as usual.
    for none in [json!(null), json!(false), json!("")] {
        assert_eq!(
            only_request(alias_on(), alias(none))["body"]["mapping"],
            json!([{"user_id": "old", "global_user_id": "new"}])
        );
    }
    // A number is an id, as everywhere (§0.3).
    assert_eq!(
        only_request(alias_on(), alias(json!(123)))["body"]["mapping"],
        json!([{"user_id": "123", "unmap": true}])
    );
}

// §12 Deletion ----------------------------------------------------------------------------------

#[test]
fn s12_deletion_body_without_credentials() {
    let r = only_request(
        with(json!({"secretKey": "SECRET"})),
        json!({"type": "delete", "userId": "user-1", "context": null, "integrations": [],
            "originalTimestamp": "2020-01-01 00:00:00 +0000 UTC"}),
    );
    assert_eq!(
        r,
        json!({"endpoint": "deletion", "method": "POST",
            "url": "https://amplitude.com/api/2/deletions/users",
            "body": {"user_ids": ["user-1"], "requester": "segment"}})
    );
    assert!(!r.to_string().contains("SECRET"));
}

// §13 Validation and rejection --------------------------------------------------------------------

#[test]
fn s13_rejection_table() {
    let alias_on = with(json!({"sendAlias": true}));
    let cases = [
        (
            key(),
            json!({"type": "track", "userId": "user-u"}),
            "invalid",
            "track: `event` is required",
        ),
        (
            key(),
            json!({"type": "track", "event": "e"}),
            "invalid",
            "`userId` or `anonymousId` (or `context.device.id`) is required",
        ),
        (
            key(),
            json!({"type": "identify", "traits": {"a": 1}}),
            "invalid",
            "`userId` or `anonymousId` (or `context.device.id`) is required",
        ),
        (
            key(),
            json!({"type": "group", "userId": "user-u"}),
            "invalid",
            "group: `groupId` is required",
        ),
        (
            key(),
            json!({"type": "group", "groupId": "g"}),
            "invalid",
            "group: `userId` or `anonymousId` is required to link a user to a legacy group",
        ),
        (
            key(),
            json!({"type": "alias", "previousId": "a", "userId": "b"}),
            "unsupported",
            "alias: the `sendAlias` (Enable Alias) setting is off",
        ),
        (
            alias_on.clone(),
            json!({"type": "alias", "userId": "b"}),
            "invalid",
            "alias: `previousId` is required",
        ),
        (
            alias_on,
            json!({"type": "alias", "previousId": "a"}),
            "invalid",
            "alias: `userId` is required",
        ),
        (
            with(json!({"secretKey": "S"})),
            json!({"type": "delete"}),
            "invalid",
            "delete: `userId` is required",
        ),
        (
            key(),
            json!({"userId": "user-u"}),
            "invalid",
            "`type` is required",
        ),
        (
            key(),
            json!({"type": 3}),
            "invalid",
            "`type` must be a string",
        ),
        (
            key(),
            json!({"type": "purchase"}),
            "unsupported",
            "`type`: the call type \"purchase\" is not sent to Amplitude",
        ),
        (
            key(),
            json!([1, 2]),
            "invalid",
            "the message must be a JSON object",
        ),
    ];
    for (settings, msg, kind, message) in cases {
        assert_eq!(
            error(settings, msg.clone()),
            json!({"kind": kind, "message": message}),
            "{msg}"
        );
    }
}

#[test]
fn s13_a_field_sent_as_the_wrong_type_is_named_as_such_not_as_missing() {
    let alias_on = || with(json!({"sendAlias": true}));
    let cases = [
        (
            key(),
            json!({"type": "track", "userId": "user-u", "event": {"name": "e"}}),
            "track: `event` must be a string or a number",
        ),
        (
            key(),
            json!({"type": "track", "userId": "user-u", "event": ""}),
            "track: `event` is required",
        ),
        (
            key(),
            json!({"type": "group", "userId": "user-u", "groupId": ["g1", "g2"]}),
            "group: `groupId` must be a string or a number",
        ),
        (
            key(),
            json!({"type": "group", "userId": "user-u", "groupId": null}),
            "group: `groupId` is required",
        ),
        (
            alias_on(),
            json!({"type": "alias", "userId": "b", "previousId": {"id": "a"}}),
            "alias: `previousId` must be a string or a number",
        ),
        (
            alias_on(),
            json!({"type": "alias", "userId": true, "previousId": "a"}),
            "alias: `userId` must be a string or a number",
        ),
        (
            with(json!({"secretKey": "S"})),
            json!({"type": "delete", "userId": ["u"]}),
            "delete: `userId` must be a string or a number",
        ),
        (
            key(),
            json!({"type": "track", "event": "e", "userId": {"id": "user-u"}}),
            "`userId` must be a string or a number, and the message has no other id",
        ),
        (
            key(),
            json!({"type": "identify", "anonymousId": true, "traits": {"a": 1}}),
            "`anonymousId` must be a string or a number, and the message has no other id",
        ),
    ];
    for (settings, msg, message) in cases {
        assert_eq!(
            error(settings, msg.clone()),
            json!({"kind": "invalid", "message": message}),
            "{msg}"
        );
    }
}

#[test]
fn s13_page_without_applicable_setting_is_skipped_without_error() {
    assert_eq!(
        map(
            key(),
            json!({"type": "page", "userId": "user-u", "name": "Home"})
        ),
        json!({"index": 0, "requests": [], "error": null, "skipped": "page: no page setting \
            sends it: `trackAllPages` is off, `trackCategorizedPages` is off, `trackNamedPages` is off"})
    );
}

// §8.3 Engage route forms (segment-delivery §3) ---------------------------------------------

fn engage(settings: Value, message: Value) -> Result<Option<Value>, String> {
    use mapping::engage::{Engage, plan};
    let settings = Settings::from_json(&settings).unwrap();
    let text = message.to_string();
    let parsed: serde_json_borrow::Value = serde_json::from_str(&text).unwrap();
    match plan(&parsed, &settings) {
        Ok(Engage::Plan(p)) => {
            assert_eq!(p.requests.len(), 1);
            assert_eq!(p.requests[0].endpoint, mapping::Endpoint::Identify);
            let body = request_record(&p.requests[0])["body"].clone();
            Ok(Some(body["identification"][0].clone()))
        }
        Ok(Engage::Skip(reason)) => Err(format!("skip: {reason}")),
        Err(r) => Err(format!("{}: {}", r.kind(), r.message())),
    }
}

fn personas(key: &str) -> Value {
    json!({"personas": {"computation_class": "audience", "computation_key": key, "computation_id": "aud_1"}})
}

#[test]
fn s8_3_engage_track_forms_become_one_user_property() {
    let entered = engage(
        key(),
        json!({"type": "track", "event": "Audience Entered", "userId": "user-u", "context": personas("vip"),
            "properties": {"audience_key": "vip", "vip": true}, "integrations": {"All": false, "Hook": true}}),
    );
    assert_eq!(
        entered,
        Ok(Some(
            json!({"user_id": "user-u", "library": "segment", "user_properties": {"vip": true, "id": "user-u"}})
        ))
    );
    let exited = engage(
        key(),
        json!({"type": "track", "event": "Audience Exited", "anonymousId": "anon-1", "context": personas("vip"),
            "properties": {"audience_key": "vip", "vip": "false"}}),
    );
    assert_eq!(
        exited.unwrap().unwrap()["user_properties"],
        json!({"vip": false})
    );
    let computed = engage(
        key(),
        json!({"type": "track", "event": "Trait Computed", "userId": "user-u",
            "properties": {"trait_key": "lifetime_value", "lifetime_value": 42.5}}),
    );
    assert_eq!(
        computed.unwrap().unwrap()["user_properties"],
        json!({"lifetime_value": 42.5, "id": "user-u"})
    );
}

#[test]
fn s8_3_engage_identify_settings_apply_to_synced_properties() {
    let got = engage(
        with(json!({"traitsToSetOnce": ["vip"]})),
        json!({"type": "track", "event": "Audience Entered", "userId": "user-u", "context": personas("vip"),
            "properties": {"audience_key": "vip", "vip": true}}),
    );
    assert_eq!(
        got.unwrap().unwrap()["user_properties"],
        json!({"$setOnce": {"vip": true}, "$set": {"id": "user-u"}})
    );
}

#[test]
fn s8_3_engage_email_only_profiles_are_skipped_and_odd_tracks_refused() {
    assert_eq!(
        engage(
            key(),
            json!({"type": "identify", "traits": {"email": "a@b.c", "vip": true}, "context": personas("vip")})
        ),
        Err(format!("skip: {}", mapping::engage::NO_IDS))
    );
    assert_eq!(
        engage(key(), json!({"type": "track", "event": "Signed Up", "userId": "user-u"})),
        Err("unsupported: engage: a track needs `properties.audience_key` (Audience Entered/Exited) or `properties.trait_key` (Trait Computed)".into())
    );
    assert_eq!(
        engage(key(), json!({"type": "page", "userId": "user-u"})),
        Err(
            "unsupported: `type`: Page calls are not Engage syncs (identify or track forms only)"
                .into()
        )
    );
    assert_eq!(
        engage(
            key(),
            json!({"type": "track", "event": "Trait Computed", "userId": "user-u", "properties": {"trait_key": "x"}})
        ),
        Err("invalid: engage: `properties.x` (the value of `trait_key`) is required".into())
    );
}

#[test]
fn s8_3_engage_audience_track_without_the_flag_follows_the_event_name() {
    let membership = |event: &str| {
        engage(
            key(),
            json!({"type": "track", "event": event, "userId": "user-u", "properties": {"audience_key": "vip"}}),
        )
        .unwrap()
        .unwrap()["user_properties"]["vip"]
            .clone()
    };
    assert_eq!(membership("Audience Entered"), json!(true));
    assert_eq!(membership("Audience Exited"), json!(false));
}

/// An order of `products` products, with `traits_kb` KB of `context.traits`.
fn big_order(products: usize, traits_kb: usize) -> Value {
    let products: Vec<Value> = (0..products)
        .map(|i| json!({"sku": format!("sku-{i}"), "price": 1}))
        .collect();
    json!({"type": "track", "event": "Order Completed", "userId": "user-1", "messageId": "m",
        "context": {"traits": {"pad": "x".repeat(traits_kb * 1024)}},
        "properties": {"revenue": 10, "products": products}})
}

/// §6 (decision: the limits on one message's product events). An order of 1,300 products
/// whose user carries 16 KB of traits becomes its 1,301 events (about 21 MB), every product
/// event with the user's properties, as Segment's destination sends them.
#[test]
fn s6_a_large_order_with_large_traits_is_sent_whole() {
    let out = events(key(), big_order(1300, 16));
    assert_eq!(out.len(), 1301);
    assert_eq!(out[1300]["event_type"], "Product Purchased");
    assert_eq!(out[1300]["insert_id"], "m-1301");
    assert_eq!(
        out[1300]["event_properties"],
        json!({"sku": "sku-1299", "price": 1})
    );
    assert_eq!(
        out[1300]["user_properties"]["pad"].as_str().map(str::len),
        Some(16 * 1024)
    );
}

/// §6 (decision): past 10,000 products, or past about 64 MB of events for the one message, the
/// order is refused with a reason naming the field and the limit; `trackProductsOnce` sends
/// such an order as one event.
#[test]
fn s6_an_order_past_the_fan_out_limits_is_refused_with_the_reason() {
    assert_eq!(
        error(key(), big_order(10_001, 0)),
        json!({"kind": "invalid", "message": "`properties.products`: 10001 products would become as many Product Purchased events, over this destination's limit of 10000 for one message; send them in several orders, or turn on trackProductsOnce"})
    );
    assert_eq!(
        error(key(), big_order(1000, 70)),
        json!({"kind": "invalid", "message": "`properties.products`: 1000 products would become as many Product Purchased events carrying about 69 MB, each repeating the user's 70 KB of properties (`context.traits`), over this destination's limit of 64 MB for one message; send fewer products or traits, or turn on trackProductsOnce"})
    );
    let once = events(
        with(json!({"trackProductsOnce": true})),
        big_order(10_001, 70),
    );
    assert_eq!(once.len(), 1);
}

// §17 Opt-in behaviour beyond Classic ------------------------------------------------------------

/// 2024-05-01T10:00:00Z in epoch milliseconds.
const T: i64 = 1_714_557_600_000;

fn identify_with(traits: Value, amplitude_options: Value) -> Value {
    json!({"type": "identify", "userId": "user-1", "messageId": "m1",
        "timestamp": "2024-05-01T10:00:00Z", "traits": traits,
        "integrations": {"Amplitude": amplitude_options}})
}

fn track_with(context: Value, integrations: Value) -> Value {
    json!({"type": "track", "event": "Played", "userId": "user-1", "messageId": "m1",
        "timestamp": "2024-05-01T10:00:00Z", "context": context, "integrations": integrations})
}

#[test]
fn s17_1_1_fields_to_unset_removes_the_named_user_properties() {
    let r = only_request(
        key(),
        identify_with(
            json!({"plan": "pro", "name": "Ann"}),
            json!({"fieldsToUnset": ["plan", "old", "", 7]}),
        ),
    );
    assert_eq!(
        r["body"]["identification"],
        json!([{"user_id": "user-1", "time": T, "library": "segment", "user_properties": {
            "$set": {"name": "Ann", "id": "user-1"}, "$unset": {"plan": "-", "old": "-"}}}])
    );
}

#[test]
fn s17_1_1_an_unset_key_leaves_every_other_operation() {
    let r = only_request(
        with(json!({"traitsToSetOnce": ["first_seen"]})),
        identify_with(
            json!({"first_seen": "2020-01-01", "$append": {"first_seen": "x", "tags": "a"}}),
            json!({"fieldsToUnset": ["first_seen"]}),
        ),
    );
    assert_eq!(
        r["body"]["events"][0]["user_properties"],
        json!({"$set": {"id": "user-1"}, "$append": {"tags": "a"}, "$unset": {"first_seen": "-"}})
    );
}

#[test]
fn s17_1_1_fields_to_unset_on_events_read_from_actions_amplitude_too() {
    let e = events(
        key(),
        track_with(
            json!({"traits": {"plan": "pro"}}),
            json!({"Actions Amplitude": {"fieldsToUnset": ["plan"]}}),
        ),
    );
    assert_eq!(
        e[0]["user_properties"],
        json!({"$set": {"id": "user-1"}, "$unset": {"plan": "-"}})
    );
}

#[test]
fn s17_1_2_unset_null_traits_turns_null_into_unset() {
    let message = identify_with(json!({"plan": null, "name": "Ann"}), json!({}));
    let on = only_request(with(json!({"unsetNullTraits": true})), message.clone());
    assert_eq!(
        on["body"]["identification"][0]["user_properties"],
        json!({"$set": {"name": "Ann", "id": "user-1"}, "$unset": {"plan": "-"}})
    );
    let off = only_request(key(), message);
    assert_eq!(
        off["body"]["identification"][0]["user_properties"],
        json!({"plan": null, "name": "Ann", "id": "user-1"})
    );
}

#[test]
fn s17_1_3_clear_all_becomes_two_deduplicated_identify_events() {
    let r = only_request(
        key(),
        identify_with(json!({"plan": "pro"}), json!({"clearAll": true})),
    );
    assert_eq!(
        r,
        json!({"endpoint": "httpapi", "method": "POST", "url": "https://api2.amplitude.com/2/httpapi",
        "body": {"api_key": "K", "events": [
            {"user_id": "user-1", "time": T - 1, "library": "segment", "event_type": "$identify",
             "insert_id": "m1-clear", "user_properties": {"$clearAll": "-"}},
            {"user_id": "user-1", "time": T, "library": "segment", "event_type": "$identify",
             "insert_id": "m1", "user_properties": {"plan": "pro", "id": "user-1"}}
        ]}})
    );
}

#[test]
fn s17_1_3_clear_all_without_message_id_is_rejected() {
    let mut message = identify_with(json!({"plan": "pro"}), json!({"clearAll": true}));
    message.as_object_mut().unwrap().remove("messageId");
    assert_eq!(
        error(key(), message),
        json!({"kind": "invalid", "message": "`messageId` is required with the `clearAll` option: without it a resent clear would erase later updates"})
    );
}

#[test]
fn s17_1_4_skip_user_properties_sync_marks_events_only() {
    let options = json!({"Amplitude": {"skip_user_properties_sync": true}});
    let e = events(key(), track_with(json!({}), options.clone()));
    assert_eq!(
        Value::Array(e),
        json!([{"user_id": "user-1", "time": T, "library": "segment", "event_type": "Played",
            "insert_id": "m1", "event_properties": {}, "user_properties": {"id": "user-1"},
            "$skip_user_properties_sync": true}])
    );
    let identify = only_request(
        key(),
        identify_with(json!({}), json!({"skip_user_properties_sync": true})),
    );
    assert_eq!(
        identify["body"]["identification"],
        json!([{"user_id": "user-1", "time": T, "library": "segment",
            "user_properties": {"id": "user-1"}}])
    );
}

#[test]
fn s17_2_trait_operations_on_events_apply_the_lists_to_context_traits() {
    let settings = json!({"traitsToIncrement": ["logins"], "traitsToSetOnce": ["first_seen"]});
    let message = track_with(
        json!({"traits": {"logins": 2, "first_seen": "2020-01-01", "plan": "pro"}}),
        json!({}),
    );
    let mut on = settings.clone();
    on["traitOperationsOnEvents"] = json!(true);
    assert_eq!(
        events(with(on), message.clone())[0]["user_properties"],
        json!({"$set": {"plan": "pro", "id": "user-1"}, "$setOnce": {"first_seen": "2020-01-01"},
            "$add": {"logins": 2}})
    );
    assert_eq!(
        events(with(settings), message)[0]["user_properties"],
        json!({"logins": 2, "first_seen": "2020-01-01", "plan": "pro", "id": "user-1"})
    );
}

fn page(name: &str) -> Value {
    json!({"type": "page", "userId": "user-1", "name": name, "category": "Docs",
        "properties": {"section": "intro"}})
}

fn page_names(settings: Value, message: Value) -> Vec<Value> {
    let record = map(settings, message);
    record["requests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["body"]["events"].as_array().unwrap().clone())
        .map(|e| e["event_type"].clone())
        .collect()
}

#[test]
fn s17_3_a_page_template_sends_one_event_named_by_it() {
    let all = json!({"trackAllPages": true, "trackCategorizedPages": true,
        "trackNamedPages": true, "pageEventNameTemplate": "Viewed {{name}}"});
    assert_eq!(page_names(with(all), page("Home")), [json!("Viewed Home")]);
    let placeholders = json!({"trackNamedPages": true,
        "pageEventNameTemplate": "  {{category}} {{properties.missing}}  {{ properties.section }}\t{{name}} {{other}} "});
    assert_eq!(
        page_names(with(placeholders), page("Home")),
        [json!("Docs intro Home {{other}}")]
    );
}

#[test]
fn s17_3_templates_keep_the_gating_and_fall_back_when_empty() {
    let ungated = json!({"pageEventNameTemplate": "Viewed {{name}}"});
    assert_eq!(page_names(with(ungated), page("Home")), Vec::<Value>::new());
    let empty = json!({"trackNamedPages": true, "pageEventNameTemplate": "{{properties.none}}"});
    assert_eq!(
        page_names(with(empty), page("Home")),
        [json!("Viewed Docs Home Page")]
    );
    let screen = json!({"type": "screen", "userId": "user-1", "name": "Cart"});
    let both = json!({"trackNamedPages": true, "pageEventNameTemplate": "Page {{name}}",
        "screenEventNameTemplate": "Screen {{name}}"});
    assert_eq!(page_names(with(both), screen), [json!("Screen Cart")]);
}

#[test]
fn s17_4_1_send_referrer_sets_referrer_and_domain() {
    let referrer = "https://News.Example.com:8443/a?b=1";
    let message = track_with(json!({"page": {"referrer": referrer}}), json!({}));
    assert_eq!(
        events(with(json!({"sendReferrer": true})), message.clone())[0]["user_properties"],
        json!({"$set": {"id": "user-1", "referrer": referrer, "referring_domain": "news.example.com"},
            "$setOnce": {"initial_referrer": referrer, "initial_referring_domain": "news.example.com"}})
    );
    assert_eq!(
        events(key(), message)[0]["user_properties"],
        json!({"id": "user-1"})
    );
    let identify = json!({"type": "identify", "userId": "user-1",
        "context": {"page": {"referrer": "not a url"}}});
    assert_eq!(
        only_request(with(json!({"sendReferrer": true})), identify)["body"]["identification"][0]["user_properties"],
        json!({"$set": {"id": "user-1", "referrer": "not a url"},
            "$setOnce": {"initial_referrer": "not a url"}})
    );
}

#[test]
fn s17_4_2_include_raw_user_agent_sends_it_as_sent() {
    let message = track_with(json!({"userAgent": "curl/8.5.0"}), json!({}));
    let e = events(with(json!({"includeRawUserAgent": true})), message.clone());
    assert_eq!(e[0]["user_agent"], json!("curl/8.5.0"));
    assert_eq!(events(key(), message)[0].get("user_agent"), None);
}

#[test]
fn s17_4_4_library_from_context_names_the_sending_library_on_events_only() {
    let settings = with(json!({"libraryFromContext": true}));
    let library = json!({"library": {"name": "analytics-python", "version": "2.3.0"}});
    let e = events(settings.clone(), track_with(library.clone(), json!({})));
    assert_eq!(e[0]["library"], json!("analytics-python"));
    assert_eq!(
        events(key(), track_with(library.clone(), json!({})))[0]["library"],
        json!("segment")
    );
    let identify = json!({"type": "identify", "userId": "user-1", "context": library});
    assert_eq!(
        only_request(settings, identify)["body"]["identification"][0]["library"],
        json!("segment")
    );
}

#[test]
fn s17_5_short_ids_are_dropped_and_a_message_left_without_ids_is_rejected() {
    let both = json!({"type": "track", "event": "Played", "userId": "ab", "anonymousId": "anon-1"});
    let e = events(key(), both.clone());
    assert_eq!(e[0].get("user_id"), None);
    assert_eq!(e[0]["device_id"], json!("anon-1"));
    let lowered = events(with(json!({"minIdLength": 2})), both);
    assert_eq!(lowered[0]["user_id"], json!("ab"));
    assert_eq!(
        error(key(), json!({"type": "identify", "userId": "ab"})),
        json!({"kind": "invalid", "message": "`userId` \"ab\" is shorter than the 5 characters Amplitude accepts (minIdLength), and the message has no other id"})
    );
    assert_eq!(
        error(
            key(),
            json!({"type": "group", "groupId": "g1", "anonymousId": "abc"})
        ),
        json!({"kind": "invalid", "message": "group: the device id (`context.device.id` or `anonymousId`) \"abc\" is shorter than the 5 characters Amplitude accepts (minIdLength), and the message has no other id"})
    );
}

/// amplitude-api §2.3: the placeholder ids Amplitude refuses at any length (`undefined`,
/// `null`, the all-zero UUID, …, in any ASCII case) are dropped like short ones, so the event
/// goes with its other id instead of being refused whole; with no id left, the reason names it.
/// Such a user id names no user, so it is not the user property `id` either (§3.14.1,
/// decision); a short one is a real id and stays.
#[test]
fn s17_5_placeholder_ids_amplitude_refuses_are_dropped() {
    let undefined = json!({"type": "track", "event": "Played", "messageId": "m1",
        "userId": "Undefined", "anonymousId": "anon-12345"});
    assert_eq!(
        Value::Array(events(key(), undefined)),
        json!([{"device_id": "anon-12345", "library": "segment", "event_type": "Played",
            "insert_id": "m1", "event_properties": {}}])
    );
    let zero_device = json!({"type": "track", "event": "Played", "messageId": "m2",
        "userId": "user-1", "context": {"device": {"id": "00000000-0000-0000-0000-000000000000"}}});
    let e = events(key(), zero_device);
    assert_eq!(
        (e[0].get("device_id"), &e[0]["user_id"]),
        (None, &json!("user-1"))
    );
    // Long enough under `minIdLength: 1`, still refused.
    assert_eq!(
        error(
            with(json!({"minIdLength": 1})),
            json!({"type": "identify", "userId": 0})
        ),
        json!({"kind": "invalid", "message": "`userId` \"0\" is a placeholder Amplitude refuses as an id, and the message has no other id"})
    );
    assert_eq!(
        error(
            key(),
            json!({"type": "group", "groupId": "g1", "anonymousId": "anonymous"})
        ),
        json!({"kind": "invalid", "message": "group: the device id (`context.device.id` or `anonymousId`) \"anonymous\" is a placeholder Amplitude refuses as an id, and the message has no other id"})
    );
}

#[test]
fn s17_settings_are_validated_once_and_name_the_key() {
    let cases = [
        (
            json!({"minIdLength": 0}),
            "`minIdLength` must be an integer from 1 to 100",
        ),
        (
            json!({"minIdLength": "5"}),
            "`minIdLength` must be an integer from 1 to 100",
        ),
        (
            json!({"unsetNullTraits": "yes"}),
            "`unsetNullTraits` must be true or false",
        ),
        (
            json!({"pageEventNameTemplate": 3}),
            "`pageEventNameTemplate` must be a string",
        ),
        (
            json!({"sendReferrer": 1}),
            "`sendReferrer` must be true or false",
        ),
    ];
    for (extra, expected) in cases {
        let err = Settings::from_json(&with(extra)).unwrap_err();
        assert_eq!(err.to_string(), format!("settings: {expected}"));
    }
}

// §18 Server-side sessions (the mapping's part: which events, which key) ---------------------------

fn session_need(settings: Value, message: Value) -> Option<mapping::SessionNeed> {
    let settings = Settings::from_json(&settings).unwrap();
    let text = message.to_string();
    let parsed: serde_json_borrow::Value = serde_json::from_str(&text).unwrap();
    mapping::session_need_in(&parsed, mapping::Batch::NONE, &settings)
}

#[test]
fn s18_1_session_settings_default_and_bounds() {
    let defaults = Settings::from_json(&key()).unwrap();
    assert_eq!(
        (defaults.sessionize, defaults.session_timeout_minutes),
        (false, 30)
    );
    for bad in [json!(0), json!(1441), json!(2.5)] {
        assert_eq!(
            Settings::from_json(&with(json!({"sessionTimeoutMinutes": bad})))
                .unwrap_err()
                .to_string(),
            "settings: `sessionTimeoutMinutes` must be an integer from 1 to 1440"
        );
    }
}

#[test]
fn s18_2_to_4_track_page_and_screen_without_a_session_id_need_one_keyed_by_device() {
    let on = with(json!({"sessionize": true, "trackNamedPages": true}));
    let need = |m: Value| session_need(on.clone(), m);
    let track = json!({"type": "track", "event": "Played", "userId": "user-1",
        "anonymousId": "anon-1", "timestamp": "2024-05-01T10:00:00Z"});
    assert_eq!(
        need(track.clone()),
        Some(mapping::SessionNeed {
            key: "d:anon-1".into(),
            time: Some(T)
        })
    );
    assert_eq!(session_need(key(), track), None, "sessionize off");
    let by_user =
        json!({"type": "screen", "name": "Cart", "userId": "user-1", "anonymousId": "ab"});
    assert_eq!(
        need(by_user),
        Some(mapping::SessionNeed {
            key: "u:user-1".into(),
            time: None
        }),
        "a device id Amplitude would refuse is no key"
    );
    for (message, why) in [
        (
            json!({"type": "track", "event": "Played", "userId": "user-1",
                "integrations": {"Amplitude": {"session_id": 1714557600000i64}}}),
            "its own session id",
        ),
        (
            json!({"type": "page", "userId": "user-1"}),
            "a page the page settings skip",
        ),
        (
            json!({"type": "identify", "userId": "user-1"}),
            "an identification",
        ),
        (
            json!({"type": "group", "groupId": "g", "userId": "user-1"}),
            "a group call",
        ),
        (
            json!({"type": "track", "userId": "user-1"}),
            "a track the mapping rejects",
        ),
        (
            json!({"type": "track", "event": "Played", "userId": "ab"}),
            "no id Amplitude accepts",
        ),
        (
            json!({"type": "track", "event": "Played", "userId": "user-1",
                "integrations": {"Amplitude": false}}),
            "Amplitude turned off",
        ),
    ] {
        assert_eq!(need(message), None, "{why}");
    }
}

#[test]
fn s18_2_every_event_of_the_message_gets_its_session_and_identifications_none() {
    let settings = Settings::from_json(&with(
        json!({"trackRevenuePerProduct": true, "sessionize": true}),
    ))
    .unwrap();
    let order = json!({"type": "track", "event": "Order Completed", "userId": "user-1",
        "messageId": "m1", "properties": {"revenue": 30, "products": [{"price": 10}, {"price": 20}]}})
    .to_string();
    let parsed: serde_json_borrow::Value = serde_json::from_str(&order).unwrap();
    let mut plan = mapping::plan(&parsed, &settings).unwrap();
    plan.set_session_id(T);
    let Body::Events(events) = &plan.requests[0].body else {
        panic!("events")
    };
    assert_eq!(
        events.iter().map(|e| e.session_id).collect::<Vec<_>>(),
        [Some(T), Some(T), Some(T)]
    );
    let identify = json!({"type": "identify", "userId": "user-1", "messageId": "m2",
        "traits": {"logins": 1}})
    .to_string();
    let parsed: serde_json_borrow::Value = serde_json::from_str(&identify).unwrap();
    let settings = Settings::from_json(&with(json!({"traitsToIncrement": ["logins"]}))).unwrap();
    let mut plan = mapping::plan(&parsed, &settings).unwrap();
    plan.set_session_id(T);
    let Body::Events(events) = &plan.requests[0].body else {
        panic!("a $identify event")
    };
    assert_eq!(events[0].session_id, None);
    // Nor do `$groupidentify` events (§9.4).
    let group = json!({"type": "group", "userId": "user-1", "groupId": "g", "messageId": "m3",
        "traits": {"kind": "team", "name": "red", "$add": {"seats": 1}}})
    .to_string();
    let parsed: serde_json_borrow::Value = serde_json::from_str(&group).unwrap();
    let settings = Settings::from_json(&with(
        json!({"groupTypeTrait": "kind", "groupValueTrait": "name", "sessionize": true}),
    ))
    .unwrap();
    let mut plan = mapping::plan(&parsed, &settings).unwrap();
    plan.set_session_id(T);
    let Body::Events(events) = &plan.requests[1].body else {
        panic!("a $groupidentify event")
    };
    assert_eq!(
        (events[0].event_type.as_ref(), events[0].session_id),
        ("$groupidentify", None)
    );
}
