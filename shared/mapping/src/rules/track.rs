//! Spec §5 (track) and §6 (Order Completed and products).

use std::borrow::Cow;

use serde_json_borrow::Value;

use crate::json::{self, text};
use crate::message::Message;
use crate::plan::{Plan, Rejection};
use crate::props::{Prop, PropMap};
use crate::rules::event_properties::{
    add_query_params, remove_promoted_revenue_keys, remove_reserved,
};
use crate::rules::events::{self, EventBase};
use crate::rules::missing;
use crate::rules::revenue;
use crate::settings::Settings;
use crate::write;

/// The product keys kept by `trackProductsOnce` (§6.5.2); `productId` matches loosely.
const PRODUCT_ONCE_KEYS: [&str; 5] = ["sku", "name", "price", "quantity", "category"];

/// Decision (not in the spec): the most Product Purchased events one message becomes. Segment
/// caps an event at 32 KB, which holds at most about 10,000 products (`{}` each), so no event
/// Segment accepts is refused; a larger body sent straight to the function is, with a reason,
/// instead of costing the function its memory.
pub const MAX_PRODUCT_EVENTS: usize = 10_000;
/// Decision (not in the spec): the most bytes of Amplitude events one message becomes. Every
/// Product Purchased event repeats the user's properties (`context.traits`, §3.14), so an order
/// of many products with large traits multiplies them: 1,300 products with 16 KB of traits are
/// 21 MB of events, and are sent; an order that would send more than this is refused with a
/// reason, as Amplitude could not take it in the time Segment waits.
pub const MAX_MESSAGE_OUTPUT_BYTES: usize = 64 * 1024 * 1024;

pub fn plan<'a>(msg: &Message<'a>, settings: &Settings) -> Result<Plan<'a>, Rejection> {
    let event_type =
        text(msg.field("event")).ok_or_else(|| missing("track: `event`", msg.field("event")))?;
    let base = EventBase::new(msg, settings)?;
    let properties = msg.properties();
    let is_order = is_order_event(&event_type);
    let products: Vec<&'a Value<'a>> = match json::get(properties, "products") {
        Value::Array(items) if is_order => items.iter().filter(|p| p.is_object()).collect(),
        _ => Vec::new(),
    };

    let mut main_props = PropMap::from_object(properties);
    if !products.is_empty() {
        main_props.remove("products");
    }
    add_query_params(msg, settings, &mut main_props);
    remove_reserved(settings, &mut main_props);

    if !settings.track_products_once {
        check_fan_out(&base, properties, &products)?;
    }
    let mut events_out = Vec::with_capacity(1 + products.len());
    if products.is_empty() || settings.track_products_once {
        if settings.track_products_once && !products.is_empty() {
            main_props.insert("products", reduced_products(&products));
        }
        let revenue = revenue::for_event(properties, is_order);
        if revenue.is_some() {
            remove_promoted_revenue_keys(&mut main_props);
        }
        events_out.push(base.into_event(1, event_type, main_props, revenue));
    } else {
        let revenue = (!settings.track_revenue_per_product)
            .then(|| revenue::for_event(properties, true))
            .flatten();
        if revenue.is_some() {
            remove_promoted_revenue_keys(&mut main_props);
        }
        events_out.push(base.event(1, event_type, main_props, revenue));
        for (i, product) in products.into_iter().enumerate() {
            let mut props = PropMap::from_object(product);
            remove_reserved(settings, &mut props);
            let revenue = settings
                .track_revenue_per_product
                .then(|| revenue::for_product(product, properties))
                .flatten();
            if revenue.is_some() {
                remove_promoted_revenue_keys(&mut props);
            }
            events_out.push(base.event(i + 2, Cow::Borrowed("Product Purchased"), props, revenue));
        }
    }
    Ok(Plan::sending(vec![events::request(settings, events_out)]))
}

/// Refuses an order whose product events would exceed [`MAX_PRODUCT_EVENTS`] or, by a close
/// upper estimate (each event: what the events share, its own properties, and room for its
/// other fields), [`MAX_MESSAGE_OUTPUT_BYTES`]. Nothing is built before the check.
fn check_fan_out<'a>(
    base: &EventBase<'a>,
    properties: &'a Value<'a>,
    products: &[&'a Value<'a>],
) -> Result<(), Rejection> {
    const OWN_FIELDS: usize = 512;
    if products.is_empty() {
        return Ok(());
    }
    let n = products.len();
    if n > MAX_PRODUCT_EVENTS {
        return Err(Rejection::Invalid(format!(
            "`properties.products`: {n} products would become as many Product Purchased events, over this destination's limit of {MAX_PRODUCT_EVENTS} for one message; send them in several orders, or turn on trackProductsOnce"
        )));
    }
    let shared = base.shared_len() + OWN_FIELDS;
    let own: usize = products.iter().map(|p| write::value_len(p)).sum();
    let estimate = (n + 1) * shared + own + write::value_len(properties);
    if estimate > MAX_MESSAGE_OUTPUT_BYTES {
        return Err(Rejection::Invalid(format!(
            "`properties.products`: {n} products would become as many Product Purchased events carrying about {} MB, each repeating the user's {} KB of properties (`context.traits`), over this destination's limit of {} MB for one message; send fewer products or traits, or turn on trackProductsOnce",
            estimate >> 20,
            shared >> 10,
            MAX_MESSAGE_OUTPUT_BYTES >> 20
        )));
    }
    Ok(())
}

/// §6.1: "Order Completed" or the v1 name "Completed Order", ignoring case, surrounding space
/// and runs of spaces or underscores.
pub fn is_order_event(name: &str) -> bool {
    let mut normal = String::with_capacity(name.len());
    for word in name.split([' ', '_']).filter(|w| !w.is_empty()) {
        if !normal.is_empty() {
            normal.push(' ');
        }
        normal.push_str(&word.to_ascii_lowercase());
    }
    normal == "order completed" || normal == "completed order"
}

/// §6.5.2: each product reduced to `productId`, `sku`, `name`, `price`, `quantity`, `category`.
fn reduced_products<'a>(products: &[&'a Value<'a>]) -> Prop<'a> {
    let reduced: Vec<Value<'a>> = products
        .iter()
        .map(|p| {
            let obj = p.as_object().expect("products are filtered to objects");
            let kept: Vec<(&'a str, Value<'a>)> = obj
                .iter()
                .filter(|(k, _)| json::loose_eq(k, "productId") || PRODUCT_ONCE_KEYS.contains(k))
                .map(|(k, v)| (k, v.clone()))
                .collect();
            Value::Object(kept.into())
        })
        .collect();
    Prop::Owned(Value::Array(reduced))
}
