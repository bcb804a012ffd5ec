//! The firewall's central property: whatever it accepts, the document rebuilt from
//! the parsed form (what MongoDB is sent) names only allow-listed operators, parses
//! again to itself, and means the same as the input (the embedded store's
//! evaluator gives the same answers for both on any document). And what a store
//! decodes of a stored document for a query (`Reads`) is enough: the filter and the
//! sort answer on it as on the whole document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bson::{Bson, Document, doc};
use doc_query::{Filter, Limits, Reads, Sort, Update};
use proptest::prelude::*;

const FILTER_OPS: [&str; 15] = [
    "$and", "$or", "$nor", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists",
    "$regex", "$options", "$not",
];
const UPDATE_OPS: [&str; 6] = ["$set", "$unset", "$inc", "$push", "$pull", "$each"];

fn scalar() -> impl Strategy<Value = Bson> {
    prop_oneof![
        (-3i32..4).prop_map(Bson::Int32),
        (-3i64..4).prop_map(Bson::Int64),
        (-2i32..3).prop_map(|n| Bson::Double(f64::from(n) / 2.0)),
        prop::sample::select(vec!["", "a", "ab", "B", "ba"]).prop_map(|s| Bson::String(s.into())),
        Just(Bson::Null),
        any::<bool>().prop_map(Bson::Boolean),
    ]
}

/// Values, including the hostile shapes: `$`-keys and regexes hidden at depth.
fn value() -> impl Strategy<Value = Bson> {
    scalar().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Bson::Array),
            prop::collection::vec((key(), inner), 0..3)
                .prop_map(|kv| Bson::Document(kv.into_iter().collect())),
            Just(Bson::RegularExpression(bson::Regex {
                pattern: "^a".try_into().unwrap(),
                options: "i".try_into().unwrap(),
            })),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "k", "$where", "$gt", "$elemMatch"]).prop_map(String::from)
}

fn path() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "a.k", "tags", "$where", "_id"]).prop_map(String::from)
}

fn op() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "$eq",
        "$ne",
        "$gt",
        "$gte",
        "$lt",
        "$lte",
        "$in",
        "$nin",
        "$exists",
        "$regex",
        "$not",
        "$type",
        "$size",
        "$elemMatch",
        "$expr",
    ])
    .prop_map(String::from)
}

fn condition() -> impl Strategy<Value = Bson> {
    prop_oneof![
        value(),
        prop::collection::vec((op(), value()), 1..3).prop_map(|ops| {
            Bson::Document(
                ops.into_iter()
                    .map(|(o, v)| match o.as_str() {
                        "$in" | "$nin" => (o, Bson::Array(vec![v, Bson::Int32(1)])),
                        "$regex" => (o, Bson::String("^a|b$".into())),
                        "$not" => (o, Bson::Document(doc! {"$gt": v})),
                        _ => (o, v),
                    })
                    .collect(),
            )
        }),
    ]
}

fn filter() -> impl Strategy<Value = Document> {
    let leaf = prop::collection::vec((path(), condition()), 0..3)
        .prop_map(|kv| kv.into_iter().collect::<Document>());
    leaf.prop_recursive(2, 12, 3, |inner| {
        (
            prop::sample::select(vec!["$and", "$or", "$nor", "$where"]),
            prop::collection::vec(inner, 1..3),
        )
            .prop_map(|(op, subs)| {
                let mut d = Document::new();
                d.insert(op, subs.into_iter().map(Bson::Document).collect::<Vec<_>>());
                d
            })
    })
}

fn sample_doc() -> impl Strategy<Value = Document> {
    (value(), value(), prop::collection::vec(scalar(), 0..4)).prop_map(|(a, b, tags)| {
        let mut d = doc! {"_id": 1, "b": b, "tags": tags};
        // Sometimes a document under `a` so `a.k` reaches something.
        d.insert("a", a);
        d
    })
}

/// Every `$`-key anywhere in `d`.
fn operators(d: &Document, out: &mut Vec<String>) {
    fn walk(v: &Bson, out: &mut Vec<String>) {
        match v {
            Bson::Document(d) => operators(d, out),
            Bson::Array(items) => items.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    for (k, v) in d {
        if k.starts_with('$') {
            out.push(k.clone());
        }
        walk(v, out);
    }
}

fn no_regex_values(d: &Document) -> bool {
    fn walk(v: &Bson) -> bool {
        match v {
            Bson::RegularExpression(_) => false,
            Bson::Document(d) => no_regex_values(d),
            Bson::Array(items) => items.iter().all(walk),
            _ => true,
        }
    }
    d.values().all(walk)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn accepted_filters_rebuild_to_the_same_meaning(input in filter(), docs in prop::collection::vec(sample_doc(), 1..6)) {
        let limits = Limits::default();
        let Ok(parsed) = Filter::parse(&input, &limits) else { return Ok(()); };
        let rebuilt = parsed.to_document();
        let mut ops = Vec::new();
        operators(&rebuilt, &mut ops);
        for op in &ops {
            prop_assert!(FILTER_OPS.contains(&op.as_str()), "{op} in {rebuilt:?} from {input:?}");
        }
        // Patterns only as `$regex`: a regex value means different things to the two stores.
        prop_assert!(no_regex_values(&rebuilt), "{rebuilt:?}");
        let reparsed = Filter::parse(&rebuilt, &limits).expect("the rebuilt filter parses");
        prop_assert_eq!(reparsed.to_document(), rebuilt.clone());
        for d in &docs {
            prop_assert_eq!(parsed.matches(d), reparsed.matches(d), "{:?} vs {:?} on {:?}", input, rebuilt, d);
        }
    }

    #[test]
    fn accepted_updates_rebuild_to_the_same_effect(
        fields in prop::collection::vec((prop::sample::select(vec!["$set", "$unset", "$inc", "$push", "$pull", "$rename"]), path(), condition()), 1..4),
        docs in prop::collection::vec(sample_doc(), 1..4),
    ) {
        let limits = Limits::default();
        let mut input = Document::new();
        for (op, p, v) in fields {
            let v = if op == "$inc" { Bson::Int32(1) } else { v };
            let entry = input.entry(op.to_owned()).or_insert_with(|| Bson::Document(Document::new()));
            if let Bson::Document(d) = entry { d.insert(p, v); }
        }
        let Ok(parsed) = Update::parse(&input, &limits) else { return Ok(()); };
        let rebuilt = parsed.to_document();
        let mut ops = Vec::new();
        operators(&rebuilt, &mut ops);
        for op in &ops {
            prop_assert!(UPDATE_OPS.contains(&op.as_str()) || FILTER_OPS.contains(&op.as_str()), "{op} in {rebuilt:?}");
        }
        let reparsed = Update::parse(&rebuilt, &limits).expect("the rebuilt update parses");
        prop_assert_eq!(reparsed.to_document(), rebuilt.clone());
        for d in &docs {
            let (mut x, mut y) = (d.clone(), d.clone());
            let (rx, ry) = (parsed.apply(&mut x), reparsed.apply(&mut y));
            prop_assert_eq!(rx.is_ok(), ry.is_ok());
            if rx.is_ok() { prop_assert_eq!(x, y); }
        }
    }

    #[test]
    fn filters_and_sorts_answer_the_same_on_the_fields_they_read(
        input in filter(),
        sort in prop::collection::vec((prop::sample::select(vec!["a", "b", "a.k", "tags", "_id", "z"]), any::<bool>()), 0..3),
        docs in prop::collection::vec((sample_doc(), scalar(), value()), 1..6),
    ) {
        let Ok(parsed) = Filter::parse(&input, &Limits::default()) else { return Ok(()); };
        let mut spec = Document::new();
        for (field, asc) in sort {
            spec.insert(field, if asc { 1 } else { -1 });
        }
        let sort = Sort::parse(&spec).expect("a valid sort");
        let reads = Reads::new(&parsed, Some(&sort), None);
        // Documents with fields nothing reads, and ids that differ and tie.
        let docs: Vec<Document> = docs
            .into_iter()
            .map(|(mut d, id, extra)| {
                d.insert("_id", id);
                d.insert("x", extra);
                d
            })
            .collect();
        let partial: Vec<Document> = docs
            .iter()
            .map(|d| reads.decode(&d.to_vec().unwrap()).unwrap())
            .collect();
        // Without a sort, what the filter alone reads.
        let unsorted = Reads::new(&parsed, None, None);
        for (d, p) in docs.iter().zip(&partial) {
            prop_assert!(!p.contains_key("x"), "{p:?} read a field no one reads");
            prop_assert_eq!(parsed.matches(d), parsed.matches(p), "{:?} on {:?} vs {:?}", input, d, p);
            let u = unsorted.decode(&d.to_vec().unwrap()).unwrap();
            prop_assert_eq!(parsed.matches(d), parsed.matches(&u), "{:?} on {:?} vs {:?}", input, d, u);
        }
        for (i, a) in docs.iter().enumerate() {
            for (j, b) in docs.iter().enumerate() {
                prop_assert_eq!(sort.compare(a, b), sort.compare(&partial[i], &partial[j]), "{:?}", spec);
            }
        }
        // A projection is applied to the document: it gets all of it.
        let whole = Reads::new(&parsed, Some(&sort), Some(&doc_query::Projection::parse(&doc! {"x": 0}).unwrap()));
        prop_assert_eq!(&whole.decode(&docs[0].to_vec().unwrap()).unwrap(), &docs[0]);
    }
}
