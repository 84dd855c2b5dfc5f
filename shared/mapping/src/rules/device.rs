//! Spec §3.1–§3.13: the fields events and identifications share (ids, time, platform, OS and
//! device, location, language, advertising ids), and the event-only session and event ids.

use std::borrow::Cow;

use serde_json_borrow::Value;

use crate::amplitude::DeviceFields;
use crate::json::{self, text};
use crate::message::{Call, Message};
use crate::settings::Settings;
use crate::{locale, time, user_agent};

/// The shared fields of an event (track/page/screen) or a user identification (identify).
pub fn device_fields<'a>(msg: &Message<'a>, settings: &Settings) -> DeviceFields<'a> {
    let device = msg.context("device");
    let library_name = msg.ctx("library", "name");
    let os_name_ctx = msg.ctx("os", "name");
    let locale = locale::names(msg.context("locale"));

    let mut f = DeviceFields {
        user_id: msg.user_id.clone(),
        device_id: device_id(msg, settings),
        time: event_time(msg),
        library: Some(Cow::Borrowed("segment")),
        platform: platform(msg),
        os_name: text(os_name_ctx),
        os_version: text(msg.ctx("os", "version")),
        device_model: text(json::get(device, "model")),
        device_brand: text(json::get(device, "brand")),
        device_manufacturer: text(json::get(device, "manufacturer")),
        carrier: text(msg.ctx("network", "carrier")),
        app_version: text(msg.ctx("app", "version")),
        ip: text(msg.context("ip")),
        location_lat: json::coordinate(msg.ctx("location", "latitude")),
        location_lng: json::coordinate(msg.ctx("location", "longitude")),
        country: location_part(msg, settings, "country"),
        region: location_part(msg, settings, "region"),
        city: location_part(msg, settings, "city"),
        language: locale.map(|l| l.language),
        idfa: None,
        adid: None,
    };
    if f.country.is_none() {
        f.country = locale.and_then(|l| l.country).map(Cow::Borrowed);
    }
    apply_user_agent(msg, library_name, &mut f);
    let advertising_id =
        text(json::get(device, "advertisingId")).or_else(|| text(json::get(device, "idfa")));
    match os_name_ctx.as_str() {
        Some(os) if os.eq_ignore_ascii_case("ios") => f.idfa = advertising_id,
        Some(os) if os.eq_ignore_ascii_case("android") => f.adid = advertising_id,
        _ => {}
    }
    f
}

/// §3.2: `context.device.id`, then `anonymousId` (flipped by `preferAnonymousIdForDeviceId`),
/// and the classic workaround for analytics-android 1.4.4.
pub fn device_id<'a>(msg: &Message<'a>, settings: &Settings) -> Option<Cow<'a, str>> {
    let from_device = || json::id(msg.ctx("device", "id"));
    let prefer_anonymous = settings.prefer_anonymous_id_for_device_id;
    if prefer_anonymous && let Some(anon) = &msg.anonymous_id {
        return Some(anon.clone());
    }
    let is_android_1_4_4 = msg.ctx("library", "name").as_str() == Some("analytics-android")
        && msg.ctx("library", "version").as_str() == Some("1.4.4");
    if is_android_1_4_4 {
        // Decision: missing parts print as empty strings (the classic code printed "undefined").
        let part = |v: Option<Cow<'a, str>>| v.unwrap_or_default();
        return Some(Cow::Owned(format!(
            "{}:{}:{}",
            part(msg.user_id.clone()),
            part(text(msg.ctx("device", "model"))),
            part(from_device())
        )));
    }
    if prefer_anonymous {
        from_device()
    } else {
        from_device().or_else(|| msg.anonymous_id.clone())
    }
}

/// §3.3: `timestamp`, then `originalTimestamp`, then `receivedAt`; absent when none parses.
pub fn event_time(msg: &Message<'_>) -> Option<i64> {
    ["timestamp", "originalTimestamp", "receivedAt"]
        .into_iter()
        .find_map(|k| time::epoch_millis(msg.field(k)))
}

/// §3.6: the library's platform, else device type, OS name or library name, normalised.
fn platform<'a>(msg: &Message<'a>) -> Option<Cow<'a, str>> {
    let library = msg.ctx("library", "name");
    if let Some(name) = text(library) {
        let known = match name.to_ascii_lowercase().as_str() {
            "analytics.js" => Some("Web"),
            "analytics-android" => Some("Android"),
            "analytics-ios" => Some("iOS"),
            _ => None,
        };
        if let Some(p) = known {
            return Some(Cow::Borrowed(p));
        }
    }
    let chosen = [msg.ctx("device", "type"), msg.ctx("os", "name"), library]
        .into_iter()
        .find_map(text)?;
    Some(
        match () {
            _ if chosen.eq_ignore_ascii_case("web") => "Web",
            _ if chosen.eq_ignore_ascii_case("android") => "Android",
            _ if chosen.eq_ignore_ascii_case("ios") => "iOS",
            _ => return Some(chosen),
        }
        .into(),
    )
}

/// §3.7.2: `country`, `region` or `city` from the first source that has it.
fn location_part<'a>(msg: &Message<'a>, settings: &Settings, field: &str) -> Option<Cow<'a, str>> {
    let from = |obj: &'a Value<'a>| {
        text(json::get_loose(json::get_loose(obj, "address"), field))
            .or_else(|| text(json::get_loose(obj, field)))
    };
    if let Some(v) = text(msg.ctx("location", field)) {
        return Some(v);
    }
    let traits = match msg.call {
        Call::Identify => msg.traits(),
        _ => msg.context("traits"),
    };
    if let Some(v) = from(traits) {
        return Some(v);
    }
    let from_properties = matches!(msg.call, Call::Track | Call::Page | Call::Screen)
        && !(field == "country" && settings.use_custom_amplitude_properties);
    if from_properties {
        return from(msg.properties());
    }
    None
}

/// §3.9: analytics.js user agents name the browser in `os_name`/`os_version` and the OS in
/// `device_model`; what the parser does not find keeps its `context` value.
fn apply_user_agent(msg: &Message<'_>, library: &Value<'_>, f: &mut DeviceFields<'_>) {
    let is_analytics_js = library
        .as_str()
        .is_some_and(|l| l.eq_ignore_ascii_case("analytics.js"));
    let agent = msg.context("userAgent").as_str();
    let (true, Some(agent)) = (is_analytics_js, agent.filter(|a| !a.is_empty())) else {
        return;
    };
    let parsed = user_agent::parse(agent);
    if let Some(b) = parsed.browser {
        f.os_name = Some(b);
    }
    if let Some(v) = parsed.browser_major {
        f.os_version = Some(Cow::Owned(v));
    }
    if let Some(os) = parsed.os {
        f.device_model = Some(os);
    }
}

/// §3.11: `session_id` from the Amplitude options (or the session plugin's
/// `integrations["Actions Amplitude"]`): an integer, digits, or an ISO date-time in ms.
pub fn session_id(msg: &Message<'_>) -> Option<i64> {
    let mut value = msg.option("session_id");
    if !json::is_present(value) {
        let actions = msg.integration("Actions Amplitude");
        value = json::get_loose(actions, "session_id");
    }
    json::integer(value).or_else(|| match value {
        Value::Str(s) => time::parse_str(s),
        _ => None,
    })
}

/// §3.11.3: `event_id` from the Amplitude options, integers only.
pub fn event_id(msg: &Message<'_>) -> Option<i64> {
    json::integer(msg.option("event_id"))
}
