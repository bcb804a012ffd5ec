//! The embedded store: redb (a pure-Rust, ACID, copy-on-write B-tree file), one table
//! per collection, documents as raw BSON keyed by their `_id`. Every acknowledged
//! write has been committed with `Durability::Immediate` (fsync) first, so a crash
//! loses nothing that was acknowledged.
//!
//! Queries are evaluated with `doc-query`, the same code that validates them, so the
//! embedded store and MongoDB agree on semantics. Limits, stated honestly: there are
//! no secondary indexes (a filter other than `{_id: x}` scans the collection), and
//! writes are serialized (redb has a single writer).
//!
//! Scans never run on the API workers: each worker is a single-threaded runtime, so
//! a scan done inline would stall every connection of that worker (a 20,000-task
//! sorted list took 0.9 s). They run on the blocking pool, at most `scan_threads`
//! at once, stop as soon as their caller gives up (the request deadline), and hold
//! at most about twice `skip + limit` documents (`doc_query::Window`).

use super::{Change, FindSpec, Query, Store, StoreError};
use bson::{Document, RawDocumentBuf};
use doc_query::id_key;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
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
    for (i, entry) in t.iter().map_err(internal)?.enumerate() {
        if i % ABANDON_CHECK_EVERY == 0 {
            stop.check()?;
        }
        let (k, v) = entry.map_err(internal)?;
        if q.filter.matches(&decode(v.value())?) {
            return Ok(Some((k.value().to_vec(), v.value().to_vec())));
        }
    }
    Ok(None)
}

/// Visit every match in key order, decoded along with its stored bytes, until
/// `visit` says stop.
fn each_match<T>(
    t: &T,
    q: &Query,
    stop: &Abandoned,
    mut visit: impl FnMut(Document, Vec<u8>) -> bool,
) -> Result<(), StoreError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    if q.id().is_some() {
        if let Some((_, bytes)) = first_match(t, q, stop)? {
            visit(decode(&bytes)?, bytes);
        }
        return Ok(());
    }
    for (i, entry) in t.iter().map_err(internal)?.enumerate() {
        if i % ABANDON_CHECK_EVERY == 0 {
            stop.check()?;
        }
        let (_, v) = entry.map_err(internal)?;
        let doc = decode(v.value())?;
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
        let permit = self.scans.clone().acquire_owned().await.map_err(internal)?;
        let abandoned = Abandoned::default();
        let _mark = AbandonOnDrop(abandoned.clone());
        let db = self.db.clone();
        let coll = coll.to_owned();
        tokio::task::spawn_blocking(move || {
            // Held until the scan really ends, even if its caller has gone.
            let _permit = permit;
            read(&db, &coll, empty, |t| f(t, &abandoned))
        })
        .await
        .map_err(internal)?
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
        let (q, spec) = (q.clone(), spec.clone());
        let selected = self
            .read_scan(coll, Vec::new(), move |t, stop| {
                let mut window = doc_query::Window::new(
                    spec.sort.as_ref(),
                    spec.skip,
                    spec.limit,
                    spec.max_bytes,
                );
                each_match(t, &q, stop, |doc, bytes| window.offer(doc, bytes))?;
                window
                    .finish(spec.projection.as_ref())
                    .map_err(|e| match e {
                        doc_query::SelectError::TooLarge(e) => e.into(),
                        doc_query::SelectError::Encode(e) => internal(e),
                    })
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
            each_match(t, &q, stop, |_, _| {
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
            let Some((key, _)) = first_match(t, &q, &Abandoned::default())? else {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::Store;
    use bson::{Bson, doc};
    use doc_query::{Filter, Limits, Sort};
    use std::time::{Duration, Instant};

    pub fn options() -> EmbeddedOptions {
        EmbeddedOptions {
            cache_bytes: 8 << 20,
            scan_threads: 2,
        }
    }

    /// A store holding `n` small tasks, written in one transaction (fast).
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
        }
        txn.commit().expect("commit");
        (store, dir)
    }

    /// Finding 2 of the hardening review: a scan ran inline on the worker's
    /// single-threaded runtime, so nothing else on that worker ran until it ended.
    /// Here a 1 ms ticker shares the runtime with a sorted scan of 20,000 documents:
    /// it must keep ticking while the scan runs.
    #[test]
    fn scans_leave_the_runtime_free() {
        let (store, _dir) = store_with(20_000);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (ticks, took) = rt.block_on(async {
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
            let q = Query {
                filter: Filter::parse(&doc! {"priority": {"$gte": 0}}, &Limits::default())
                    .expect("filter"),
            };
            let spec = FindSpec {
                sort: Some(Sort::parse(&doc! {"title": -1}).expect("sort")),
                limit: 20,
                ..FindSpec::default()
            };
            let start = Instant::now();
            let found = store.find("tasks", &q, &spec).await.expect("find");
            let took = start.elapsed();
            assert_eq!(found.len(), 20);
            ticker.abort();
            (ticks.load(Ordering::Relaxed) - before, took)
        });
        // The scan of 20,000 documents takes tens of milliseconds at least; a free
        // runtime ticks through it (a blocked one does not tick at all).
        assert!(
            took < Duration::from_millis(20) || ticks >= 3,
            "the runtime ticked {ticks} times during a {took:?} scan"
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
            each_match(t, &q, &abandoned, |_, _| {
                n += 1;
                true
            })?;
            Ok(n)
        });
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }
}
