//! AMF0: the encoding of RTMP command (type 20) and data (type 18) messages.

use bytes::BufMut;

use super::amf3::{self, Amf3Value};
use super::budget::{Budget, Region};
use super::read::{self, capacity, ensure_fits, truncate_utf8};
use super::{AmfError, AmfLimits};

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const MOVIE_CLIP: u8 = 0x04;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const REFERENCE: u8 = 0x07;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0A;
const DATE: u8 = 0x0B;
const LONG_STRING: u8 = 0x0C;
const UNSUPPORTED: u8 = 0x0D;
const RECORD_SET: u8 = 0x0E;
const XML: u8 = 0x0F;
const TYPED_OBJECT: u8 = 0x10;
const AVMPLUS: u8 = 0x11;

/// One AMF0 value. Objects keep their property order: some peers care.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    Number(f64),
    Boolean(bool),
    /// Both the short (0x02) and long (0x0C) string markers decode here.
    String(String),
    Object(Vec<(String, Amf0Value)>),
    Null,
    Undefined,
    EcmaArray(Vec<(String, Amf0Value)>),
    StrictArray(Vec<Amf0Value>),
    Date {
        millis: f64,
        timezone: i16,
    },
    Unsupported,
    Xml(String),
    TypedObject {
        class_name: String,
        properties: Vec<(String, Amf0Value)>,
    },
    /// A value sent after the avmplus-object marker (0x11) in AMF3.
    Amf3(Amf3Value),
}

impl Amf0Value {
    /// The text of a string (also an AMF3 string carried through 0x11).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) => Some(s),
            Amf0Value::Amf3(v) => v.as_str(),
            _ => None,
        }
    }

    /// The value of a number (also an AMF3 integer or double).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            Amf0Value::Amf3(v) => v.as_f64(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            Amf0Value::Amf3(v) => v.as_bool(),
            _ => None,
        }
    }

    /// The properties of an object, ECMA array or typed object.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p)
            | Amf0Value::EcmaArray(p)
            | Amf0Value::TypedObject { properties: p, .. } => Some(p),
            _ => None,
        }
    }

    /// Looks up a property by name (first match); `None` for other types,
    /// including AMF3 objects.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Builds an anonymous object from name/value pairs, in order.
    pub fn object<I, K>(props: I) -> Amf0Value
    where
        I: IntoIterator<Item = (K, Amf0Value)>,
        K: Into<String>,
    {
        Amf0Value::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Builds an ECMA array (the form `onMetaData` uses) from name/value pairs.
    pub fn ecma_array<I, K>(props: I) -> Amf0Value
    where
        I: IntoIterator<Item = (K, Amf0Value)>,
        K: Into<String>,
    {
        Amf0Value::EcmaArray(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl From<f64> for Amf0Value {
    fn from(n: f64) -> Self {
        Amf0Value::Number(n)
    }
}

impl From<bool> for Amf0Value {
    fn from(b: bool) -> Self {
        Amf0Value::Boolean(b)
    }
}

impl From<&str> for Amf0Value {
    fn from(s: &str) -> Self {
        Amf0Value::String(s.to_owned())
    }
}

impl From<String> for Amf0Value {
    fn from(s: String) -> Self {
        Amf0Value::String(s)
    }
}

/// Decodes one value from the front of `input` and advances it past it.
pub fn decode_amf0(input: &mut &[u8], limits: &AmfLimits) -> Result<Amf0Value, AmfError> {
    let mut budget = Budget::new(limits);
    let mut dec = Decoder::new(input, &mut budget);
    dec.value(input)
}

/// Decodes values until `input` is used up. References, depth and the item
/// budget are shared by all of them, as they are parts of one message.
pub fn decode_amf0_all(input: &[u8], limits: &AmfLimits) -> Result<Vec<Amf0Value>, AmfError> {
    let mut budget = Budget::new(limits);
    let mut dec = Decoder::new(input, &mut budget);
    let mut rest = input;
    let mut out = Vec::new();
    while !rest.is_empty() {
        out.push(dec.value(&mut rest)?);
    }
    Ok(out)
}

struct Decoder<'a, 'b, 'l> {
    /// The whole input of this call: references are offsets into it.
    base: &'a [u8],
    budget: &'b mut Budget<'l>,
    /// Objects, ECMA arrays, strict arrays and typed objects in the order
    /// they started, which is what reference indices count.
    complex: Vec<Region>,
}

impl<'a, 'b, 'l> Decoder<'a, 'b, 'l> {
    fn new(base: &'a [u8], budget: &'b mut Budget<'l>) -> Self {
        Decoder {
            base,
            budget,
            complex: Vec::new(),
        }
    }

    fn offset(&self, input: &[u8]) -> usize {
        self.base.len().saturating_sub(input.len())
    }

    fn value(&mut self, input: &mut &'a [u8]) -> Result<Amf0Value, AmfError> {
        let start = self.offset(input);
        let marker = read::u8(input)?;
        self.budget.value()?;
        Ok(match marker {
            NUMBER => Amf0Value::Number(read::f64(input)?),
            BOOLEAN => Amf0Value::Boolean(read::u8(input)? != 0),
            STRING => Amf0Value::String(self.short_string(input)?),
            LONG_STRING => Amf0Value::String(self.long_string(input)?),
            XML => Amf0Value::Xml(self.long_string(input)?),
            NULL => Amf0Value::Null,
            UNDEFINED => Amf0Value::Undefined,
            UNSUPPORTED => Amf0Value::Unsupported,
            DATE => {
                let millis = read::f64(input)?;
                let timezone = read::i16(input)?;
                Amf0Value::Date { millis, timezone }
            }
            OBJECT => self.complex(start, input, |d, i| {
                Ok(Amf0Value::Object(d.props(i, false)?))
            })?,
            ECMA_ARRAY => self.complex(start, input, |d, i| {
                // The count is advisory: encoders get it wrong, the end marker rules.
                let _count = read::u32(i)?;
                Ok(Amf0Value::EcmaArray(d.props(i, true)?))
            })?,
            STRICT_ARRAY => self.complex(start, input, |d, i| {
                let count = read::u32(i)? as usize;
                ensure_fits(i, count, 1)?;
                let mut items = Vec::with_capacity(capacity(count));
                for _ in 0..count {
                    items.push(d.value(i)?);
                }
                Ok(Amf0Value::StrictArray(items))
            })?,
            TYPED_OBJECT => self.complex(start, input, |d, i| {
                let class_name = d.short_string(i)?;
                let properties = d.props(i, false)?;
                Ok(Amf0Value::TypedObject {
                    class_name,
                    properties,
                })
            })?,
            REFERENCE => {
                let index = read::u16(input)?;
                self.reference(index)?
            }
            AVMPLUS => Amf0Value::Amf3(amf3::decode_nested(input, self.budget)?),
            OBJECT_END => return Err(AmfError::UnexpectedObjectEnd),
            MOVIE_CLIP => return Err(AmfError::Unsupported("MovieClip")),
            RECORD_SET => return Err(AmfError::Unsupported("RecordSet")),
            other => return Err(AmfError::UnknownMarker(other)),
        })
    }

    /// Decodes a referenceable value with `body`, registering it in the
    /// reference table first (so indices follow start order) and recording
    /// its shape once complete.
    fn complex<F>(
        &mut self,
        start: usize,
        input: &mut &'a [u8],
        body: F,
    ) -> Result<Amf0Value, AmfError>
    where
        F: FnOnce(&mut Self, &mut &'a [u8]) -> Result<Amf0Value, AmfError>,
    {
        let mark = self.budget.enter()?;
        let slot = self.complex.len();
        self.complex.push(Region { start, shape: None });
        let value = body(self, input)?;
        let shape = self.budget.leave(mark);
        if let Some(region) = self.complex.get_mut(slot) {
            region.shape = Some(shape);
        }
        Ok(value)
    }

    /// Resolves a reference by decoding the referenced value's bytes again.
    fn reference(&mut self, index: u16) -> Result<Amf0Value, AmfError> {
        let bad = AmfError::BadReference(u32::from(index));
        let region = *self.complex.get(usize::from(index)).ok_or(bad.clone())?;
        // A value that is still open is an ancestor: a cycle we cannot build.
        let shape = region.shape.ok_or(bad.clone())?;
        let mut again = self.base.get(region.start..).ok_or(bad)?;
        self.budget.reuse(shape)?;
        let table_len = self.complex.len();
        self.budget.begin_replay();
        let result = self.value(&mut again);
        self.budget.end_replay();
        self.complex.truncate(table_len);
        result
    }

    /// Reads `name, value` pairs up to the empty-name + object-end marker.
    /// An ECMA array may also just stop at the end of the input, as some
    /// encoders' metadata does.
    fn props(
        &mut self,
        input: &mut &'a [u8],
        ecma: bool,
    ) -> Result<Vec<(String, Amf0Value)>, AmfError> {
        let mut props = Vec::new();
        loop {
            if ecma && input.is_empty() {
                return Ok(props);
            }
            let key = self.short_string(input)?;
            if key.is_empty() && input.first() == Some(&OBJECT_END) {
                read::take(input, 1)?;
                return Ok(props);
            }
            let value = self.value(input)?;
            props.push((key, value));
        }
    }

    fn short_string(&mut self, input: &mut &'a [u8]) -> Result<String, AmfError> {
        let len = usize::from(read::u16(input)?);
        self.budget.text(len);
        read::text(input, len)
    }

    fn long_string(&mut self, input: &mut &'a [u8]) -> Result<String, AmfError> {
        let len = read::u32(input)? as usize;
        self.budget.text(len);
        read::text(input, len)
    }
}

/// Appends the AMF0 encoding of `value`. Strings over 65535 bytes use the
/// long-string marker; names and class names, whose length field is 16
/// bits, are cut at 65535 bytes (on a character boundary).
pub fn encode_amf0(value: &Amf0Value, out: &mut impl BufMut) {
    match value {
        Amf0Value::Number(n) => {
            out.put_u8(NUMBER);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Amf0Value::String(s) => {
            if s.len() > usize::from(u16::MAX) {
                out.put_u8(LONG_STRING);
                put_long_string(s, out);
            } else {
                out.put_u8(STRING);
                put_short_string(s, out);
            }
        }
        Amf0Value::Object(props) => {
            out.put_u8(OBJECT);
            put_props(props, out);
        }
        Amf0Value::Null => out.put_u8(NULL),
        Amf0Value::Undefined => out.put_u8(UNDEFINED),
        Amf0Value::EcmaArray(props) => {
            out.put_u8(ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            put_props(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.put_u8(STRICT_ARRAY);
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.put_u32(count);
            for item in items.iter().take(count as usize) {
                encode_amf0(item, out);
            }
        }
        Amf0Value::Date { millis, timezone } => {
            out.put_u8(DATE);
            out.put_f64(*millis);
            out.put_i16(*timezone);
        }
        Amf0Value::Unsupported => out.put_u8(UNSUPPORTED),
        Amf0Value::Xml(s) => {
            out.put_u8(XML);
            put_long_string(s, out);
        }
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => {
            out.put_u8(TYPED_OBJECT);
            put_short_string(class_name, out);
            put_props(properties, out);
        }
        Amf0Value::Amf3(v) => {
            out.put_u8(AVMPLUS);
            amf3::encode_amf3(v, out);
        }
    }
}

fn put_short_string(s: &str, out: &mut impl BufMut) {
    let s = truncate_utf8(s, usize::from(u16::MAX));
    // Cannot fail: just truncated to fit.
    out.put_u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
    out.put_slice(s.as_bytes());
}

fn put_long_string(s: &str, out: &mut impl BufMut) {
    let s = truncate_utf8(s, u32::MAX as usize);
    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(s.as_bytes());
}

fn put_props(props: &[(String, Amf0Value)], out: &mut impl BufMut) {
    for (key, value) in props {
        put_short_string(key, out);
        encode_amf0(value, out);
    }
    out.put_u16(0);
    out.put_u8(OBJECT_END);
}
