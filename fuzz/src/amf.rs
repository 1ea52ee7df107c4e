//! AMF0 and AMF3 decoders on arbitrary bytes; whatever decodes must come
//! back equal (NaN equal to NaN) after encode -> decode, and re-encoding
//! must be stable byte for byte.

use bytes::BytesMut;
use cascade::protocol::amf::{
    decode_amf0, decode_amf0_all, decode_amf3, encode_amf0, encode_amf3, Amf0Value, Amf3Value,
    AmfLimits,
};

use super::Input;

/// Flag bit 0: AMF3 instead of AMF0. Bit 1: small limits (depth 4, 64 items).
pub fn amf(data: &[u8]) {
    let input = Input::new(data, 0);
    let limits = if input.flags & 2 != 0 {
        AmfLimits {
            max_depth: 4,
            max_items: 64,
        }
    } else {
        AmfLimits::default()
    };
    if input.flags & 1 != 0 {
        amf3(input.payload, &limits);
    } else {
        amf0(input.payload, &limits);
    }
}

fn amf0(bytes: &[u8], limits: &AmfLimits) {
    let mut rest = bytes;
    if decode_amf0(&mut rest, limits).is_ok() {
        assert!(rest.len() < bytes.len(), "a value consumed nothing");
    }
    let Ok(values) = decode_amf0_all(bytes, limits) else {
        return;
    };
    let mut wire = BytesMut::new();
    for v in &values {
        encode_amf0(v, &mut wire);
    }
    let again = decode_amf0_all(&wire, limits).expect("re-encoded AMF0 failed to decode");
    assert!(
        again.len() == values.len() && values.iter().zip(&again).all(|(a, b)| eq0(a, b)),
        "AMF0 round trip changed the values:\n{values:?}\n{again:?}"
    );
    let mut wire2 = BytesMut::new();
    for v in &again {
        encode_amf0(v, &mut wire2);
    }
    assert_eq!(wire, wire2, "AMF0 re-encoding is not stable");
}

fn amf3(bytes: &[u8], limits: &AmfLimits) {
    let mut rest = bytes;
    let Ok(value) = decode_amf3(&mut rest, limits) else {
        return;
    };
    assert!(rest.len() < bytes.len(), "a value consumed nothing");
    let mut wire = BytesMut::new();
    encode_amf3(&value, &mut wire);
    let mut input = &wire[..];
    let again = decode_amf3(&mut input, limits).expect("re-encoded AMF3 failed to decode");
    assert!(
        input.is_empty(),
        "re-encoded AMF3 left {} bytes",
        input.len()
    );
    assert!(
        eq3(&value, &again),
        "AMF3 round trip changed the value:\n{value:?}\n{again:?}"
    );
    let mut wire2 = BytesMut::new();
    encode_amf3(&again, &mut wire2);
    assert_eq!(wire, wire2, "AMF3 re-encoding is not stable");
}

/// Same bits, or both NaN.
fn eq_f64(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn eq_all<T>(a: &[T], b: &[T], eq: impl Fn(&T, &T) -> bool) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| eq(x, y))
}

fn eq_props0(a: &[(String, Amf0Value)], b: &[(String, Amf0Value)]) -> bool {
    eq_all(a, b, |(ka, va), (kb, vb)| ka == kb && eq0(va, vb))
}

fn eq_props3(a: &[(String, Amf3Value)], b: &[(String, Amf3Value)]) -> bool {
    eq_all(a, b, |(ka, va), (kb, vb)| ka == kb && eq3(va, vb))
}

pub fn eq0(a: &Amf0Value, b: &Amf0Value) -> bool {
    use Amf0Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) => eq_f64(*x, *y),
        (V::Object(x), V::Object(y)) | (V::EcmaArray(x), V::EcmaArray(y)) => eq_props0(x, y),
        (V::StrictArray(x), V::StrictArray(y)) => eq_all(x, y, eq0),
        (
            V::Date {
                millis: m1,
                timezone: t1,
            },
            V::Date {
                millis: m2,
                timezone: t2,
            },
        ) => eq_f64(*m1, *m2) && t1 == t2,
        (
            V::TypedObject {
                class_name: c1,
                properties: p1,
            },
            V::TypedObject {
                class_name: c2,
                properties: p2,
            },
        ) => c1 == c2 && eq_props0(p1, p2),
        (V::Amf3(x), V::Amf3(y)) => eq3(x, y),
        _ => a == b,
    }
}

pub fn eq3(a: &Amf3Value, b: &Amf3Value) -> bool {
    use Amf3Value as V;
    match (a, b) {
        (V::Double(x), V::Double(y)) | (V::Date(x), V::Date(y)) => eq_f64(*x, *y),
        (
            V::Array {
                assoc: a1,
                dense: d1,
            },
            V::Array {
                assoc: a2,
                dense: d2,
            },
        ) => eq_props3(a1, a2) && eq_all(d1, d2, eq3),
        (
            V::Object {
                class_name: c1,
                sealed: s1,
                dynamic: y1,
            },
            V::Object {
                class_name: c2,
                sealed: s2,
                dynamic: y2,
            },
        ) => {
            c1 == c2
                && eq_props3(s1, s2)
                && match (y1, y2) {
                    (Some(x), Some(y)) => eq_props3(x, y),
                    (None, None) => true,
                    _ => false,
                }
        }
        (V::VectorDouble(x, f1), V::VectorDouble(y, f2)) => {
            f1 == f2 && eq_all(x, y, |p, q| eq_f64(*p, *q))
        }
        (
            V::VectorObject {
                type_name: t1,
                items: i1,
                fixed: f1,
            },
            V::VectorObject {
                type_name: t2,
                items: i2,
                fixed: f2,
            },
        ) => t1 == t2 && f1 == f2 && eq_all(i1, i2, eq3),
        (
            V::Dictionary {
                weak: w1,
                entries: e1,
            },
            V::Dictionary {
                weak: w2,
                entries: e2,
            },
        ) => w1 == w2 && eq_all(e1, e2, |(k1, v1), (k2, v2)| eq3(k1, k2) && eq3(v1, v2)),
        _ => a == b,
    }
}
