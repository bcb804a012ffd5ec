//! The embedded store: redb (a pure-Rust, ACID, copy-on-write B-tree file), one table
//! per collection, documents as raw BSON keyed by their `_id`. Every acknowledged
//! write has been committed with `Durability::Immediate` (fsync) first, so a crash
//! loses nothing that was acknowledged.
//!
//! Queries are evaluated with `doc-query`, the same code that validates them, so the
//! embedded store and MongoDB agree on semantics.
//!
//! The list orders ([`super::SORT_INDEXES`]: a field, then `_id`) are served from
//! index tables, written in the same transaction as the document, so an index can
//! never disagree with the documents. An index key is the order-preserving encoding
//! of the field's value followed by the `_id`'s ([`doc_query::sort_bytes`]); a
//! document whose value has no such encoding (an array, say) is listed in a side
//! table that every indexed read also considers. A sorted page reads its documents
//! from the index in order and stops once it has `skip + limit` matches, starting
//! where the filter's bounds on the field allow (the keyset cursor's), so it costs
//! the page, not the collection. A write that would give two documents one index
//! entry (their `_id`s compare equal, 1 and 1.0, and so do their sort values) is
//! refused as a conflict; such a pair stored before that refusal keeps its second
//! document in the side table. Other filters and orders scan the collection;
//! `count` with a filter scans too. Writes are serialized (redb has a single writer).
//!
//! Scans never run on the API workers: each worker is a single-threaded runtime, so
//! a scan done inline would stall every connection of that worker (a 20,000-task
//! sorted list took 0.9 s). They run on the blocking pool, at most `scan_threads`
//! at once, stop as soon as their caller gives up (the request deadline), and hold
//! at most about twice `skip + limit` documents (`doc_query::Window`). Only reads
//! as short as a point read run inline: a key lookup, and a page read from an index
//! that gets its matches within a small budget (`Budget::INLINE`; past it the page
//! is read again on the pool).
//!
//! A read decodes of each document only the fields its filter and sort read
//! (`doc_query::Reads`); the documents it returns are the stored bytes.

use super::{Change, FindSpec, Query, Store, StoreError, sort_indexes};
use bson::{Document, RawDocumentBuf};
use doc_query::{Reads, id_key, sort_bytes, sort_bytes_of};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Semaphore;

pub struct EmbeddedStore {
    db: Arc<Database>,
    /// Scans running at once on the blocking pool.
    scans: Arc<Semaphore>,
}

/// Tunables of the embedded store.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedOptions {
    /// redb's page cache (its default, 1 GiB, is more than a small service wants).
    pub cache_bytes: usize,
    /// Scans that may run at once; more wait (and time out with their request).
    pub scan_threads: usize,
}

/// Set when the caller of a scan has gone (its request timed out or was dropped);
/// the scan checks it as it goes and stops.
#[derive(Clone, Default)]
struct Abandoned(Arc<AtomicBool>);

impl Abandoned {
    fn check(&self) -> Result<(), StoreError> {
        if self.0.load(Ordering::Relaxed) {
            Err(StoreError::Unavailable(
                "scan abandoned by its caller".into(),
            ))
        } else {
            Ok(())
        }
    }
}

/// Marks the scan abandoned when the awaiting future is dropped before it ends.
struct AbandonOnDrop(Abandoned);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.0.store(true, Ordering::Relaxed);
    }
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("embedded store: {e}"))
}

fn table(coll: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(coll)
}

/// The index of `coll` on (`field`, `_id`): key = the two values' sort encodings,
/// value = the document's key. NUL cannot occur in a collection name.
fn index_name(coll: &str, field: &str) -> String {
    format!("{coll}\0index\0{field}")
}

/// The documents of `coll` that the index on `field` cannot hold (their value or
/// `_id` has no sort encoding): key = the document's key, empty value.
fn unindexed_name(coll: &str, field: &str) -> String {
    format!("{coll}\0unindexed\0{field}")
}

/// Which indexes have been built from the documents: index name -> format version.
const INDEX_META: TableDefinition<'static, &'static str, u64> =
    TableDefinition::new("\0index-meta");
/// Bumped when what an index holds changes: the indexes are then rebuilt at open.
/// 2: a document whose entry another document holds goes to the side table (see
/// `ensure_indexes`); at 1 the second of two such documents replaced the first's
/// entry, and lists lost one of them.
const INDEX_FORMAT: u64 = 2;

/// A document's entry in the index on `field`, or None when it belongs in the
/// unindexed table.
fn index_entry(doc: &Document, field: &str) -> Option<Vec<u8>> {
    let mut key = sort_bytes_of(doc, field)?;
    key.extend(sort_bytes(doc.get("_id")?)?);
    Some(key)
}

/// What a write did to one document, for its indexes: what it was, what it is.
struct Written {
    key: Vec<u8>,
    before: Option<Document>,
    after: Option<Document>,
}

/// Bring the indexes of `coll` in line with one written document, inside the
/// write's own transaction.
fn reindex(txn: &redb::WriteTransaction, coll: &str, w: &Written) -> Result<(), StoreError> {
    for field in sort_indexes(coll) {
        let mut index = txn
            .open_table(table(&index_name(coll, field)))
            .map_err(internal)?;
        let mut unindexed = txn
            .open_table(table(&unindexed_name(coll, field)))
            .map_err(internal)?;
        let entry_before = w.before.as_ref().and_then(|d| index_entry(d, field));
        if w.before.is_some() {
            // Its entry, unless another document holds it: then this one is in the
            // side table (a twin, see `ensure_indexes`), as is one with no entry.
            let owned = match &entry_before {
                Some(k) => index
                    .get(k.as_slice())
                    .map_err(internal)?
                    .is_some_and(|owner| owner.value() == w.key.as_slice()),
                None => false,
            };
            match &entry_before {
                Some(k) if owned => index.remove(k.as_slice()).map_err(internal)?,
                _ => unindexed.remove(w.key.as_slice()).map_err(internal)?,
            };
        }
        if let Some(after) = &w.after {
            match index_entry(after, field) {
                Some(k) => {
                    // Two stored `_id`s can compare equal (1 and 1.0: two keys in
                    // the collection, one encoding in an index key): with the same
                    // sort value the second entry would replace the first and a
                    // list would lose a document. A write that would make such a
                    // pair is refused (MongoDB refuses such an `_id` as a
                    // duplicate); a pair already stored (written before that
                    // refusal) keeps its second document in the side table.
                    let taken = index
                        .get(k.as_slice())
                        .map_err(internal)?
                        .is_some_and(|other| other.value() != w.key.as_slice());
                    if !taken {
                        index
                            .insert(k.as_slice(), w.key.as_slice())
                            .map_err(internal)?;
                    } else if entry_before.as_ref() == Some(&k) {
                        unindexed
                            .insert(w.key.as_slice(), [].as_slice())
                            .map_err(internal)?;
                    } else {
                        return Err(StoreError::Conflict(
                            "a document with an equal _id exists".into(),
                        ));
                    }
                }
                None => {
                    unindexed
                        .insert(w.key.as_slice(), [].as_slice())
                        .map_err(internal)?;
                }
            };
        }
    }
    Ok(())
}

/// Build every index not built yet (a store written before it existed, or with an
/// older key format) from the documents, in one transaction.
fn ensure_indexes(db: &Database) -> Result<(), StoreError> {
    // Checked in a read transaction first: a store opened again (every restart)
    // then needs no write transaction, and so no fsync, before it serves.
    if indexes_current(db)? {
        return Ok(());
    }
    let mut txn = db.begin_write().map_err(internal)?;
    txn.set_durability(Durability::Immediate)
        .map_err(internal)?;
    let mut built = 0;
    {
        let mut meta = txn.open_table(INDEX_META).map_err(internal)?;
        for (coll, fields) in super::SORT_INDEXES {
            for field in *fields {
                if index_built(&meta, coll, field)? {
                    continue;
                }
                let name = index_name(coll, field);
                let unindexed = unindexed_name(coll, field);
                for t in [&name, &unindexed] {
                    txn.delete_table(table(t)).map_err(internal)?;
                }
                let docs = txn.open_table(table(coll)).map_err(internal)?;
                let mut index = txn.open_table(table(&name)).map_err(internal)?;
                let mut side = txn.open_table(table(&unindexed)).map_err(internal)?;
                for entry in docs.iter().map_err(internal)? {
                    let (k, v) = entry.map_err(internal)?;
                    // The side table also takes a document whose entry another
                    // already holds: `_id`s that compare equal (1 and 1.0) with
                    // equal sort values, stored before such writes were refused.
                    // Both are then listed.
                    let free = match index_entry(&decode(v.value())?, field) {
                        Some(e) if index.get(e.as_slice()).map_err(internal)?.is_none() => Some(e),
                        _ => None,
                    };
                    match free {
                        Some(e) => index.insert(e.as_slice(), k.value()).map_err(internal)?,
                        None => side.insert(k.value(), [].as_slice()).map_err(internal)?,
                    };
                }
                meta.insert(name.as_str(), INDEX_FORMAT).map_err(internal)?;
                built += 1;
            }
        }
    }
    txn.commit().map_err(internal)?;
    if built > 0 {
        tracing::info!(indexes = built, "embedded store: indexes built");
    }
    Ok(())
}

/// Whether every index of `SORT_INDEXES` is built, in the current format.
fn indexes_current(db: &Database) -> Result<bool, StoreError> {
    let txn = db.begin_read().map_err(internal)?;
    let meta = match txn.open_table(INDEX_META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
        Err(e) => return Err(internal(e)),
    };
    for (coll, fields) in super::SORT_INDEXES {
        for field in *fields {
            if !index_built(&meta, coll, field)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Whether INDEX_META records the index on `coll.field` as built in the current format.
fn index_built(
    meta: &impl ReadableTable<&'static str, u64>,
    coll: &str,
    field: &str,
) -> Result<bool, StoreError> {
    let format = meta
        .get(index_name(coll, field).as_str())
        .map_err(internal)?
        .map(|v| v.value());
    Ok(format == Some(INDEX_FORMAT))
}

/// How much of the store a read may go through before it gives up.
#[derive(Debug, Clone, Copy)]
struct Budget {
    documents: usize,
    bytes: usize,
}

impl Budget {
    const UNBOUNDED: Self = Self {
        documents: usize::MAX,
        bytes: usize::MAX,
    };
    /// An indexed page read on the caller's thread, like a point read: a page of
    /// up to this many documents whose filter matches what the index gives costs
    /// tens of microseconds, less than handing it to the blocking pool and back
    /// (12 % of a list's time went to that handoff's thread switches). Past it the
    /// read starts again on the pool: a filter that matches little of the order
    /// walks an unknown share of the index.
    const INLINE: Self = Self {
        documents: 64,
        bytes: 512 << 10,
    };
}

/// A sorted, windowed find read from the index on `field`: the unindexed documents,
/// then the index in the sort's direction from the filter's bound on `field`, until
/// `skip + limit` documents matched. Equal to the scan (`find_scan`) for every query;
/// the embedded store's tests check that. `None`: it gave up at `budget`.
fn find_by_index(
    db: &Database,
    coll: &str,
    (field, ascending): (&str, bool),
    q: &Query,
    spec: &FindSpec,
    stop: &Abandoned,
    budget: Budget,
) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
    let txn = db.begin_read().map_err(internal)?;
    let docs = match txn.open_table(table(coll)) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Some(Vec::new())),
        Err(e) => return Err(internal(e)),
    };
    let index = txn
        .open_table(table(&index_name(coll, field)))
        .map_err(internal)?;
    let unindexed = txn
        .open_table(table(&unindexed_name(coll, field)))
        .map_err(internal)?;
    // An index key is the sort value's encoding and then the `_id`'s
    // (`index_entry`), both ordered as the values are (tests/sort_bytes.rs): read
    // in the sort's direction, the index is in the page's order. With nothing in
    // the side table to merge in, the page needs no sort, and its documents no
    // decoding for one.
    let presorted = unindexed.len().map_err(internal)? == 0;
    let sort = if presorted { None } else { spec.sort.as_ref() };
    let mut window = doc_query::Window::new(sort, spec.skip, spec.limit, spec.max_bytes);
    let wanted = spec.skip as usize + spec.limit as usize;
    let reads = Reads::new(&q.filter, sort, spec.projection.as_ref());
    let (mut visited, mut read_bytes, mut gave_up) = (0usize, 0usize, false);
    // Offer the document under `key` if it matches: Some(whether to go on).
    let mut offer = |key: &[u8]| -> Result<Option<bool>, StoreError> {
        if visited.is_multiple_of(ABANDON_CHECK_EVERY) {
            stop.check()?;
        }
        if visited >= budget.documents || read_bytes >= budget.bytes {
            gave_up = true;
            return Ok(Some(false));
        }
        visited += 1;
        let Some(bytes) = docs.get(key).map_err(internal)? else {
            return Err(internal("an index names a document that is not there"));
        };
        let bytes = bytes.value().to_vec();
        read_bytes = read_bytes.saturating_add(bytes.len());
        let doc = reads.decode(&bytes).map_err(internal)?;
        Ok(q.filter.matches(&doc).then(|| window.offer(doc, bytes)))
    };
    let mut go_on = true;
    for entry in unindexed.iter().map_err(internal)? {
        let (k, _) = entry.map_err(internal)?;
        if offer(k.value())? == Some(false) {
            go_on = false;
            break;
        }
    }
    if go_on && wanted > 0 {
        let (lo, hi) = q.filter.sort_bounds(field);
        // Keys are value ++ _id: every key of a value starts with its encoding and
        // sorts below the encoding followed by 0xff (no encoding starts with 0xff).
        let hi = hi.map(|mut h| {
            h.push(0xff);
            h
        });
        let range = (
            lo.as_deref().map_or(Bound::Unbounded, Bound::Included),
            hi.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
        );
        let entries = index.range::<&[u8]>(range).map_err(internal)?;
        let entries: Box<dyn Iterator<Item = _>> = if ascending {
            Box::new(entries)
        } else {
            Box::new(entries.rev())
        };
        let mut matched = 0usize;
        for entry in entries {
            let (_, k) = entry.map_err(internal)?;
            match offer(k.value())? {
                Some(false) => break,
                Some(true) => {
                    matched += 1;
                    if matched >= wanted {
                        break;
                    }
                }
                None => {}
            }
        }
    }
    if gave_up {
        return Ok(None);
    }
    window
        .finish(spec.projection.as_ref())
        .map(Some)
        .map_err(select_error)
}

/// A sorted, windowed find by scanning the collection in `_id` order.
fn find_scan(
    t: &ReadTable,
    q: &Query,
    spec: &FindSpec,
    stop: &Abandoned,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut window =
        doc_query::Window::new(spec.sort.as_ref(), spec.skip, spec.limit, spec.max_bytes);
    let reads = Reads::new(&q.filter, spec.sort.as_ref(), spec.projection.as_ref());
    each_match(t, q, &reads, stop, |doc, bytes| window.offer(doc, bytes))?;
    window
        .finish(spec.projection.as_ref())
        .map_err(select_error)
}

fn select_error(e: doc_query::SelectError) -> StoreError {
    match e {
        doc_query::SelectError::TooLarge(e) => e.into(),
        doc_query::SelectError::Encode(e) => internal(e),
    }
}

fn decode(bytes: &[u8]) -> Result<Document, StoreError> {
    Document::from_reader(bytes).map_err(internal)
}

fn raw(bytes: Vec<u8>) -> Result<RawDocumentBuf, StoreError> {
    RawDocumentBuf::from_bytes(bytes).map_err(internal)
}

/// A document's key and its stored BSON bytes.
type KeyAndBytes = (Vec<u8>, Vec<u8>);

/// How many documents a scan reads between checks that its caller still waits.
const ABANDON_CHECK_EVERY: usize = 64;

/// The first document (in key order) that matches: its key and stored bytes. An
/// `_id` lookup is a key lookup and never decodes the document.
fn first_match<T>(t: &T, q: &Query, stop: &Abandoned) -> Result<Option<KeyAndBytes>, StoreError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    if let Some(id) = q.id() {
        let key = id_key(id);
        return Ok(t
            .get(key.as_slice())
            .map_err(internal)?
            .map(|v| (key, v.value().to_vec())));
    }
    let reads = Reads::new(&q.filter, None, None);
    for (i, entry) in t.iter().map_err(internal)?.enumerate() {
        if i % ABANDON_CHECK_EVERY == 0 {
            stop.check()?;
        }
        let (k, v) = entry.map_err(internal)?;
        if q.filter
            .matches(&reads.decode(v.value()).map_err(internal)?)
        {
            return Ok(Some((k.value().to_vec(), v.value().to_vec())));
        }
    }
    Ok(None)
}

/// Visit every match in key order, decoded as far as `reads` says, along with its
/// stored bytes, until `visit` says stop.
fn each_match<T>(
    t: &T,
    q: &Query,
    reads: &Reads,
    stop: &Abandoned,
    mut visit: impl FnMut(Document, Vec<u8>) -> bool,
) -> Result<(), StoreError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    if q.id().is_some() {
        if let Some((_, bytes)) = first_match(t, q, stop)? {
            visit(reads.decode(&bytes).map_err(internal)?, bytes);
        }
        return Ok(());
    }
    for (i, entry) in t.iter().map_err(internal)?.enumerate() {
        if i % ABANDON_CHECK_EVERY == 0 {
            stop.check()?;
        }
        let (_, v) = entry.map_err(internal)?;
        let doc = reads.decode(v.value()).map_err(internal)?;
        if q.filter.matches(&doc) && !visit(doc, v.value().to_vec()) {
            break;
        }
    }
    Ok(())
}

type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Run a read against a collection; a collection never written to reads as empty.
fn read<R>(
    db: &Database,
    coll: &str,
    empty: R,
    f: impl FnOnce(&ReadTable) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let txn = db.begin_read().map_err(internal)?;
    match txn.open_table(table(coll)) {
        Ok(t) => f(&t),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
        Err(e) => Err(internal(e)),
    }
}

impl EmbeddedStore {
    pub fn open(dir: &Path, options: EmbeddedOptions) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
        let path = dir.join("store.redb");
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .create(&path)
            .with_context(|| format!("opening embedded store {}", path.display()))?;
        ensure_indexes(&db).context("building the embedded store's indexes")?;
        Ok(Self {
            db: Arc::new(db),
            scans: Arc::new(Semaphore::new(options.scan_threads.max(1))),
        })
    }

    /// A point read by `_id`: microseconds, so done on the caller's thread.
    fn read_now<R>(
        &self,
        coll: &str,
        empty: R,
        f: impl FnOnce(&ReadTable) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        read(&self.db, coll, empty, f)
    }

    /// A scan: on the blocking pool, at most `scan_threads` at once, abandoned as
    /// soon as the caller stops waiting (the request's deadline drops this future).
    async fn read_scan<R: Send + 'static>(
        &self,
        coll: &str,
        empty: R,
        f: impl FnOnce(&ReadTable, &Abandoned) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let coll = coll.to_owned();
        self.read_db(move |db, stop| read(db, &coll, empty, |t| f(t, stop)))
            .await
    }

    /// A read of the whole database (several tables) with a scan's bounds.
    async fn read_db<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Database, &Abandoned) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let permit = self.scans.clone().acquire_owned().await.map_err(internal)?;
        let abandoned = Abandoned::default();
        let _mark = AbandonOnDrop(abandoned.clone());
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            // Held until the scan really ends, even if its caller has gone.
            let _permit = permit;
            f(&db, &abandoned)
        })
        .await
        .map_err(internal)?
    }

    /// Run a write transaction off the async workers (commit fsyncs), and commit it
    /// only if `f` succeeds, with the written document's index entries in the same
    /// transaction.
    async fn write<R: Send + 'static>(
        &self,
        coll: &str,
        f: impl FnOnce(
            &mut redb::Table<&'static [u8], &'static [u8]>,
        ) -> Result<(R, Written), StoreError>
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
            }
            .and_then(|(v, written)| reindex(&txn, &coll, &written).map(|()| v));
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
            let written = Written {
                key,
                before: None,
                after: Some(doc),
            };
            Ok(((), written))
        })
        .await?;
        raw(stored)
    }

    async fn find_one(&self, coll: &str, q: &Query) -> Result<Option<RawDocumentBuf>, StoreError> {
        fn first_raw(
            t: &ReadTable,
            q: &Query,
            stop: &Abandoned,
        ) -> Result<Option<RawDocumentBuf>, StoreError> {
            first_match(t, q, stop)?
                .map(|(_, bytes)| raw(bytes))
                .transpose()
        }
        if q.id().is_some() {
            return self.read_now(coll, None, |t| first_raw(t, q, &Abandoned::default()));
        }
        let q = q.clone();
        self.read_scan(coll, None, move |t, stop| first_raw(t, &q, stop))
            .await
    }

    async fn find(
        &self,
        coll: &str,
        q: &Query,
        spec: &FindSpec,
    ) -> Result<Vec<RawDocumentBuf>, StoreError> {
        let by_index = spec
            .sort
            .as_ref()
            .and_then(|s| s.single_field())
            .filter(|(field, _)| q.id().is_none() && sort_indexes(coll).contains(field));
        let wanted = spec.skip as usize + spec.limit as usize;
        if let Some(order) = by_index
            && wanted <= Budget::INLINE.documents
        {
            let stop = Abandoned::default();
            if let Some(page) =
                find_by_index(&self.db, coll, order, q, spec, &stop, Budget::INLINE)?
            {
                return page.into_iter().map(raw).collect();
            }
        }
        let by_index = by_index.map(|(field, ascending)| (field.to_owned(), ascending));
        let (q, spec, coll) = (q.clone(), spec.clone(), coll.to_owned());
        let selected = self
            .read_db(move |db, stop| match &by_index {
                Some((field, ascending)) => {
                    let order = (field.as_str(), *ascending);
                    find_by_index(db, &coll, order, &q, &spec, stop, Budget::UNBOUNDED)?
                        .ok_or_else(|| internal("an unbounded read gave up"))
                }
                None => read(db, &coll, Vec::new(), |t| find_scan(t, &q, &spec, stop)),
            })
            .await?;
        selected.into_iter().map(raw).collect()
    }

    async fn count(&self, coll: &str, q: &Query) -> Result<u64, StoreError> {
        if q.filter.is_empty() {
            return self.read_now(coll, 0, |t| t.len().map_err(internal));
        }
        let q = q.clone();
        self.read_scan(coll, 0, move |t, stop| {
            let mut n = 0u64;
            each_match(t, &q, &Reads::new(&q.filter, None, None), stop, |_, _| {
                n += 1;
                true
            })?;
            Ok(n)
        })
        .await
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
                let Some((key, bytes)) = first_match(t, &q, &Abandoned::default())? else {
                    return Err(StoreError::NotFound);
                };
                let before = decode(&bytes)?;
                if let Some(v) = expected_version
                    && !doc_query::version_matches(&before, v)
                {
                    return Err(StoreError::Conflict("version mismatch".into()));
                }
                let mut doc = before.clone();
                change.update.apply(&mut doc)?;
                let next = doc.to_vec().map_err(internal)?;
                t.insert(key.as_slice(), next.as_slice())
                    .map_err(internal)?;
                let written = Written {
                    key,
                    before: Some(before),
                    after: Some(doc),
                };
                Ok((next, written))
            })
            .await?;
        raw(bytes)
    }

    async fn delete_one(&self, coll: &str, q: &Query) -> Result<(), StoreError> {
        let q = q.clone();
        self.write(coll, move |t| {
            let Some((key, bytes)) = first_match(t, &q, &Abandoned::default())? else {
                return Err(StoreError::NotFound);
            };
            t.remove(key.as_slice()).map_err(internal)?;
            let written = Written {
                key,
                before: Some(decode(&bytes)?),
                after: None,
            };
            Ok(((), written))
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::Store;
    use bson::{Bson, doc};
    use doc_query::{Filter, Limits, Sort};
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    /// A single-threaded runtime with timers, as an API worker has.
    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    pub fn options() -> EmbeddedOptions {
        EmbeddedOptions {
            cache_bytes: 8 << 20,
            scan_threads: 2,
        }
    }

    /// A store holding `n` small tasks, written in one transaction (fast), its
    /// indexes built from them when it opens again.
    fn store_with(n: i32) -> (EmbeddedStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), options()).expect("open");
        let txn = store.db.begin_write().expect("txn");
        {
            let mut t = txn.open_table(table("tasks")).expect("table");
            for i in 0..n {
                let d = doc! {"_id": i, "priority": i % 5, "title": format!("task {i}"), "pad": "x".repeat(200)};
                t.insert(
                    id_key(&Bson::Int32(i)).as_slice(),
                    d.to_vec().expect("bytes").as_slice(),
                )
                .expect("insert");
            }
            txn.delete_table(INDEX_META).expect("forget the indexes");
        }
        txn.commit().expect("commit");
        drop(store);
        let store = EmbeddedStore::open(dir.path(), options()).expect("reopen");
        (store, dir)
    }

    /// Finding 2 of the hardening review: a scan ran inline on the worker's
    /// single-threaded runtime, so nothing else on that worker ran until it ended.
    /// Here a 1 ms ticker shares the runtime with a read of 20,000 documents: a
    /// sorted scan, and a page from an index whose filter matches one document
    /// (the index walk that gives up inline and goes on on the pool). It must keep
    /// ticking while each read runs.
    #[test]
    fn scans_leave_the_runtime_free() {
        let (store, _dir) = store_with(20_000);
        let scan = (doc! {"priority": {"$gte": 0}}, doc! {"title": -1}, 20);
        let walk = (
            doc! {"title": "task 7"},
            doc! {"priority": -1, "_id": -1},
            1,
        );
        let (q, spec) = (query(&walk.0), sort_spec(&walk.1));
        let stop = Abandoned::default();
        let order = spec
            .sort
            .as_ref()
            .and_then(Sort::single_field)
            .expect("indexed");
        let inline = find_by_index(&store.db, "tasks", order, &q, &spec, &stop, Budget::INLINE);
        assert!(
            matches!(inline, Ok(None)),
            "the inline read did not give up"
        );
        for (filter, sort, want) in [scan, walk] {
            let (ticks, took) = ticks_during(&store, &query(&filter), &sort_spec(&sort), want);
            // 20,000 documents take tens of milliseconds at least; a free runtime
            // ticks through them (a blocked one does not tick at all).
            assert!(
                took < Duration::from_millis(20) || ticks >= 3,
                "the runtime ticked {ticks} times during a {took:?} read ({filter:?}, {sort:?})"
            );
        }
    }

    fn query(filter: &Document) -> Query {
        Query {
            filter: Filter::parse(filter, &Limits::default()).expect("filter"),
        }
    }

    fn sort_spec(sort: &Document) -> FindSpec {
        FindSpec {
            sort: Some(Sort::parse(sort).expect("sort")),
            limit: 20,
            ..FindSpec::default()
        }
    }

    /// How often a 1 ms ticker on the same single-threaded runtime ticked while
    /// `find` ran, and how long it took.
    fn ticks_during(
        store: &EmbeddedStore,
        q: &Query,
        spec: &FindSpec,
        want: usize,
    ) -> (u32, Duration) {
        let rt = current_thread();
        rt.block_on(async {
            let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let ticker = {
                let ticks = ticks.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                })
            };
            // Let the ticker start.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let before = ticks.load(Ordering::Relaxed);
            let start = Instant::now();
            let found = store.find("tasks", q, spec).await.expect("find");
            let took = start.elapsed();
            assert_eq!(found.len(), want);
            ticker.abort();
            (ticks.load(Ordering::Relaxed) - before, took)
        })
    }

    /// One random task: sort values of several types (ties, nulls, missing, arrays
    /// the index cannot hold), a status to filter on.
    fn task() -> impl Strategy<Value = Document> {
        let value = prop_oneof![
            (0i64..6).prop_map(|m| Bson::DateTime(bson::DateTime::from_millis(m))),
            (-2i32..3).prop_map(Bson::Int32),
            (-2i64..3).prop_map(Bson::Int64),
            (-2i32..3).prop_map(|i| Bson::Double(f64::from(i) / 2.0)),
            Just(Bson::Null),
            "[ab]{0,2}".prop_map(Bson::String),
            prop::collection::vec((0i32..3).prop_map(Bson::Int32), 0..3).prop_map(Bson::Array),
        ];
        (
            any::<[u8; 12]>(),
            prop::option::of(value.clone()),
            prop::option::of(value.clone()),
            prop::option::of(value),
            any::<bool>(),
        )
            .prop_map(|(id, created, due, priority, done)| {
                let mut d = doc! {"_id": bson::oid::ObjectId::from_bytes(id), "status": if done { "done" } else { "todo" }};
                for (k, v) in [("created", created), ("due", due), ("priority", priority)] {
                    if let Some(v) = v {
                        d.insert(k, v);
                    }
                }
                d
            })
    }

    /// A list query as the API builds them (a status, a keyset cursor after or
    /// before a value, a range) or none, on one of the indexed orders.
    fn list_query() -> impl Strategy<Value = (Document, Document, u32, u32)> {
        let field = prop::sample::select(vec!["created", "due", "priority"]);
        let pivot = prop_oneof![
            (0i64..6).prop_map(|m| Bson::DateTime(bson::DateTime::from_millis(m))),
            (-2i32..3).prop_map(Bson::Int32),
            Just(Bson::Null),
        ];
        (field, any::<bool>(), any::<bool>(), 0usize..6, pivot, any::<[u8; 12]>(), 0u32..3, 1u32..8)
            .prop_map(|(f, asc, with_id, shape, v, id, skip, limit)| {
                let id = bson::oid::ObjectId::from_bytes(id);
                let filter = match shape {
                    0 => doc! {},
                    1 => doc! {"status": "todo"},
                    2 => doc! {"$or": [{f: {"$gt": v.clone()}}, {f: v.clone(), "_id": {"$gt": id}}]},
                    3 => doc! {"$or": [{f: {"$lt": v.clone()}}, {f: v.clone(), "_id": {"$lt": id}}, {f: Bson::Null}]},
                    4 => doc! {"status": "done", f: {"$gte": v.clone()}},
                    _ => doc! {f: {"$lte": v}},
                };
                let dir = if asc { 1 } else { -1 };
                let sort = if with_id { doc! {f: dir, "_id": dir} } else { doc! {f: dir} };
                (filter, sort, skip, limit)
            })
    }

    /// Per index, its entries (keys; unindexed documents as `u` ++ their key), sorted.
    type IndexEntries = Vec<Vec<Vec<u8>>>;

    /// What the index tables hold, and what they should hold for these documents.
    fn index_state(db: &Database, coll: &str, docs: &[Document]) -> (IndexEntries, IndexEntries) {
        let txn = db.begin_read().expect("txn");
        let mut held = Vec::new();
        let mut want = Vec::new();
        for field in sort_indexes(coll) {
            let index = txn
                .open_table(table(&index_name(coll, field)))
                .expect("index");
            let side = txn
                .open_table(table(&unindexed_name(coll, field)))
                .expect("side");
            let mut h: Vec<Vec<u8>> = index
                .iter()
                .expect("iter")
                .map(|e| e.expect("entry").0.value().to_vec())
                .collect();
            h.extend(
                side.iter()
                    .expect("iter")
                    .map(|e| [b"u".as_slice(), e.expect("entry").0.value()].concat()),
            );
            let mut w: Vec<Vec<u8>> = docs
                .iter()
                .map(|d| match index_entry(d, field) {
                    Some(k) => k,
                    None => [b"u".as_slice(), &id_key(d.get("_id").expect("id"))].concat(),
                })
                .collect();
            h.sort();
            w.sort();
            held.push(h);
            want.push(w);
        }
        (held, want)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Pages read from an index are the pages a scan of the collection finds,
        /// for every indexed order, direction, filter, skip and limit, after
        /// inserts, updates (that move a document in an index or out of it) and
        /// deletes; and the index tables hold exactly one entry per document.
        #[test]
        fn a_page_from_an_index_is_the_page_a_scan_finds(
            tasks in prop::collection::vec(task(), 1..40),
            changes in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4, (0i64..6)), 0..12),
            queries in prop::collection::vec(list_query(), 1..12),
        ) {
            let rt = current_thread();
            let dir = tempfile::tempdir().expect("tempdir");
            let store = EmbeddedStore::open(dir.path(), options()).expect("open");
            let mut docs: Vec<Document> = Vec::new();
            rt.block_on(async {
                for t in tasks {
                    if store.insert_one("tasks", t.clone()).await.is_ok() {
                        docs.push(t);
                    }
                }
                for (pick, what, v) in changes {
                    if docs.is_empty() {
                        break;
                    }
                    let i = pick.index(docs.len());
                    let q = Query { filter: Filter::parse(&doc! {"_id": docs[i].get("_id").expect("id").clone()}, &Limits::default()).expect("filter") };
                    let update = match what {
                        0 => doc! {"$set": {"created": bson::DateTime::from_millis(v)}},
                        1 => doc! {"$unset": {"priority": ""}},
                        2 => doc! {"$set": {"due": [v]}},
                        _ => {
                            store.delete_one("tasks", &q).await.expect("delete");
                            docs.remove(i);
                            continue;
                        }
                    };
                    let change = Change { update: doc_query::Update::parse(&update, &Limits::default()).expect("update") };
                    let after = store.update_one("tasks", &q, &change, None).await.expect("update");
                    docs[i] = Document::try_from(after).expect("doc");
                }
            });
            let (held, want) = index_state(&store.db, "tasks", &docs);
            prop_assert_eq!(held, want);
            for (filter, sort, skip, limit) in queries {
                let q = Query { filter: Filter::parse(&filter, &Limits::default()).expect("filter") };
                let sort = Sort::parse(&sort).expect("sort");
                // A field alone, descending, breaks ties by `_id` ascending: no index
                // order, so the store scans (and nothing is compared here).
                let Some(field) = sort.single_field() else {
                    prop_assert!(sort.to_document().len() == 1, "{:?} is an indexed order", sort);
                    continue;
                };
                let spec = FindSpec { sort: Some(sort.clone()), skip, limit, ..FindSpec::default() };
                let stop = Abandoned::default();
                let by_index = find_by_index(&store.db, "tasks", field, &q, &spec, &stop, Budget::UNBOUNDED).expect("index").expect("unbounded");
                let by_scan = read(&store.db, "tasks", Vec::new(), |t| find_scan(t, &q, &spec, &stop)).expect("scan");
                prop_assert_eq!(&by_index, &by_scan, "filter {:?} sort {:?} skip {} limit {}", filter, sort, skip, limit);
                // On the caller's thread: the same page, or none past the budget.
                let inline = find_by_index(&store.db, "tasks", field, &q, &spec, &stop, Budget { documents: 8, bytes: usize::MAX }).expect("inline");
                if let Some(page) = inline {
                    prop_assert_eq!(&page, &by_scan, "inline: filter {:?} sort {:?} skip {} limit {}", filter, sort, skip, limit);
                }
            }
        }
    }

    /// Finding of the list's review: `_id`s 1 and 1.0 are two keys in the
    /// collection but one encoding in an index key, so with the same sort value
    /// the second replaced the first in the index and lists lost a document. The
    /// second write is refused; nothing is lost.
    #[test]
    fn ids_that_compare_equal_never_share_an_index_entry() {
        let rt = current_thread();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), options()).expect("open");
        rt.block_on(async {
            store
                .insert_one("tasks", doc! {"_id": 1, "created": 5})
                .await
                .expect("insert");
            let twin = store
                .insert_one("tasks", doc! {"_id": 1.0, "created": 5})
                .await;
            assert!(matches!(twin, Err(StoreError::Conflict(_))), "{twin:?}");
            // Elsewhere in every index it may live; moved onto its twin's entry, no.
            store
                .insert_one(
                    "tasks",
                    doc! {"_id": 1_i64, "created": 6, "due": 6, "priority": 6},
                )
                .await
                .expect("insert");
            let q = query(&doc! {"_id": 1_i64});
            let change = Change {
                update: doc_query::Update::parse(
                    &doc! {"$set": {"created": 5}},
                    &Limits::default(),
                )
                .expect("update"),
            };
            let moved = store.update_one("tasks", &q, &change, None).await;
            assert!(matches!(moved, Err(StoreError::Conflict(_))), "{moved:?}");
            let spec = sort_spec(&doc! {"created": -1, "_id": -1});
            let found = store
                .find("tasks", &query(&doc! {}), &spec)
                .await
                .expect("find");
            assert_eq!(found.len(), 2);
        });
        let stored: Vec<Document> = read(&store.db, "tasks", Vec::new(), |t| {
            t.iter()
                .map_err(internal)?
                .map(|e| decode(e.map_err(internal)?.1.value()))
                .collect()
        })
        .expect("read");
        let (held, want) = index_state(&store.db, "tasks", &stored);
        assert_eq!(held, want);
    }

    /// A store that already holds two documents with equal `_id`s and equal sort
    /// values (written before such writes were refused, when the second took the
    /// first's index entry) lists both once its indexes are rebuilt at open (format
    /// 1 is rebuilt): the second is kept in the side table. It can still be
    /// updated in place, and its twin deleted, without losing either from a list.
    #[test]
    fn equal_ids_stored_before_the_refusal_are_both_listed() {
        let rt = current_thread();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), options()).expect("open");
        let docs = [
            doc! {"_id": 1, "created": 5, "due": 5, "priority": 5, "title": "int"},
            doc! {"_id": 1.0, "created": 5, "due": 5, "priority": 5, "title": "double"},
            doc! {"_id": 2, "created": 4, "title": "other"},
        ];
        let txn = store.db.begin_write().expect("txn");
        {
            let mut t = txn.open_table(table("tasks")).expect("table");
            for d in &docs {
                let key = id_key(d.get("_id").expect("id"));
                t.insert(key.as_slice(), d.to_vec().expect("bytes").as_slice())
                    .expect("insert");
            }
            // As the previous format left them: marked built at format 1.
            let mut meta = txn.open_table(INDEX_META).expect("meta");
            for field in sort_indexes("tasks") {
                meta.insert(index_name("tasks", field).as_str(), 1)
                    .expect("meta");
            }
        }
        txn.commit().expect("commit");
        drop(store);
        let store = EmbeddedStore::open(dir.path(), options()).expect("reopen");
        let titles = |store: &EmbeddedStore, field: &str| {
            let spec = sort_spec(&doc! {field: -1, "_id": -1});
            let found = rt
                .block_on(store.find("tasks", &query(&doc! {}), &spec))
                .expect("find");
            let mut t: Vec<String> = found
                .iter()
                .map(|b| {
                    let d = decode(b.as_bytes()).expect("doc");
                    d.get_str("title").expect("title").to_owned()
                })
                .collect();
            t.sort();
            t
        };
        for field in sort_indexes("tasks") {
            assert_eq!(titles(&store, field), ["double", "int", "other"], "{field}");
        }
        // Each twin updated in place (same sort values: one of them is in the side
        // table), then one deleted: every list still has what is stored.
        for (id, title) in [(Bson::Int32(1), "int 2"), (Bson::Double(1.0), "double 2")] {
            let change = Change {
                update: doc_query::Update::parse(
                    &doc! {"$set": {"title": title}},
                    &Limits::default(),
                )
                .expect("update"),
            };
            rt.block_on(store.update_one("tasks", &query(&doc! {"_id": id}), &change, None))
                .expect("a stored twin is updated in place");
        }
        for field in sort_indexes("tasks") {
            assert_eq!(
                titles(&store, field),
                ["double 2", "int 2", "other"],
                "{field}"
            );
        }
        rt.block_on(store.delete_one("tasks", &query(&doc! {"_id": 1})))
            .expect("delete");
        for field in sort_indexes("tasks") {
            assert_eq!(titles(&store, field).len(), 2, "{field}");
        }
    }

    /// A store written before its indexes existed gets them at open, from the
    /// documents; the sorted find then reads them.
    #[test]
    fn indexes_are_built_at_open_for_documents_already_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let docs: Vec<Document> = (0..50)
            .map(|i| doc! {"_id": bson::oid::ObjectId::new(), "created": bson::DateTime::from_millis(i64::from(i % 7)), "priority": i % 3})
            .collect();
        {
            let store = EmbeddedStore::open(dir.path(), options()).expect("open");
            // Written as an older version of the store did: documents only.
            let txn = store.db.begin_write().expect("txn");
            {
                let mut t = txn.open_table(table("tasks")).expect("table");
                for d in &docs {
                    t.insert(
                        id_key(d.get("_id").expect("id")).as_slice(),
                        d.to_vec().expect("bytes").as_slice(),
                    )
                    .expect("insert");
                }
                txn.delete_table(INDEX_META).expect("forget the indexes");
            }
            txn.commit().expect("commit");
            let (held, want) = index_state(&store.db, "tasks", &docs);
            assert_ne!(held, want, "the documents went in behind the indexes' back");
        }
        let store = EmbeddedStore::open(dir.path(), options()).expect("reopen");
        let (held, want) = index_state(&store.db, "tasks", &docs);
        assert_eq!(held, want);
    }

    /// A store whose indexes are built is opened again without a write
    /// transaction: its index check finishes while another writer holds the
    /// store's only write transaction (a write would wait for it).
    #[test]
    fn reopening_a_store_with_its_indexes_takes_no_write_transaction() {
        let (store, _dir) = store_with(20);
        let db = store.db.clone();
        let writer = store.db.begin_write().expect("txn");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(ensure_indexes(&db).is_ok());
        });
        let checked = rx.recv_timeout(Duration::from_secs(10));
        drop(writer);
        assert_eq!(
            checked,
            Ok(true),
            "the index check waited for the write transaction"
        );
    }

    /// A scan whose caller has gone stops, releasing its slot: with one scan
    /// thread, a second scan can start long before a full scan would end.
    #[test]
    fn abandoned_scans_stop() {
        let abandoned = Abandoned::default();
        let mark = AbandonOnDrop(abandoned.clone());
        assert!(abandoned.check().is_ok());
        drop(mark);
        assert!(matches!(abandoned.check(), Err(StoreError::Unavailable(_))));
        let (store, _dir) = store_with(2_000);
        let q = Query {
            filter: Filter::parse(&doc! {"priority": 1}, &Limits::default()).expect("filter"),
        };
        let r = read(&store.db, "tasks", 0, |t| {
            let mut n = 0;
            each_match(t, &q, &Reads::whole(), &abandoned, |_, _| {
                n += 1;
                true
            })?;
            Ok(n)
        });
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }
}
