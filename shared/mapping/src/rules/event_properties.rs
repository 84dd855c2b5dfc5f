//! Spec §4: `event_properties` clean-up and query params.

use crate::message::Message;
use crate::props::{Prop, PropMap};
use crate::rules::user_properties::page_search;
use crate::settings::{QueryParamTarget, Settings};

/// §4.4.4: query params targeted at event properties, unless the event already has the key.
pub fn add_query_params<'a>(msg: &Message<'a>, settings: &Settings, props: &mut PropMap<'a>) {
    let Some(search) = page_search(msg) else {
        return;
    };
    for (name, target) in &settings.map_query_params {
        if *target == QueryParamTarget::EventProperties {
            props.insert_missing(name.clone(), Prop::Ref(search));
        }
    }
}

/// §4.2: keys Amplitude must not see as event properties.
pub fn remove_reserved(settings: &Settings, props: &mut PropMap<'_>) {
    if settings.use_custom_amplitude_properties {
        props.remove_loose_all(&["event_id", "amplitude_event_type"]);
    } else {
        props.remove_loose_all(&["event_id", "amplitude_event_type", "country", "language"]);
    }
}

/// §4.3: when an event carries revenue fields, the promoted keys leave its properties
/// (`revenue` itself stays).
pub fn remove_promoted_revenue_keys(props: &mut PropMap<'_>) {
    props.remove_loose_all(&["price", "quantity", "productId", "revenueType"]);
}
