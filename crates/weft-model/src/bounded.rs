//! Reading a YAML (or JSON) document into a JSON value with a budget: YAML
//! aliases let a small text stand for a huge value (an anchor of many
//! scalars referenced many times expands quadratically, within the parser's
//! own alias limits), so every value and string byte the document expands
//! to is counted against a budget proportional to the text, and reading
//! stops with an error once it is spent.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// What one value (apart from its string bytes) costs.
const NODE_COST: usize = 16;

/// The budget for a text of `len` bytes: ordinary documents use well under
/// a quarter of it; only aliases expanding the text get near it.
pub fn budget_for(len: usize) -> usize {
    16 * len + (1 << 20)
}

/// Deserializes one JSON value, charging `budget`.
pub struct Bounded<'a> {
    pub budget: &'a Cell<usize>,
}

impl Bounded<'_> {
    fn charge<E: serde::de::Error>(&self, cost: usize) -> Result<(), E> {
        let left = self.budget.get();
        if cost > left {
            return Err(E::custom("the document expands to far more than its text (YAML aliases?); refusing to read it"));
        }
        self.budget.set(left - cost);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = serde_json::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<serde_json::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<serde_json::Value, E> {
        self.charge(NODE_COST)?;
        Ok(v.into())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<serde_json::Value, E> {
        self.charge(NODE_COST)?;
        Ok(v.into())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<serde_json::Value, E> {
        self.charge(NODE_COST)?;
        Ok(v.into())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<serde_json::Value, E> {
        self.charge(NODE_COST)?;
        Ok(serde_json::Number::from_f64(v).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<serde_json::Value, E> {
        self.charge(NODE_COST + v.len())?;
        Ok(v.into())
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<serde_json::Value, E> {
        self.charge(NODE_COST + v.len())?;
        Ok(v.into())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<serde_json::Value, E> {
        self.charge(NODE_COST)?;
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<serde_json::Value, E> {
        self.visit_unit()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<serde_json::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<serde_json::Value, A::Error> {
        self.charge(NODE_COST)?;
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Bounded { budget: self.budget })? {
            items.push(v);
        }
        Ok(serde_json::Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<serde_json::Value, A::Error> {
        self.charge(NODE_COST)?;
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key_seed(Bounded { budget: self.budget })? {
            let key = match key {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            let value = map.next_value_seed(Bounded { budget: self.budget })?;
            out.insert(key, value);
        }
        Ok(serde_json::Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<serde_json::Value, String> {
        let budget = Cell::new(budget_for(text.len()));
        let doc = serde_norway::Deserializer::from_str(text).next().unwrap();
        Bounded { budget: &budget }.deserialize(doc).map_err(|e| e.to_string())
    }

    #[test]
    fn ordinary_documents_read_as_before() {
        let v = read("a: [1, 2.5, true, null, {b: c}]\nn: 10\n").unwrap();
        assert_eq!(v, serde_json::json!({"a": [1, 2.5, true, null, {"b": "c"}], "n": 10}));
    }

    #[test]
    fn an_anchor_referenced_many_times_is_refused_not_expanded() {
        // 2,000 scalars in an anchor, referenced 2,000 times: 4 million values from 40 KB.
        let scalars: Vec<String> = (0..2000).map(|i| format!("v{i}")).collect();
        let mut text = format!("base: &a [{}]\n", scalars.join(", "));
        text.push_str("refs:\n");
        for _ in 0..2000 {
            text.push_str("- *a\n");
        }
        let e = read(&text).unwrap_err();
        assert!(e.contains("expands to far more than its text"), "{e}");
    }
}
