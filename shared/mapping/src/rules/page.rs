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
    let kind = if msg.call == Call::Screen {
        "Screen"
    } else {
        "Page"
    };
    let name = text(msg.field("name"));
    let category = text(msg.field("category"));
    let names = event_names(settings, kind, category.as_deref(), name.as_deref());
    if names.is_empty() {
        return Ok(Plan::default());
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

    let events_out = names
        .into_iter()
        .enumerate()
        .map(|(i, event_type)| base.event(i + 1, Cow::Owned(event_type), props.clone(), None))
        .collect();
    Ok(Plan {
        requests: vec![events::request(settings, events_out)],
    })
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
