//! Reading JSON text into `serde_json_borrow`'s tree, every array and object at its exact size.
//!
//! serde_json tells a reader nothing of an array's or object's size before its items, so
//! `serde_json_borrow`'s own reader grows each one as they arrive: a container of one item
//! holds room for four. One 6 MB message of 1,490,000 one-item arrays (`[[1],[1],…]`) then took
//! **275 MB** in the `events` function, past its 256 MB (the `bounded` bench, which has the
//! shape). Here the items of each container are gathered in a buffer on the stack (on the heap
//! past [`INLINE`] of them) and moved into a vector of exactly their number, and a string
//! written with escapes is unescaped into the message's arena ([`Scratch`]) instead of a
//! `String` of its own, so every key is borrowed (`&str`: the workspace builds
//! `serde_json_borrow` without its `cowkeys` feature, which made each key a `Cow`, 8 bytes more
//! an entry). A large array or object is handed over in the vector it was gathered in, shrunk
//! where it is, not copied. The tree is the one `serde_json_borrow` builds, value for value
//! (`tests::the_tree_is_serde_json_borrow_s`).
//!
//! [`Scratch`]: crate::json::Scratch

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use bumpalo::Bump;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json_borrow::{Map, Value};
use smallvec::SmallVec;

/// The items of a container gathered on the stack before it is built: most of a message's
/// objects and arrays have fewer, so they are built with one allocation of their exact size.
/// The buffers of the containers being read are on the stack at once, one per level of
/// nesting (at most 128, serde_json's limit): 16 × 48 bytes a level.
const INLINE: usize = 16;

/// A JSON text read into a tree.
#[derive(Debug)]
pub struct Tree<'de> {
    pub value: Value<'de>,
    /// Whether an object of the text names a key twice ([`crate::json::names_a_key_twice`]):
    /// its lookups would find the first value, where Segment's readers take the last.
    pub names_a_key_twice: bool,
}

/// Reads one JSON text; strings with escapes are unescaped into `strings`.
pub fn exact<'de>(text: &'de str, strings: &'de Bump) -> Result<Tree<'de>, serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_str(text);
    let repeated = Cell::new(false);
    let value = Read {
        strings,
        repeated: &repeated,
    }
    .deserialize(&mut reader)?;
    reader.end()?;
    Ok(Tree {
        value,
        names_a_key_twice: repeated.get(),
    })
}

/// Reads a value (the seed and the visitor are one).
#[derive(Clone, Copy)]
struct Read<'de, 'r> {
    strings: &'de Bump,
    /// Set once an object names a key twice; no object is checked after that.
    repeated: &'r Cell<bool>,
}

/// Reads an object's key.
#[derive(Clone, Copy)]
struct Key<'de>(&'de Bump);

impl<'de> DeserializeSeed<'de> for Read<'de, '_> {
    type Value = Value<'de>;

    fn deserialize<D: Deserializer<'de>>(self, reader: D) -> Result<Value<'de>, D::Error> {
        reader.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Read<'de, '_> {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value<'de>, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value<'de>, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value<'de>, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(value)))
    }

    /// A string written with escapes (serde_json hands it over unescaped, in a scratch buffer).
    fn visit_str<E>(self, value: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(self.strings.alloc_str(value))))
    }

    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, reader: D) -> Result<Value<'de>, D::Error> {
        self.deserialize(reader)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value<'de>, A::Error> {
        let mut gathered: SmallVec<[Value<'de>; INLINE]> = SmallVec::new();
        while let Some(item) = items.next_element_seed(self)? {
            gathered.push(item);
        }
        let array = if gathered.spilled() {
            // Already on the heap: shrunk where it is (a large one is not copied, so its
            // peak stays its size, not twice it).
            let mut array = gathered.into_vec();
            array.shrink_to_fit();
            array
        } else {
            exactly(&mut gathered)
        };
        Ok(Value::Array(array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Value<'de>, A::Error> {
        let mut gathered: SmallVec<[(&'de str, Value<'de>); INLINE]> = SmallVec::new();
        while let Some(key) = entries.next_key_seed(Key(self.strings))? {
            gathered.push((key, entries.next_value_seed(self)?));
        }
        if !self.repeated.get() && crate::json::names_a_key_twice(&gathered) {
            self.repeated.set(true);
        }
        let object = if gathered.spilled() {
            // As an array's: shrunk where it is. `serde_json_borrow` takes the vector as it
            // is (its keys are `&str`: the workspace leaves out its `cowkeys` feature).
            let mut entries = gathered.into_vec();
            entries.shrink_to_fit();
            Map::from(entries)
        } else {
            Map::from(exactly(&mut gathered))
        };
        Ok(Value::Object(object))
    }
}

/// The items of `gathered` moved, in order, into a vector of exactly their number. (The
/// buffer itself is not moved: at 16 items it is most of a kilobyte. Collecting a `SmallVec`'s
/// own iterator gives a vector room for at least four, the minimum `Vec` grows to from an
/// iterator of unknown length: the slack this module exists to avoid.)
fn exactly<A: smallvec::Array>(gathered: &mut SmallVec<A>) -> Vec<A::Item> {
    let mut items = Vec::with_capacity(gathered.len());
    for item in gathered.drain(..) {
        items.push(item);
    }
    items
}

impl<'de> DeserializeSeed<'de> for Key<'de> {
    type Value = &'de str;

    fn deserialize<D: Deserializer<'de>>(self, reader: D) -> Result<&'de str, D::Error> {
        reader.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'de> {
    type Value = &'de str;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<&'de str, E> {
        Ok(key)
    }

    /// A key written with escapes.
    fn visit_str<E>(self, key: &str) -> Result<&'de str, E> {
        Ok(self.0.alloc_str(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every vector of the tree holds exactly its items.
    fn assert_exact(value: &Value<'_>) {
        match value {
            Value::Array(items) => {
                assert_eq!(items.capacity(), items.len());
                items.iter().for_each(assert_exact);
            }
            Value::Object(entries) => {
                assert_eq!(entries.as_vec().capacity(), entries.len());
                entries.values().for_each(assert_exact);
            }
            _ => {}
        }
    }

    /// The reader builds `serde_json_borrow`'s tree, value for value, with every vector at
    /// its exact size: corpus messages, and texts built to reach every path (escaped keys and
    /// strings, every number form serde_json reads, empty and nested containers, containers
    /// just under, at and over the inline buffer).
    #[test]
    fn the_tree_is_serde_json_borrow_s() {
        let mut texts = corpus::lines(11, 500);
        let sizes = [0, 1, INLINE - 1, INLINE, INLINE + 1, 3 * INLINE + 5];
        for n in sizes {
            let items: Vec<String> = (0..n).map(|i| format!("[{i},{{\"k{i}\":[]}}]")).collect();
            let entries: Vec<String> = (0..n).map(|i| format!("\"k\\u00e9{i}\":{i}")).collect();
            texts.push(format!("[{}]", items.join(",")));
            texts.push(format!("{{{}}}", entries.join(",")));
        }
        texts.extend(
            [
                r#"{"a\"b":"x\ny","\\":"\ud83d\ude00","plain":"text","":""}"#,
                r#"[0,-0,-0.0,1.5,-1e-400,1e21,18446744073709551615,-9223372036854775808,123456789012345678901234567890,0.1]"#,
                r#"[true,false,null,{},[],[[]],{"a":{}},"\u0000\u001f"]"#,
                r#"  {"nested":{"deeper":{"deepest":[1,{"k":[2,[3]]}]}}}  "#,
            ]
            .map(String::from),
        );
        let mut escaped_keys = 0;
        for text in &texts {
            let strings = Bump::new();
            let ours = exact(text, &strings).unwrap().value;
            assert_exact(&ours);
            match serde_json::from_str::<Value>(text) {
                Ok(theirs) => assert_eq!(ours, theirs, "{text}"),
                // `serde_json_borrow`'s own reader (its keys are `&str`) refuses a key written
                // with escapes: the tree is checked by what serde_json writes of it, in order.
                Err(refused) => {
                    assert!(refused.to_string().contains("borrowed"), "{refused}");
                    let unescaped = text.replace(r"\u00e9", "é").replace(r"\ud83d\ude00", "😀");
                    assert_eq!(serde_json::to_string(&ours).unwrap(), unescaped);
                    escaped_keys += 1;
                }
            }
        }
        // Every object of `k\u00e9` keys but the empty one, and the first of the texts above.
        assert_eq!(escaped_keys, sizes.len());
    }

    /// An object's entry is a borrowed key and a value, 48 bytes: the workspace leaves out
    /// `serde_json_borrow`'s `cowkeys` feature (a key would be a `Cow`, 56 bytes an entry, and
    /// a large object copied once more when built). A dependency that turned it back on would
    /// fail here.
    #[test]
    fn an_object_entry_is_a_borrowed_key_and_a_value() {
        fn entry_size<K, V>(_: &[(K, V)]) -> usize {
            std::mem::size_of::<(K, V)>()
        }
        let strings = Bump::new();
        let Value::Object(object) = exact(r#"{"k":1}"#, &strings).unwrap().value else {
            panic!("an object");
        };
        assert_eq!(entry_size(object.as_vec()), 48);
    }

    /// The reader tells whether any object names a key twice, at any depth and in objects
    /// past the filter's size, and only then.
    #[test]
    fn a_key_named_twice_anywhere_is_told() {
        let wide = |repeat: bool| {
            let mut keys: Vec<String> = (0..60).map(|i| format!("\"k{i}\":{i}")).collect();
            if repeat {
                keys.push("\"k7\":0".into());
            }
            format!("{{\"a\":[1,{{{}}}]}}", keys.join(","))
        };
        for (text, twice) in [
            (r#"{"a":1,"b":2}"#.to_string(), false),
            (r#"{"a":1,"a":2}"#.into(), true),
            (r#"{"a":{"b":[{"c":1,"d":{"e":1,"e":1}}]}}"#.into(), true),
            (r#"[{"a":1},{"a":1}]"#.into(), false),
            (r#"{"a":{"a":{"a":1}}}"#.into(), false),
            (r#"{"\u0061":1,"a":2}"#.into(), true),
            (wide(false), false),
            (wide(true), true),
        ] {
            let strings = Bump::new();
            assert_eq!(
                exact(&text, &strings).unwrap().names_a_key_twice,
                twice,
                "{text}"
            );
        }
    }

    /// What serde_json refuses, the reader refuses with serde_json's reason: trailing text,
    /// a lone surrogate, nesting past its limit.
    #[test]
    fn what_serde_json_refuses_is_refused_alike() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for text in [
            "[1] x",
            r#"["\ud800"]"#,
            "{\"a\":1,}",
            deep.as_str(),
            "",
            "[1,",
        ] {
            let strings = Bump::new();
            let ours = exact(text, &strings).unwrap_err().to_string();
            let theirs = serde_json::from_str::<Value>(text).unwrap_err().to_string();
            assert_eq!(ours, theirs, "{text}");
        }
    }
}
