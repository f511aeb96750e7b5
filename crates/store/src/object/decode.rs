//! Decoding a JSON value into a k8s-openapi type while tracking where in the value decoding is,
//! so that a bad field is reported as `spec.containers[0].ports[0].containerPort: invalid type:
//! string "http", expected i32` rather than the bare serde message.
//!
//! It is a `serde::Deserializer` over a borrowed [`Value`] that hands each map value and array
//! element a child deserializer carrying its path; the innermost failure stamps its path on the
//! error on the way out. One Go decoder habit is kept: `null` where a list, map or object is
//! expected means "empty", as kubectl users write `args:` or `labels:` with nothing after them.
//!
//! In strict mode a field the type does not define is an error, as with kubectl's default
//! `--validate=strict`: k8s-openapi skips such fields through `IgnoredAny`, which is the only
//! thing it decodes that way, so that is where they are caught.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::Value;

/// Why a value did not decode, and where.
#[derive(Debug)]
pub(crate) struct DecodeError {
    /// `spec.ports[0].port`; empty for the value itself.
    pub(crate) path: String,
    /// serde's message.
    pub(crate) message: String,
}

/// Decodes `value` as `T`; with `strict`, a field `T` does not define is an error.
pub(crate) fn from_value<T: DeserializeOwned>(
    value: &Value,
    strict: bool,
) -> Result<T, DecodeError> {
    T::deserialize(ValueDeserializer {
        value,
        path: Path::Root,
        strict,
    })
    .map_err(|e| DecodeError {
        path: e.path.unwrap_or_else(|| "(the object itself)".to_owned()),
        message: e.message,
    })
}

/// The error type while decoding: serde's message plus, once known, the path it happened at.
#[derive(Debug)]
struct Error {
    path: Option<String>,
    message: String,
}

impl Error {
    /// Stamps `path` on an error that has none yet: the innermost caller knows best.
    fn at(mut self, path: Path<'_>) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_string());
        }
        self
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            path: None,
            message: msg.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Where a value sits in the object: a chain of field names and list indexes back to the root,
/// borrowed from the callers' stack frames so that tracking costs no allocation.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(parent, name) => {
                let plain = name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                match (plain, parent) {
                    (true, Path::Root) => write!(f, "{name}"),
                    (true, _) => write!(f, "{parent}.{name}"),
                    // Label and annotation keys hold dots and slashes: quote them.
                    (false, _) => write!(f, "{parent}[{name:?}]"),
                }
            }
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

struct ValueDeserializer<'de, 'p> {
    value: &'de Value,
    path: Path<'p>,
    strict: bool,
}

impl<'de> Deserializer<'de> for ValueDeserializer<'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else if let Some(x) = n.as_f64() {
                    visitor.visit_f64(x)
                } else {
                    Err(de::Error::custom(format!("unsupported number {n}")))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visitor.visit_seq(Elements {
                items: items.iter().enumerate(),
                path: self.path,
                strict: self.strict,
            }),
            Value::Object(map) => visitor.visit_map(Fields {
                entries: map.iter(),
                pending: None,
                path: self.path,
                strict: self.strict,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_seq(Elements {
                items: <&[Value]>::default().iter().enumerate(),
                path: self.path,
                strict: self.strict,
            }),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_map(Fields {
                entries: EMPTY.iter(),
                pending: None,
                path: self.path,
                strict: self.strict,
            }),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // k8s-openapi has no enums of its own; a unit variant named by a string covers serde's.
        match self.value {
            Value::String(s) => {
                visitor.visit_enum(IntoDeserializer::<Error>::into_deserializer(s.as_str()))
            }
            other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.strict {
            // The caller stamps this field's path on the error.
            return Err(de::Error::custom(
                "unknown field: the Kubernetes schema has no such field (misspelt, or misplaced?)",
            ));
        }
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct identifier
    }
}

/// The map `null` stands for.
static EMPTY: std::sync::LazyLock<serde_json::Map<String, Value>> =
    std::sync::LazyLock::new(serde_json::Map::new);

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

/// A JSON array's elements, each decoded at `<path>[i]`.
struct Elements<'de, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'de, Value>>,
    path: Path<'p>,
    strict: bool,
}

impl<'de> SeqAccess<'de> for Elements<'de, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((index, value)) = self.items.next() else {
            return Ok(None);
        };
        let path = Path::Index(&self.path, index);
        seed.deserialize(ValueDeserializer {
            value,
            path,
            strict: self.strict,
        })
        .map(Some)
        .map_err(|e| e.at(path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// A JSON object's entries, each value decoded at `<path>.<key>`.
struct Fields<'de, 'p> {
    entries: serde_json::map::Iter<'de>,
    pending: Option<(&'de str, &'de Value)>,
    path: Path<'p>,
    strict: bool,
}

impl<'de> MapAccess<'de> for Fields<'de, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some((key.as_str(), value));
        let path = Path::Field(&self.path, key);
        seed.deserialize(de::value::BorrowedStrDeserializer::<Error>::new(key))
            .map(Some)
            .map_err(|e| e.at(path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom(
                "a map value was asked for before its key",
            ));
        };
        let path = Path::Field(&self.path, key);
        seed.deserialize(ValueDeserializer {
            value,
            path,
            strict: self.strict,
        })
        .map_err(|e| e.at(path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
