//! The embedded store: redb (a pure-Rust, ACID, copy-on-write B-tree file), one table
//! per collection, documents as raw BSON keyed by their `_id`. Every acknowledged
//! write has been committed with `Durability::Immediate` (fsync) first, so a crash
//! loses nothing that was acknowledged.
//!
//! Queries are evaluated with `doc-query`, the same code that validates them, so the
//! embedded store and MongoDB agree on semantics. Limits, stated honestly: there are
//! no secondary indexes (a filter other than `{_id: x}` scans the collection), and
//! writes are serialized (redb has a single writer).

use super::{Change, FindSpec, Query, Store, StoreError};
use bson::{Document, RawDocumentBuf};
use doc_query::{id_equality, id_key};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use std::path::Path;
use std::sync::Arc;

pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("embedded store: {e}"))
}

fn table(coll: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(coll)
}

fn decode(bytes: &[u8]) -> Result<Document, StoreError> {
    Document::from_reader(bytes).map_err(internal)
}

fn raw(bytes: Vec<u8>) -> Result<RawDocumentBuf, StoreError> {
    RawDocumentBuf::from_bytes(bytes).map_err(internal)
}

/// A document's key and its stored BSON bytes.
type KeyAndBytes = (Vec<u8>, Vec<u8>);

/// The first document (in key order) that matches: its key and stored bytes. An
/// `_id` lookup is a key lookup and never decodes the document.
fn first_match<T>(t: &T, q: &Query) -> Result<Option<KeyAndBytes>, StoreError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    if let Some(id) = id_equality(&q.raw) {
        let key = id_key(id);
        return Ok(t
            .get(key.as_slice())
            .map_err(internal)?
            .map(|v| (key, v.value().to_vec())));
    }
    for entry in t.iter().map_err(internal)? {
        let (k, v) = entry.map_err(internal)?;
        if q.filter.matches(&decode(v.value())?) {
            return Ok(Some((k.value().to_vec(), v.value().to_vec())));
        }
    }
    Ok(None)
}

/// Every match, decoded (for sorting and projection) along with its stored bytes.
fn all_matches<T>(t: &T, q: &Query) -> Result<Vec<(Document, Vec<u8>)>, StoreError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    if id_equality(&q.raw).is_some() {
        return first_match(t, q)?
            .map(|(_, bytes)| Ok((decode(&bytes)?, bytes)))
            .into_iter()
            .collect();
    }
    let mut out = Vec::new();
    for entry in t.iter().map_err(internal)? {
        let (_, v) = entry.map_err(internal)?;
        let doc = decode(v.value())?;
        if q.filter.matches(&doc) {
            out.push((doc, v.value().to_vec()));
        }
    }
    Ok(out)
}

impl EmbeddedStore {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
        let path = dir.join("store.redb");
        let db = Database::create(&path)
            .with_context(|| format!("opening embedded store {}", path.display()))?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Run a read against a collection; a collection never written to reads as empty.
    fn read<R>(
        &self,
        coll: &str,
        empty: R,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self.db.begin_read().map_err(internal)?;
        match txn.open_table(table(coll)) {
            Ok(t) => f(&t),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(e) => Err(internal(e)),
        }
    }

    /// Run a write transaction off the async workers (commit fsyncs), and commit it
    /// only if `f` succeeds.
    async fn write<R: Send + 'static>(
        &self,
        coll: &str,
        f: impl FnOnce(&mut redb::Table<&'static [u8], &'static [u8]>) -> Result<R, StoreError>
        + Send
        + 'static,
    ) -> Result<R, StoreError> {
        let db = self.db.clone();
        let coll = coll.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(internal)?;
            txn.set_durability(Durability::Immediate)
                .map_err(internal)?;
            let r = {
                let mut t = txn.open_table(table(&coll)).map_err(internal)?;
                f(&mut t)
            };
            match r {
                Ok(v) => {
                    txn.commit().map_err(internal)?;
                    Ok(v)
                }
                Err(e) => {
                    txn.abort().map_err(internal)?;
                    Err(e)
                }
            }
        })
        .await
        .map_err(internal)?
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn insert_one(&self, coll: &str, doc: Document) -> Result<RawDocumentBuf, StoreError> {
        let id = doc
            .get("_id")
            .cloned()
            .ok_or_else(|| internal("insert without _id"))?;
        let bytes = doc.to_vec().map_err(internal)?;
        let stored = bytes.clone();
        self.write(coll, move |t| {
            let key = id_key(&id);
            if t.get(key.as_slice()).map_err(internal)?.is_some() {
                return Err(StoreError::Conflict(
                    "a document with this _id exists".into(),
                ));
            }
            t.insert(key.as_slice(), bytes.as_slice())
                .map_err(internal)?;
            Ok(())
        })
        .await?;
        raw(stored)
    }

    async fn find_one(&self, coll: &str, q: &Query) -> Result<Option<RawDocumentBuf>, StoreError> {
        // Point reads are microseconds: done inline rather than on the blocking pool.
        self.read(coll, None, |t| {
            first_match(t, q)?.map(|(_, bytes)| raw(bytes)).transpose()
        })
    }

    async fn find(
        &self,
        coll: &str,
        q: &Query,
        spec: &FindSpec,
    ) -> Result<Vec<RawDocumentBuf>, StoreError> {
        let docs = self.read(coll, Vec::new(), |t| all_matches(t, q))?;
        doc_query::select(
            docs,
            spec.sort.as_ref().map(|(_, s)| s),
            spec.skip,
            spec.limit,
            spec.projection.as_ref().map(|(_, p)| p),
        )
        .map_err(internal)?
        .into_iter()
        .map(raw)
        .collect()
    }

    async fn count(&self, coll: &str, q: &Query) -> Result<u64, StoreError> {
        self.read(coll, 0, |t| {
            if q.raw.is_empty() {
                return t.len().map_err(internal);
            }
            Ok(all_matches(t, q)?.len() as u64)
        })
    }

    async fn update_one(
        &self,
        coll: &str,
        q: &Query,
        change: &Change,
        expected_version: Option<i64>,
    ) -> Result<RawDocumentBuf, StoreError> {
        let (q, change) = (q.clone(), change.clone());
        let bytes = self
            .write(coll, move |t| {
                let Some((key, bytes)) = first_match(t, &q)? else {
                    return Err(StoreError::NotFound);
                };
                let mut doc = decode(&bytes)?;
                if let Some(v) = expected_version
                    && !doc_query::version_matches(&doc, v)
                {
                    return Err(StoreError::Conflict("version mismatch".into()));
                }
                change.update.apply(&mut doc)?;
                let next = doc.to_vec().map_err(internal)?;
                t.insert(key.as_slice(), next.as_slice())
                    .map_err(internal)?;
                Ok(next)
            })
            .await?;
        raw(bytes)
    }

    async fn delete_one(&self, coll: &str, q: &Query) -> Result<(), StoreError> {
        let q = q.clone();
        self.write(coll, move |t| {
            let Some((key, _)) = first_match(t, &q)? else {
                return Err(StoreError::NotFound);
            };
            t.remove(key.as_slice()).map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.begin_read().map(drop).map_err(internal)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every acknowledged write was committed with Durability::Immediate.
        Ok(())
    }
}
