//! Spec §3.14 (base and normal form), §3.15 (groups), §8.2 (trait operations), §8.3 (Engage),
//! §11.1 (UTM) and the user-property half of §4.4 (query params).

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json_borrow::Value;

use crate::json;
use crate::message::Message;
use crate::props::{Prop, PropMap};
use crate::settings::{QueryParamTarget, Settings};

/// Amplitude's user-property operations. A trait with one of these keys and an object value is
/// an operation the caller wrote (Decision, §3.14.3).
const OPERATIONS: [&str; 9] = [
    "$set",
    "$setOnce",
    "$add",
    "$append",
    "$prepend",
    "$unset",
    "$preInsert",
    "$postInsert",
    "$remove",
];

/// Keys Amplitude reads as operations in `user_properties` (and `group_properties`): the
/// operations above, and `$clearAll` (Amplitude's SDKs send it; the `clearAll` option of §17.1.3
/// is the way to ask for it).
fn read_as_operation(key: &str) -> bool {
    key.starts_with('$') && (OPERATIONS.contains(&key) || key == "$clearAll")
}

/// The value sent with each `$unset` key; Amplitude ignores it.
const UNSET_VALUE: Value<'static> = Value::Str(Cow::Borrowed("-"));

/// `context.campaign` key → (`$set` key, `$setOnce` key) (§11.1).
const UTM: [(&str, &str, &str); 5] = [
    ("source", "utm_source", "initial_utm_source"),
    ("medium", "utm_medium", "initial_utm_medium"),
    ("name", "utm_campaign", "initial_utm_campaign"),
    ("term", "utm_term", "initial_utm_term"),
    ("content", "utm_content", "initial_utm_content"),
];

/// The `groups` option (§3.15.1): used only when it is a non-empty object.
pub fn groups<'a>(msg: &Message<'a>) -> Option<&'a Value<'a>> {
    let g = msg.option("groups");
    g.as_object().filter(|o| !o.is_empty()).map(|_| g)
}

/// `user_properties` of a track, page or screen event: `context.traits` (§3.14), query params
/// targeted at user properties (§4.4.4), UTM values (§11.1), and the opt-in rules of §17:
/// removals (§17.1), trait operations (§17.2, identify-only unless `traitOperationsOnEvents`)
/// and the referrer (§17.4.1).
pub fn for_event<'a>(msg: &Message<'a>, settings: &Settings) -> PropMap<'a> {
    let mut props = base(msg.context("traits"), msg);
    for (name, target) in &settings.map_query_params {
        if *target == QueryParamTarget::UserProperties
            && let Some(search) = page_search(msg)
        {
            props.insert(name.clone(), Prop::Ref(search));
        }
    }
    let mut assembled = Assembled::plain(props).with_unsets(msg, settings);
    if settings.trait_operations_on_events {
        assembled.apply_trait_lists(settings);
    }
    assembled
        .with_utm(msg, settings)
        .with_referrer(msg, settings)
        .finish()
}

/// `user_properties` of an identify (§8.2): traits, query params, legacy groups, trait
/// operations, UTM, in normal form.
pub fn for_identify<'a>(msg: &Message<'a>, settings: &Settings) -> PropMap<'a> {
    identify_properties(msg, settings, base(msg.traits(), msg))
}

/// The identify rules over given base traits (an Engage track form syncs one property).
pub fn identify_properties<'a>(
    msg: &Message<'a>,
    settings: &Settings,
    mut props: PropMap<'a>,
) -> PropMap<'a> {
    engage_booleans(msg, &mut props);
    if let Some(search) = page_search(msg) {
        for (name, _) in &settings.map_query_params {
            props.insert(name.clone(), Prop::Ref(search));
        }
    }
    if let Some(Value::Object(groups)) = groups(msg) {
        for (k, v) in groups.iter() {
            props.insert(k, Prop::Ref(v));
        }
    }
    let mut assembled = Assembled::plain(props).with_unsets(msg, settings);
    assembled.apply_trait_lists(settings);
    assembled
        .with_utm(msg, settings)
        .with_referrer(msg, settings)
        .finish()
}

/// §3.14.3 normal form of properties as the caller wrote them: plain keys as they are when
/// there is no operation, otherwise every plain key under `$set` beside the caller's
/// operations (group properties sent as a `$groupidentify` event, §9.4).
pub fn normal_form(props: PropMap<'_>) -> PropMap<'_> {
    Assembled::plain(props).finish()
}

/// §3.14.1: a copy of the traits without `address`, plus `id` = `userId` — unless the user id
/// is a placeholder Amplitude refuses as an id (`undefined`, `null`, …: amplitude-api §2.3),
/// which names no user: as a property it would label every device that sent it (decision).
pub fn base<'a>(traits: &'a Value<'a>, msg: &Message<'a>) -> PropMap<'a> {
    let mut props = PropMap::from_object(traits);
    props.remove_loose("address");
    if let Some(user_id) = msg
        .user_id
        .as_ref()
        .filter(|id| !amplitude_wire::is_refused_id(id))
    {
        props.insert("id", Prop::Owned(Value::Str(user_id.clone())));
    }
    props
}

/// §8.3: Engage keys an audience by `context.personas.computation_key`; Journeys send the
/// membership as the strings "true"/"false", which Amplitude should see as booleans.
fn engage_booleans<'a>(msg: &Message<'a>, props: &mut PropMap<'a>) {
    let Some(key) = msg.ctx("personas", "computation_key").as_str() else {
        return;
    };
    if let Some(slot) = props.get_mut(key) {
        let flag = match slot.value().and_then(Value::as_str) {
            Some("true") => true,
            Some("false") => false,
            _ => return,
        };
        *slot = Prop::Owned(Value::Bool(flag));
    }
}

/// `context.page.search` when it is there (an empty string counts, §4.4.2).
pub fn page_search<'a>(msg: &Message<'a>) -> Option<&'a Value<'a>> {
    let search = msg.ctx("page", "search");
    (!search.is_null()).then_some(search)
}

/// User properties being assembled: plain keys, operations the caller wrote, operations the
/// trait-list settings produce, and derived UTM values.
struct Assembled<'a> {
    plain: PropMap<'a>,
    /// One map per operation other than `$set`, in the order of [`OPERATIONS`].
    ops: Vec<(&'static str, PropMap<'a>)>,
    caller_set: PropMap<'a>,
    derived_set: PropMap<'a>,
}

impl<'a> Assembled<'a> {
    /// Splits caller-written operations (`{"$set": {...}}` traits) from plain keys.
    fn plain(props: PropMap<'a>) -> Self {
        let mut a = Assembled {
            plain: PropMap::new(),
            ops: OPERATIONS
                .iter()
                .filter(|op| **op != "$set")
                .map(|op| (*op, PropMap::new()))
                .collect(),
            caller_set: PropMap::new(),
            derived_set: PropMap::new(),
        };
        // Only the operations are taken out; the plain keys (most traits have nothing else)
        // keep their map, which is not copied.
        let mut props = props;
        let operations = props.take_out(|key, prop| {
            OPERATIONS.contains(&key) && matches!(prop, Prop::Ref(v) if v.is_object())
        });
        a.plain = props;
        for (key, prop) in operations {
            if let (Some(target), Prop::Ref(v)) = (a.operation(&key), prop) {
                for (k, inner) in PropMap::from_object(v).into_entries() {
                    target.insert_missing(k, inner);
                }
            }
        }
        a
    }

    /// The map collecting one operation (`$set` written by the caller included).
    fn operation(&mut self, op: &str) -> Option<&mut PropMap<'a>> {
        if op == "$set" {
            return Some(&mut self.caller_set);
        }
        self.ops
            .iter_mut()
            .find(|(name, _)| *name == op)
            .map(|(_, map)| map)
    }

    /// §8.2.2: the first matching list decides each trait's operation. Only the traits that
    /// move are taken out of the plain ones; the others keep their places.
    fn apply_trait_lists(&mut self, settings: &Settings) {
        let lists: TraitLists<'_> = [
            (&settings.traits_to_increment, "$add"),
            (&settings.traits_to_set_once, "$setOnce"),
            (&settings.traits_to_append, "$append"),
            (&settings.traits_to_prepend, "$prepend"),
        ];
        if lists.iter().all(|(l, _)| l.is_empty()) {
            return;
        }
        // Each trait's operation is decided once, as it is taken out (in order).
        let mut chosen = Vec::new();
        let moving = self
            .plain
            .take_out(|key, prop| match listed_operation(&lists, key, prop) {
                Some(operation) => {
                    chosen.push(operation);
                    true
                }
                None => false,
            });
        for ((key, _), (op, value)) in moving.into_iter().zip(chosen) {
            if let Some(target) = self.operation(op) {
                target.insert_missing(key, value);
            }
        }
    }

    /// §11.1: `context.campaign` → `$set` `utm_*` and `$setOnce` `initial_utm_*`.
    fn with_utm(mut self, msg: &Message<'a>, settings: &Settings) -> Self {
        if !settings.track_utm_properties {
            return self;
        }
        let campaign = msg.context("campaign");
        for (source, set_key, set_once_key) in UTM {
            let value = json::get(campaign, source);
            if json::is_present(value) {
                self.derived_set.insert_missing(set_key, Prop::Ref(value));
                if let Some(set_once) = self.operation("$setOnce") {
                    set_once.insert_missing(set_once_key, Prop::Ref(value));
                }
            }
        }
        self
    }

    /// §17.1.1–2: a trait whose value is `null` becomes `$unset` (`unsetNullTraits`), and
    /// each name in the `fieldsToUnset` option is added to `$unset`. Amplitude's value for an
    /// unset is ignored; `"-"` is what its SDKs send.
    fn with_unsets(mut self, msg: &Message<'a>, settings: &Settings) -> Self {
        let mut unset = PropMap::new();
        if settings.unset_null_traits {
            let nulls = self
                .plain
                .take_out(|_, prop| prop.value() == Some(&Value::Null));
            for (key, _) in nulls {
                unset.insert_missing(key, Prop::Owned(UNSET_VALUE));
            }
        }
        if let Value::Array(names) = msg.any_option("fieldsToUnset") {
            for name in names.iter().filter_map(Value::as_str) {
                if !name.is_empty() {
                    unset.insert_missing(name, Prop::Owned(UNSET_VALUE));
                }
            }
        }
        if let Some(target) = self.operation("$unset") {
            for (key, value) in unset.into_entries() {
                target.insert_missing(key, value);
            }
        }
        self
    }

    /// §17.4.1 (`sendReferrer`): `context.page.referrer` as `$set` `referrer` and `$setOnce`
    /// `initial_referrer`, and, when it is a URL with a host, that host (lower-case, no port)
    /// as `referring_domain` and `initial_referring_domain`.
    fn with_referrer(mut self, msg: &Message<'a>, settings: &Settings) -> Self {
        if !settings.send_referrer {
            return self;
        }
        let Some(referrer) = msg
            .ctx("page", "referrer")
            .as_str()
            .filter(|r| !r.is_empty())
        else {
            return self;
        };
        let domain = url::Url::parse(referrer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_lowercase))
            .filter(|h| !h.is_empty());
        let mut pairs = vec![(
            "referrer",
            "initial_referrer",
            Value::Str(Cow::Borrowed(referrer)),
        )];
        if let Some(domain) = domain {
            pairs.push((
                "referring_domain",
                "initial_referring_domain",
                Value::Str(Cow::Owned(domain)),
            ));
        }
        for (set_key, set_once_key, value) in pairs {
            self.derived_set
                .insert_missing(set_key, Prop::Owned(value.clone()));
            if let Some(set_once) = self.operation("$setOnce") {
                set_once.insert_missing(set_once_key, Prop::Owned(value));
            }
        }
        self
    }

    /// §3.14.3 normal form: flat without operations; otherwise every plain key under `$set`
    /// (caller `$set` first, then plain traits, then derived values), a key used by another
    /// operation removed from `$set`, a key in `$unset` removed from every other operation
    /// (§17.1.1), and empty operations dropped.
    fn finish(mut self) -> PropMap<'a> {
        let has_ops = !self.caller_set.is_empty()
            || !self.derived_set.is_empty()
            || self.ops.iter().any(|(_, m)| !m.is_empty());
        // Flat only when Amplitude would read every key as a property: a plain trait named like
        // an operation (`"$unset": "x"`, `"$clearAll": true`: not an object of keys, so not an
        // operation by §3.14.3) goes under `$set`, or Amplitude would apply it (a resent
        // `/identify` clearing the user's properties again).
        if !has_ops && !self.plain.iter().any(|(key, _)| read_as_operation(key)) {
            return self.plain;
        }
        let unset: HashSet<String> = self
            .ops
            .iter()
            .find(|(op, _)| *op == "$unset")
            .map(|(_, m)| m.iter().map(|(k, _)| k.to_owned()).collect())
            .unwrap_or_default();
        if !unset.is_empty() {
            for (op, map) in &mut self.ops {
                if *op != "$unset" {
                    map.retain(|k, _| !unset.contains(k));
                }
            }
        }
        // The caller's `$set` first, then the plain keys it does not name. `plain` (unique
        // keys, as every object of a parsed message has) is not copied key by key: a wide one
        // would be held twice.
        let mut set = self.plain;
        set.put_first(self.caller_set);
        for (k, v) in self.derived_set.into_entries() {
            set.insert_missing(k, v);
        }
        set.retain(|k, _| !self.ops.iter().any(|(_, m)| m.contains_key(k)));
        let mut out = PropMap::new();
        if !set.is_empty() {
            out.insert(Cow::Borrowed("$set"), Prop::Map(set));
        }
        for (op, map) in self.ops {
            if !map.is_empty() {
                out.insert(Cow::Borrowed(op), Prop::Map(map));
            }
        }
        out
    }
}

/// The trait lists of the settings (§8.2.2), each with the operation it gives.
type TraitLists<'s> = [(&'s [String], &'static str); 4];

/// The operation the first list naming `key` gives the trait, with its value; `None` keeps it
/// plain. Only a number (or numeric text, sent as a number) can be incremented: a trait
/// listed to increment that is not one tries the next list.
fn listed_operation<'a>(
    lists: &TraitLists<'_>,
    key: &str,
    prop: &Prop<'a>,
) -> Option<(&'static str, Prop<'a>)> {
    for (list, op) in lists {
        if !list.iter().any(|n| n == key) {
            continue;
        }
        if *op != "$add" {
            return Some((op, prop.clone()));
        }
        if let Some(n) = prop.value().and_then(json::amount) {
            let value = match prop.value() {
                Some(Value::Number(_)) => prop.clone(),
                _ => Prop::Owned(json::number(n)),
            };
            return Some((op, value));
        }
    }
    None
}
