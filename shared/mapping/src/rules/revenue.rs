//! Spec §5.2–§5.3 and §6.3.5: revenue, price, quantity, productId, revenueType.

use std::borrow::Cow;

use serde_json_borrow::Value;

use crate::amplitude::Revenue;
use crate::json::{self, text};

/// The revenue type Amplitude gets for order and Product Purchased events without one.
const PURCHASE: &str = "Purchase";

/// An amount as sent: the original JSON number when it was one, else the parsed value.
fn amount_value<'a>(source: &Value<'a>, parsed: f64) -> Value<'a> {
    match source {
        Value::Number(_) => source.clone(),
        _ => json::number(parsed),
    }
}

fn non_zero(value: &Value<'_>) -> Option<f64> {
    json::amount(value).filter(|f| *f != 0.0)
}

/// §5.3.2: a positive quantity, rounded half away from zero; otherwise 1.
/// Decision: a positive quantity that rounds to 0 (e.g. 0.4) also becomes 1, since Amplitude
/// would otherwise record no revenue for a real purchase.
fn quantity(value: &Value<'_>) -> i64 {
    json::amount(value)
        .filter(|q| *q > 0.0)
        .map(|q| q.round())
        .filter(|q| *q >= 1.0 && *q < 9.0e15)
        .map_or(1, |q| q as i64)
}

/// The revenue fields of a track event (§5.2–§5.3), from its `properties`. `is_order` adds the
/// order extras: the `total` fallback and the "Purchase" default type.
pub fn for_event<'a>(properties: &'a Value<'a>, is_order: bool) -> Option<Revenue<'a>> {
    let mut source = json::get_loose(properties, "revenue");
    let mut revenue = non_zero(source);
    if revenue.is_none() && is_order {
        source = json::get_loose(properties, "total");
        revenue = non_zero(source);
    }
    let revenue = revenue?;
    let price_source = json::get_loose(properties, "price");
    let (price, quantity) = match non_zero(price_source) {
        Some(p) => (
            amount_value(price_source, p),
            quantity(json::get_loose(properties, "quantity")),
        ),
        None => (amount_value(source, revenue), 1),
    };
    Some(Revenue {
        revenue: amount_value(source, revenue),
        price,
        quantity,
        product_id: text(json::get_loose(properties, "productId")),
        revenue_type: text(json::get_loose(properties, "revenueType"))
            .or_else(|| is_order.then_some(Cow::Borrowed(PURCHASE))),
    })
}

/// §6.3.5: the revenue fields of one Product Purchased event under `trackRevenuePerProduct`.
pub fn for_product<'a>(product: &'a Value<'a>, order: &'a Value<'a>) -> Option<Revenue<'a>> {
    let price_source = json::get_loose(product, "price");
    let revenue_source = json::get_loose(product, "revenue");
    let price = non_zero(price_source);
    let revenue = non_zero(revenue_source);
    let (revenue, price, quantity) = match (price, revenue) {
        (None, None) => return None,
        (Some(p), r) => {
            let q = quantity(json::get_loose(product, "quantity"));
            let total = match r {
                Some(r) => amount_value(revenue_source, r),
                None => json::number(p * q as f64),
            };
            (total, amount_value(price_source, p), q)
        }
        (None, Some(r)) => {
            let r = amount_value(revenue_source, r);
            (r.clone(), r, 1)
        }
    };
    Some(Revenue {
        revenue,
        price,
        quantity,
        product_id: text(json::get_loose(product, "productId")),
        revenue_type: text(json::get_loose(product, "revenueType"))
            .or_else(|| text(json::get_loose(order, "revenueType")))
            .or(Some(Cow::Borrowed(PURCHASE))),
    })
}
