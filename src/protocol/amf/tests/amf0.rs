use super::{limits, num, s16};
use crate::protocol::amf::{
    decode_amf0, decode_amf0_all, encode_amf0, Amf0Value as V, Amf3Value, AmfError, AmfLimits,
};

fn decode_one(bytes: &[u8]) -> Result<V, AmfError> {
    let mut input = bytes;
    let v = decode_amf0(&mut input, &limits())?;
    assert!(input.is_empty(), "left {} bytes", input.len());
    Ok(v)
}

fn encode(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    encode_amf0(v, &mut out);
    out
}

fn string(s: &str) -> Vec<u8> {
    let mut v = vec![0x02];
    v.extend(s16(s));
    v
}

/// The command ffmpeg (as a player) sends first, built byte by byte.
fn ffmpeg_connect_bytes() -> Vec<u8> {
    let mut b = string("connect");
    b.extend(num(1.0));
    b.push(0x03);
    let mut prop = |k: &str, v: Vec<u8>| {
        b.extend(s16(k));
        b.extend(v);
    };
    prop("app", string("live"));
    prop("flashVer", string("LNX 9,0,124,2"));
    prop("tcUrl", string("rtmp://127.0.0.1:1935/live"));
    prop("fpad", vec![0x01, 0x00]);
    prop("capabilities", num(15.0));
    prop("audioCodecs", num(4071.0));
    prop("videoCodecs", num(252.0));
    prop("videoFunction", num(1.0));
    b.extend([0x00, 0x00, 0x09]);
    b
}

#[test]
fn ffmpeg_connect_command() {
    let bytes = ffmpeg_connect_bytes();
    // Spot-check the hand encoding against known wire bytes.
    assert_eq!(
        &bytes[..10],
        &[0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't']
    );
    assert_eq!(&bytes[10..19], &[0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]);

    let values = decode_amf0_all(&bytes, &limits()).unwrap();
    let expected = vec![
        V::from("connect"),
        V::Number(1.0),
        V::object([
            ("app", V::from("live")),
            ("flashVer", V::from("LNX 9,0,124,2")),
            ("tcUrl", V::from("rtmp://127.0.0.1:1935/live")),
            ("fpad", V::Boolean(false)),
            ("capabilities", V::Number(15.0)),
            ("audioCodecs", V::Number(4071.0)),
            ("videoCodecs", V::Number(252.0)),
            ("videoFunction", V::Number(1.0)),
        ]),
    ];
    assert_eq!(values, expected);
    let obj = &values[2];
    assert_eq!(obj.get("app").and_then(V::as_str), Some("live"));
    assert_eq!(obj.get("fpad").and_then(V::as_bool), Some(false));
    assert_eq!(obj.get("audioCodecs").and_then(V::as_f64), Some(4071.0));
    assert!(obj.get("missing").is_none());
    assert_eq!(values[0].as_str(), Some("connect"));

    // Our encoder produces exactly the same bytes.
    let mut out = Vec::new();
    for v in &expected {
        encode_amf0(v, &mut out);
    }
    assert_eq!(out, bytes);
}

#[test]
fn scalar_markers() {
    assert_eq!(decode_one(&num(-2.5)).unwrap(), V::Number(-2.5));
    assert_eq!(decode_one(&[0x01, 0x01]).unwrap(), V::Boolean(true));
    assert_eq!(decode_one(&[0x01, 0x00]).unwrap(), V::Boolean(false));
    assert_eq!(decode_one(&string("hé")).unwrap(), V::from("hé"));
    assert_eq!(decode_one(&[0x05]).unwrap(), V::Null);
    assert_eq!(decode_one(&[0x06]).unwrap(), V::Undefined);
    assert_eq!(decode_one(&[0x0D]).unwrap(), V::Unsupported);

    let mut date = vec![0x0B];
    date.extend(1_700_000_000_000f64.to_be_bytes());
    date.extend((-60i16).to_be_bytes());
    let date_value = V::Date {
        millis: 1_700_000_000_000.0,
        timezone: -60,
    };
    assert_eq!(decode_one(&date).unwrap(), date_value);
    assert_eq!(encode(&date_value), date);

    let long = [0x0C, 0, 0, 0, 3, b'a', b'b', b'c'];
    assert_eq!(decode_one(&long).unwrap(), V::from("abc"));
    let xml = [0x0F, 0, 0, 0, 4, b'<', b'a', b'/', b'>'];
    assert_eq!(decode_one(&xml).unwrap(), V::Xml("<a/>".into()));
    assert_eq!(encode(&V::Xml("<a/>".into())), xml);
}

#[test]
fn long_strings_use_long_marker() {
    let short = "x".repeat(65_535);
    assert_eq!(encode(&V::String(short.clone()))[0], 0x02);
    let long = "x".repeat(65_536);
    let bytes = encode(&V::String(long.clone()));
    assert_eq!(&bytes[..5], &[0x0C, 0x00, 0x01, 0x00, 0x00]);
    assert_eq!(decode_one(&bytes).unwrap(), V::String(long));
}

#[test]
fn invalid_utf8_is_replaced_not_fatal() {
    let bytes = [0x02, 0x00, 0x03, b'a', 0xFF, b'b'];
    assert_eq!(decode_one(&bytes).unwrap(), V::from("a\u{FFFD}b"));
}

#[test]
fn ecma_array_count_is_advisory() {
    // Claims 5 entries, has 1, then the end marker.
    let mut b = vec![0x08, 0, 0, 0, 5];
    b.extend(s16("duration"));
    b.extend(num(10.0));
    b.extend([0, 0, 9]);
    let expected = V::ecma_array([("duration", V::Number(10.0))]);
    assert_eq!(decode_one(&b).unwrap(), expected);

    // Claims 0 entries, has 1, and the input ends without an end marker.
    let mut b = vec![0x08, 0, 0, 0, 0];
    b.extend(s16("duration"));
    b.extend(num(10.0));
    assert_eq!(decode_one(&b).unwrap(), expected);
}

#[test]
fn strict_array_and_typed_object() {
    let mut b = vec![0x0A, 0, 0, 0, 2];
    b.extend(num(1.0));
    b.push(0x05);
    let arr = V::StrictArray(vec![V::Number(1.0), V::Null]);
    assert_eq!(decode_one(&b).unwrap(), arr);
    assert_eq!(encode(&arr), b);

    let mut b = vec![0x10];
    b.extend(s16("flex.Foo"));
    b.extend(s16("x"));
    b.extend(num(2.0));
    b.extend([0, 0, 9]);
    let typed = V::TypedObject {
        class_name: "flex.Foo".into(),
        properties: vec![("x".into(), V::Number(2.0))],
    };
    assert_eq!(decode_one(&b).unwrap(), typed);
    assert_eq!(typed.get("x"), Some(&V::Number(2.0)));
    assert_eq!(encode(&typed), b);
}

#[test]
fn avmplus_switch() {
    // 0x11 then an AMF3 integer 5, then an AMF0 null.
    let values = decode_amf0_all(&[0x11, 0x04, 0x05, 0x05], &limits()).unwrap();
    assert_eq!(values, vec![V::Amf3(Amf3Value::Integer(5)), V::Null]);
    assert_eq!(values[0].as_f64(), Some(5.0));
    assert_eq!(encode(&values[0]), [0x11, 0x04, 0x05]);

    // Each switch starts fresh AMF3 tables: the second cannot reference
    // the string the first one defined.
    let bytes = [0x11, 0x06, 0x07, b'a', b'b', b'c', 0x11, 0x06, 0x00];
    assert_eq!(
        decode_amf0_all(&bytes, &limits()),
        Err(AmfError::BadReference(0))
    );
}

#[test]
fn refused_and_unknown_markers() {
    assert_eq!(decode_one(&[0x04]), Err(AmfError::Unsupported("MovieClip")));
    assert_eq!(decode_one(&[0x0E]), Err(AmfError::Unsupported("RecordSet")));
    assert_eq!(decode_one(&[0x09]), Err(AmfError::UnexpectedObjectEnd));
    assert_eq!(decode_one(&[0x12]), Err(AmfError::UnknownMarker(0x12)));
    assert_eq!(decode_one(&[]), Err(AmfError::Truncated));
    assert_eq!(decode_one(&[0x00, 1, 2]), Err(AmfError::Truncated));
    // An object cut before its end marker.
    let mut b = vec![0x03];
    b.extend(s16("a"));
    b.push(0x05);
    assert_eq!(decode_one(&b), Err(AmfError::Truncated));
}

#[test]
fn references_resolve_to_copies() {
    // [ {a: 1}, ref 1, ref 0? ] -- index 0 is the outer array (still open),
    // index 1 the object.
    let mut b = vec![0x0A, 0, 0, 0, 2, 0x03];
    b.extend(s16("a"));
    b.extend(num(1.0));
    b.extend([0, 0, 9]);
    b.extend([0x07, 0x00, 0x01]);
    let obj = V::object([("a", V::Number(1.0))]);
    assert_eq!(
        decode_one(&b).unwrap(),
        V::StrictArray(vec![obj.clone(), obj.clone()])
    );

    // A reference to the still-open outer array is a cycle: refused.
    let mut cyc = vec![0x0A, 0, 0, 0, 1];
    cyc.extend([0x07, 0x00, 0x00]);
    assert_eq!(decode_one(&cyc), Err(AmfError::BadReference(0)));

    // Out of range.
    assert_eq!(
        decode_one(&[0x07, 0x00, 0x03]),
        Err(AmfError::BadReference(3))
    );

    // References persist across the values of one message, and a
    // reference inside a referenced value still points at the original.
    let mut msg = vec![0x03];
    msg.extend(s16("k"));
    msg.extend(string("v"));
    msg.extend([0, 0, 9]);
    msg.extend([0x0A, 0, 0, 0, 1, 0x07, 0, 0]); // index 1: [ref 0]
    msg.extend([0x0A, 0, 0, 0, 2, 0x07, 0, 1, 0x07, 0, 0]); // index 2
    let o = V::object([("k", V::from("v"))]);
    let inner = V::StrictArray(vec![o.clone()]);
    assert_eq!(
        decode_amf0_all(&msg, &limits()).unwrap(),
        vec![o.clone(), inner.clone(), V::StrictArray(vec![inner, o])]
    );
}

#[test]
fn reference_copies_are_charged() {
    // One object of 100 properties referenced 1000 times: 100k values.
    let mut b = vec![0x0A, 0, 0, 0x03, 0xE9, 0x03];
    for i in 0..100 {
        b.extend(s16(&format!("k{i}")));
        b.push(0x05);
    }
    b.extend([0, 0, 9]);
    for _ in 0..1000 {
        b.extend([0x07, 0x00, 0x01]);
    }
    assert_eq!(decode_one(&b), Err(AmfError::TooManyItems));
    let roomy = AmfLimits {
        max_depth: 32,
        max_items: 1_000_000,
    };
    assert!(decode_amf0(&mut &b[..], &roomy).is_ok());
}

#[test]
fn reference_chains_cannot_deepen_past_the_limit() {
    // Each value is [ref previous]: nesting grows by one per value.
    let mut b = vec![0x0A, 0, 0, 0, 0];
    for i in 0..40u16 {
        b.extend([0x0A, 0, 0, 0, 1, 0x07]);
        b.extend(i.to_be_bytes());
    }
    assert_eq!(decode_amf0_all(&b, &limits()), Err(AmfError::TooDeep));
    let mut short = vec![0x0A, 0, 0, 0, 0];
    for i in 0..20u16 {
        short.extend([0x0A, 0, 0, 0, 1, 0x07]);
        short.extend(i.to_be_bytes());
    }
    assert_eq!(decode_amf0_all(&short, &limits()).unwrap().len(), 21);
}

#[test]
fn nesting_bomb_is_too_deep() {
    let mut b = Vec::new();
    for _ in 0..100_000 {
        b.extend([0x0A, 0, 0, 0, 1]);
    }
    assert_eq!(decode_one(&b), Err(AmfError::TooDeep));

    let mut b = Vec::new();
    for _ in 0..100_000 {
        b.extend([0x03, 0x00, 0x01, b'a']);
    }
    assert_eq!(decode_one(&b), Err(AmfError::TooDeep));
}

#[test]
fn depth_limit_is_exact() {
    let nested = |levels: usize| {
        let mut b = Vec::new();
        for _ in 0..levels {
            b.extend([0x0A, 0, 0, 0, 1]);
        }
        b.push(0x05);
        b
    };
    assert!(decode_one(&nested(32)).is_ok());
    assert_eq!(decode_one(&nested(33)), Err(AmfError::TooDeep));
}

#[test]
fn huge_lengths_with_short_input_are_truncated() {
    assert_eq!(
        decode_one(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'a']),
        Err(AmfError::Truncated)
    );
    assert_eq!(
        decode_one(&[0x0F, 0x10, 0, 0, 0, b'a']),
        Err(AmfError::Truncated)
    );
    assert_eq!(
        decode_one(&[0x02, 0xFF, 0xFF, b'a']),
        Err(AmfError::Truncated)
    );
    // Would be 4 billion elements; must fail before reserving them.
    assert_eq!(
        decode_one(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05, 0x05]),
        Err(AmfError::Truncated)
    );
}

#[test]
fn item_limit_counts_all_values() {
    let mut b = vec![0x0A, 0x00, 0x01, 0x00, 0x00]; // 65536 elements
    b.extend(std::iter::repeat(0x05).take(65_536));
    // 65536 nulls plus the array itself.
    assert_eq!(decode_one(&b), Err(AmfError::TooManyItems));
    let mut b = vec![0x0A, 0x00, 0x00, 0xFF, 0xFF];
    b.extend(std::iter::repeat(0x05).take(65_535));
    assert!(decode_one(&b).is_ok());
}

#[test]
fn empty_keys_are_kept_when_not_an_end_marker() {
    let mut b = vec![0x03];
    b.extend(s16(""));
    b.extend(num(3.0));
    b.extend([0, 0, 9]);
    let v = V::object([("", V::Number(3.0))]);
    assert_eq!(decode_one(&b).unwrap(), v);
    assert_eq!(encode(&v), b);
}
