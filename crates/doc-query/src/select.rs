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
    matches: Vec<(Document, Vec<u8>)>,
    sort: Option<&Sort>,
    skip: u32,
    limit: u32,
    projection: Option<&Projection>,
) -> Result<Vec<Vec<u8>>, bson::error::Error> {
    let mut window = Window::new(sort, skip, limit);
    for (doc, bytes) in matches {
        if !window.offer(doc, bytes) {
            break;
        }
    }
    window.finish(projection)
}

/// `select` fed one match at a time, holding at most about twice `skip + limit`
/// documents whatever the collection's size: a sorted scan keeps only the
/// candidates that can still end up in the window (a partial sort, pruned when the
/// buffer doubles), and an unsorted one stops after `skip + limit` matches.
pub struct Window<'a> {
    sort: Option<&'a Sort>,
    skip: usize,
    keep: usize,
    items: Vec<(Document, Vec<u8>)>,
}

impl<'a> Window<'a> {
    pub fn new(sort: Option<&'a Sort>, skip: u32, limit: u32) -> Self {
        let skip = skip as usize;
        Self {
            sort,
            skip,
            keep: skip.saturating_add(limit as usize),
            items: Vec::new(),
        }
    }

    /// Offer the next match, in `_id` order. `false`: no later match can enter the
    /// window, so the caller may stop scanning.
    pub fn offer(&mut self, doc: Document, bytes: Vec<u8>) -> bool {
        if self.keep == 0 {
            return false;
        }
        self.items.push((doc, bytes));
        match self.sort {
            None => self.items.len() < self.keep,
            Some(sort) => {
                if self.items.len() >= self.keep.saturating_mul(2).max(64) {
                    // Stable: among equal keys, earlier matches (lower `_id`) stay first,
                    // both those kept from earlier prunes and the ones added since.
                    self.items.sort_by(|a, b| sort.compare(&a.0, &b.0));
                    self.items.truncate(self.keep);
                }
                true
            }
        }
    }

    /// The window's documents, in order, projected (or their stored bytes untouched).
    pub fn finish(
        mut self,
        projection: Option<&Projection>,
    ) -> Result<Vec<Vec<u8>>, bson::error::Error> {
        if let Some(sort) = self.sort {
            self.items.sort_by(|a, b| sort.compare(&a.0, &b.0));
        }
        self.items
            .into_iter()
            .skip(self.skip)
            .take(self.keep - self.skip)
            .map(|(doc, bytes)| match projection {
                Some(p) => p.apply(doc).to_vec(),
                None => Ok(bytes),
            })
            .collect()
    }

    /// Documents held now (for tests of the bound).
    pub fn held(&self) -> usize {
        self.items.len()
    }
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
        let out = select(docs.clone(), None, 1, 5, None).unwrap();
        assert_eq!(out.len(), 2);
        let out = select(docs.clone(), None, 0, 10, None).unwrap();
        assert_eq!(out, docs.into_iter().map(|d| d.1).collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;
    use bson::doc;

    /// Many documents with few distinct sort keys: ties must fall back to `_id`
    /// (arrival) order exactly as a full stable sort does, across prunes.
    #[test]
    fn bounded_window_equals_full_sort_and_holds_little() {
        let docs: Vec<(Document, Vec<u8>)> = (0..5000)
            .map(|i: i32| {
                let d = doc! {"_id": i, "k": (i * 7919) % 13, "p": i % 3};
                let b = d.to_vec().unwrap();
                (d, b)
            })
            .collect();
        for spec in [doc! {"k": 1}, doc! {"k": -1, "p": 1}, doc! {"p": -1}] {
            let sort = Sort::parse(&spec).unwrap();
            for (skip, limit) in [(0, 1), (0, 21), (17, 100), (4990, 50)] {
                let mut full = docs.clone();
                full.sort_by(|a, b| sort.compare(&a.0, &b.0));
                let want: Vec<Vec<u8>> = full
                    .into_iter()
                    .skip(skip as usize)
                    .take(limit as usize)
                    .map(|d| d.1)
                    .collect();
                let mut w = Window::new(Some(&sort), skip, limit);
                let mut most = 0;
                for (d, b) in docs.iter().cloned() {
                    w.offer(d, b);
                    most = most.max(w.held());
                }
                assert!(
                    most <= ((skip + limit) as usize * 2).max(64),
                    "held {most} for skip {skip} limit {limit}"
                );
                assert_eq!(w.finish(None).unwrap(), want, "{spec:?} {skip} {limit}");
            }
        }
    }

    #[test]
    fn unsorted_window_stops_early() {
        let mut w = Window::new(None, 2, 3);
        let offered = (0..100)
            .take_while(|i: &i32| {
                let d = doc! {"_id": *i};
                let b = d.to_vec().unwrap();
                w.offer(d, b)
            })
            .count();
        assert_eq!(offered, 4, "the fifth match fills the window");
        assert_eq!(w.finish(None).unwrap().len(), 3);
    }
}
