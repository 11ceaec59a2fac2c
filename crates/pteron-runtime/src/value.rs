//! Run-time values (`EValue`s).

use core::cell::Cell;

use crate::tensor::TensorValue;

/// A scalar value (`Int`, `Double` or `Bool` EValue).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl Scalar {
    pub fn to_f64(self) -> f64 {
        match self {
            Scalar::Int(i) => i as f64,
            Scalar::Double(d) => d,
            Scalar::Bool(b) => b as i64 as f64,
        }
    }
    /// Integer value, if the scalar is an Int or Bool.
    pub fn to_i64(self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(i),
            Scalar::Bool(b) => Some(b as i64),
            Scalar::Double(_) => None,
        }
    }
    pub fn is_floating(self) -> bool {
        matches!(self, Scalar::Double(_))
    }
    pub fn kind(self) -> &'static str {
        match self {
            Scalar::Int(_) => "Int",
            Scalar::Double(_) => "Double",
            Scalar::Bool(_) => "Bool",
        }
    }
}

/// One slot of a method's value table.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Scalar(Cell<Scalar>),
    Tensor(TensorValue),
    String(String),
    /// Value indices of Int values (boxed so symbolic sizes resolve at run time).
    IntList(Box<[usize]>),
    DoubleList(Box<[f64]>),
    BoolList(Box<[bool]>),
    /// Value indices of Tensor values.
    TensorList(Box<[usize]>),
    /// Value indices of Tensor values, `None` for absent entries.
    OptTensorList(Box<[Option<usize>]>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Scalar(s) => s.get().kind(),
            Value::Tensor(_) => "Tensor",
            Value::String(_) => "String",
            Value::IntList(_) => "IntList",
            Value::DoubleList(_) => "DoubleList",
            Value::BoolList(_) => "BoolList",
            Value::TensorList(_) => "TensorList",
            Value::OptTensorList(_) => "OptionalTensorList",
        }
    }
    pub fn as_tensor(&self) -> Option<&TensorValue> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }
    pub fn as_scalar(&self) -> Option<Scalar> {
        match self {
            Value::Scalar(s) => Some(s.get()),
            _ => None,
        }
    }
}
