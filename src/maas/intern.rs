//! Interned strings for the at-rest machine record.
//!
//! Zone, pool, owner, power type and subnet names repeat across thousands of
//! machines (a 10,000-machine region typically has a handful of zones and one owner), so
//! each distinct value is kept once as an `Arc<str>` and every machine record points at
//! it. A value already interned costs no allocation while a list is parsed: the parser
//! looks it up by `&str` and clones the `Arc`.
//!
//! The pool is bounded ([`MAX_ENTRIES`]): a region that sends an unbounded number of
//! distinct names (say a unique owner per machine) gets plain, un-shared `Arc<str>`s beyond
//! that, so memory stays proportional to the machines held, never to the history seen.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// Distinct strings kept in the pool; beyond this new values are not shared.
pub const MAX_ENTRIES: usize = 16_384;

static POOL: LazyLock<Mutex<HashSet<Arc<str>>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// The shared copy of `s`.
pub fn intern(s: &str) -> Arc<str> {
    let mut pool = POOL.lock();
    if let Some(hit) = pool.get(s) {
        return hit.clone();
    }
    let new: Arc<str> = Arc::from(s);
    if pool.len() < MAX_ENTRIES {
        pool.insert(new.clone());
    }
    new
}

/// How many distinct strings the pool holds (memory probe, tests).
pub fn pool_len() -> usize {
    POOL.lock().len()
}

/// A JSON string, or `null`/missing, as an interned `Option<Arc<str>>`.
pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
    d.deserialize_option(OptStr)
}

/// An object MAAS embeds by reference (`zone`, `pool`: `{"name": ..., ...}`), or `null`:
/// only its interned name is kept.
pub fn named<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
    d.deserialize_option(Named)
}

struct OptStr;

impl<'de> Visitor<'de> for OptStr {
    type Value = Option<Arc<str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(Str).map(Some)
    }
}

struct Str;

impl Visitor<'_> for Str {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(intern(v))
    }
}

struct Named;

impl<'de> Visitor<'de> for Named {
    type Value = Option<Arc<str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with a name, or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut name = None;
        while let Some(key) = map.next_key::<KeyIsName>()? {
            if key.0 {
                name = map.next_value_seed(OptSeed)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(name)
    }
}

/// `true` for the key `name`; any other key is compared without being allocated.
struct KeyIsName(bool);

impl<'de> serde::Deserialize<'de> for KeyIsName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyIsName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyIsName, E> {
                Ok(KeyIsName(v == "name"))
            }
        }
        d.deserialize_str(V)
    }
}

struct OptSeed;

impl<'de> de::DeserializeSeed<'de> for OptSeed {
    type Value = Option<Arc<str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        opt(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "named")]
        zone: Option<Arc<str>>,
        #[serde(default, deserialize_with = "opt")]
        owner: Option<Arc<str>>,
    }

    #[test]
    fn equal_values_share_one_allocation() {
        let a: Probe = serde_json::from_str(
            r#"{"zone":{"id":1,"name":"intern-test-zone","description":""},"owner":"intern-test-owner"}"#,
        )
        .unwrap();
        let b: Probe = serde_json::from_str(
            r#"{"zone":{"name":"intern-test-zone"},"owner":"intern-test-owner"}"#,
        )
        .unwrap();
        assert!(Arc::ptr_eq(
            a.zone.as_ref().unwrap(),
            b.zone.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            a.owner.as_ref().unwrap(),
            b.owner.as_ref().unwrap()
        ));
    }

    #[test]
    fn null_missing_and_nameless_are_none() {
        let p: Probe = serde_json::from_str(r#"{"zone":null,"owner":null}"#).unwrap();
        assert!(p.zone.is_none() && p.owner.is_none());
        let p: Probe = serde_json::from_str(r#"{"zone":{"id":3}}"#).unwrap();
        assert!(p.zone.is_none() && p.owner.is_none());
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(serde_json::from_str::<Probe>(r#"{"zone":"default"}"#).is_err());
        assert!(serde_json::from_str::<Probe>(r#"{"owner":7}"#).is_err());
        assert!(serde_json::from_str::<Probe>(r#"{"zone":{"name":5}}"#).is_err());
    }
}
