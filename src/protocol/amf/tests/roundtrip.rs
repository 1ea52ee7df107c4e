//! Encode then decode must give the value back, for any value the encoder
//! can represent exactly (no NaN: it never equals itself).

use proptest::collection::vec;
use proptest::prelude::*;

use crate::protocol::amf::{
    decode_amf0, decode_amf0_all, decode_amf3, encode_amf0, encode_amf3, Amf0Value, Amf3Value,
    AmfLimits,
};

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("no NaN", |f| !f.is_nan()),
        Just(0.0),
        Just(-1.5)
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[a-zA-Z]{0,8}"]
}

/// Names that cannot be mistaken for a list terminator.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![".{1,10}", "[a-z]{1,6}"]
}

fn amf3_value() -> impl Strategy<Value = Amf3Value> {
    let leaf = prop_oneof![
        Just(Amf3Value::Undefined),
        Just(Amf3Value::Null),
        any::<bool>().prop_map(Amf3Value::Boolean),
        (-(1i32 << 28)..(1i32 << 28)).prop_map(Amf3Value::Integer),
        finite().prop_map(Amf3Value::Double),
        text().prop_map(Amf3Value::String),
        text().prop_map(Amf3Value::XmlDoc),
        text().prop_map(Amf3Value::Xml),
        finite().prop_map(Amf3Value::Date),
        vec(any::<u8>(), 0..16).prop_map(Amf3Value::ByteArray),
        (vec(any::<i32>(), 0..6), any::<bool>()).prop_map(|(v, f)| Amf3Value::VectorInt(v, f)),
        (vec(any::<u32>(), 0..6), any::<bool>()).prop_map(|(v, f)| Amf3Value::VectorUint(v, f)),
        (vec(finite(), 0..6), any::<bool>()).prop_map(|(v, f)| Amf3Value::VectorDouble(v, f)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            (vec((name(), inner.clone()), 0..4), vec(inner.clone(), 0..4))
                .prop_map(|(assoc, dense)| Amf3Value::Array { assoc, dense }),
            (
                proptest::option::of(name()),
                vec((text(), inner.clone()), 0..4),
                proptest::option::of(vec((name(), inner.clone()), 0..4)),
            )
                .prop_map(|(class_name, sealed, dynamic)| Amf3Value::Object {
                    class_name,
                    sealed,
                    dynamic
                }),
            (text(), vec(inner.clone(), 0..4), any::<bool>()).prop_map(
                |(type_name, items, fixed)| {
                    Amf3Value::VectorObject {
                        type_name,
                        items,
                        fixed,
                    }
                }
            ),
            (any::<bool>(), vec((inner.clone(), inner), 0..3))
                .prop_map(|(weak, entries)| Amf3Value::Dictionary { weak, entries }),
        ]
    })
}

fn amf0_value() -> impl Strategy<Value = Amf0Value> {
    let leaf = prop_oneof![
        finite().prop_map(Amf0Value::Number),
        any::<bool>().prop_map(Amf0Value::Boolean),
        text().prop_map(Amf0Value::String),
        Just(Amf0Value::Null),
        Just(Amf0Value::Undefined),
        Just(Amf0Value::Unsupported),
        (finite(), any::<i16>())
            .prop_map(|(millis, timezone)| Amf0Value::Date { millis, timezone }),
        text().prop_map(Amf0Value::Xml),
        amf3_value().prop_map(Amf0Value::Amf3),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        // Empty names are fine in AMF0: only an empty name followed by the
        // end marker ends an object.
        let props = vec((text(), inner.clone()), 0..4).boxed();
        prop_oneof![
            props.clone().prop_map(Amf0Value::Object),
            props.clone().prop_map(Amf0Value::EcmaArray),
            vec(inner, 0..4).prop_map(Amf0Value::StrictArray),
            (text(), props).prop_map(|(class_name, properties)| Amf0Value::TypedObject {
                class_name,
                properties
            }),
        ]
    })
}

proptest! {
    #[test]
    fn amf3_round_trip(value in amf3_value()) {
        let mut bytes = Vec::new();
        encode_amf3(&value, &mut bytes);
        let mut input = &bytes[..];
        let decoded = decode_amf3(&mut input, &AmfLimits::default()).unwrap();
        prop_assert!(input.is_empty());
        prop_assert_eq!(decoded, value);
    }

    #[test]
    fn amf0_round_trip(values in vec(amf0_value(), 1..4)) {
        let mut bytes = Vec::new();
        for v in &values {
            encode_amf0(v, &mut bytes);
        }
        let decoded = decode_amf0_all(&bytes, &AmfLimits::default()).unwrap();
        prop_assert_eq!(decoded, values);
    }

    /// Arbitrary bytes never panic.
    #[test]
    fn garbage_never_panics(bytes in vec(any::<u8>(), 0..256)) {
        let limits = AmfLimits::default();
        let _ = decode_amf0_all(&bytes, &limits);
        let _ = decode_amf3(&mut &bytes[..], &limits);
        let _ = decode_amf0(&mut &bytes[..], &limits);
    }

    /// A strict prefix of a valid encoding never decodes to the whole value.
    #[test]
    fn truncation_is_detected(value in amf0_value(), cut in any::<prop::sample::Index>()) {
        let mut bytes = Vec::new();
        encode_amf0(&value, &mut bytes);
        let keep = cut.index(bytes.len());
        // An ECMA array (anywhere inside the value) may legitimately end with
        // the input instead of its end marker.
        prop_assume!(!format!("{value:?}").contains("EcmaArray"));
        let decoded = decode_amf0(&mut &bytes[..keep], &AmfLimits::default());
        prop_assert_ne!(decoded, Ok(value));
    }

    /// Valid encodings with one byte changed never panic: this reaches
    /// far deeper into the decoders than random bytes do.
    #[test]
    fn mutated_input_never_panics(
        value in amf0_value(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = Vec::new();
        encode_amf0(&value, &mut bytes);
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = decode_amf0_all(&bytes, &AmfLimits::default());
        if let Some(rest) = bytes.get(1..) {
            let _ = decode_amf3(&mut &rest[..], &AmfLimits::default());
        }
    }
}
