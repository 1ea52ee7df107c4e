//! AMF3: what Flash Player 9+ peers send after the avmplus-object marker,
//! and in AMF3 command/data messages (types 17 and 15).
//!
//! The encoder writes everything inline (no reference tables): it is only
//! used for the few values we send, and inline output is always valid.

use bytes::BufMut;

use super::amf3_decode::Decoder;
use super::budget::Budget;
use super::read::truncate_utf8;
use super::{AmfError, AmfLimits};

pub(crate) const UNDEFINED: u8 = 0x00;
pub(crate) const NULL: u8 = 0x01;
pub(crate) const FALSE: u8 = 0x02;
pub(crate) const TRUE: u8 = 0x03;
pub(crate) const INTEGER: u8 = 0x04;
pub(crate) const DOUBLE: u8 = 0x05;
pub(crate) const STRING: u8 = 0x06;
pub(crate) const XML_DOC: u8 = 0x07;
pub(crate) const DATE: u8 = 0x08;
pub(crate) const ARRAY: u8 = 0x09;
pub(crate) const OBJECT: u8 = 0x0A;
pub(crate) const XML: u8 = 0x0B;
pub(crate) const BYTE_ARRAY: u8 = 0x0C;
pub(crate) const VECTOR_INT: u8 = 0x0D;
pub(crate) const VECTOR_UINT: u8 = 0x0E;
pub(crate) const VECTOR_DOUBLE: u8 = 0x0F;
pub(crate) const VECTOR_OBJECT: u8 = 0x10;
pub(crate) const DICTIONARY: u8 = 0x11;

/// Largest value a U29 can carry.
pub(crate) const U29_MAX: u32 = (1 << 29) - 1;
/// Integers in this range travel as the integer type; others as doubles.
const INT_MIN: i32 = -(1 << 28);
const INT_MAX: i32 = (1 << 28) - 1;
/// Lengths and counts share the U29 with a flag bit.
const LEN_MAX: usize = (1 << 28) - 1;
/// Sealed member counts share the U29 with four flag bits.
const SEALED_MAX: usize = (1 << 25) - 1;

/// One AMF3 value. Vectors carry their `fixed` flag.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf3Value {
    Undefined,
    Null,
    Boolean(bool),
    Integer(i32),
    Double(f64),
    String(String),
    XmlDoc(String),
    /// Milliseconds since the epoch, UTC.
    Date(f64),
    Array {
        assoc: Vec<(String, Amf3Value)>,
        dense: Vec<Amf3Value>,
    },
    /// `class_name: None` is an anonymous object (empty class name on the
    /// wire, so `Some("")` encodes as anonymous too); `dynamic` is `Some`
    /// when its traits are dynamic.
    Object {
        class_name: Option<String>,
        sealed: Vec<(String, Amf3Value)>,
        dynamic: Option<Vec<(String, Amf3Value)>>,
    },
    Xml(String),
    ByteArray(Vec<u8>),
    VectorInt(Vec<i32>, bool),
    VectorUint(Vec<u32>, bool),
    VectorDouble(Vec<f64>, bool),
    VectorObject {
        type_name: String,
        items: Vec<Amf3Value>,
        fixed: bool,
    },
    Dictionary {
        weak: bool,
        entries: Vec<(Amf3Value, Amf3Value)>,
    },
}

impl Amf3Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf3Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Integers and doubles alike, as AMF0 numbers would be.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf3Value::Integer(i) => Some(f64::from(*i)),
            Amf3Value::Double(d) => Some(*d),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf3Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// Looks up a member of an object (sealed, then dynamic) or an
    /// associative array entry.
    pub fn get(&self, key: &str) -> Option<&Amf3Value> {
        let find = |props: &'_ [(String, Amf3Value)]| -> Option<usize> {
            props.iter().position(|(k, _)| k == key)
        };
        match self {
            Amf3Value::Object {
                sealed, dynamic, ..
            } => {
                if let Some(i) = find(sealed) {
                    return sealed.get(i).map(|(_, v)| v);
                }
                let dynamic = dynamic.as_deref()?;
                dynamic.get(find(dynamic)?).map(|(_, v)| v)
            }
            Amf3Value::Array { assoc, .. } => assoc.get(find(assoc)?).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Decodes one AMF3 value from the front of `input` and advances it past it.
/// Reference tables start empty and live for this call only.
pub fn decode_amf3(input: &mut &[u8], limits: &AmfLimits) -> Result<Amf3Value, AmfError> {
    let mut budget = Budget::new(limits);
    decode_nested(input, &mut budget)
}

/// Decodes one AMF3 value inside an AMF0 decode: fresh reference tables
/// (each avmplus-object switch starts a new AMF3 context), shared budget.
pub(crate) fn decode_nested(
    input: &mut &[u8],
    budget: &mut Budget<'_>,
) -> Result<Amf3Value, AmfError> {
    let mut dec = Decoder::new(input, budget);
    dec.value(input)
}

/// Appends the AMF3 encoding of `value`, all inline. Integers outside the
/// 29-bit range go out as doubles. Lengths the format cannot express are
/// cut (strings over 2^28-1 bytes, more than 2^28-1 elements); empty keys
/// in dynamic members and associative parts are skipped, since an empty
/// key ends those lists on the wire.
pub fn encode_amf3(value: &Amf3Value, out: &mut impl BufMut) {
    match value {
        Amf3Value::Undefined => out.put_u8(UNDEFINED),
        Amf3Value::Null => out.put_u8(NULL),
        Amf3Value::Boolean(false) => out.put_u8(FALSE),
        Amf3Value::Boolean(true) => out.put_u8(TRUE),
        Amf3Value::Integer(i) => {
            if (INT_MIN..=INT_MAX).contains(i) {
                out.put_u8(INTEGER);
                // Two's complement truncated to 29 bits; the decoder sign-extends.
                put_u29(*i as u32 & U29_MAX, out);
            } else {
                out.put_u8(DOUBLE);
                out.put_f64(f64::from(*i));
            }
        }
        Amf3Value::Double(d) => {
            out.put_u8(DOUBLE);
            out.put_f64(*d);
        }
        Amf3Value::String(s) => {
            out.put_u8(STRING);
            put_string(s, out);
        }
        Amf3Value::XmlDoc(s) => {
            out.put_u8(XML_DOC);
            put_string(s, out);
        }
        Amf3Value::Xml(s) => {
            out.put_u8(XML);
            put_string(s, out);
        }
        Amf3Value::Date(millis) => {
            out.put_u8(DATE);
            put_u29(1, out);
            out.put_f64(*millis);
        }
        Amf3Value::Array { assoc, dense } => {
            out.put_u8(ARRAY);
            let count = put_count(dense.len(), out);
            put_dynamic(assoc, out);
            for item in dense.iter().take(count) {
                encode_amf3(item, out);
            }
        }
        Amf3Value::Object {
            class_name,
            sealed,
            dynamic,
        } => {
            out.put_u8(OBJECT);
            let count = sealed.len().min(SEALED_MAX);
            // Inline object, inline traits, not externalizable.
            let mut header = (count as u32) << 4 | 0b011;
            if dynamic.is_some() {
                header |= 0b1000;
            }
            put_u29(header, out);
            put_string(class_name.as_deref().unwrap_or(""), out);
            let sealed = sealed.get(..count).unwrap_or(sealed);
            for (name, _) in sealed {
                put_string(name, out);
            }
            for (_, member) in sealed {
                encode_amf3(member, out);
            }
            if let Some(dynamic) = dynamic {
                put_dynamic(dynamic, out);
            }
        }
        Amf3Value::ByteArray(bytes) => {
            out.put_u8(BYTE_ARRAY);
            let len = put_count(bytes.len(), out);
            out.put_slice(bytes.get(..len).unwrap_or(bytes));
        }
        Amf3Value::VectorInt(items, fixed) => {
            out.put_u8(VECTOR_INT);
            let count = put_count(items.len(), out);
            out.put_u8(u8::from(*fixed));
            items.iter().take(count).for_each(|v| out.put_i32(*v));
        }
        Amf3Value::VectorUint(items, fixed) => {
            out.put_u8(VECTOR_UINT);
            let count = put_count(items.len(), out);
            out.put_u8(u8::from(*fixed));
            items.iter().take(count).for_each(|v| out.put_u32(*v));
        }
        Amf3Value::VectorDouble(items, fixed) => {
            out.put_u8(VECTOR_DOUBLE);
            let count = put_count(items.len(), out);
            out.put_u8(u8::from(*fixed));
            items.iter().take(count).for_each(|v| out.put_f64(*v));
        }
        Amf3Value::VectorObject {
            type_name,
            items,
            fixed,
        } => {
            out.put_u8(VECTOR_OBJECT);
            let count = put_count(items.len(), out);
            out.put_u8(u8::from(*fixed));
            put_string(type_name, out);
            for item in items.iter().take(count) {
                encode_amf3(item, out);
            }
        }
        Amf3Value::Dictionary { weak, entries } => {
            out.put_u8(DICTIONARY);
            let count = put_count(entries.len(), out);
            out.put_u8(u8::from(*weak));
            for (key, value) in entries.iter().take(count) {
                encode_amf3(key, out);
                encode_amf3(value, out);
            }
        }
    }
}

/// Variable-length unsigned 29-bit integer: 7 bits per byte with a
/// continuation bit, except a fourth byte which carries 8 bits.
pub(crate) fn put_u29(value: u32, out: &mut impl BufMut) {
    let v = value & U29_MAX;
    if v < 1 << 7 {
        out.put_u8(v as u8);
    } else if v < 1 << 14 {
        out.put_u8((v >> 7) as u8 | 0x80);
        out.put_u8(v as u8 & 0x7F);
    } else if v < 1 << 21 {
        out.put_u8((v >> 14) as u8 | 0x80);
        out.put_u8((v >> 7) as u8 | 0x80);
        out.put_u8(v as u8 & 0x7F);
    } else {
        out.put_u8((v >> 22) as u8 | 0x80);
        out.put_u8((v >> 15) as u8 | 0x80);
        out.put_u8((v >> 8) as u8 | 0x80);
        out.put_u8(v as u8);
    }
}

/// Writes an inline length/count (`n << 1 | 1`), capped to what fits,
/// and returns the count actually written.
fn put_count(n: usize, out: &mut impl BufMut) -> usize {
    let n = n.min(LEN_MAX);
    put_u29((n as u32) << 1 | 1, out);
    n
}

/// Writes an inline UTF-8-vr string.
fn put_string(s: &str, out: &mut impl BufMut) {
    let s = truncate_utf8(s, LEN_MAX);
    put_count(s.len(), out);
    out.put_slice(s.as_bytes());
}

/// Writes name/value pairs and the empty-name terminator.
fn put_dynamic(props: &[(String, Amf3Value)], out: &mut impl BufMut) {
    for (key, value) in props.iter().filter(|(k, _)| !k.is_empty()) {
        put_string(key, out);
        encode_amf3(value, out);
    }
    put_string("", out);
}
