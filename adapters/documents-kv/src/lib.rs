//! `app:data/documents` on Spin's key-value store (`fermyon:spin/key-value@2.0.0`).
//!
//! Under `spin up` nothing provides the handler's data import, so `spin.toml` declares
//! this component as the handler's dependency and Spin composes the two. Filters,
//! updates, sorts and projections are parsed and evaluated by `doc-query`, the code
//! the host's embedded store uses, so handlers answer the same way under Spin.
//!
//! What this is not, stated honestly (README: "Spin dev loop"):
//! - It is a development store. Every query other than `{_id: x}` lists every key of
//!   the store and reads every document of the collection: O(n) per request.
//! - Nothing is atomic across requests. The key-value interface has no transactions
//!   or compare-and-swap, so `expected-version` is a read-check-write and an `_id`
//!   conflict check is read-then-write: two concurrent writers can both succeed.
//! - The firewall runs here, inside the sandbox, not in a host: under Spin the
//!   boundary is the key-value store label the manifest grants, not the operator
//!   allow-list. Only the collections in [`GRANTED`] are served, as the host's
//!   default `--grant` does.

// wit-bindgen's generated export glue needs `unsafe` for the canonical ABI.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "app:data/provider",
});

use bson::{Bson, Document};
use doc_query::{Filter, Limits, Projection, QueryError, Sort, Update};
use exports::app::data::documents::{Error, FindOptions, Guest};
use spin_sdk::key_value::{self, Store};

/// Collections served; any other name answers `forbidden`.
pub const GRANTED: &[&str] = &["tasks"];

/// Key of a document: `doc/<collection>/<hex of doc_query::id_key(_id)>`. Hex keeps
/// the keys valid strings and makes their byte order the `_id` order.
const PREFIX: &str = "doc/";

struct Adapter;

export!(Adapter);

fn invalid(e: QueryError) -> Error {
    Error::Invalid(e.to_string())
}

fn kv_error(e: key_value::Error) -> Error {
    match e {
        key_value::Error::AccessDenied | key_value::Error::NoSuchStore => Error::Internal(
            "the key-value store `default` is not available to this component (spin.toml: key_value_stores)".into(),
        ),
        key_value::Error::StoreTableFull => {
            Error::Unavailable("too many key-value stores open; retry later".into())
        }
        key_value::Error::Other(m) => Error::Unavailable(format!("key-value store: {m}")),
    }
}

fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("stored document is not valid BSON: {e}"))
}

fn grant(collection: &str) -> Result<(), Error> {
    if GRANTED.contains(&collection) {
        return Ok(());
    }
    let shown: String = collection.chars().take(64).collect();
    Err(Error::Forbidden(format!(
        "collection `{shown}` is not granted"
    )))
}

fn decode(bytes: &[u8]) -> Result<Document, Error> {
    doc_query::decode(bytes, &Limits::default()).map_err(invalid)
}

fn key_prefix(collection: &str) -> String {
    format!("{PREFIX}{collection}/")
}

fn key(collection: &str, id: &Bson) -> String {
    let mut k = key_prefix(collection);
    for b in doc_query::id_key(id) {
        k.push_str(&format!("{b:02x}"));
    }
    k
}

/// A filter that passed the allow-list (the same parser as the host's).
struct Query {
    filter: Filter,
}

fn query(bytes: &[u8]) -> Result<Query, Error> {
    let filter = Filter::parse(&decode(bytes)?, &Limits::default()).map_err(invalid)?;
    Ok(Query { filter })
}

/// The collection's documents in `_id` order, or only the one the filter names.
/// Each is returned with its key, decoded and as stored.
struct Scan {
    store: Store,
    collection: String,
}

type Found = (String, Document, Vec<u8>);

impl Scan {
    fn open(collection: &str) -> Result<Self, Error> {
        grant(collection)?;
        Ok(Self {
            store: Store::open_default().map_err(kv_error)?,
            collection: collection.to_owned(),
        })
    }

    fn read(&self, key: String) -> Result<Option<Found>, Error> {
        let Some(bytes) = self.store.get(&key).map_err(kv_error)? else {
            return Ok(None);
        };
        let doc = Document::from_reader(bytes.as_slice()).map_err(corrupt)?;
        Ok(Some((key, doc, bytes)))
    }

    /// Every match in `_id` order; stops after `first_only` finds one.
    fn matches(&self, q: &Query, first_only: bool) -> Result<Vec<Found>, Error> {
        if let Some(id) = q.filter.id_equality() {
            return Ok(self.read(key(&self.collection, id))?.into_iter().collect());
        }
        let prefix = key_prefix(&self.collection);
        let mut keys: Vec<String> = self
            .store
            .get_keys()
            .map_err(kv_error)?
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .collect();
        keys.sort_unstable();
        let mut out = Vec::new();
        for k in keys {
            // A key deleted since the listing is simply not a match.
            if let Some(found) = self.read(k)?
                && q.filter.matches(&found.1)
            {
                out.push(found);
                if first_only {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn first(&self, q: &Query) -> Result<Option<Found>, Error> {
        Ok(self.matches(q, true)?.into_iter().next())
    }
}

impl Guest for Adapter {
    fn insert_one(collection: String, doc: Vec<u8>) -> Result<Vec<u8>, Error> {
        let scan = Scan::open(&collection)?;
        let doc = decode(&doc)?;
        doc_query::validate_document(&doc, &Limits::default()).map_err(invalid)?;
        let doc = doc_query::with_id(doc);
        let k = key(&collection, doc.get("_id").unwrap_or(&Bson::Null));
        if scan.store.exists(&k).map_err(kv_error)? {
            return Err(Error::Conflict("a document with this _id exists".into()));
        }
        let bytes = doc.to_vec().map_err(|e| Error::Invalid(e.to_string()))?;
        scan.store.set(&k, &bytes).map_err(kv_error)?;
        Ok(bytes)
    }

    fn find_one(collection: String, filter: Vec<u8>) -> Result<Option<Vec<u8>>, Error> {
        let scan = Scan::open(&collection)?;
        let q = query(&filter)?;
        Ok(scan.first(&q)?.map(|(_, _, bytes)| bytes))
    }

    fn find(
        collection: String,
        filter: Vec<u8>,
        options: FindOptions,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let scan = Scan::open(&collection)?;
        let q = query(&filter)?;
        let sort = options
            .sort
            .map(|b| Sort::parse(&decode(&b)?).map_err(invalid))
            .transpose()?;
        let projection = options
            .projection
            .map(|b| Projection::parse_checked(&decode(&b)?, &Limits::default()).map_err(invalid))
            .transpose()?;
        let skip = doc_query::find_skip(options.skip).map_err(invalid)?;
        let matches = scan
            .matches(&q, false)?
            .into_iter()
            .map(|(_, doc, bytes)| (doc, bytes))
            .collect();
        doc_query::select(
            matches,
            sort.as_ref(),
            skip,
            doc_query::find_limit(options.limit),
            Limits::default().max_result_bytes,
            projection.as_ref(),
        )
        .map_err(|e| match e {
            doc_query::SelectError::TooLarge(e) => invalid(e),
            doc_query::SelectError::Encode(e) => corrupt(e),
        })
    }

    fn count(collection: String, filter: Vec<u8>) -> Result<u64, Error> {
        let scan = Scan::open(&collection)?;
        let q = query(&filter)?;
        Ok(scan.matches(&q, false)?.len() as u64)
    }

    fn update_one(
        collection: String,
        filter: Vec<u8>,
        update: Vec<u8>,
        expected_version: Option<i64>,
    ) -> Result<Vec<u8>, Error> {
        let scan = Scan::open(&collection)?;
        let q = query(&filter)?;
        let update = Update::parse(&decode(&update)?, &Limits::default()).map_err(invalid)?;
        let Some((k, mut doc, _)) = scan.first(&q)? else {
            return Err(Error::NotFound);
        };
        if let Some(v) = expected_version
            && !doc_query::version_matches(&doc, v)
        {
            return Err(Error::Conflict("version mismatch".into()));
        }
        update.apply(&mut doc).map_err(invalid)?;
        let bytes = doc.to_vec().map_err(|e| Error::Invalid(e.to_string()))?;
        scan.store.set(&k, &bytes).map_err(kv_error)?;
        Ok(bytes)
    }

    fn delete_one(collection: String, filter: Vec<u8>) -> Result<(), Error> {
        let scan = Scan::open(&collection)?;
        let q = query(&filter)?;
        let Some((k, _, _)) = scan.first(&q)? else {
            return Err(Error::NotFound);
        };
        scan.store.delete(&k).map_err(kv_error)
    }
}
