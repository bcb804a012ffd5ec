//! What a store that evaluates queries itself does after matching: key order, the
//! version check, and sort/skip/limit/projection. Shared by the host's embedded store
//! and the Spin key-value adapter, so both return the same documents in the same order.

use crate::{Projection, Sort, values_equal};
use bson::{Bson, Document};

/// The storage key of a document: its `_id` with a type tag, so ids of different types
/// never collide and ObjectIds and strings sort in their natural order. Scans in key
/// order are therefore scans in `_id` order, the default order of `find`.
pub fn id_key(id: &Bson) -> Vec<u8> {
    match id {
        Bson::ObjectId(o) => [&[0x07u8][..], &o.bytes()].concat(),
        Bson::String(s) => [&[0x02u8][..], s.as_bytes()].concat(),
        other => {
            let mut out = vec![0xff];
            out.extend(bson::doc! {"": other.clone()}.to_vec().unwrap_or_default());
            out
        }
    }
}

/// Whether `doc` is at `expected` version (optimistic concurrency). A missing field
/// is `null` and never matches; numbers compare across int/long/double.
pub fn version_matches(doc: &Document, expected: i64) -> bool {
    values_equal(
        doc.get("version").unwrap_or(&Bson::Null),
        &Bson::Int64(expected),
    )
}

/// Order, window and project matched documents, each given decoded (to sort and
/// project) and as its stored bytes (returned untouched when nothing is projected).
/// `matches` must be in `_id` order; the sort is stable and ties fall back to `_id`.
pub fn select(
    mut matches: Vec<(Document, Vec<u8>)>,
    sort: Option<&Sort>,
    skip: u32,
    limit: u32,
    projection: Option<&Projection>,
) -> Result<Vec<Vec<u8>>, bson::error::Error> {
    if let Some(sort) = sort {
        matches.sort_by(|a, b| sort.compare(&a.0, &b.0));
    }
    matches
        .into_iter()
        .skip(skip as usize)
        .take(limit as usize)
        .map(|(doc, bytes)| match projection {
            Some(p) => p.apply(doc).to_vec(),
            None => Ok(bytes),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId};

    #[test]
    fn keys_order_like_ids_and_never_collide_across_types() {
        let (a, b) = (ObjectId::new(), ObjectId::new());
        assert!(id_key(&Bson::ObjectId(a)) < id_key(&Bson::ObjectId(b)));
        assert!(id_key(&"a".into()) < id_key(&"b".into()));
        assert_ne!(id_key(&Bson::Int32(7)), id_key(&Bson::Int64(7)));
        assert_ne!(id_key(&"7".into()), id_key(&Bson::Int32(7)));
    }

    #[test]
    fn version_check_compares_numbers_and_refuses_missing() {
        assert!(version_matches(&doc! {"version": 3}, 3));
        assert!(version_matches(&doc! {"version": 3.0}, 3));
        assert!(!version_matches(&doc! {"version": 4_i64}, 3));
        assert!(!version_matches(&doc! {}, 0));
    }

    #[test]
    fn select_sorts_windows_and_projects() {
        let docs: Vec<_> = [("a", 3), ("b", 1), ("c", 2)]
            .into_iter()
            .map(|(id, n)| {
                let d = doc! {"_id": id, "n": n, "x": true};
                let bytes = d.to_vec().unwrap();
                (d, bytes)
            })
            .collect();
        let sort = Sort::parse(&doc! {"n": -1}).unwrap();
        let projection = Projection::parse(&doc! {"x": 0}).unwrap();
        let out = select(docs.clone(), Some(&sort), 1, 1, Some(&projection)).unwrap();
        let got: Vec<Document> = out
            .iter()
            .map(|b| Document::from_reader(b.as_slice()).unwrap())
            .collect();
        assert_eq!(got, vec![doc! {"_id": "c", "n": 2}]);
        // Without sort or projection: stored bytes, in the given order.
        let out = select(docs.clone(), None, 0, 10, None).unwrap();
        assert_eq!(out, docs.into_iter().map(|d| d.1).collect::<Vec<_>>());
    }
}
