//! Spec §7: page and screen calls, gated and named by the page settings.

use std::borrow::Cow;

use serde_json_borrow::Value;

use crate::json::text;
use crate::message::{Call, Message};
use crate::plan::{Plan, Rejection};
use crate::props::{Prop, PropMap};
use crate::rules::event_properties::{add_query_params, remove_reserved};
use crate::rules::events::{self, EventBase};
use crate::settings::Settings;

pub fn plan<'a>(msg: &Message<'a>, settings: &Settings) -> Result<Plan<'a>, Rejection> {
    let name = text(msg.field("name"));
    let category = text(msg.field("category"));
    let mut names = names_of(msg, settings, category.as_deref(), name.as_deref());
    if names.is_empty() {
        return Ok(Plan::skipped(not_sent_because(msg.call, settings)));
    }
    let template = match msg.call {
        Call::Screen => settings.screen_event_name_template.as_deref(),
        _ => settings.page_event_name_template.as_deref(),
    };
    if let Some(named) = template.and_then(|t| templated_name(t, msg)) {
        // §17.3: one event, named by the template.
        names = vec![named];
    }
    let base = EventBase::new(msg, settings)?;

    let mut props = PropMap::from_object(msg.properties());
    if let Some(c) = category {
        props.insert("category", Prop::Owned(Value::Str(c)));
    }
    if let Some(n) = name {
        props.insert("name", Prop::Owned(Value::Str(n)));
    }
    add_query_params(msg, settings, &mut props);
    remove_reserved(settings, &mut props);

    // `names` is not empty (above): the last event takes the shared fields and properties.
    let last = names.pop().map(Cow::Owned).unwrap_or_default();
    let mut events_out: Vec<_> = names
        .into_iter()
        .enumerate()
        .map(|(i, event_type)| base.event(i + 1, Cow::Owned(event_type), props.clone(), None))
        .collect();
    events_out.push(base.into_event(events_out.len() + 1, last, props, None));
    Ok(Plan::sending(vec![events::request(settings, events_out)]))
}

/// §7.2: whether the page settings let this page (screen) through.
pub fn is_sent(msg: &Message<'_>, settings: &Settings) -> bool {
    let name = text(msg.field("name"));
    let category = text(msg.field("category"));
    !names_of(msg, settings, category.as_deref(), name.as_deref()).is_empty()
}

/// Why no page setting sends a page (screen) that [`event_names`] gives no name: each setting is
/// off, or on and the call lacks what it needs.
fn not_sent_because(call: Call, settings: &Settings) -> String {
    let kind = if call == Call::Screen {
        "screen"
    } else {
        "page"
    };
    let why = [
        "`trackAllPages` is off",
        if settings.track_categorized_pages {
            "it has no `category` (`trackCategorizedPages`)"
        } else {
            "`trackCategorizedPages` is off"
        },
        if settings.track_named_pages {
            "it has no `name` (`trackNamedPages`)"
        } else {
            "`trackNamedPages` is off"
        },
    ];
    format!("{kind}: no page setting sends it: {}", why.join(", "))
}

/// [`event_names`] for a page or a screen call.
fn names_of(
    msg: &Message<'_>,
    settings: &Settings,
    category: Option<&str>,
    name: Option<&str>,
) -> Vec<String> {
    let kind = if msg.call == Call::Screen {
        "Screen"
    } else {
        "Page"
    };
    event_names(settings, kind, category, name)
}

/// §7.3: one event per applicable setting, in the order all, categorized, named.
pub fn event_names(
    settings: &Settings,
    kind: &str,
    category: Option<&str>,
    name: Option<&str>,
) -> Vec<String> {
    let mut names = Vec::new();
    if settings.track_all_pages {
        names.push(format!("Loaded a {kind}"));
    }
    if settings.track_categorized_pages
        && let Some(c) = category
    {
        names.push(format!("Viewed {c} {kind}"));
    }
    if settings.track_named_pages
        && let Some(n) = name
    {
        names.push(match category {
            Some(c) => format!("Viewed {c} {n} {kind}"),
            None => format!("Viewed {n} {kind}"),
        });
    }
    names
}

/// §17.3: the template with `{{name}}`, `{{category}}` and `{{properties.<key>}}` replaced by
/// the value as text (nothing when absent), runs of whitespace made one space, the ends
/// trimmed; `None` when nothing is left. Any other `{{…}}` is kept as written, so a typo shows
/// in Amplitude instead of vanishing.
pub fn templated_name(template: &str, msg: &Message<'_>) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let Some(end) = after.find("}}") else {
            out.push_str(after);
            rest = "";
            break;
        };
        let (tag, tail) = after.split_at(end + 2);
        let placeholder = tag.trim_start_matches("{{").trim_end_matches("}}").trim();
        let value = match placeholder {
            "name" => Some(msg.field("name")),
            "category" => Some(msg.field("category")),
            p => p
                .strip_prefix("properties.")
                .map(|key| crate::json::get(msg.properties(), key)),
        };
        match value {
            Some(v) => out.push_str(text(v).as_deref().unwrap_or("")),
            None => out.push_str(tag),
        }
        rest = tail;
    }
    out.push_str(rest);
    let name = out.split_whitespace().collect::<Vec<_>>().join(" ");
    (!name.is_empty()).then_some(name)
}
