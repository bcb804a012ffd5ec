//! The MongoDB store: the official driver, one `Client` (and so one connection pool)
//! for the process, documents as raw BSON end to end.
//!
//! Every filter and update reaching this module already passed the operator
//! firewall; the documents sent are the guest's own (validated) ones.

use super::{Change, FindSpec, Query, Store, StoreError};
use crate::telemetry::Metrics;
use bson::{Document, RawDocumentBuf, doc};
use futures::TryStreamExt;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::event::EventHandler;
use mongodb::event::cmap::{CmapEvent, ConnectionCheckoutFailedReason};
use mongodb::event::command::CommandEvent;
use mongodb::options::{
    Acknowledgment, ClientOptions, Credential, ReadPreference, ReturnDocument, SelectionCriteria,
    WriteConcern,
};
use mongodb::{Client, Collection, Database, IndexModel};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connection settings; the URI itself is never logged.
#[derive(Clone)]
pub struct MongoConfig {
    pub uri: String,
    /// The user, when not in the URI (the URI must then carry none).
    pub credential: Option<Credential>,
    pub database: String,
    pub max_pool_size: u32,
    pub min_pool_size: u32,
    pub server_selection_timeout: Duration,
    pub connect_timeout: Duration,
    /// Bound on every operation (the driver has no socket timeout).
    pub op_timeout: Duration,
    /// `majority` or a number of nodes.
    pub write_concern: String,
    pub journal: bool,
}

/// The `reason` labels of `mongodb_pool_checkout_failures_total` an alert watches
/// (the driver's other reasons are counted as `other`).
const CHECKOUT_FAILURES: [&str; 2] = ["timeout", "connection_error"];

/// How long a `/readyz` ping result is reused, so probes don't hammer the server.
const PING_CACHE: Duration = Duration::from_secs(2);

pub struct MongoStore {
    db: Database,
    op_timeout: Duration,
    last_ping: Mutex<Option<(Instant, bool)>>,
    indexes: Arc<IndexState>,
    /// The driver's background tasks (monitors, pool maintenance) live on this
    /// runtime, independent of the API workers' runtimes.
    runtime: Option<tokio::runtime::Runtime>,
}

/// The indexes not created yet, and why the last try failed. Until they are, the
/// store is not ready: a server that answers `ping` (which needs no user) may
/// still refuse every operation, as MongoDB does a client without its user.
#[derive(Default)]
struct IndexState {
    pending: AtomicUsize,
    last_error: Mutex<Option<String>>,
}

/// A server's error code name, as shown by `/readyz`: word characters, bounded.
fn bounded_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(64)
        .collect()
}

/// Indexes the tasks API's queries use: the list orders every store indexes
/// ([`super::SORT_INDEXES`], each `{field: 1, _id: 1}`), and the filters on
/// status and tags. Created idempotently at start.
fn indexes_for(collection: &str) -> Vec<Document> {
    let mut indexes: Vec<Document> = super::sort_indexes(collection)
        .iter()
        .map(|field| doc! {*field: 1, "_id": 1})
        .collect();
    if collection == "tasks" {
        indexes.push(doc! {"status": 1, "created": 1});
        indexes.push(doc! {"tags": 1});
    }
    indexes
}

impl MongoStore {
    /// Build the client. This does no I/O: a server that is down at start makes
    /// `/readyz` false and calls answer `unavailable`, but the host starts.
    pub fn open(
        cfg: &MongoConfig,
        metrics: &Metrics,
        collections: &[String],
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        for reason in CHECKOUT_FAILURES {
            // Starts at 0, so that the first failure is an increase an alert sees.
            metrics.mongo_checkout_failures.with_label_values(&[reason]);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mongodb-driver")
            .enable_all()
            .build()
            .context("starting the MongoDB driver runtime")?;
        let mut opts = runtime
            .block_on(async { ClientOptions::parse(&cfg.uri).await })
            // The driver's message may quote the URI: say only that it is malformed.
            .map_err(|_| anyhow::anyhow!("MONGODB_URI is not a valid MongoDB connection string"))?;
        if let Some(credential) = &cfg.credential {
            if opts.credential.is_some() {
                anyhow::bail!(
                    "the MongoDB user is given twice, in MONGODB_URI and in MONGODB_USERNAME: keep one"
                );
            }
            opts.credential = Some(credential.clone());
        }
        opts.app_name = Some("tasks-api-host".into());
        opts.max_pool_size = Some(cfg.max_pool_size);
        opts.min_pool_size = Some(cfg.min_pool_size);
        opts.server_selection_timeout = Some(cfg.server_selection_timeout);
        opts.connect_timeout = Some(cfg.connect_timeout);
        opts.selection_criteria = Some(SelectionCriteria::ReadPreference(ReadPreference::Primary));
        let w = match cfg.write_concern.as_str() {
            "majority" => Acknowledgment::Majority,
            n => Acknowledgment::Nodes(
                n.parse()
                    .context("--mongodb-write-concern must be `majority` or a number")?,
            ),
        };
        opts.write_concern = Some(WriteConcern::builder().w(w).journal(cfg.journal).build());
        metrics.mongo_pool_max.set(i64::from(cfg.max_pool_size));
        let (pool, cmd) = (metrics.clone(), metrics.clone());
        opts.cmap_event_handler = Some(EventHandler::callback(move |e: CmapEvent| match e {
            CmapEvent::ConnectionCreated(_) => pool.mongo_pool.with_label_values(&["open"]).inc(),
            CmapEvent::ConnectionClosed(_) => pool.mongo_pool.with_label_values(&["open"]).dec(),
            CmapEvent::ConnectionCheckedOut(e) => {
                pool.mongo_pool.with_label_values(&["in_use"]).inc();
                pool.mongo_checkout.observe(e.duration.as_secs_f64());
            }
            CmapEvent::ConnectionCheckoutFailed(e) => {
                pool.mongo_checkout.observe(e.duration.as_secs_f64());
                // A fixed label set: the driver's enum is non-exhaustive.
                let reason = match e.reason {
                    ConnectionCheckoutFailedReason::Timeout => CHECKOUT_FAILURES[0],
                    ConnectionCheckoutFailedReason::ConnectionError => CHECKOUT_FAILURES[1],
                    _ => "other",
                };
                pool.mongo_checkout_failures
                    .with_label_values(&[reason])
                    .inc();
            }
            CmapEvent::ConnectionCheckedIn(_) => {
                pool.mongo_pool.with_label_values(&["in_use"]).dec()
            }
            _ => {}
        }));
        opts.command_event_handler = Some(EventHandler::callback(move |e: CommandEvent| match e {
            CommandEvent::Succeeded(s) => cmd
                .mongo_commands
                .with_label_values(&[s.command_name.as_str(), "ok"])
                .observe(s.duration.as_secs_f64()),
            CommandEvent::Failed(f) => cmd
                .mongo_commands
                .with_label_values(&[f.command_name.as_str(), "error"])
                .observe(f.duration.as_secs_f64()),
            _ => {}
        }));
        let client = runtime
            .block_on(async { Client::with_options(opts) })
            .context("creating the MongoDB client")?;
        let db = client.database(&cfg.database);
        // Indexes in the background, retried until the server answers.
        let indexes = Arc::new(IndexState::default());
        for coll in collections {
            let models: Vec<IndexModel> = indexes_for(coll)
                .into_iter()
                .map(|keys| IndexModel::builder().keys(keys).build())
                .collect();
            if models.is_empty() {
                continue;
            }
            let c: Collection<Document> = db.collection(coll);
            let name = coll.clone();
            let state = indexes.clone();
            state.pending.fetch_add(1, Ordering::AcqRel);
            runtime.spawn(async move {
                loop {
                    match c.create_indexes(models.clone()).await {
                        Ok(_) => {
                            tracing::info!(collection = %name, "indexes ensured");
                            state.pending.fetch_sub(1, Ordering::AcqRel);
                            break;
                        }
                        Err(e) => {
                            // What /readyz may show: the server's code and its name,
                            // or the error's kind (a driver message can carry
                            // addresses).
                            let why = match e.kind.as_ref() {
                                ErrorKind::Command(c) => {
                                    format!("server code {} {}", c.code, bounded_name(&c.code_name))
                                }
                                _ => map_error(e.clone()).kind().to_owned(),
                            };
                            tracing::warn!(collection = %name, error = %map_error(e), "ensuring indexes failed; retrying");
                            if let Ok(mut last) = state.last_error.lock() {
                                *last = Some(format!("{name}: {why}"));
                            }
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    }
                }
            });
        }
        Ok(Self {
            db,
            op_timeout: cfg.op_timeout,
            last_ping: Mutex::new(None),
            indexes,
            runtime: Some(runtime),
        })
    }

    fn coll(&self, name: &str) -> Collection<RawDocumentBuf> {
        self.db.collection(name)
    }

    /// Run a driver call with the operation deadline; errors mapped.
    async fn bounded<T>(
        &self,
        fut: impl Future<Output = mongodb::error::Result<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.op_timeout, fut).await {
            Ok(r) => r.map_err(map_error),
            Err(_) => Err(StoreError::Unavailable("operation timed out".into())),
        }
    }
}

impl Drop for MongoStore {
    fn drop(&mut self) {
        // May run inside an async context: shut the driver's runtime down without
        // blocking.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// MongoDB server error codes that mean "this request is wrong", not "the server is".
const INVALID_CODES: &[i32] = &[
    2,     // BadValue
    9,     // FailedToParse
    14,    // TypeMismatch
    40,    // ConflictingUpdateOperators
    52,    // DollarPrefixedFieldName
    56,    // EmptyFieldName
    57,    // DottedFieldName
    66,    // ImmutableField
    10334, // BSONObjectTooLarge
    16837, // (legacy) update cannot apply to this field
];

/// Codes that mean the server is (temporarily) unable to serve.
const UNAVAILABLE_CODES: &[i32] = &[
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 50,
];

fn classify_code(code: i32, what: &str) -> StoreError {
    if code == 11000 {
        StoreError::Conflict("a document with this key exists".into())
    } else if INVALID_CODES.contains(&code) {
        StoreError::Invalid(format!("the store rejected the {what} (code {code})"))
    } else if UNAVAILABLE_CODES.contains(&code) {
        StoreError::Unavailable(format!("server error code {code}"))
    } else {
        StoreError::Internal(format!("server error code {code} on {what}"))
    }
}

pub(crate) fn map_error(e: mongodb::error::Error) -> StoreError {
    match e.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => StoreError::Unavailable(e.kind.to_string()),
        ErrorKind::Authentication { .. } => {
            tracing::error!(
                "MongoDB authentication failed; check the user, its password and its database (authSource)"
            );
            StoreError::Unavailable("authentication failed".into())
        }
        ErrorKind::Write(WriteFailure::WriteError(w)) => classify_code(w.code, "write"),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => {
            StoreError::Unavailable(format!("write concern not satisfied (code {})", w.code))
        }
        ErrorKind::Command(c) => classify_code(c.code, "command"),
        _ => StoreError::Internal(e.to_string()),
    }
}

/// `filter` AND `version == v`.
fn with_version(filter: &Document, v: i64) -> Document {
    doc! {"$and": [filter.clone(), {"version": v}]}
}

/// A sort that ends in `_id`, so results are deterministic like the embedded store's.
fn total_sort(sort: Option<&doc_query::Sort>) -> Document {
    let mut s = sort.map(doc_query::Sort::to_document).unwrap_or_default();
    if !s.contains_key("_id") {
        s.insert("_id", 1);
    }
    s
}

#[async_trait::async_trait]
impl Store for MongoStore {
    async fn insert_one(&self, coll: &str, doc: Document) -> Result<RawDocumentBuf, StoreError> {
        let raw =
            RawDocumentBuf::try_from(&doc).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.bounded(self.coll(coll).insert_one(&raw).into_future())
            .await?;
        Ok(raw)
    }

    async fn find_one(&self, coll: &str, q: &Query) -> Result<Option<RawDocumentBuf>, StoreError> {
        self.bounded(
            self.coll(coll)
                .find_one(q.filter.to_document())
                .sort(doc! {"_id": 1})
                .max_time(self.op_timeout)
                .into_future(),
        )
        .await
    }

    // Every query carries maxTimeMS equal to the client-side bound (`bounded`): when
    // the host gives up on an operation, the server stops working on it too instead
    // of running a costly filter to its end for nobody.
    async fn find(
        &self,
        coll: &str,
        q: &Query,
        spec: &FindSpec,
    ) -> Result<Vec<RawDocumentBuf>, StoreError> {
        let c = self.coll(coll);
        let mut find = c
            .find(q.filter.to_document())
            .sort(total_sort(spec.sort.as_ref()))
            .limit(i64::from(spec.limit))
            .skip(u64::from(spec.skip))
            .max_time(self.op_timeout);
        if let Some(p) = &spec.projection {
            find = find.projection(p.to_document());
        }
        // Streamed and counted: documents may reach MongoDB's 16 MiB each, and a
        // thousand of them must not be buffered for one call.
        let budget = spec.max_bytes;
        self.bounded(async {
            let mut cursor = find.await?;
            let (mut docs, mut held) = (Vec::new(), 0usize);
            while let Some(doc) = cursor.try_next().await? {
                held = held.saturating_add(doc.as_bytes().len());
                if held > budget {
                    return Ok(Err(doc_query::QueryError::ResultTooLarge(budget).into()));
                }
                docs.push(doc);
            }
            Ok(Ok(docs))
        })
        .await?
    }

    async fn count(&self, coll: &str, q: &Query) -> Result<u64, StoreError> {
        self.bounded(
            self.coll(coll)
                .count_documents(q.filter.to_document())
                .max_time(self.op_timeout)
                .into_future(),
        )
        .await
    }

    async fn update_one(
        &self,
        coll: &str,
        q: &Query,
        change: &Change,
        expected_version: Option<i64>,
    ) -> Result<RawDocumentBuf, StoreError> {
        // MongoDB applies the update itself, so the document it would produce is
        // first computed here, on the current copy, and checked as the embedded store
        // checks it (size, depth, names): an update that would take a document past
        // the limits is refused and changes nothing, instead of `$push` growing it to
        // MongoDB's 16 MiB. Only a concurrent update between this read and the write
        // below can add to what was checked: one update's worth per racing writer.
        let Some(current) = self.find_one(coll, q).await? else {
            return Err(StoreError::NotFound);
        };
        let mut after =
            Document::try_from(current).map_err(|e| StoreError::Internal(e.to_string()))?;
        if let Some(v) = expected_version
            && !doc_query::version_matches(&after, v)
        {
            return Err(StoreError::Conflict("version mismatch".into()));
        }
        change.update.apply(&mut after)?;
        let filter = match expected_version {
            Some(v) => with_version(&q.filter.to_document(), v),
            None => q.filter.to_document(),
        };
        // One atomic find-and-modify with the version in the filter.
        let updated = self
            .bounded(
                self.coll(coll)
                    .find_one_and_update(filter, change.update.to_document())
                    .sort(doc! {"_id": 1})
                    .return_document(ReturnDocument::After)
                    .max_time(self.op_timeout)
                    .into_future(),
            )
            .await?;
        if let Some(doc) = updated {
            return Ok(doc);
        }
        if expected_version.is_some() && self.find_one(coll, q).await?.is_some() {
            return Err(StoreError::Conflict("version mismatch".into()));
        }
        Err(StoreError::NotFound)
    }

    async fn delete_one(&self, coll: &str, q: &Query) -> Result<(), StoreError> {
        let r = self
            .bounded(
                self.coll(coll)
                    .delete_one(q.filter.to_document())
                    .into_future(),
            )
            .await?;
        if r.deleted_count == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if let Ok(guard) = self.last_ping.lock()
            && let Some((at, ok)) = *guard
            && at.elapsed() < PING_CACHE
        {
            return if ok {
                Ok(())
            } else {
                Err(StoreError::Unavailable("last ping failed".into()))
            };
        }
        let r = self
            .bounded(self.db.run_command(doc! {"ping": 1}).into_future())
            .await
            .map(drop);
        if let Ok(mut guard) = self.last_ping.lock() {
            *guard = Some((Instant::now(), r.is_ok()));
        }
        r
    }

    fn not_ready(&self) -> Option<String> {
        if self.indexes.pending.load(Ordering::Acquire) == 0 {
            return None;
        }
        let why = self
            .indexes
            .last_error
            .lock()
            .ok()
            .and_then(|last| last.clone())
            .unwrap_or_else(|| "being created".into());
        Some(format!("indexes not ready: {why}"))
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Writes are acknowledged with the configured write concern (default
        // majority + journal): nothing is buffered here.
        Ok(())
    }
}
