//! Tensor element types as LiteRT numbers them (`LiteRtElementType`, which reuses
//! TensorFlow Lite's `TfLiteType` codes), with their names and sizes.
//!
//! A model an operator brings may have tensors of any type; each host buffer must be
//! sized from the real element size (an int64 output takes 8 bytes a value), and an
//! error must say "int64", not "4".

use std::fmt;

/// The element type of a model input or output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementType {
    Float32,
    Float16,
    BFloat16,
    Float64,
    Int8,
    UInt8,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    UInt64,
    Bool,
    Complex64,
    Complex128,
    /// Types without a fixed element size (strings, resources, variants, packed 4-bit
    /// integers) or codes this release does not know: facegate cannot hold them.
    Other(u32),
}

impl ElementType {
    pub fn from_code(code: u32) -> ElementType {
        match code {
            1 => ElementType::Float32,
            2 => ElementType::Int32,
            3 => ElementType::UInt8,
            4 => ElementType::Int64,
            6 => ElementType::Bool,
            7 => ElementType::Int16,
            8 => ElementType::Complex64,
            9 => ElementType::Int8,
            10 => ElementType::Float16,
            11 => ElementType::Float64,
            12 => ElementType::Complex128,
            13 => ElementType::UInt64,
            16 => ElementType::UInt32,
            17 => ElementType::UInt16,
            19 => ElementType::BFloat16,
            other => ElementType::Other(other),
        }
    }

    /// Bytes per element; `None` for types without a fixed size.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            ElementType::Int8 | ElementType::UInt8 | ElementType::Bool => 1,
            ElementType::Float16
            | ElementType::BFloat16
            | ElementType::Int16
            | ElementType::UInt16 => 2,
            ElementType::Float32 | ElementType::Int32 | ElementType::UInt32 => 4,
            ElementType::Float64
            | ElementType::Int64
            | ElementType::UInt64
            | ElementType::Complex64 => 8,
            ElementType::Complex128 => 16,
            ElementType::Other(_) => return None,
        })
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ElementType::Float32 => "float32",
            ElementType::Float16 => "float16",
            ElementType::BFloat16 => "bfloat16",
            ElementType::Float64 => "float64",
            ElementType::Int8 => "int8",
            ElementType::UInt8 => "uint8",
            ElementType::Int16 => "int16",
            ElementType::UInt16 => "uint16",
            ElementType::Int32 => "int32",
            ElementType::UInt32 => "uint32",
            ElementType::Int64 => "int64",
            ElementType::UInt64 => "uint64",
            ElementType::Bool => "bool",
            ElementType::Complex64 => "complex64",
            ElementType::Complex128 => "complex128",
            ElementType::Other(5) => "string",
            ElementType::Other(14) => "resource",
            ElementType::Other(15) => "variant",
            ElementType::Other(18) => "int4",
            ElementType::Other(code) => return write!(f, "element type {code}"),
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_round_trips_to_a_named_type_with_a_size() {
        for code in [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 19] {
            let t = ElementType::from_code(code);
            assert!(!matches!(t, ElementType::Other(_)), "{code}");
            assert!(t.size().is_some(), "{t}");
            assert!(!t.to_string().starts_with("element type"), "{code}");
        }
        assert_eq!(ElementType::from_code(4).size(), Some(8));
        assert_eq!(ElementType::from_code(4).to_string(), "int64");
    }

    #[test]
    fn strings_and_packed_types_have_no_size_but_a_name() {
        assert_eq!(ElementType::from_code(5).size(), None);
        assert_eq!(ElementType::from_code(5).to_string(), "string");
        assert_eq!(ElementType::from_code(18).to_string(), "int4");
        assert_eq!(ElementType::from_code(99).to_string(), "element type 99");
    }
}
