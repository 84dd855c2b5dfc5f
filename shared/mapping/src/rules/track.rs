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
use crate::rules::revenue;
use crate::settings::Settings;

/// The product keys kept by `trackProductsOnce` (§6.5.2); `productId` matches loosely.
const PRODUCT_ONCE_KEYS: [&str; 5] = ["sku", "name", "price", "quantity", "category"];

pub fn plan<'a>(msg: &Message<'a>, settings: &Settings) -> Result<Plan<'a>, Rejection> {
    let event_type = text(msg.field("event"))
        .ok_or_else(|| Rejection::Invalid("track: `event` is required".into()))?;
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

    let mut events_out = Vec::with_capacity(1 + products.len());
    if products.is_empty() || settings.track_products_once {
        if settings.track_products_once && !products.is_empty() {
            main_props.insert("products", reduced_products(&products));
        }
        let revenue = revenue::for_event(properties, is_order);
        if revenue.is_some() {
            remove_promoted_revenue_keys(&mut main_props);
        }
        events_out.push(base.event(1, event_type, main_props, revenue));
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
    Ok(Plan {
        requests: vec![events::request(settings, events_out)],
    })
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
