//! Property maps for `event_properties`, `user_properties`, `groups` and group properties.
//!
//! Values copied from the Segment message are borrowed, not cloned: a [`PropMap`] is an ordered
//! list of keys and [`Prop`]s that point into the parsed input, plus the few values the mapping
//! derives. Serialising one writes exactly what Amplitude receives.

use std::borrow::Cow;
use std::collections::HashMap;

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
///
/// A list, searched in order: the maps of an event are small, and a list beats hashing there.
/// A map of [`INDEXED_FROM`] keys or more (a hostile message can carry hundreds of thousands
/// of traits) also keeps an index from key to position, so building and reading it stay
/// linear in time instead of quadratic; removals rebuild it (they are linear already).
#[derive(Debug, Clone, Default)]
pub struct PropMap<'a> {
    entries: Vec<(Cow<'a, str>, Prop<'a>)>,
    /// Each key's first position, while `entries` has at least [`INDEXED_FROM`] of them.
    /// Boxed: most maps never have one, and a map is a value of its parent's entries, so
    /// its size is every entry's (`map` moves 64-byte entries instead of 96).
    #[expect(
        clippy::box_collection,
        reason = "the box keeps a map that has no index 8 bytes wide instead of 48"
    )]
    index: Option<Box<HashMap<Cow<'a, str>, usize>>>,
}

/// The size from which a map keeps an index.
const INDEXED_FROM: usize = 64;

/// The room an empty map gets at its first key. The maps the mapping builds key by key (UTM
/// properties, `$set` and `$setOnce` entries, user properties) mostly hold five to eight keys,
/// and starting at Vec's default of four reallocated and copied most of them once (1.4% of
/// `map`'s instructions on the corpus). A copy of a Segment object stays at its exact size:
/// room added there cost the 300,000-trait identify of the `bounded` bench 24 MB of peak RSS.
const FIRST_ROOM: usize = 8;

impl PartialEq for PropMap<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<'a> PropMap<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of a Segment object (anything else gives an empty map, §0: lenient).
    pub fn from_object(value: &'a Value<'a>) -> Self {
        match value {
            Value::Object(o) => {
                let entries = o
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k), Prop::Ref(v)))
                    .collect();
                let mut map = Self {
                    entries,
                    index: None,
                };
                map.reindex();
                map
            }
            _ => Self::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Prop<'a>)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The position of `key`'s first entry.
    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k == key),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Prop<'a>> {
        self.position(key)
            .and_then(|i| self.entries.get(i))
            .map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Prop<'a>> {
        self.position(key)
            .and_then(|i| self.entries.get_mut(i))
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    pub fn insert(&mut self, key: impl Into<Cow<'a, str>>, value: Prop<'a>) {
        let key = key.into();
        match self.get_mut(&key) {
            Some(slot) => *slot = value,
            None => self.push(key, value),
        }
    }

    /// Inserts only when the key is not there yet.
    pub fn insert_missing(&mut self, key: impl Into<Cow<'a, str>>, value: Prop<'a>) {
        let key = key.into();
        if !self.contains_key(&key) {
            self.push(key, value);
        }
    }

    /// Appends a key that is not in the map.
    fn push(&mut self, key: Cow<'a, str>, value: Prop<'a>) {
        if self.entries.capacity() == 0 {
            self.entries.reserve(FIRST_ROOM);
        }
        match &mut self.index {
            Some(index) => {
                index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
            None => {
                self.entries.push((key, value));
                if self.entries.len() >= INDEXED_FROM {
                    self.reindex();
                }
            }
        }
    }

    /// The index as `entries` now stand: each key's first position, or none for a small map.
    fn reindex(&mut self) {
        // The old index goes first: a wide map is never indexed twice at once.
        self.index = None;
        self.index = (self.entries.len() >= INDEXED_FROM).then(|| {
            let mut index = HashMap::with_capacity(self.entries.len());
            for (i, (k, _)) in self.entries.iter().enumerate() {
                index.entry(k.clone()).or_insert(i);
            }
            Box::new(index)
        });
    }

    pub fn remove(&mut self, key: &str) -> Option<Prop<'a>> {
        let pos = self.position(key)?;
        let (_, value) = self.entries.remove(pos);
        self.reindex();
        Some(value)
    }

    /// Removes every key that matches `key` loosely (§0.2).
    pub fn remove_loose(&mut self, key: &str) {
        self.remove_loose_all(&[key]);
    }

    /// Removes every key that matches one of `keys` loosely, in one pass.
    pub fn remove_loose_all(&mut self, keys: &[&str]) {
        self.retain(|k, _| !keys.iter().any(|key| json::loose_eq(k, key)));
    }

    /// The first value whose key matches loosely (exact match first).
    pub fn get_loose(&self, key: &str) -> Option<&Prop<'a>> {
        self.get(key).or_else(|| {
            self.entries
                .iter()
                .find(|(k, _)| json::loose_eq(k, key))
                .map(|(_, v)| v)
        })
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Prop<'a>) -> bool) {
        let before = self.entries.len();
        self.entries.retain(|(k, v)| keep(k, v));
        if self.entries.len() != before {
            self.reindex();
        }
    }

    /// Takes out, in order, the entries `take` chooses; the others stay where they are. A
    /// wide map is not rebuilt to move a few of its keys (650,000 traits copied key by key into
    /// a new map were held twice: the `bounded` bench).
    pub fn take_out(
        &mut self,
        mut take: impl FnMut(&str, &Prop<'a>) -> bool,
    ) -> Vec<(Cow<'a, str>, Prop<'a>)> {
        let taken: Vec<_> = self.entries.extract_if(.., |(k, v)| take(k, v)).collect();
        if !taken.is_empty() {
            self.reindex();
        }
        taken
    }

    /// `first`'s entries, then those of this map whose keys `first` does not name: what
    /// inserting this map's entries into `first` gives, without copying this map.
    pub fn put_first(&mut self, first: PropMap<'a>) {
        if first.is_empty() {
            return;
        }
        self.entries.retain(|(k, _)| !first.contains_key(k));
        self.entries.splice(0..0, first.entries);
        self.reindex();
    }

    pub fn into_entries(self) -> impl Iterator<Item = (Cow<'a, str>, Prop<'a>)> {
        self.entries.into_iter()
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
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k.as_ref(), v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map's entries are what the mapping writes most (every property of every event goes
    /// through one): they stay at one cache line each (96 bytes before the index was boxed).
    #[test]
    fn an_entry_fits_a_cache_line() {
        assert_eq!(std::mem::size_of::<(Cow<'_, str>, Prop<'_>)>(), 64);
    }

    /// The index changes the time, never the result: the same inserts, replacements,
    /// removals and lookups on a map below [`INDEXED_FROM`] and on one far above it give
    /// what a plain list searched in order gives (duplicate keys of an object included: the
    /// first one is found, and removed first).
    #[test]
    fn an_indexed_map_behaves_as_a_list() {
        for size in [10, INDEXED_FROM - 1, INDEXED_FROM, 500] {
            let duplicated: Value = serde_json::from_str(r#"{"d":1,"e":2,"d":3}"#).unwrap();
            let mut map = PropMap::from_object(&duplicated);
            let mut list: Vec<(String, String)> = vec![
                ("d".into(), "1".into()),
                ("e".into(), "2".into()),
                ("d".into(), "3".into()),
            ];
            let text = |p: &Prop<'_>| serde_json::to_string(p).unwrap();
            for i in 0..size {
                map.insert(format!("k{i}"), Prop::Owned(Value::from(i as i64)));
                list.push((format!("k{i}"), i.to_string()));
            }
            assert_eq!(map.get("d").map(text).as_deref(), Some("1"), "size {size}");
            // Replace in place, insert if missing (no change when present), remove.
            map.insert("k3", Prop::Owned(Value::from("three")));
            list[3 + 3].1 = "\"three\"".into();
            map.insert_missing("k4", Prop::Owned(Value::from("no")));
            map.insert_missing("new", Prop::Owned(Value::from("yes")));
            list.push(("new".into(), "\"yes\"".into()));
            assert_eq!(map.remove("d").map(|p| text(&p)), Some("1".into()));
            list.remove(0);
            assert_eq!(map.remove("k5").map(|p| text(&p)), Some("5".into()));
            list.retain(|(k, _)| k != "k5");
            map.retain(|k, _| k != "k7");
            list.retain(|(k, _)| k != "k7");
            map.insert("k8", Prop::Owned(Value::from("eight")));
            list.iter_mut().find(|(k, _)| k == "k8").unwrap().1 = "\"eight\"".into();
            let got: Vec<(String, String)> =
                map.iter().map(|(k, v)| (k.to_owned(), text(v))).collect();
            assert_eq!(got, list, "size {size}");
            for (k, _) in &list {
                let first = list.iter().find(|(k2, _)| k2 == k).unwrap();
                assert_eq!(map.get(k).map(text).as_ref(), Some(&first.1), "get {k}");
                assert!(map.contains_key(k));
            }
            assert_eq!(map.get("k5"), None);
            assert_eq!(map.get("k7"), None);
        }
    }

    /// `take_out` and `put_first` give what rebuilding the map key by key gave (the way the
    /// user-property rules moved keys before, holding a wide map twice), below and above
    /// [`INDEXED_FROM`]: the same entries in the same order, and lookups through the index.
    #[test]
    fn moving_keys_in_place_gives_what_a_rebuild_gives() {
        let text = |m: &PropMap<'_>| serde_json::to_string(m).unwrap();
        let numbered = |keys: &mut dyn Iterator<Item = usize>| -> PropMap<'static> {
            keys.map(|i| {
                (
                    Cow::Owned(format!("k{i}")),
                    Prop::Owned(Value::from(i as i64)),
                )
            })
            .collect()
        };
        for size in [10, INDEXED_FROM - 1, INDEXED_FROM, 500] {
            // take_out: every third key out.
            let third = |k: &str| k.trim_start_matches('k').parse::<usize>().unwrap() % 3 == 0;
            let mut map = numbered(&mut (0..size));
            let taken = map.take_out(|k, _| third(k));
            let mut kept = PropMap::new();
            let mut out = Vec::new();
            for (k, v) in numbered(&mut (0..size)).into_entries() {
                if third(&k) {
                    out.push(k.into_owned());
                } else {
                    kept.insert(k, v);
                }
            }
            assert_eq!(text(&map), text(&kept), "size {size}");
            let taken: Vec<String> = taken.into_iter().map(|(k, _)| k.into_owned()).collect();
            assert_eq!(taken, out, "size {size}");
            assert!(map.contains_key("k1") && !map.contains_key("k3"));
            // put_first: a caller's map overlapping the plain one.
            for first_size in [0, 3, INDEXED_FROM + 2] {
                let first = || numbered(&mut (size / 2..size / 2 + first_size).rev());
                let mut put = numbered(&mut (0..size));
                put.put_first(first());
                let mut rebuilt = first();
                for (k, v) in numbered(&mut (0..size)).into_entries() {
                    rebuilt.insert_missing(k, v);
                }
                assert_eq!(
                    text(&put),
                    text(&rebuilt),
                    "size {size}, first {first_size}"
                );
                let last = format!("k{}", size - 1);
                assert!(put.contains_key(&last) && put.contains_key("k0"));
            }
        }
    }
}
