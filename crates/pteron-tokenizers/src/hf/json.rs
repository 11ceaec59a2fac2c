//! Tiny helpers for reading `serde_json::Value` trees with typed errors.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub(crate) const FORMAT: &str = "tokenizer.json";

pub(crate) fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| Error::malformed(FORMAT, format!("{what} must be an object")))
}

pub(crate) fn get<'a>(m: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a Value> {
    m.get(key)
        .ok_or_else(|| Error::malformed(FORMAT, format!("{what}: missing field `{key}`")))
}

/// Present and not null.
pub(crate) fn opt<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

pub(crate) fn str_field<'a>(m: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a str> {
    get(m, key, what)?
        .as_str()
        .ok_or_else(|| Error::malformed(FORMAT, format!("{what}: `{key}` must be a string")))
}

pub(crate) fn opt_str<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Option<&'a str>> {
    match opt(m, key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| Error::malformed(FORMAT, format!("{what}: `{key}` must be a string"))),
    }
}

pub(crate) fn bool_or(
    m: &Map<String, Value>,
    key: &str,
    default: bool,
    what: &str,
) -> Result<bool> {
    match opt(m, key) {
        None => Ok(default),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| Error::malformed(FORMAT, format!("{what}: `{key}` must be a boolean"))),
    }
}

pub(crate) fn u32_of(v: &Value, what: &str) -> Result<u32> {
    v.as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| {
            Error::malformed(
                FORMAT,
                format!("{what} must be a non-negative 32-bit integer"),
            )
        })
}

pub(crate) fn usize_or(
    m: &Map<String, Value>,
    key: &str,
    default: usize,
    what: &str,
) -> Result<usize> {
    match opt(m, key) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| {
                Error::malformed(
                    FORMAT,
                    format!("{what}: `{key}` must be a non-negative integer"),
                )
            }),
    }
}

pub(crate) fn arr<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>> {
    v.as_array()
        .ok_or_else(|| Error::malformed(FORMAT, format!("{what} must be an array")))
}

pub(crate) fn type_of<'a>(m: &'a Map<String, Value>, what: &str) -> Result<&'a str> {
    str_field(m, "type", what)
}

/// A single char given as a string field (e.g. Metaspace `replacement`).
pub(crate) fn char_field(
    m: &Map<String, Value>,
    key: &str,
    default: char,
    what: &str,
) -> Result<char> {
    match opt_str(m, key, what)? {
        None => Ok(default),
        Some(s) => {
            let mut it = s.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => Ok(c),
                _ => Err(Error::malformed(
                    FORMAT,
                    format!("{what}: `{key}` must be one character"),
                )),
            }
        }
    }
}
