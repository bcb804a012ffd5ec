//! What a store that evaluates queries itself does after matching: key order, the
//! version check, and sort/skip/limit/projection. Shared by the host's embedded store
//! and the Spin key-value adapter, so both return the same documents in the same order.

use crate::{Projection, QueryError, Sort, values_equal};
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
    max_bytes: usize,
    projection: Option<&Projection>,
) -> Result<Vec<Vec<u8>>, SelectError> {
    let mut window = Window::new(sort, skip, limit, max_bytes);
    for (doc, bytes) in matches {
        if !window.offer(doc, bytes) {
            break;
        }
    }
    window.finish(projection)
}

/// Why a window could not produce its documents.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The candidates exceeded the byte budget: a caller's error, like a bad filter.
    #[error(transparent)]
    TooLarge(#[from] QueryError),
    /// A projected document could not be encoded: the store's problem.
    #[error("encoding a projected document: {0}")]
    Encode(#[from] bson::error::Error),
}

/// `select` fed one match at a time, holding at most about twice `skip + limit`
/// documents whatever the collection's size: a sorted scan keeps only the
/// candidates that can still end up in the window (a partial sort, pruned when the
/// buffer doubles), and an unsorted one stops after `skip + limit` matches. It also
/// holds at most about twice `max_bytes` of stored bytes: when the candidates it
/// must keep exceed `max_bytes`, the scan stops and the call fails
/// ([`QueryError::ResultTooLarge`]) rather than holding more for one caller.
/// (Conservative: a sorted scan may refuse on candidates that later, smaller
/// matches would have displaced.)
pub struct Window<'a> {
    sort: Option<&'a Sort>,
    skip: usize,
    keep: usize,
    items: Vec<(Document, Vec<u8>)>,
    max_bytes: usize,
    held_bytes: usize,
    over: bool,
}

impl<'a> Window<'a> {
    pub fn new(sort: Option<&'a Sort>, skip: u32, limit: u32, max_bytes: usize) -> Self {
        let skip = skip as usize;
        Self {
            sort,
            skip,
            keep: skip.saturating_add(limit as usize),
            items: Vec::new(),
            max_bytes,
            held_bytes: 0,
            over: false,
        }
    }

    /// Offer the next match, in `_id` order. `false`: no later match can enter the
    /// window (or the window is over its byte budget), so the caller may stop scanning.
    pub fn offer(&mut self, doc: Document, bytes: Vec<u8>) -> bool {
        if self.keep == 0 || self.over {
            return false;
        }
        self.held_bytes = self.held_bytes.saturating_add(bytes.len());
        self.items.push((doc, bytes));
        match self.sort {
            None => {
                self.over = self.held_bytes > self.max_bytes;
                !self.over && self.items.len() < self.keep
            }
            Some(_) => {
                if self.items.len() >= self.keep.saturating_mul(2).max(64)
                    || self.held_bytes > self.max_bytes.saturating_mul(2)
                {
                    self.prune();
                    self.over = self.held_bytes > self.max_bytes;
                }
                !self.over
            }
        }
    }

    /// Sort (stable: among equal keys, earlier matches -- lower `_id` -- stay first,
    /// both those kept from earlier prunes and the ones added since) and keep the
    /// first `skip + limit`.
    fn prune(&mut self) {
        if let Some(sort) = self.sort {
            self.items.sort_by(|a, b| sort.compare(&a.0, &b.0));
        }
        self.items.truncate(self.keep);
        self.held_bytes = self.items.iter().map(|(_, b)| b.len()).sum();
    }

    /// The window's documents, in order, projected (or their stored bytes untouched).
    pub fn finish(mut self, projection: Option<&Projection>) -> Result<Vec<Vec<u8>>, SelectError> {
        self.prune();
        if self.over || self.held_bytes > self.max_bytes {
            return Err(QueryError::ResultTooLarge(self.max_bytes).into());
        }
        Ok(self
            .items
            .into_iter()
            .skip(self.skip)
            .map(|(doc, bytes)| match projection {
                Some(p) => p.apply(doc).to_vec(),
                None => Ok(bytes),
            })
            .collect::<Result<_, _>>()?)
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
        let out = select(
            docs.clone(),
            Some(&sort),
            1,
            1,
            usize::MAX,
            Some(&projection),
        )
        .unwrap();
        let got: Vec<Document> = out
            .iter()
            .map(|b| Document::from_reader(b.as_slice()).unwrap())
            .collect();
        assert_eq!(got, vec![doc! {"_id": "c", "n": 2}]);
        // Without sort or projection: stored bytes, in the given order.
        let out = select(docs.clone(), None, 1, 5, usize::MAX, None).unwrap();
        assert_eq!(out.len(), 2);
        let out = select(docs.clone(), None, 0, 10, usize::MAX, None).unwrap();
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
                let mut w = Window::new(Some(&sort), skip, limit, usize::MAX);
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
        let mut w = Window::new(None, 2, 3, usize::MAX);
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

    #[test]
    fn a_window_holds_at_most_about_twice_its_byte_budget_and_refuses_past_it() {
        let sort = Sort::parse(&doc! {"k": -1}).unwrap();
        let big = |k: i32| {
            let d = doc! {"_id": k, "k": k, "pad": "x".repeat(1000)};
            let b = d.to_vec().unwrap();
            (d, b)
        };
        // Ten 1 KB documents wanted, a 5 KB budget: refused, sorted or not, and the
        // scan stops early instead of holding every match.
        for sorted in [Some(&sort), None] {
            let mut w = Window::new(sorted, 0, 10, 5_000);
            let mut offered = 0;
            let mut most = 0;
            for k in 0..1000 {
                offered += 1;
                let (d, b) = big(k);
                let more = w.offer(d, b);
                most = most.max(w.held());
                if !more {
                    break;
                }
            }
            assert!(
                offered < 1000,
                "{sorted:?}: the scan went on past the budget"
            );
            assert!(
                most <= 11,
                "{sorted:?}: held {most} documents of 1 KB for a 5 KB budget"
            );
            assert!(matches!(
                w.finish(None),
                Err(SelectError::TooLarge(QueryError::ResultTooLarge(5_000)))
            ));
        }
        // The same scan with room for the answer: the newest four, in order.
        let mut w = Window::new(Some(&sort), 0, 4, 5_000);
        for k in 0..1000 {
            let (d, b) = big(k);
            assert!(w.offer(d, b));
        }
        let got: Vec<i32> = w
            .finish(None)
            .unwrap()
            .iter()
            .map(|b| {
                Document::from_reader(b.as_slice())
                    .unwrap()
                    .get_i32("k")
                    .unwrap()
            })
            .collect();
        assert_eq!(got, [999, 998, 997, 996]);
    }
}
