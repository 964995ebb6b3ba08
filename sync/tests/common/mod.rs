//! Helpers the hub tests share: automerge-repo document ids and CBOR frames.
#![allow(dead_code)]

use ciborium::Value;

/// An automerge-repo document id made of 16 `byte`s.
pub fn doc_id(byte: u8) -> String {
    samod_core::DocumentId::try_from(vec![byte; 16])
        .unwrap()
        .to_string()
}

/// A CBOR map frame with text keys.
pub fn cbor(entries: Vec<(&str, Value)>) -> Vec<u8> {
    let map = entries
        .into_iter()
        .map(|(k, v)| (Value::Text(k.into()), v))
        .collect();
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Map(map), &mut out).unwrap();
    out
}

/// A CBOR text value.
pub fn t(s: &str) -> Value {
    Value::Text(s.into())
}
