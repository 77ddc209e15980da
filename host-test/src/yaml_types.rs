//! Small value types scenario files use: header lists written as YAML maps
//! (or lists of pairs, for repeated names) and durations like `61s`, `7ms`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Header pairs in order; YAML `{name: value}` or `[[name, value], ...]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<(String, String)>);

impl HeaderList {
    /// Iterates the pairs.
    pub fn iter(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.iter()
    }
}

impl Serialize for HeaderList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

fn scalar_text<E: de::Error>(value: serde_yaml_ng::Value) -> Result<String, E> {
    match value {
        serde_yaml_ng::Value::String(s) => Ok(s),
        serde_yaml_ng::Value::Number(n) => Ok(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Ok(b.to_string()),
        other => Err(E::custom(format!(
            "a header value must be a string, number or bool, got {other:?}"
        ))),
    }
}

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = HeaderList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of header names to values, or a list of [name, value] pairs")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderList, A::Error> {
                let mut pairs = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, serde_yaml_ng::Value>()? {
                    pairs.push((name, scalar_text(value)?));
                }
                Ok(HeaderList(pairs))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HeaderList, A::Error> {
                let mut pairs = Vec::new();
                while let Some((name, value)) =
                    seq.next_element::<(String, serde_yaml_ng::Value)>()?
                {
                    pairs.push((name, scalar_text(value)?));
                }
                Ok(HeaderList(pairs))
            }
            fn visit_unit<E: de::Error>(self) -> Result<HeaderList, E> {
                Ok(HeaderList::default())
            }
        }
        deserializer.deserialize_any(HeaderVisitor)
    }
}

/// A duration written `250ms`, `61s`, `1.5s`, `2m`, `1h`, `500us` or `10ns`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationText(pub Duration);

/// Parses a scenario duration.
///
/// # Errors
/// A message naming the accepted units.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// assert_eq!(host_test::yaml_types::parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(host_test::yaml_types::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(host_test::yaml_types::parse_duration("5 parsecs").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 250ms, 61s or 2m"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?}; use ns, us, ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text)
            .map(DurationText)
            .map_err(de::Error::custom)
    }
}

impl Serialize for DurationText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}
