//! A seeded generator of realistic Segment messages, as delivered to the destination.
//!
//! The mix follows what a typical web + mobile workspace sends: about 60% track (some of them
//! "Order Completed" with 1–5 products), 15% page, 5% screen, 15% identify with 5–20 traits
//! including a nested address, 4% group and 1% alias, with full analytics.js, iOS and Android
//! contexts (user agents included). Messages average about 1.3 KB of JSON. The same seed gives
//! the same corpus, so benchmark figures compare across runs.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Settings a realistic workspace uses with the corpus (page settings on, alias on).
pub fn settings() -> Value {
    json!({
        "apiKey": "corpus-api-key-0123456789abcdef",
        "trackAllPages": true,
        "trackNamedPages": true,
        "trackCategorizedPages": false,
        "sendAlias": true,
        "groupTypeTrait": "plan_type",
        "groupValueTrait": "name",
        "traitsToIncrement": ["logins"],
        "traitsToSetOnce": ["first_seen"],
        "trackUtmProperties": true,
        "mapQueryParams": {"search": "event_properties"}
    })
}

/// `count` messages from `seed`, each one line of JSON.
pub fn lines(seed: u64, count: usize) -> Vec<String> {
    let mut g = Generator::new(seed);
    (0..count).map(|i| g.message(i).to_string()).collect()
}

/// `count` messages from `seed` as JSON values.
pub fn messages(seed: u64, count: usize) -> Vec<Value> {
    let mut g = Generator::new(seed);
    (0..count).map(|i| g.message(i)).collect()
}

/// Gives every `every`-th identify of `lines` the `clearAll` option (mapping §17.1.3), as a
/// logout would, and returns the users whose properties those clears erase (so a test knows
/// whose totals no longer add up).
pub fn with_clears(lines: &mut [String], every: usize) -> Vec<String> {
    let mut users = Vec::new();
    edit_calls(lines, "identify", every, |message| {
        message["integrations"]["Amplitude"]["clearAll"] = json!(true);
        if let Some(user) = message["userId"].as_str() {
            users.push(user.to_owned());
        }
    });
    users
}

/// Adds `$add: {"seats": 1}` to the traits of every `every`-th group call of `lines` (mapping
/// §9.4: sent as a deduplicated `$groupidentify` event). Every corpus group is the same one
/// (`company` / `Example Inc`).
pub fn with_group_increments(lines: &mut [String], every: usize) {
    edit_calls(lines, "group", every, |message| {
        message["traits"]["$add"] = json!({"seats": 1});
    });
}

/// Rewrites every `every`-th message of `lines` whose call type is `call` with `edit`.
fn edit_calls(lines: &mut [String], call: &str, every: usize, mut edit: impl FnMut(&mut Value)) {
    let marker = format!(r#""type":"{call}""#);
    let calls = lines
        .iter_mut()
        .filter(|l| l.contains(&marker))
        .step_by(every.max(1));
    for line in calls {
        let Ok(mut message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        edit(&mut message);
        *line = message.to_string();
    }
}

/// Removes the Amplitude `session_id` option from every `every`-th message of `lines`, as a
/// server-side source sends them (mapping §18: what `sessionize` is for); returns their
/// indices.
pub fn without_session_ids(lines: &mut [String], every: usize) -> Vec<usize> {
    let mut changed = Vec::new();
    for (index, line) in lines.iter_mut().enumerate().step_by(every.max(1)) {
        let Ok(mut message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let removed = message["integrations"]["Amplitude"]
            .as_object_mut()
            .and_then(|o| o.remove("session_id"));
        if removed.is_some() {
            *line = message.to_string();
            changed.push(index);
        }
    }
    changed
}

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 Edg/119.0.0.0",
];
const EVENTS: [&str; 8] = [
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Signed Up",
    "Video Played",
    "Article Read",
    "Search Performed",
    "Button Clicked",
];
const CITIES: [(&str, &str, &str); 4] = [
    ("San Francisco", "CA", "US"),
    ("Berlin", "BE", "DE"),
    ("London", "LND", "GB"),
    ("Paris", "IDF", "FR"),
];

struct Generator {
    rng: SmallRng,
    users: usize,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Generator {
            rng: SmallRng::seed_from_u64(seed),
            users: 5_000,
        }
    }

    fn pick<'s, T>(&mut self, items: &'s [T]) -> &'s T {
        &items[self.rng.random_range(0..items.len())]
    }

    fn message(&mut self, index: usize) -> Value {
        let user = self.rng.random_range(0..self.users);
        let roll = self.rng.random_range(0..100);
        let mut m = match roll {
            0..60 => self.track(),
            60..75 => self.page(),
            75..80 => self.screen(),
            80..95 => self.identify(user),
            95..99 => self.group(),
            _ => json!({"type": "alias", "previousId": format!("anon-{user:08}")}),
        };
        let source = self.rng.random_range(0..3);
        let ts = 1_700_000_000_000u64 + index as u64 * 1_000;
        let o = m.as_object_mut().expect("message is an object");
        o.insert(
            "messageId".into(),
            json!(format!("msg-{index:010}-{:08x}", self.rng.random::<u32>())),
        );
        o.insert("userId".into(), json!(format!("user-{user:06}")));
        o.insert(
            "anonymousId".into(),
            json!(format!("anon-{user:08}-4f2a-9c1e-{:012x}", user * 7919)),
        );
        o.insert("timestamp".into(), json!(iso(ts)));
        o.insert("originalTimestamp".into(), json!(iso(ts - 120)));
        o.insert("receivedAt".into(), json!(iso(ts + 80)));
        o.insert("sentAt".into(), json!(iso(ts - 20)));
        o.insert("context".into(), self.context(source, user));
        o.insert(
            "integrations".into(),
            json!({"Amplitude": {"session_id": 1_700_000_000_000u64 + (user as u64) * 100}}),
        );
        o.insert("version".into(), json!(2));
        o.insert(
            "channel".into(),
            json!(if source == 0 { "client" } else { "mobile" }),
        );
        m
    }

    fn track(&mut self) -> Value {
        if self.rng.random_range(0..10) < 2 {
            let n = self.rng.random_range(1..=5);
            let products: Vec<Value> = (0..n)
                .map(|i| {
                    json!({
                        "product_id": format!("sku-{}", self.rng.random_range(1000..9999)),
                        "sku": format!("SKU-{i}"),
                        "name": *self.pick(&["Monopoly", "Uno", "Chess", "Go", "Catan"]),
                        "price": self.rng.random_range(100..10_000) as f64 / 100.0,
                        "quantity": self.rng.random_range(1..4),
                        "category": "Games",
                        "url": "https://shop.example.com/p/1",
                        "image_url": "https://shop.example.com/p/1.jpg"
                    })
                })
                .collect();
            return json!({
                "type": "track",
                "event": "Order Completed",
                "properties": {
                    "order_id": format!("order-{}", self.rng.random::<u32>()),
                    "affiliation": "Online Store",
                    "total": 27.5, "subtotal": 22.5, "revenue": 25.0, "shipping": 3.0, "tax": 2.0,
                    "discount": 2.5, "coupon": "hasbros", "currency": "USD",
                    "products": products
                }
            });
        }
        let event = *self.pick(&EVENTS);
        json!({
            "type": "track",
            "event": event,
            "properties": {
                "product_id": format!("pid-{}", self.rng.random_range(0..100_000)),
                "category": "Games", "name": "Monopoly: 3rd Edition", "brand": "Hasbro",
                "variant": "200 pieces", "price": 18.99, "quantity": 1, "position": 3,
                "value": self.rng.random_range(0..500), "currency": "USD",
                "url": "https://www.example.com/product/path", "plan": "pro",
                "experiment": {"id": "exp-42", "variant": "B"}
            }
        })
    }

    fn page(&mut self) -> Value {
        json!({
            "type": "page",
            "name": *self.pick(&["Home", "Pricing", "Signup", "Docs"]),
            "category": *self.pick(&["Marketing", "Docs"]),
            "properties": {
                "path": "/pricing", "referrer": "https://www.google.com/", "search": "?utm_source=google",
                "title": "Pricing | Example", "url": "https://www.example.com/pricing?utm_source=google",
                "keywords": ["pricing", "plans"]
            }
        })
    }

    fn screen(&mut self) -> Value {
        json!({
            "type": "screen",
            "name": *self.pick(&["Home", "Cart", "Settings", "Profile"]),
            "properties": {"from": "Home", "variation": "blue signup button", "load_ms": self.rng.random_range(10..900)}
        })
    }

    fn identify(&mut self, user: usize) -> Value {
        let (city, state, country) = *self.pick(&CITIES);
        let mut traits = json!({
            "email": format!("user{user}@example.com"),
            "name": format!("User {user}"),
            "address": {"street": "6th St", "city": city, "state": state, "postalCode": "94103", "country": country},
            "logins": self.rng.random_range(1..500),
            "first_seen": "2023-01-15T10:00:00Z"
        });
        let extra = self.rng.random_range(0..=15);
        let t = traits.as_object_mut().expect("traits object");
        for i in 0..extra {
            t.insert(
                format!("trait_{i}"),
                match i % 4 {
                    0 => json!(format!("value-{}", self.rng.random::<u16>())),
                    1 => json!(self.rng.random_range(0..10_000)),
                    2 => json!(self.rng.random_bool(0.5)),
                    _ => json!(["a", "b"]),
                },
            );
        }
        json!({"type": "identify", "traits": traits})
    }

    fn group(&mut self) -> Value {
        json!({
            "type": "group",
            "groupId": format!("org-{}", self.rng.random_range(0..500)),
            "traits": {"name": "Example Inc", "plan_type": "company", "industry": "Technology", "employees": 329, "plan": "enterprise"}
        })
    }

    fn context(&mut self, source: u8, user: usize) -> Value {
        let (city, _, country) = *self.pick(&CITIES);
        let common = json!({
            "ip": format!("203.0.113.{}", user % 250),
            "locale": *self.pick(&["en-US", "de-DE", "fr-FR", "en-GB"]),
            "timezone": "Europe/Berlin",
            "location": {"city": city, "country": country, "latitude": 40.2964197, "longitude": -76.9411617},
            "traits": {"email": format!("user{user}@example.com"), "plan": "pro"},
            "campaign": {"name": "spring_sale", "source": "google", "medium": "cpc", "term": "games", "content": "banner"},
        });
        let mut c = common;
        let o = c.as_object_mut().expect("context object");
        match source {
            0 => {
                o.insert(
                    "library".into(),
                    json!({"name": "analytics.js", "version": "2.11.1"}),
                );
                o.insert("userAgent".into(), json!(*self.pick(&USER_AGENTS)));
                o.insert("page".into(), json!({"path": "/academy/", "referrer": "https://www.google.com/", "search": "?utm_source=google", "title": "Analytics Academy", "url": "https://segment.com/academy/"}));
            }
            1 => {
                o.insert(
                    "library".into(),
                    json!({"name": "analytics-ios", "version": "4.1.8"}),
                );
                o.insert("app".into(), json!({"name": "Example", "version": "3.2.1", "build": "321", "namespace": "com.example.app"}));
                o.insert("device".into(), json!({"id": format!("B5372DB0-C21E-11E4-8DFC-{user:012}"), "advertisingId": "7A3CBBA4-0C56-4E1B-A6B7-3F2A1C1E5D00", "adTrackingEnabled": true, "manufacturer": "Apple", "model": "iPhone15,2", "type": "ios", "name": "maguro"}));
                o.insert("os".into(), json!({"name": "iOS", "version": "17.1"}));
                o.insert("network".into(), json!({"carrier": "T-Mobile US", "wifi": true, "cellular": false, "bluetooth": false}));
                o.insert(
                    "screen".into(),
                    json!({"width": 390, "height": 844, "density": 3}),
                );
            }
            _ => {
                o.insert(
                    "library".into(),
                    json!({"name": "analytics-android", "version": "4.11.3"}),
                );
                o.insert("app".into(), json!({"name": "Example", "version": "3.2.0", "build": "320", "namespace": "com.example.app"}));
                o.insert("device".into(), json!({"id": format!("android-{user:012}"), "advertisingId": "38400000-8cf0-11bd-b23e-10b96e40000d", "adTrackingEnabled": true, "manufacturer": "Google", "model": "Pixel 8", "type": "android", "name": "shiba"}));
                o.insert("os".into(), json!({"name": "Android", "version": "14"}));
                o.insert("network".into(), json!({"carrier": "Vodafone", "wifi": false, "cellular": true, "bluetooth": false}));
                o.insert(
                    "screen".into(),
                    json!({"width": 1080, "height": 2400, "density": 2.625}),
                );
            }
        }
        c
    }
}

/// ISO-8601 UTC with milliseconds, computed without a date library (civil-from-days).
fn iso(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_corpus_and_realistic_size() {
        let a = lines(7, 2000);
        assert_eq!(a, lines(7, 2000));
        let avg = a.iter().map(String::len).sum::<usize>() / a.len();
        assert!(
            (1000..1700).contains(&avg),
            "average message size {avg} bytes"
        );
    }

    #[test]
    fn iso_dates_are_correct() {
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
    }
}
