//! The index encoding (`sort_bytes`) against the sort order it stands for, and the
//! bounds a filter gives an index reader (`Filter::sort_bounds`) against what the
//! filter matches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bson::{Bson, DateTime, Document, Timestamp, doc, oid::ObjectId};
use doc_query::{Filter, Limits, compare_total, sort_bytes, sort_bytes_of};
use proptest::prelude::*;

/// Values of every type that has an encoding, with many ties and near-ties.
fn value() -> impl Strategy<Value = Bson> {
    let double = prop_oneof![
        any::<f64>(),
        Just(0.0),
        Just(-0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        (-4i32..4).prop_map(|i| f64::from(i) / 2.0),
    ];
    prop_oneof![
        Just(Bson::Null),
        Just(Bson::Undefined),
        Just(Bson::MinKey),
        Just(Bson::MaxKey),
        any::<i32>().prop_map(Bson::Int32),
        (-3i32..3).prop_map(Bson::Int32),
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(Bson::Int64),
        (-3i64..3).prop_map(Bson::Int64),
        double.prop_map(Bson::Double),
        "[ab\\x00\u{e9}]{0,4}".prop_map(Bson::String),
        "[ab]{0,2}".prop_map(Bson::Symbol),
        any::<[u8; 12]>().prop_map(|b| Bson::ObjectId(ObjectId::from_bytes(b))),
        any::<bool>().prop_map(Bson::Boolean),
        any::<i64>().prop_map(|m| Bson::DateTime(DateTime::from_millis(m))),
        (-3i64..3).prop_map(|m| Bson::DateTime(DateTime::from_millis(m))),
        (any::<u32>(), 0u32..3)
            .prop_map(|(time, increment)| Bson::Timestamp(Timestamp { time, increment })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn comparing_the_bytes_is_comparing_the_values(a in value(), b in value()) {
        let (ea, eb) = (sort_bytes(&a).unwrap(), sort_bytes(&b).unwrap());
        prop_assert_eq!(ea.cmp(&eb), compare_total(&a, &b), "{:?} vs {:?}", a, b);
    }

    /// An index key is the value's bytes and then the `_id`'s: the order of the
    /// values must survive whatever follows.
    #[test]
    fn the_order_survives_what_follows(a in value(), b in value(), x in any::<u8>(), y in any::<u8>()) {
        let order = compare_total(&a, &b);
        prop_assume!(order != std::cmp::Ordering::Equal);
        let mut ka = sort_bytes(&a).unwrap();
        ka.push(x);
        let mut kb = sort_bytes(&b).unwrap();
        kb.push(y);
        prop_assert_eq!(ka.cmp(&kb), order);
    }

    /// Every document a filter matches whose value has an encoding lies within the
    /// filter's bounds: the keyset cursor's filters (as the API builds them), range
    /// conditions, equalities, and those anded with other fields.
    #[test]
    fn a_matching_document_lies_within_the_bounds(
        docs in prop::collection::vec((value(), any::<[u8; 12]>(), any::<bool>()), 1..40),
        v in value(),
        w in value(),
        pivot in any::<[u8; 12]>(),
        shape in 0usize..10,
    ) {
        let id = Bson::ObjectId(ObjectId::from_bytes(pivot));
        let filter = match shape {
            0 => doc! {"$or": [{"f": {"$gt": v.clone()}}, {"f": v.clone(), "_id": {"$gt": id}}]},
            1 => doc! {"$or": [{"f": {"$lt": v.clone()}}, {"f": v.clone(), "_id": {"$lt": id}}, {"f": Bson::Null}]},
            2 => doc! {"$or": [{"f": Bson::Null, "_id": {"$gt": id}}, {"f": {"$ne": Bson::Null}}]},
            3 => doc! {"f": Bson::Null, "_id": {"$lt": id}},
            4 => doc! {"f": {"$gte": v.clone(), "$lte": v.clone()}},
            5 => doc! {"f": v.clone()},
            6 => doc! {"$and": [{"done": true}, {"f": {"$lte": v.clone()}}]},
            7 => doc! {"$or": [{"f": {"$gte": v.clone()}}, {"f": w.clone()}]},
            8 => doc! {"$or": [{"f": {"$lte": v.clone()}}, {"f": w.clone(), "done": true}]},
            _ => doc! {"done": false},
        };
        let Ok(f) = Filter::parse(&filter, &Limits::default()) else {
            return Ok(()); // values the allow-list refuses (regex-like, operators)
        };
        let (lo, hi) = f.sort_bounds("f");
        for (value, oid, done) in docs {
            let d: Document = doc! {"_id": ObjectId::from_bytes(oid), "f": value, "done": done};
            let Some(k) = sort_bytes_of(&d, "f") else { continue };
            if f.matches(&d) {
                if let Some(lo) = &lo { prop_assert!(&k >= lo, "{:?} below {:?} for {:?}", d, lo, filter); }
                if let Some(hi) = &hi { prop_assert!(&k <= hi, "{:?} above {:?} for {:?}", d, hi, filter); }
            }
        }
    }
}

#[test]
fn values_without_an_encoding_have_none() {
    for v in [
        Bson::Array(vec![Bson::Int32(1)]),
        Bson::Document(doc! {"a": 1}),
        Bson::Int64((1 << 53) + 1),
        Bson::Int64(i64::MIN),
        Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: vec![1],
        }),
    ] {
        assert_eq!(sort_bytes(&v), None, "{v:?}");
    }
    // A missing field sorts as null.
    assert_eq!(sort_bytes_of(&doc! {}, "f"), sort_bytes(&Bson::Null));
}

#[test]
fn the_cursor_filters_bound_the_side_an_index_is_read_from() {
    let v = Bson::DateTime(DateTime::from_millis(1_733_480_000_000));
    let id = ObjectId::new();
    let after = Filter::parse(
        &doc! {"$or": [{"f": {"$gt": v.clone()}}, {"f": v.clone(), "_id": {"$gt": id}}]},
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(after.sort_bounds("f"), (sort_bytes(&v), None));
    assert_eq!(after.sort_bounds("other"), (None, None));
    let before = Filter::parse(
        &doc! {"$or": [{"f": {"$lt": v.clone()}}, {"f": v.clone(), "_id": {"$lt": id}}, {"f": Bson::Null}]},
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(before.sort_bounds("f"), (None, sort_bytes(&v)));
    let and = Filter::parse(
        &doc! {"status": "todo", "f": {"$gte": 1, "$lt": 5}},
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        and.sort_bounds("f"),
        (sort_bytes(&Bson::Int32(1)), sort_bytes(&Bson::Int32(5)))
    );
}
