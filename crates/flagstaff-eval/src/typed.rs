//! SDK-level result handling (`ld-protocol.md` §3.1): the caller's default value and typed
//! variations. This is what `boolVariation`, `intVariation` and friends do in every SDK, kept
//! here so that the Rust SDK, the server's evaluate endpoints and `flagstaff eval` share it.

use std::borrow::Cow;

use flagstaff_protocol::{Context, ErrorKind, Reason};
use serde_json::Value;

use crate::evaluate::Detail;
use crate::snapshot::Snapshot;

/// The type a caller asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// A JSON boolean.
    Bool,
    /// A JSON number, truncated toward zero to an integer.
    Int,
    /// A JSON number.
    Double,
    /// A JSON string.
    String,
    /// Any JSON value; never a type error.
    Any,
}

impl ValueType {
    fn accepts(self, value: &Value) -> bool {
        match self {
            ValueType::Bool => value.is_boolean(),
            ValueType::Int | ValueType::Double => value.is_number(),
            ValueType::String => value.is_string(),
            ValueType::Any => true,
        }
    }
}

/// A result with the caller's default applied: `value` is always present.
#[derive(Clone, Debug, PartialEq)]
pub struct TypedDetail<'a> {
    /// The flag's value, or the default where the flag has no variation for this context.
    pub value: Cow<'a, Value>,
    /// The variation index, when the value came from a variation.
    pub variation_index: Option<usize>,
    /// Why.
    pub reason: Reason<&'a str>,
}

impl<'a> Detail<'a> {
    /// Applies the caller's default and type check: no variation means the default; a value of
    /// the wrong type means the default with `ERROR / WRONG_TYPE` (§3.1 steps 6 and 7).
    pub fn with_default(self, default: &'a Value, value_type: ValueType) -> TypedDetail<'a> {
        match self.value {
            None => TypedDetail {
                value: Cow::Borrowed(default),
                variation_index: None,
                reason: self.reason,
            },
            Some(value) if !value_type.accepts(value) => TypedDetail {
                value: Cow::Borrowed(default),
                variation_index: None,
                reason: Reason::error(ErrorKind::WrongType),
            },
            Some(value) => {
                let value = match (value_type, value.as_f64()) {
                    (ValueType::Int, Some(f)) if !value.is_i64() && !value.is_u64() => {
                        Cow::Owned(Value::from(f.trunc() as i64))
                    }
                    _ => Cow::Borrowed(value),
                };
                TypedDetail {
                    value,
                    variation_index: self.variation_index,
                    reason: self.reason,
                }
            }
        }
    }
}

impl Snapshot {
    /// Evaluates `key` as a typed SDK variation call with the caller's `default`.
    pub fn variation_detail<'a>(
        &'a self,
        key: &str,
        context: &Context,
        default: &'a Value,
        value_type: ValueType,
    ) -> TypedDetail<'a> {
        self.evaluate(key, context)
            .with_default(default, value_type)
    }
}
