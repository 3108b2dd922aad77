//! Log lines as a log pipeline reads them: one JSON object each, no key named twice.

/// A line is exactly one JSON object, and no object in it names a key twice (serde_json keeps
/// the last of two equal keys silently; log pipelines disagree on which one wins).
pub fn assert_one_json_object(line: &str) {
    use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};

    struct Strict;
    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
            d.deserialize_any(Strict)
        }
    }
    impl<'de> Visitor<'de> for Strict {
        type Value = Strict;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(A::Error::custom(format!("duplicate key {key:?}")));
                }
                map.next_value::<Strict>()?;
            }
            Ok(Strict)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
            while seq.next_element::<Strict>()?.is_some() {}
            Ok(Strict)
        }
        fn visit_bool<E: Error>(self, _: bool) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_i64<E: Error>(self, _: i64) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_u64<E: Error>(self, _: u64) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_f64<E: Error>(self, _: f64) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_str<E: Error>(self, _: &str) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_unit<E: Error>(self) -> Result<Strict, E> {
            Ok(Strict)
        }
    }

    assert!(
        serde_json::from_str::<serde_json::Value>(line).is_ok_and(|j| j.is_object()),
        "not a JSON object line: {line}"
    );
    if let Err(e) = serde_json::from_str::<Strict>(line) {
        panic!("{e} in log line: {line}");
    }
}
