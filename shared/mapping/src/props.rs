//! Property maps for `event_properties`, `user_properties`, `groups` and group properties.
//!
//! Values copied from the Segment message are borrowed, not cloned: a [`PropMap`] is an ordered
//! list of keys and [`Prop`]s that point into the parsed input, plus the few values the mapping
//! derives. Serialising one writes exactly what Amplitude receives.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json_borrow::Value;

use crate::json;

/// One property value.
#[derive(Debug, Clone, PartialEq)]
pub enum Prop<'a> {
    /// A value of the Segment message, passed through unchanged.
    Ref(&'a Value<'a>),
    /// A value the mapping computed (a parsed number, a name, a boolean).
    Owned(Value<'a>),
    /// A nested map the mapping built (trait operations such as `$set`).
    Map(PropMap<'a>),
}

/// An ordered JSON object; inserting an existing key replaces its value in place.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PropMap<'a>(Vec<(Cow<'a, str>, Prop<'a>)>);

impl<'a> PropMap<'a> {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// A copy of a Segment object (anything else gives an empty map, §0: lenient).
    pub fn from_object(value: &'a Value<'a>) -> Self {
        match value {
            Value::Object(o) => Self(
                o.iter()
                    .map(|(k, v)| (Cow::Borrowed(k), Prop::Ref(v)))
                    .collect(),
            ),
            _ => Self::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Prop<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn get(&self, key: &str) -> Option<&Prop<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Prop<'a>> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn insert(&mut self, key: impl Into<Cow<'a, str>>, value: Prop<'a>) {
        let key = key.into();
        match self.get_mut(&key) {
            Some(slot) => *slot = value,
            None => self.0.push((key, value)),
        }
    }

    /// Inserts only when the key is not there yet.
    pub fn insert_missing(&mut self, key: impl Into<Cow<'a, str>>, value: Prop<'a>) {
        let key = key.into();
        if !self.contains_key(&key) {
            self.0.push((key, value));
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Prop<'a>> {
        let pos = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(pos).1)
    }

    /// Removes every key that matches `key` loosely (§0.2).
    pub fn remove_loose(&mut self, key: &str) {
        self.remove_loose_all(&[key]);
    }

    /// Removes every key that matches one of `keys` loosely, in one pass.
    pub fn remove_loose_all(&mut self, keys: &[&str]) {
        self.0
            .retain(|(k, _)| !keys.iter().any(|key| json::loose_eq(k, key)));
    }

    /// The first value whose key matches loosely (exact match first).
    pub fn get_loose(&self, key: &str) -> Option<&Prop<'a>> {
        self.get(key).or_else(|| {
            self.0
                .iter()
                .find(|(k, _)| json::loose_eq(k, key))
                .map(|(_, v)| v)
        })
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Prop<'a>) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
    }

    pub fn into_entries(self) -> impl Iterator<Item = (Cow<'a, str>, Prop<'a>)> {
        self.0.into_iter()
    }
}

impl<'a> FromIterator<(Cow<'a, str>, Prop<'a>)> for PropMap<'a> {
    fn from_iter<I: IntoIterator<Item = (Cow<'a, str>, Prop<'a>)>>(iter: I) -> Self {
        let mut map = PropMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<'a> Prop<'a> {
    /// The JSON value, when this is not a built map.
    pub fn value(&self) -> Option<&Value<'a>> {
        match self {
            Prop::Ref(v) => Some(v),
            Prop::Owned(v) => Some(v),
            Prop::Map(_) => None,
        }
    }
}

impl Serialize for Prop<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Prop::Ref(v) => v.serialize(s),
            Prop::Owned(v) => v.serialize(s),
            Prop::Map(m) => m.serialize(s),
        }
    }
}

impl Serialize for PropMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k.as_ref(), v)?;
        }
        map.end()
    }
}
