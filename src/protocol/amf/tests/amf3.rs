use super::limits;
use crate::protocol::amf::amf3::put_u29;
use crate::protocol::amf::amf3_decode::u29;
use crate::protocol::amf::{decode_amf3, encode_amf3, Amf3Value as V, AmfError};

fn decode_one(bytes: &[u8]) -> Result<V, AmfError> {
    let mut input = bytes;
    let v = decode_amf3(&mut input, &limits())?;
    assert!(input.is_empty(), "left {} bytes", input.len());
    Ok(v)
}

fn encode(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    encode_amf3(v, &mut out);
    out
}

#[test]
fn u29_boundaries() {
    let cases: &[(u32, &[u8])] = &[
        (0, &[0x00]),
        (0x7F, &[0x7F]),
        (0x80, &[0x81, 0x00]),
        (0x3FFF, &[0xFF, 0x7F]),
        (0x4000, &[0x81, 0x80, 0x00]),
        (0x1F_FFFF, &[0xFF, 0xFF, 0x7F]),
        (0x20_0000, &[0x80, 0xC0, 0x80, 0x00]),
        (0x1FFF_FFFF, &[0xFF, 0xFF, 0xFF, 0xFF]),
    ];
    for (value, bytes) in cases {
        let mut out = Vec::new();
        put_u29(*value, &mut out);
        assert_eq!(&out, bytes, "encode {value:#x}");
        let mut input = *bytes;
        assert_eq!(u29(&mut input).unwrap(), *value, "decode {value:#x}");
        assert!(input.is_empty());
    }
    assert_eq!(u29(&mut &[0x80, 0x80][..]), Err(AmfError::Truncated));
}

#[test]
fn integers_sign_extend_and_overflow_to_double() {
    assert_eq!(
        decode_one(&[0x04, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap(),
        V::Integer(-1)
    );
    assert_eq!(encode(&V::Integer(-1)), [0x04, 0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!(
        encode(&V::Integer(-(1 << 28))),
        [0x04, 0xC0, 0x80, 0x80, 0x00]
    );
    assert_eq!(
        decode_one(&[0x04, 0xC0, 0x80, 0x80, 0x00]).unwrap(),
        V::Integer(-(1 << 28))
    );
    assert_eq!(
        decode_one(&[0x04, 0xBF, 0xFF, 0xFF, 0xFF]).unwrap(),
        V::Integer((1 << 28) - 1)
    );
    let mut big = vec![0x05];
    big.extend(f64::from(1 << 28).to_be_bytes());
    assert_eq!(encode(&V::Integer(1 << 28)), big);
    assert_eq!(decode_one(&big).unwrap(), V::Double(f64::from(1 << 28)));
    assert_eq!(encode(&V::Integer(i32::MIN))[0], 0x05);
}

#[test]
fn scalar_markers() {
    assert_eq!(decode_one(&[0x00]).unwrap(), V::Undefined);
    assert_eq!(decode_one(&[0x01]).unwrap(), V::Null);
    assert_eq!(decode_one(&[0x02]).unwrap(), V::Boolean(false));
    assert_eq!(decode_one(&[0x03]).unwrap(), V::Boolean(true));
    let mut d = vec![0x05];
    d.extend(0.5f64.to_be_bytes());
    assert_eq!(decode_one(&d).unwrap(), V::Double(0.5));
    assert_eq!(
        decode_one(&[0x06, 0x07, b'a', b'b', b'c']).unwrap(),
        V::String("abc".into())
    );
    assert_eq!(decode_one(&[0x06, 0x01]).unwrap(), V::String(String::new()));
    assert_eq!(
        decode_one(&[0x07, 0x03, b'x']).unwrap(),
        V::XmlDoc("x".into())
    );
    assert_eq!(decode_one(&[0x0B, 0x03, b'x']).unwrap(), V::Xml("x".into()));
    let mut date = vec![0x08, 0x01];
    date.extend(86_400_000f64.to_be_bytes());
    assert_eq!(decode_one(&date).unwrap(), V::Date(86_400_000.0));
    assert_eq!(encode(&V::Date(86_400_000.0)), date);
    assert_eq!(
        decode_one(&[0x0C, 0x05, 1, 2]).unwrap(),
        V::ByteArray(vec![1, 2])
    );
    assert_eq!(decode_one(&[0x12]), Err(AmfError::UnknownMarker(0x12)));
    // Invalid UTF-8 is replaced, not fatal.
    assert_eq!(
        decode_one(&[0x06, 0x03, 0xC3]).unwrap(),
        V::String("\u{FFFD}".into())
    );
}

#[test]
fn vectors_and_dictionary() {
    let mut b = vec![0x0D, 0x05, 0x01];
    b.extend((-2i32).to_be_bytes());
    b.extend(7i32.to_be_bytes());
    assert_eq!(decode_one(&b).unwrap(), V::VectorInt(vec![-2, 7], true));
    assert_eq!(encode(&V::VectorInt(vec![-2, 7], true)), b);

    let mut b = vec![0x0E, 0x03, 0x00];
    b.extend(u32::MAX.to_be_bytes());
    assert_eq!(
        decode_one(&b).unwrap(),
        V::VectorUint(vec![u32::MAX], false)
    );

    let mut b = vec![0x0F, 0x03, 0x00];
    b.extend(1.5f64.to_be_bytes());
    assert_eq!(decode_one(&b).unwrap(), V::VectorDouble(vec![1.5], false));

    // Vector.<String> of ["a", ref "a"]
    let b = [
        0x10, 0x05, 0x00, 0x0D, b'S', b't', b'r', b'i', b'n', b'g', 0x06, 0x03, b'a', 0x06, 0x02,
    ];
    let expected = V::VectorObject {
        type_name: "String".into(),
        items: vec![V::String("a".into()), V::String("a".into())],
        fixed: false,
    };
    assert_eq!(decode_one(&b).unwrap(), expected);

    // Dictionary {1: "x"}, weak keys.
    let b = [0x11, 0x03, 0x01, 0x04, 0x01, 0x06, 0x03, b'x'];
    let dict = V::Dictionary {
        weak: true,
        entries: vec![(V::Integer(1), V::String("x".into()))],
    };
    assert_eq!(decode_one(&b).unwrap(), dict);
    assert_eq!(encode(&dict), b);
}

#[test]
fn arrays_with_string_references() {
    // ["abc", ref string 0], with assoc {"abc": 1}.
    let b = [
        0x09, 0x05, 0x07, b'a', b'b', b'c', 0x04, 0x01, 0x01, 0x06, 0x00, 0x06, 0x00,
    ];
    let expected = V::Array {
        assoc: vec![("abc".into(), V::Integer(1))],
        dense: vec![V::String("abc".into()), V::String("abc".into())],
    };
    let v = decode_one(&b).unwrap();
    assert_eq!(v, expected);
    assert_eq!(v.get("abc"), Some(&V::Integer(1)));
    assert_eq!(decode_one(&[0x06, 0x02]), Err(AmfError::BadReference(1)));
}

#[test]
fn objects_traits_and_object_references() {
    // [ {sealed x: 1, dynamic d: true} of class "P",
    //   object with traits ref 0 (x: 2, no dynamic members),
    //   object ref 1 ]
    let b = [
        0x09, 0x07, 0x01, // array, 3 dense, no assoc
        0x0A, 0x1B, 0x03, b'P', 0x03, b'x', 0x04, 0x01, 0x03, b'd', 0x03, 0x01, // object 1
        0x0A, 0x01, 0x04, 0x02, 0x01, // object 2: traits ref 0, x = 2, end of dynamic
        0x0A, 0x02, // object reference 1
    ];
    let first = V::Object {
        class_name: Some("P".into()),
        sealed: vec![("x".into(), V::Integer(1))],
        dynamic: Some(vec![("d".into(), V::Boolean(true))]),
    };
    let second = V::Object {
        class_name: Some("P".into()),
        sealed: vec![("x".into(), V::Integer(2))],
        dynamic: Some(vec![]),
    };
    let v = decode_one(&b).unwrap();
    assert_eq!(
        v,
        V::Array {
            assoc: vec![],
            dense: vec![first.clone(), second, first.clone()]
        }
    );
    assert_eq!(first.get("x"), Some(&V::Integer(1)));
    assert_eq!(first.get("d"), Some(&V::Boolean(true)));

    // Anonymous sealed-only object round trip, exact bytes.
    let anon = V::Object {
        class_name: None,
        sealed: vec![("a".into(), V::Null)],
        dynamic: None,
    };
    let bytes = [0x0A, 0x13, 0x01, 0x03, b'a', 0x01];
    assert_eq!(encode(&anon), bytes);
    assert_eq!(decode_one(&bytes).unwrap(), anon);
}

#[test]
fn bad_references() {
    // Object referencing itself while open.
    assert_eq!(
        decode_one(&[0x09, 0x03, 0x01, 0x0A, 0x00]),
        Err(AmfError::BadReference(0))
    );
    // Object reference with an empty table.
    assert_eq!(decode_one(&[0x0A, 0x04]), Err(AmfError::BadReference(2)));
    // Traits reference with an empty table.
    assert_eq!(decode_one(&[0x0A, 0x05]), Err(AmfError::BadReference(1)));
}

#[test]
fn externalizable_objects_are_refused() {
    let b = [0x0A, 0x07, 0x07, b'F', b'o', b'o', 0x01];
    assert_eq!(decode_one(&b), Err(AmfError::Externalizable("Foo".into())));
}

#[test]
fn reference_copies_are_charged() {
    // A byte array of 64 KiB referenced 100 times inside an array.
    let mut b = vec![0x09];
    put_u29(101 << 1 | 1, &mut b);
    b.push(0x01);
    b.push(0x0C);
    put_u29(65_536 << 1 | 1, &mut b);
    b.extend(std::iter::repeat(0).take(65_536));
    for _ in 0..100 {
        b.extend([0x0C, 0x02]);
    }
    assert_eq!(decode_one(&b), Err(AmfError::TooManyItems));
}

#[test]
fn nesting_bomb_is_too_deep() {
    let mut b = Vec::new();
    for _ in 0..100_000 {
        b.extend([0x09, 0x03, 0x01]);
    }
    assert_eq!(decode_one(&b), Err(AmfError::TooDeep));
    // Objects with one dynamic member each.
    let mut b = Vec::new();
    for _ in 0..100_000 {
        b.extend([0x0A, 0x0B, 0x01, 0x03, b'a']);
    }
    assert_eq!(decode_one(&b), Err(AmfError::TooDeep));
}

#[test]
fn huge_lengths_with_short_input_are_truncated() {
    // Length 2^28-1 with a few bytes: must not allocate.
    for marker in [0x06, 0x07, 0x0B, 0x0C, 0x09, 0x10, 0x11] {
        let b = [marker, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x01, 0, 0, 0, 0];
        assert_eq!(
            decode_one(&b),
            Err(AmfError::Truncated),
            "marker {marker:#x}"
        );
    }
    for marker in [0x0D, 0x0E, 0x0F] {
        let b = [marker, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0, 0, 0, 0];
        assert_eq!(
            decode_one(&b),
            Err(AmfError::Truncated),
            "marker {marker:#x}"
        );
    }
    // Sealed count 2^25-1 in inline traits.
    let b = [0x0A, 0xFF, 0xFF, 0xFF, 0xF3, 0x01, 0, 0, 0];
    assert_eq!(decode_one(&b), Err(AmfError::Truncated));
}

#[test]
fn numeric_vector_elements_count_as_items() {
    let mut b = vec![0x0D];
    put_u29(70_000 << 1 | 1, &mut b);
    b.push(0);
    b.extend(std::iter::repeat(0).take(70_000 * 4));
    assert_eq!(decode_one(&b), Err(AmfError::TooManyItems));
}

#[test]
fn references_inside_a_referenced_value_keep_their_meaning() {
    let b = [
        0x09, 0x05, 0x01, // outer array (object 0), 2 dense
        0x09, 0x07, 0x01, // A1 (object 1), 3 dense
        0x0A, 0x13, 0x01, 0x03, b's', 0x04, 0x05, // O1: inline traits 0 {s}, s = 5
        0x0A, 0x01, 0x04, 0x06, // O2: traits ref 0, s = 6
        0x06, 0x00, // string ref 0: "s"
        0x09, 0x02, // object ref 1: A1 again
    ];
    let obj = |n| V::Object {
        class_name: None,
        sealed: vec![("s".into(), V::Integer(n))],
        dynamic: None,
    };
    let a1 = V::Array {
        assoc: vec![],
        dense: vec![obj(5), obj(6), V::String("s".into())],
    };
    let expected = V::Array {
        assoc: vec![],
        dense: vec![a1.clone(), a1],
    };
    assert_eq!(decode_one(&b).unwrap(), expected);
}

#[test]
fn reference_chains_cannot_deepen_past_the_limit() {
    // Outer array of n items: [], [ref prev], [ref prev], ... each one deeper.
    let chain = |n: u32| {
        let mut b = vec![0x09];
        put_u29(n << 1 | 1, &mut b);
        b.extend([0x01, 0x09, 0x01, 0x01]);
        for i in 1..n {
            b.extend([0x09, 0x03, 0x01, 0x09]);
            put_u29(i << 1, &mut b);
        }
        b
    };
    assert!(decode_one(&chain(20)).is_ok());
    assert_eq!(decode_one(&chain(40)), Err(AmfError::TooDeep));
}
