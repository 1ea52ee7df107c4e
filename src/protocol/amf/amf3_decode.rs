//! AMF3 decoder with its three reference tables (strings, objects, traits).

use super::amf3::*;
use super::budget::{Budget, Region, Shape};
use super::read::{self, capacity, ensure_fits};
use super::AmfError;

/// A class description; objects may point back at it by index.
struct Traits {
    class_name: Option<String>,
    dynamic: bool,
    sealed: Vec<String>,
    /// Bytes of text copied when an object reuses these traits.
    text_len: usize,
}

pub(crate) struct Decoder<'a, 'b, 'l> {
    /// The input at the start of this AMF3 context: object references are offsets into it.
    base: &'a [u8],
    budget: &'b mut Budget<'l>,
    strings: Vec<String>,
    objects: Vec<Region>,
    traits: Vec<Traits>,
}

/// What follows a reference-or-inline U29 header.
enum Header {
    Reference(u32),
    Inline(u32),
}

impl<'a, 'b, 'l> Decoder<'a, 'b, 'l> {
    pub(crate) fn new(base: &'a [u8], budget: &'b mut Budget<'l>) -> Self {
        Decoder {
            base,
            budget,
            strings: Vec::new(),
            objects: Vec::new(),
            traits: Vec::new(),
        }
    }

    pub(crate) fn value(&mut self, input: &mut &'a [u8]) -> Result<Amf3Value, AmfError> {
        let start = self.base.len().saturating_sub(input.len());
        let marker = read::u8(input)?;
        self.budget.value()?;
        match marker {
            UNDEFINED => Ok(Amf3Value::Undefined),
            NULL => Ok(Amf3Value::Null),
            FALSE => Ok(Amf3Value::Boolean(false)),
            TRUE => Ok(Amf3Value::Boolean(true)),
            // Sign-extend the 29-bit two's complement value.
            INTEGER => Ok(Amf3Value::Integer(((u29(input)? << 3) as i32) >> 3)),
            DOUBLE => Ok(Amf3Value::Double(read::f64(input)?)),
            STRING => Ok(Amf3Value::String(self.string(input)?)),
            XML_DOC | XML => {
                let len = match header(input)? {
                    Header::Reference(i) => return self.reference(i),
                    Header::Inline(len) => len as usize,
                };
                self.budget.text(len);
                let text = read::text(input, len)?;
                self.flat(start, Shape::flat(0, len));
                Ok(if marker == XML {
                    Amf3Value::Xml(text)
                } else {
                    Amf3Value::XmlDoc(text)
                })
            }
            DATE => {
                if let Header::Reference(i) = header(input)? {
                    return self.reference(i);
                }
                let millis = read::f64(input)?;
                self.flat(start, Shape::flat(0, 0));
                Ok(Amf3Value::Date(millis))
            }
            BYTE_ARRAY => {
                let len = match header(input)? {
                    Header::Reference(i) => return self.reference(i),
                    Header::Inline(len) => len as usize,
                };
                self.budget.text(len);
                let bytes = read::take(input, len)?.to_vec();
                self.flat(start, Shape::flat(0, len));
                Ok(Amf3Value::ByteArray(bytes))
            }
            VECTOR_INT | VECTOR_UINT | VECTOR_DOUBLE => self.numeric_vector(marker, start, input),
            ARRAY => self.array(start, input),
            OBJECT => self.object(start, input),
            VECTOR_OBJECT => self.object_vector(start, input),
            DICTIONARY => self.dictionary(start, input),
            other => Err(AmfError::UnknownMarker(other)),
        }
    }

    /// Registers a complete flat value in the object table.
    fn flat(&mut self, start: usize, shape: Shape) {
        self.objects.push(Region {
            start,
            shape: Some(shape),
        });
    }

    /// Decodes a container with `body`, registered in the object table
    /// before its contents (that is the order indices count in).
    fn complex<F>(
        &mut self,
        start: usize,
        input: &mut &'a [u8],
        body: F,
    ) -> Result<Amf3Value, AmfError>
    where
        F: FnOnce(&mut Self, &mut &'a [u8]) -> Result<Amf3Value, AmfError>,
    {
        let mark = self.budget.enter()?;
        let slot = self.objects.len();
        self.objects.push(Region { start, shape: None });
        let value = body(self, input)?;
        let shape = self.budget.leave(mark);
        if let Some(region) = self.objects.get_mut(slot) {
            region.shape = Some(shape);
        }
        Ok(value)
    }

    /// Resolves an object reference by decoding its inline bytes again;
    /// entries added meanwhile are dropped so indices stay as they were.
    fn reference(&mut self, index: u32) -> Result<Amf3Value, AmfError> {
        let bad = AmfError::BadReference(index);
        let region = *self.objects.get(index as usize).ok_or(bad.clone())?;
        // Still open: an ancestor of this value, a cycle we cannot build.
        let shape = region.shape.ok_or(bad.clone())?;
        let mut again = self.base.get(region.start..).ok_or(bad)?;
        self.budget.reuse(shape)?;
        let lens = (self.strings.len(), self.objects.len(), self.traits.len());
        self.budget.begin_replay();
        let result = self.value(&mut again);
        self.budget.end_replay();
        self.strings.truncate(lens.0);
        self.objects.truncate(lens.1);
        self.traits.truncate(lens.2);
        result
    }

    /// UTF-8-vr: an inline string (added to the table unless empty) or a
    /// reference to an earlier one.
    fn string(&mut self, input: &mut &'a [u8]) -> Result<String, AmfError> {
        match header(input)? {
            Header::Reference(index) => {
                let s = self
                    .strings
                    .get(index as usize)
                    .ok_or(AmfError::BadReference(index))?;
                self.budget.copied_text(s.len())?;
                Ok(s.clone())
            }
            Header::Inline(len) => {
                let len = len as usize;
                self.budget.text(len);
                let s = read::text(input, len)?;
                if !s.is_empty() {
                    self.strings.push(s.clone());
                }
                Ok(s)
            }
        }
    }

    /// Name/value pairs up to the empty name.
    fn pairs(&mut self, input: &mut &'a [u8]) -> Result<Vec<(String, Amf3Value)>, AmfError> {
        let mut pairs = Vec::new();
        loop {
            let key = self.string(input)?;
            if key.is_empty() {
                return Ok(pairs);
            }
            let value = self.value(input)?;
            pairs.push((key, value));
        }
    }

    fn array(&mut self, start: usize, input: &mut &'a [u8]) -> Result<Amf3Value, AmfError> {
        let count = match header(input)? {
            Header::Reference(i) => return self.reference(i),
            Header::Inline(count) => count as usize,
        };
        self.complex(start, input, |d, input| {
            let assoc = d.pairs(input)?;
            ensure_fits(input, count, 1)?;
            let mut dense = Vec::with_capacity(capacity(count));
            for _ in 0..count {
                dense.push(d.value(input)?);
            }
            Ok(Amf3Value::Array { assoc, dense })
        })
    }

    fn object(&mut self, start: usize, input: &mut &'a [u8]) -> Result<Amf3Value, AmfError> {
        let flags = match header(input)? {
            Header::Reference(i) => return self.reference(i),
            Header::Inline(flags) => flags,
        };
        self.complex(start, input, |d, input| {
            let traits = d.traits(flags, input)?;
            let (class_name, dynamic, names) = match d.traits.get(traits) {
                Some(t) => {
                    d.budget.copied_text(t.text_len)?;
                    (t.class_name.clone(), t.dynamic, t.sealed.clone())
                }
                None => return Err(AmfError::BadReference(traits as u32)),
            };
            ensure_fits(input, names.len(), 1)?;
            let mut sealed = Vec::with_capacity(capacity(names.len()));
            for name in names {
                let value = d.value(input)?;
                sealed.push((name, value));
            }
            let dynamic = if dynamic { Some(d.pairs(input)?) } else { None };
            Ok(Amf3Value::Object {
                class_name,
                sealed,
                dynamic,
            })
        })
    }

    /// Reads inline traits into the table, or checks a traits reference;
    /// returns the table index. `flags` is the object header without its
    /// inline-object bit.
    fn traits(&mut self, flags: u32, input: &mut &'a [u8]) -> Result<usize, AmfError> {
        if flags & 0b1 == 0 {
            let index = flags >> 1;
            return match self.traits.get(index as usize) {
                Some(_) => Ok(index as usize),
                None => Err(AmfError::BadReference(index)),
            };
        }
        let externalizable = flags & 0b10 != 0;
        let dynamic = flags & 0b100 != 0;
        let count = (flags >> 3) as usize;
        let class_name = self.string(input)?;
        if externalizable {
            return Err(AmfError::Externalizable(class_name));
        }
        ensure_fits(input, count, 1)?;
        let mut sealed = Vec::with_capacity(capacity(count));
        let mut text_len = class_name.len();
        for _ in 0..count {
            let name = self.string(input)?;
            text_len += name.len();
            sealed.push(name);
        }
        self.traits.push(Traits {
            class_name: (!class_name.is_empty()).then_some(class_name),
            dynamic,
            sealed,
            text_len,
        });
        Ok(self.traits.len() - 1)
    }

    fn numeric_vector(
        &mut self,
        marker: u8,
        start: usize,
        input: &mut &'a [u8],
    ) -> Result<Amf3Value, AmfError> {
        let count = match header(input)? {
            Header::Reference(i) => return self.reference(i),
            Header::Inline(count) => count as usize,
        };
        let fixed = read::u8(input)? != 0;
        let size = if marker == VECTOR_DOUBLE { 8 } else { 4 };
        ensure_fits(input, count, size)?;
        self.budget.charge(count)?;
        let value = match marker {
            VECTOR_INT => Amf3Value::VectorInt(
                (0..count)
                    .map(|_| read::i32(input))
                    .collect::<Result<_, _>>()?,
                fixed,
            ),
            VECTOR_UINT => Amf3Value::VectorUint(
                (0..count)
                    .map(|_| read::u32(input))
                    .collect::<Result<_, _>>()?,
                fixed,
            ),
            _ => Amf3Value::VectorDouble(
                (0..count)
                    .map(|_| read::f64(input))
                    .collect::<Result<_, _>>()?,
                fixed,
            ),
        };
        self.flat(start, Shape::flat(count, 0));
        Ok(value)
    }

    fn object_vector(&mut self, start: usize, input: &mut &'a [u8]) -> Result<Amf3Value, AmfError> {
        let count = match header(input)? {
            Header::Reference(i) => return self.reference(i),
            Header::Inline(count) => count as usize,
        };
        self.complex(start, input, |d, input| {
            let fixed = read::u8(input)? != 0;
            let type_name = d.string(input)?;
            ensure_fits(input, count, 1)?;
            let mut items = Vec::with_capacity(capacity(count));
            for _ in 0..count {
                items.push(d.value(input)?);
            }
            Ok(Amf3Value::VectorObject {
                type_name,
                items,
                fixed,
            })
        })
    }

    fn dictionary(&mut self, start: usize, input: &mut &'a [u8]) -> Result<Amf3Value, AmfError> {
        let count = match header(input)? {
            Header::Reference(i) => return self.reference(i),
            Header::Inline(count) => count as usize,
        };
        self.complex(start, input, |d, input| {
            let weak = read::u8(input)? != 0;
            ensure_fits(input, count, 2)?;
            let mut entries = Vec::with_capacity(capacity(count));
            for _ in 0..count {
                let key = d.value(input)?;
                let value = d.value(input)?;
                entries.push((key, value));
            }
            Ok(Amf3Value::Dictionary { weak, entries })
        })
    }
}

/// Reads a U29 whose low bit says inline (1) or reference (0).
fn header(input: &mut &[u8]) -> Result<Header, AmfError> {
    let v = u29(input)?;
    Ok(if v & 1 == 1 {
        Header::Inline(v >> 1)
    } else {
        Header::Reference(v >> 1)
    })
}

/// Reads a variable-length unsigned 29-bit integer.
pub(crate) fn u29(input: &mut &[u8]) -> Result<u32, AmfError> {
    let mut v: u32 = 0;
    for _ in 0..3 {
        let b = read::u8(input)?;
        if b & 0x80 == 0 {
            return Ok(v << 7 | u32::from(b));
        }
        v = v << 7 | u32::from(b & 0x7F);
    }
    Ok(v << 8 | u32::from(read::u8(input)?))
}
