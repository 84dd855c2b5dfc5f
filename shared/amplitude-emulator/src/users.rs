//! User and group properties as Amplitude holds them (amplitude-api §2.2, §4, §5): every
//! identification and every stored event's `user_properties` applied in arrival order, events
//! only after their `insert_id` was found new; likewise every `/groupidentify` identification and
//! every stored `$groupidentify` event's `group_properties`. This is what makes a double-applied
//! `$add` visible to a test: an increment resent through `/identify` or `/groupidentify` (no
//! dedup) counts twice, one resent as a deduplicated `$identify` or `$groupidentify` event
//! counts once.

use std::collections::BTreeMap;

use amplitude_wire::GROUP_IDENTIFY_EVENT;
use serde_json::{Map, Value};

/// Properties per user: the key is the `user_id`, or `device:<device_id>` without one.
pub type Users = BTreeMap<String, Map<String, Value>>;

/// Properties per group: group type → group value → properties.
pub type Groups = BTreeMap<String, BTreeMap<String, Map<String, Value>>>;

/// Whose properties an event or identification changes.
pub fn key(item: &Value) -> Option<String> {
    let text = |f: &str| {
        item.get(f)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    text("user_id")
        .map(str::to_owned)
        .or_else(|| text("device_id").map(|d| format!("device:{d}")))
}

/// Applies one `user_properties` object. Without operation keys every entry is a `$set`;
/// with them, each operation is applied and plain keys are set (Amplitude forbids mixing the
/// two, so this case does not arise from the destination).
pub fn apply(users: &mut Users, item: &Value) {
    let (Some(who), Some(Value::Object(props))) = (key(item), item.get("user_properties")) else {
        return;
    };
    apply_properties(users.entry(who).or_default(), props);
}

/// Applies a `/groupidentify` identification's `group_properties` to its group.
pub fn apply_group_identification(groups: &mut Groups, item: &Value) {
    let (Some(Value::String(t)), Some(Value::String(v)), Some(Value::Object(props))) = (
        item.get("group_type"),
        item.get("group_value"),
        item.get("group_properties"),
    ) else {
        return;
    };
    apply_to_group(groups, t, v, props);
}

/// Applies a stored `$groupidentify` event's `group_properties` to every group it names in
/// `groups` (a value, or a list of values, per type). Other events change no group.
pub fn apply_group_event(groups: &mut Groups, event: &Value) {
    let (Some(GROUP_IDENTIFY_EVENT), Some(Value::Object(named)), Some(Value::Object(props))) = (
        event.get("event_type").and_then(Value::as_str),
        event.get("groups"),
        event.get("group_properties"),
    ) else {
        return;
    };
    for (group_type, values) in named {
        for value in self::values(values) {
            if let Value::String(value) = value {
                apply_to_group(groups, group_type, &value, props);
            }
        }
    }
}

/// Applies `group_properties` to the group `group_type` / `value`.
fn apply_to_group(groups: &mut Groups, group_type: &str, value: &str, props: &Map<String, Value>) {
    let group = groups.entry(group_type.to_owned()).or_default();
    apply_properties(group.entry(value.to_owned()).or_default(), props);
}

/// Applies one properties object (`user_properties` or `group_properties`) to what is held.
fn apply_properties(held: &mut Map<String, Value>, props: &Map<String, Value>) {
    for (key, value) in props {
        match (key.as_str(), value) {
            ("$set", Value::Object(o)) => held.extend(o.clone()),
            ("$setOnce", Value::Object(o)) => {
                for (k, v) in o {
                    held.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            ("$add", Value::Object(o)) => {
                for (k, v) in o {
                    let sum = add(held.get(k), v);
                    held.insert(k.clone(), sum);
                }
            }
            ("$append" | "$postInsert", Value::Object(o)) => {
                for (k, v) in o {
                    let list = list_of(held, k);
                    push(list, v, key == "$postInsert", false);
                }
            }
            ("$prepend" | "$preInsert", Value::Object(o)) => {
                for (k, v) in o {
                    let list = list_of(held, k);
                    push(list, v, key == "$preInsert", true);
                }
            }
            ("$remove", Value::Object(o)) => {
                for (k, v) in o {
                    let gone: Vec<Value> = values(v);
                    list_of(held, k).retain(|x| !gone.contains(x));
                }
            }
            ("$unset", Value::Object(o)) => {
                for k in o.keys() {
                    held.remove(k);
                }
            }
            ("$clearAll", _) => held.clear(),
            (_, _) => {
                held.insert(key.clone(), value.clone());
            }
        }
    }
}

/// `$add`: a number added to the current number (absent or not a number counts as 0).
fn add(current: Option<&Value>, by: &Value) -> Value {
    let now = current.and_then(Value::as_f64).unwrap_or(0.0);
    let both_integers = current.is_none_or(|c| c.is_i64()) && by.is_i64();
    match (both_integers, current.and_then(Value::as_i64), by.as_i64()) {
        (true, c, Some(b)) => Value::from(c.unwrap_or(0).saturating_add(b)),
        _ => Value::from(now + by.as_f64().unwrap_or(0.0)),
    }
}

/// The property as a list (absent → empty; a single value → a list of it).
fn list_of<'m>(user: &'m mut Map<String, Value>, key: &str) -> &'m mut Vec<Value> {
    let slot = user
        .entry(key.to_owned())
        .or_insert(Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(vec![slot.take()]);
    }
    match slot {
        Value::Array(list) => list,
        _ => unreachable!("made an array above"),
    }
}

fn values(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

fn push(list: &mut Vec<Value>, v: &Value, only_new: bool, front: bool) {
    for x in values(v) {
        if only_new && list.contains(&x) {
            continue;
        }
        if front {
            list.insert(0, x);
        } else {
            list.push(x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_apply_as_amplitude_documents_them() {
        let mut users = Users::new();
        let ops = json!({"user_id": "u1", "user_properties": {
            "$set": {"plan": "pro"}, "$setOnce": {"first": "a"}, "$add": {"logins": 2},
            "$append": {"tags": "x"}, "$prepend": {"tags": "w"}}});
        apply(&mut users, &ops);
        apply(&mut users, &ops);
        apply(
            &mut users,
            &json!({"user_id": "u1", "user_properties": {"$setOnce": {"first": "b"},
                "$unset": {"plan": "-"}, "$add": {"score": 1.5}}}),
        );
        assert_eq!(
            Value::Object(users["u1"].clone()),
            json!({"first": "a", "logins": 4, "tags": ["w", "w", "x", "x"], "score": 1.5})
        );
        apply(
            &mut users,
            &json!({"device_id": "d1", "user_properties": {"plain": 1}}),
        );
        assert_eq!(users["device:d1"]["plain"], 1);
    }

    /// Group properties: a `/groupidentify` identification and a `$groupidentify` event apply
    /// the same operations; other events and malformed items change nothing.
    #[test]
    fn group_properties_apply_from_identifications_and_groupidentify_events() {
        let mut groups = Groups::new();
        let props = json!({"$set": {"plan": "pro"}, "$add": {"seats": 2}});
        apply_group_identification(
            &mut groups,
            &json!({"group_type": "org", "group_value": "acme", "group_properties": props}),
        );
        apply_group_event(
            &mut groups,
            &json!({"event_type": "$groupidentify", "user_id": "u1",
                "groups": {"org": ["acme", "initech"]}, "group_properties": props}),
        );
        apply_group_event(
            &mut groups,
            &json!({"event_type": "Signed Up", "groups": {"org": "acme"}, "group_properties": props}),
        );
        apply_group_identification(
            &mut groups,
            &json!({"group_type": "org", "group_value": ["x"]}),
        );
        assert_eq!(
            serde_json::to_value(&groups).unwrap(),
            json!({"org": {"acme": {"plan": "pro", "seats": 4}, "initech": {"plan": "pro", "seats": 2}}})
        );
    }
}
