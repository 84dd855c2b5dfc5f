//! The Amplitude objects written as JSON field by field: each key of ours as literal bytes,
//! each string and number of the message escaped and formatted by sonic-rs. What `segment-
//! amplitude map` writes its lines with.
//!
//! Through serde, every key of every object is a string like any other: scanned for
//! characters to escape, then framed by the serializer's map machinery (and `#[serde(flatten)]`
//! makes an event a map, not a struct). The keys this crate names (`"user_id":`,
//! `"event_type":`, …) are half the strings of an output line; through serde they were about a
//! tenth of `map`'s instructions. Here they are constants, copied. What the sender names
//! (property and trait keys, every value) still goes through sonic-rs's escaping.
//!
//! The bytes are exactly what serde_json writes of the same objects through their `Serialize`
//! derives in [`crate::amplitude`], which stay the definition: `tests` here on corpus and
//! hostile messages, `segment-amplitude`'s own test of its whole lines, and the `map_line`
//! fuzz target on every body it maps. A field added to an object there must be added here in
//! the same place; those checks fail until it is.

use std::borrow::Cow;

use serde::Serialize;
use serde_json_borrow::Value;

use crate::amplitude::{
    Deletion, DeviceFields, Event, GroupIdentification, Identification, UserMapping,
};
use crate::{Body, Prop, PropMap};

/// A key as written before its value: `"name":` (a name of ours, with nothing to escape).
#[macro_export]
macro_rules! json_key {
    ($name:literal) => {
        concat!("\"", $name, "\":").as_bytes()
    };
}
use json_key as key;

/// The fields of one JSON object being written: `{`, then each field after a comma if it is
/// not the first, then `}` at [`Fields::close`].
pub struct Fields<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Fields<'o> {
    pub fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Fields { out, first: true }
    }

    /// Writes `key` ([`json_key!`](crate::json_key)) and hands back the output for its value.
    #[inline(always)]
    pub fn key(&mut self, key: &'static [u8]) -> &mut Vec<u8> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.extend_from_slice(key);
        self.out
    }

    /// A field whose value serde writes (a number, a small record).
    #[inline(always)]
    pub fn value<T: Serialize + ?Sized>(&mut self, key: &'static [u8], value: &T) {
        let out = self.key(key);
        sonic_rs::to_writer(out, value).expect("writing JSON to a Vec cannot fail");
    }

    /// A field present only when `value` is: `skip_serializing_none`.
    #[inline(always)]
    pub fn some<T: Serialize>(&mut self, key: &'static [u8], value: &Option<T>) {
        if let Some(value) = value {
            self.value(key, value);
        }
    }

    #[inline(always)]
    pub fn str(&mut self, key: &'static [u8], value: &str) {
        string(self.key(key), value);
    }

    #[inline(always)]
    pub fn text(&mut self, key: &'static [u8], value: &Option<Cow<'_, str>>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    pub fn close(self) {
        self.out.push(b'}');
    }
}

/// A JSON string, escaped by sonic-rs as serde_json escapes it.
#[inline(always)]
pub fn string(out: &mut Vec<u8>, s: &str) {
    use sonic_rs::format::Formatter;
    sonic_rs::format::CompactFormatter
        .write_string_fast(out, s, true)
        .expect("writing JSON to a Vec cannot fail");
}

/// A JSON array of `items`, each written by `write`.
pub fn list<T>(out: &mut Vec<u8>, items: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

/// A value of the message (or one the mapping computed), as it reads.
pub fn value(out: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Str(s) => string(out, s),
        Value::Number(n) => {
            sonic_rs::to_writer(out, n).expect("writing JSON to a Vec cannot fail");
        }
        Value::Array(items) => list(out, items, value),
        Value::Object(o) => object(out, o.iter(), value),
    }
}

/// A JSON object of `entries`, each value written by `write`: a message's objects and the
/// maps the mapping builds alike.
fn object<'e, V: ?Sized + 'e>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = (&'e str, &'e V)>,
    write: impl Fn(&mut Vec<u8>, &V),
) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        write(out, v);
    }
    out.push(b'}');
}

pub fn prop(out: &mut Vec<u8>, p: &Prop<'_>) {
    match p {
        Prop::Ref(v) => value(out, v),
        Prop::Owned(v) => value(out, v),
        Prop::Map(m) => prop_map(out, m),
    }
}

pub fn prop_map(out: &mut Vec<u8>, m: &PropMap<'_>) {
    object(out, m.iter(), prop);
}

/// How many bytes [`value`] writes of `v`, counted without writing: the expansion limits
/// (`rules::track`, `rules::group`) weigh every order and group this way. The same count
/// through serde_json (a writer that only adds up lengths) was 2% of `map`'s instructions.
pub fn value_len(v: &Value<'_>) -> usize {
    match v {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Str(s) => string_len(s),
        Value::Number(n) => crate::json::serialized_len(n),
        Value::Array(items) => {
            2 + items.len().saturating_sub(1) + items.iter().map(value_len).sum::<usize>()
        }
        Value::Object(o) => object_len(o.iter(), value_len),
    }
}

/// How many bytes [`object`] writes of `entries`, each value measured by `len`.
fn object_len<'e, V: ?Sized + 'e>(
    entries: impl Iterator<Item = (&'e str, &'e V)>,
    len: impl Fn(&V) -> usize,
) -> usize {
    let (count, bytes) = entries.fold((0, 0), |(count, bytes), (k, v)| {
        (count + 1, bytes + string_len(k) + 1 + len(v))
    });
    2 + usize::saturating_sub(count, 1) + bytes
}

/// How many bytes [`prop`] writes of `p`.
pub fn prop_len(p: &Prop<'_>) -> usize {
    match p {
        Prop::Ref(v) => value_len(v),
        Prop::Owned(v) => value_len(v),
        Prop::Map(m) => prop_map_len(m),
    }
}

/// How many bytes [`prop_map`] writes of `m`.
pub fn prop_map_len(m: &PropMap<'_>) -> usize {
    object_len(m.iter(), prop_len)
}

/// How many bytes [`string`] writes of `s`: its quotes, and each character to escape as
/// serde_json escapes it (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`; other controls
/// `\u00XX`).
fn string_len(s: &str) -> usize {
    // Most strings have nothing to escape: checked without an early exit, so the compiler
    // checks many bytes at a time.
    let plain = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        return s.len() + 2;
    }
    let extra: usize = s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 1,
            0..0x20 => 5,
            _ => 0,
        })
        .sum();
    s.len() + 2 + extra
}

/// [`DeviceFields`], flattened into the object being written.
fn device(f: &mut Fields<'_>, d: &DeviceFields<'_>) {
    f.text(key!("user_id"), &d.user_id);
    f.text(key!("device_id"), &d.device_id);
    f.some(key!("time"), &d.time);
    f.text(key!("library"), &d.library);
    f.text(key!("platform"), &d.platform);
    f.text(key!("os_name"), &d.os_name);
    f.text(key!("os_version"), &d.os_version);
    f.text(key!("device_model"), &d.device_model);
    f.text(key!("device_brand"), &d.device_brand);
    f.text(key!("device_manufacturer"), &d.device_manufacturer);
    f.text(key!("carrier"), &d.carrier);
    f.text(key!("app_version"), &d.app_version);
    f.text(key!("ip"), &d.ip);
    if let Some(v) = &d.location_lat {
        value(f.key(key!("location_lat")), v);
    }
    if let Some(v) = &d.location_lng {
        value(f.key(key!("location_lng")), v);
    }
    f.text(key!("country"), &d.country);
    f.text(key!("region"), &d.region);
    f.text(key!("city"), &d.city);
    if let Some(language) = d.language {
        f.str(key!("language"), language);
    }
    f.text(key!("idfa"), &d.idfa);
    f.text(key!("adid"), &d.adid);
}

/// One element of an HTTP V2 / Batch `events` array.
pub fn event(out: &mut Vec<u8>, e: &Event<'_>) {
    let mut f = Fields::open(out);
    device(&mut f, &e.device);
    f.str(key!("event_type"), &e.event_type);
    f.text(key!("insert_id"), &e.insert_id);
    f.some(key!("session_id"), &e.session_id);
    f.some(key!("event_id"), &e.event_id);
    if let Some(p) = &e.event_properties {
        prop_map(f.key(key!("event_properties")), p);
    }
    if !e.user_properties.is_empty() {
        prop_map(f.key(key!("user_properties")), &e.user_properties);
    }
    if let Some(g) = &e.groups {
        prop(f.key(key!("groups")), g);
    }
    if let Some(p) = &e.group_properties {
        prop_map(f.key(key!("group_properties")), p);
    }
    if let Some(r) = &e.revenue {
        value(f.key(key!("revenue")), &r.revenue);
        value(f.key(key!("price")), &r.price);
        f.value(key!("quantity"), &r.quantity);
        f.text(key!("productId"), &r.product_id);
        f.text(key!("revenueType"), &r.revenue_type);
    }
    f.text(key!("user_agent"), &e.user_agent);
    f.some(
        key!("$skip_user_properties_sync"),
        &e.skip_user_properties_sync,
    );
    f.close();
}

/// One element of an `/identify` `identification` array.
pub fn identification(out: &mut Vec<u8>, i: &Identification<'_>) {
    let mut f = Fields::open(out);
    match i {
        Identification::User(u) => {
            device(&mut f, &u.device);
            if !u.user_properties.is_empty() {
                prop_map(f.key(key!("user_properties")), &u.user_properties);
            }
            for (key, p) in [
                (key!("groups"), &u.groups),
                (key!("paying"), &u.paying),
                (key!("start_version"), &u.start_version),
            ] {
                if let Some(p) = p {
                    prop(f.key(key), p);
                }
            }
        }
        Identification::GroupLink(g) => {
            f.text(key!("user_id"), &g.user_id);
            f.text(key!("device_id"), &g.device_id);
            f.some(key!("time"), &g.time);
            prop_map(f.key(key!("groups")), &g.groups);
            prop_map(f.key(key!("user_properties")), &g.user_properties);
        }
    }
    f.close();
}

/// One element of a `/groupidentify` `identification` array.
pub fn group_identification(out: &mut Vec<u8>, g: &GroupIdentification<'_>) {
    let mut f = Fields::open(out);
    f.str(key!("group_type"), &g.group_type);
    prop(f.key(key!("group_value")), &g.group_value);
    prop_map(f.key(key!("group_properties")), &g.group_properties);
    f.close();
}

/// One element of a `/usermap` `mapping` array.
pub fn user_mapping(out: &mut Vec<u8>, m: &UserMapping<'_>) {
    let mut f = Fields::open(out);
    f.str(key!("user_id"), &m.user_id);
    f.text(key!("global_user_id"), &m.global_user_id);
    f.some(key!("unmap"), &m.unmap);
    f.close();
}

/// A deletion's users: `{"user_ids":[…]}`.
pub fn deletion(out: &mut Vec<u8>, d: &Deletion<'_>) {
    let mut f = Fields::open(out);
    deletion_fields(&mut f, d);
    f.close();
}

/// A deletion's fields, in the object being written (a delivery adds its own beside them).
pub fn deletion_fields(f: &mut Fields<'_>, d: &Deletion<'_>) {
    list(f.key(key!("user_ids")), &d.user_ids, |out, id| {
        string(out, id)
    });
}

/// A request's body as [`Body`] serialises: its objects, without any key.
pub fn body(out: &mut Vec<u8>, body: &Body<'_>) {
    match body {
        Body::Events(e) => list(out, e, event),
        Body::Identify(i) => list(out, i, identification),
        Body::GroupIdentify(g) => list(out, g, group_identification),
        Body::UserMap(m) => list(out, m, user_mapping),
        Body::Deletion(d) => deletion(out, d),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value as Json, json};

    use crate::Settings;

    /// Settings that reach every body and field: the defaults, every corpus rule, and the
    /// opt-in rules (raw user agent, library, revenue per product, group identify, alias).
    fn settings() -> Vec<Settings> {
        [
            json!({}),
            corpus::settings(),
            json!({"trackRevenuePerProduct": true, "sendAlias": true, "groupTypeTrait": "t",
                "groupValueTrait": "v", "includeRawUserAgent": true, "libraryFromContext": true,
                "traitsToIncrement": ["n"], "traitsToSetOnce": ["s"], "unsetNullTraits": true,
                "trackAllPages": true, "useCustomAmplitudeProperties": true}),
        ]
        .iter()
        .map(|s| Settings::from_json(s).unwrap())
        .collect()
    }

    /// Every request of `line` under `settings`: its endpoint, its body as serde_json and as
    /// this module write it.
    fn both(line: &str, settings: &Settings) -> Vec<(&'static str, String, String)> {
        let mut scratch = crate::Scratch::default();
        let Ok(message) = crate::parse(line, &mut scratch) else {
            return Vec::new();
        };
        let Ok(plan) = crate::plan(&message, settings) else {
            return Vec::new();
        };
        plan.requests
            .iter()
            .map(|r| {
                let mut written = Vec::new();
                super::body(&mut written, &r.body);
                let written = String::from_utf8(written).expect("the writer writes UTF-8");
                let by_serde_json = serde_json::to_string(&r.body).unwrap();
                (r.endpoint.as_str(), by_serde_json, written)
            })
            .collect()
    }

    /// Corpus messages (every call type) under every settings variant: each body is written
    /// byte for byte as serde_json writes it, and every kind of body is reached.
    #[test]
    fn corpus_bodies_are_written_as_serde_json_writes_them() {
        let mut lines = corpus::lines(3, 1_500);
        lines.push(r#"{"type":"delete","userId":"u"}"#.into());
        lines.push(r#"{"type":"alias","userId":"u","previousId":"p"}"#.into());
        let mut endpoints = std::collections::BTreeSet::new();
        for settings in settings() {
            for line in &lines {
                for (endpoint, serde_json, written) in both(line, &settings) {
                    assert_eq!(written, serde_json, "{line}");
                    endpoints.insert(endpoint);
                }
            }
        }
        let every = [
            "deletion",
            "groupidentify",
            "httpapi",
            "identify",
            "usermap",
        ];
        assert_eq!(endpoints.into_iter().collect::<Vec<_>>(), every);
    }

    /// A string of any characters: controls, quotes, backslashes, every plane.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
            prop::sample::select(vec![
                "revenue",
                "price",
                "quantity",
                "productId",
                "revenueType",
                "email",
                "$set",
                "country",
                "city",
                "session_id",
                "event_id",
                "",
                "\"",
                "\\",
                "\u{0}",
            ])
            .prop_map(String::from),
        ]
    }

    /// A JSON value of any shape, numbers of every kind included.
    fn value() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            any::<u64>().prop_map(Json::from),
            any::<f64>()
                .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                .prop_map(Json::from),
            text().prop_map(Json::from),
        ];
        leaf.prop_recursive(3, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Json::from),
                prop::collection::vec((text(), inner), 0..6)
                    .prop_map(|entries| Json::Object(entries.into_iter().collect())),
            ]
        })
    }

    fn message() -> impl Strategy<Value = Json> {
        (
            prop::sample::select(vec!["track", "page", "screen", "identify", "group", "alias"]),
            prop_oneof![Just("Order Completed".to_string()), text()],
            text(),
            value(),
            value(),
            prop::collection::vec((value(), any::<f64>(), any::<i32>()), 0..3),
            value(),
        )
            .prop_map(|(kind, event, id, properties, traits, products, context)| {
                // Orders whose products carry what the revenue rules read, around values of
                // any shape.
                let products: Vec<Json> = products
                    .into_iter()
                    .map(|(other, price, quantity)| {
                        json!({"productId": id, "price": if price.is_finite() { price } else { 0.5 },
                            "quantity": quantity, "revenueType": id, "other": other})
                    })
                    .collect();
                let mut properties = properties;
                if let Json::Object(p) = &mut properties {
                    p.insert("products".into(), Json::from(products));
                    p.insert("revenue".into(), Json::from(12.5));
                }
                json!({
                    "type": kind, "event": event, "name": event, "userId": id,
                    "anonymousId": "a", "previousId": "p", "groupId": id, "messageId": "m",
                    "properties": properties, "traits": traits,
                    "context": {"traits": traits, "userAgent": id, "library": {"name": id},
                        "location": context, "device": context, "os": context,
                        "page": {"search": id}},
                })
            })
    }

    proptest! {
        /// The counted length of any value is the length serde_json writes.
        #[test]
        fn a_value_s_length_is_counted_as_written(v in value()) {
            let text = v.to_string();
            let mut scratch = crate::Scratch::default();
            let read = crate::parse(&text, &mut scratch).unwrap();
            prop_assert_eq!(super::value_len(&read), serde_json::to_string(&read).unwrap().len());
        }

        /// Random messages of every call type, with values of any shape and characters of
        /// every kind where the sender names keys and values: each body is written byte for
        /// byte as serde_json writes it.
        #[test]
        fn any_message_is_written_as_serde_json_writes_it(m in message()) {
            let line = m.to_string();
            for settings in settings() {
                for (_, serde_json, written) in both(&line, &settings) {
                    prop_assert_eq!(written, serde_json);
                }
            }
        }
    }
}
