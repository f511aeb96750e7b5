//! Typed reads from JSON objects whose errors name the field path and the value.
//!
//! serde's derived errors say "invalid type: string, expected a boolean" without the key, while
//! the CNI spec wants the key and value in the message. So config and result parsing walk a
//! `serde_json::Value` through these helpers, carrying the path (`runtimeConfig.portMappings[0]`).

use serde_json::{Map, Value};

use crate::error::{CniError, Code, Result};

/// How much of a value an error message shows; a whole nested object would drown the message.
const SHOW_MAX: usize = 120;

/// Renders a value for an error message as JSON (strings quoted), shortened if long.
pub(crate) fn show(value: &Value) -> String {
    let s = value.to_string();
    if s.len() <= SHOW_MAX {
        return s;
    }
    let mut end = SHOW_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A `Decode` error: `path` held a value of the wrong JSON type.
fn wrong_type(path: &str, expected: &str, value: &Value) -> CniError {
    CniError::new(
        Code::Decode,
        format!("{path}: expected {expected}, got {}", show(value)),
    )
}

/// One field's value together with its path, for typed conversion.
#[derive(Debug, Clone)]
pub(crate) struct Field<'a> {
    pub(crate) path: String,
    pub(crate) value: &'a Value,
}

impl<'a> Field<'a> {
    /// The value as a boolean.
    pub(crate) fn bool(&self) -> Result<bool> {
        self.value
            .as_bool()
            .ok_or_else(|| wrong_type(&self.path, "a boolean", self.value))
    }

    /// The value as a string.
    pub(crate) fn str(&self) -> Result<&'a str> {
        self.value
            .as_str()
            .ok_or_else(|| wrong_type(&self.path, "a string", self.value))
    }

    /// The value as a non-negative integer.
    pub(crate) fn u64(&self) -> Result<u64> {
        self.value
            .as_u64()
            .ok_or_else(|| wrong_type(&self.path, "a non-negative integer", self.value))
    }

    /// The value as a non-negative integer that fits in `T` (e.g. `u32`).
    pub(crate) fn uint<T: TryFrom<u64>>(&self) -> Result<T> {
        T::try_from(self.u64()?).map_err(|_| {
            wrong_type(
                &self.path,
                &format!("an integer up to {}", std::any::type_name::<T>()),
                self.value,
            )
        })
    }

    /// The value as a JSON object.
    pub(crate) fn object(&self) -> Result<Obj<'a>> {
        Obj::new(self.value, self.path.clone())
    }

    /// The value as an array; each element comes with its path (`key[i]`).
    pub(crate) fn array(&self) -> Result<Vec<Field<'a>>> {
        let items = self
            .value
            .as_array()
            .ok_or_else(|| wrong_type(&self.path, "an array", self.value))?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, value)| Field {
                path: format!("{}[{i}]", self.path),
                value,
            })
            .collect())
    }

    /// The value as an array of strings.
    pub(crate) fn strings(&self) -> Result<Vec<String>> {
        self.array()?
            .iter()
            .map(|f| f.str().map(str::to_owned))
            .collect()
    }
}

/// A JSON object and the path that led to it (empty for the document root).
#[derive(Debug, Clone)]
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    /// Views `value` as an object at `path`; anything else is a `Decode` error.
    pub(crate) fn new(value: &'a Value, path: String) -> Result<Obj<'a>> {
        match value.as_object() {
            Some(map) => Ok(Obj { map, path }),
            None => {
                let at = if path.is_empty() { "document" } else { &path };
                Err(wrong_type(at, "a JSON object", value))
            }
        }
    }

    /// The path of `key` inside this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The field `key`; `None` when absent or `null` (Go's decoder treats both as unset).
    pub(crate) fn field(&self, key: &str) -> Option<Field<'a>> {
        self.map
            .get(key)
            .filter(|v| !v.is_null())
            .map(|value| Field {
                path: self.path_of(key),
                value,
            })
    }

    /// Like [`Obj::field`] but matching the key case-insensitively, as Go's `encoding/json` does
    /// (containerd's CRI path sends `HostPort` where the spec says `hostPort`). An exact match wins.
    pub(crate) fn field_ci(&self, key: &str) -> Option<Field<'a>> {
        if let Some(f) = self.field(key) {
            return Some(f);
        }
        self.map
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(key) && !v.is_null())
            .map(|(k, value)| Field {
                path: self.path_of(k),
                value,
            })
    }

    /// An optional boolean field.
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.field(key).map(|f| f.bool()).transpose()
    }

    /// An optional string field.
    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>> {
        self.field(key).map(|f| f.str()).transpose()
    }

    /// An optional non-empty string field: `""` counts as absent, as Go's `omitempty` prints it.
    pub(crate) fn nonempty_string(&self, key: &str) -> Result<Option<String>> {
        Ok(self.str(key)?.filter(|s| !s.is_empty()).map(str::to_owned))
    }

    /// An optional unsigned integer field that fits in `T`.
    pub(crate) fn uint<T: TryFrom<u64>>(&self, key: &str) -> Result<Option<T>> {
        self.field(key).map(|f| f.uint()).transpose()
    }

    /// An optional list of strings; absent is the empty list.
    pub(crate) fn strings(&self, key: &str) -> Result<Vec<String>> {
        Ok(self
            .field(key)
            .map(|f| f.strings())
            .transpose()?
            .unwrap_or_default())
    }

    /// An optional nested object.
    pub(crate) fn object(&self, key: &str) -> Result<Option<Obj<'a>>> {
        self.field(key).map(|f| f.object()).transpose()
    }

    /// An optional array; absent is the empty list.
    pub(crate) fn array(&self, key: &str) -> Result<Vec<Field<'a>>> {
        Ok(self
            .field(key)
            .map(|f| f.array())
            .transpose()?
            .unwrap_or_default())
    }

    /// A required field; a missing one is an `InvalidConfig` error naming it.
    pub(crate) fn required(&self, key: &str, expected: &str) -> Result<Field<'a>> {
        self.field(key).ok_or_else(|| {
            CniError::new(
                Code::InvalidConfig,
                format!("{}: missing; expected {expected}", self.path_of(key)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_type_names_path_expected_type_and_value() {
        let v = json!({"a": {"b": [1, "x"]}});
        let root = Obj::new(&v, String::new()).unwrap();
        let b = root.object("a").unwrap().unwrap().array("b").unwrap();
        let e = b[1].u64().unwrap_err();
        assert_eq!(e.code, Code::Decode);
        assert_eq!(e.msg, "a.b[1]: expected a non-negative integer, got \"x\"");
    }

    #[test]
    fn null_counts_as_absent() {
        let v = json!({"a": null});
        let root = Obj::new(&v, String::new()).unwrap();
        assert_eq!(root.bool("a").unwrap(), None);
        assert!(root.field_ci("A").is_none());
    }

    #[test]
    fn field_ci_prefers_exact_match_and_reports_the_real_key() {
        let v = json!({"HostPort": 1, "hostPort": 2});
        let root = Obj::new(&v, "pm".into()).unwrap();
        assert_eq!(root.field_ci("hostPort").unwrap().value, &json!(2));
        let v = json!({"HOSTPORT": "x"});
        let root = Obj::new(&v, "pm".into()).unwrap();
        let f = root.field_ci("hostPort").unwrap();
        assert_eq!(f.path, "pm.HOSTPORT");
    }

    #[test]
    fn uint_rejects_values_that_do_not_fit() {
        let v = json!({"n": 70000});
        let root = Obj::new(&v, String::new()).unwrap();
        let e = root.uint::<u16>("n").unwrap_err();
        assert!(
            e.msg.starts_with("n: expected an integer up to u16"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = Value::String("x".repeat(500));
        assert!(show(&long).chars().count() <= SHOW_MAX + 1);
    }
}
