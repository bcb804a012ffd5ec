//! The `app:data/documents` capability: the guest's only door to data.
//!
//! Three steps, as in Spin's factors: the bindings are linked once at start
//! ([`add_to_linker`]); grants are fixed by configuration ([`DataConfig`]); a small
//! per-instance [`DocumentsCtx`] is built for every request. Each call is checked in
//! this order: grant, BSON decoding, the operator firewall (`doc-query`), and only
//! then the store.

pub mod embedded;
pub mod mongo;

use crate::telemetry::{LOGGED_GUEST_TEXT_MAX, Metrics, bounded};
use bson::{Document, RawDocumentBuf};
use doc_query::{Filter, Limits, Projection, QueryError, Sort, Update};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "app:data/handler",
        imports: { default: async },
    });
}

use bindings::app::data::documents::Host as DocumentsHost;
pub use bindings::app::data::documents::{Error as WitError, FindOptions};

/// A filter that passed the firewall, in parsed form only. Stores that evaluate
/// queries themselves use it directly; MongoDB gets `Filter::to_document`, rebuilt
/// from it, so nothing the parser did not understand can reach the database (parse,
/// don't validate: the document the guest sent is not kept).
#[derive(Debug, Clone)]
pub struct Query {
    pub filter: Filter,
}

impl Query {
    /// The `_id` when the filter is exactly an `_id` equality (a key lookup).
    pub fn id(&self) -> Option<&bson::Bson> {
        self.filter.id_equality()
    }
}

/// An update that passed the firewall, in parsed form only (see [`Query`]).
#[derive(Debug, Clone)]
pub struct Change {
    pub update: Update,
}

/// Validated `find` options.
#[derive(Debug, Clone)]
pub struct FindSpec {
    pub sort: Option<Sort>,
    pub projection: Option<Projection>,
    pub limit: u32,
    pub skip: u32,
    /// Bytes of stored documents the store may hold to answer; past it the call
    /// fails `invalid` instead of the host buffering them (see
    /// [`Limits::max_result_bytes`]).
    pub max_bytes: usize,
}

impl Default for FindSpec {
    fn default() -> Self {
        Self {
            sort: None,
            projection: None,
            limit: 0,
            skip: 0,
            max_bytes: Limits::default().max_result_bytes,
        }
    }
}

/// Why a store operation failed. `Internal`'s text is for logs only.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl StoreError {
    /// The kinds the store alerts watch (the others are the client's): their
    /// `store_errors` series start at 0 for every [`Op`].
    pub const ALERTED_KINDS: [&'static str; 2] = ["unavailable", "internal"];

    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotFound => "not_found",
            StoreError::Conflict(_) => "conflict",
            StoreError::Invalid(_) => "invalid",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Internal(_) => "internal",
        }
    }
}

impl From<QueryError> for StoreError {
    fn from(e: QueryError) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

/// The orders the API lists in, per collection: each field then `_id`, ascending or
/// descending. Every store serves them from an index (the embedded store's index
/// tables, MongoDB's `{field: 1, _id: 1}` indexes), so a page costs the page, not
/// the collection.
pub const SORT_INDEXES: &[(&str, &[&str])] = &[("tasks", &["created", "due", "priority"])];

/// The fields [`SORT_INDEXES`] lists for `collection` (none for others).
pub fn sort_indexes(collection: &str) -> &'static [&'static str] {
    SORT_INDEXES
        .iter()
        .find(|(c, _)| *c == collection)
        .map_or(&[], |(_, fields)| fields)
}

/// Every store implements the same operations with the same semantics; the
/// conformance tests run against each. Documents come back as raw BSON: the host
/// hands the store's bytes to the guest without decoding and re-encoding them.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Insert `doc`, which already has an `_id`; returns the stored document.
    async fn insert_one(&self, coll: &str, doc: Document) -> Result<RawDocumentBuf, StoreError>;
    async fn find_one(
        &self,
        coll: &str,
        query: &Query,
    ) -> Result<Option<RawDocumentBuf>, StoreError>;
    async fn find(
        &self,
        coll: &str,
        query: &Query,
        spec: &FindSpec,
    ) -> Result<Vec<RawDocumentBuf>, StoreError>;
    async fn count(&self, coll: &str, query: &Query) -> Result<u64, StoreError>;
    /// Apply `change` to the first match, atomically with the version check;
    /// returns the document as it is after the update.
    async fn update_one(
        &self,
        coll: &str,
        query: &Query,
        change: &Change,
        expected_version: Option<i64>,
    ) -> Result<RawDocumentBuf, StoreError>;
    async fn delete_one(&self, coll: &str, query: &Query) -> Result<(), StoreError>;
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Why the store, reachable, is not ready to serve yet (for `/readyz`; safe
    /// to show: no addresses, no driver text). None when it is.
    fn not_ready(&self) -> Option<String> {
        None
    }
    /// Make everything acknowledged durable before exit.
    async fn flush(&self) -> Result<(), StoreError>;
}

/// The operations of `app:data/documents`: the `op` label of the store metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    InsertOne,
    FindOne,
    Find,
    Count,
    UpdateOne,
    DeleteOne,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::InsertOne,
        Op::FindOne,
        Op::Find,
        Op::Count,
        Op::UpdateOne,
        Op::DeleteOne,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Op::InsertOne => "insert_one",
            Op::FindOne => "find_one",
            Op::Find => "find",
            Op::Count => "count",
            Op::UpdateOne => "update_one",
            Op::DeleteOne => "delete_one",
        }
    }
}

/// Why a data call was refused before it reached the store: the `reason` label
/// of `data_denied_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Denial {
    Grant,
    Firewall,
}

impl Denial {
    const ALL: [Denial; 2] = [Denial::Grant, Denial::Firewall];

    fn label(self) -> &'static str {
        match self {
            Denial::Grant => "grant",
            Denial::Firewall => "firewall",
        }
    }
}

/// Longest collection name (the guest's) echoed in an error or written to a log.
const COLLECTION_NAME_SHOWN: usize = 64;

/// App-wide state of the capability, fixed at start.
#[derive(Clone)]
pub struct DataConfig {
    pub store: Arc<dyn Store>,
    pub grants: Arc<BTreeSet<String>>,
    pub limits: Limits,
    pub metrics: Metrics,
}

impl DataConfig {
    /// The capability's state; also starts its counters at 0 for every label this
    /// module owns, so that rate() sees the first increment and an alert fires on
    /// the first burst.
    pub fn new(
        store: Arc<dyn Store>,
        grants: Arc<BTreeSet<String>>,
        limits: Limits,
        metrics: Metrics,
    ) -> Self {
        for reason in Denial::ALL {
            metrics.data_denied.with_label_values(&[reason.label()]);
        }
        for op in Op::ALL {
            for kind in StoreError::ALERTED_KINDS {
                metrics.store_errors.with_label_values(&[op.label(), kind]);
            }
        }
        Self {
            store,
            grants,
            limits,
            metrics,
        }
    }

    /// Per-instance state for one request.
    pub fn context(&self) -> DocumentsCtx {
        DocumentsCtx {
            config: self.clone(),
        }
    }
}

/// Per-instance state: what one request's component may reach.
pub struct DocumentsCtx {
    config: DataConfig,
}

/// Link `app:data/documents` into a linker whose store data is `T`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &mut DocumentsCtx,
) -> wasmtime::Result<()> {
    bindings::app::data::documents::add_to_linker::<T, wasmtime::component::HasSelf<DocumentsCtx>>(
        linker, get,
    )
}

impl From<StoreError> for WitError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => WitError::NotFound,
            StoreError::Conflict(m) => WitError::Conflict(m),
            StoreError::Invalid(m) => WitError::Invalid(m),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "store unavailable");
                WitError::Unavailable("the store is unreachable; retry later".into())
            }
            StoreError::Internal(m) => {
                tracing::error!(error = %m, "store operation failed");
                WitError::Internal("internal store error; see host logs".into())
            }
        }
    }
}

impl DocumentsCtx {
    fn grant(&self, coll: &str) -> Result<(), WitError> {
        if self.config.grants.contains(coll) {
            Ok(())
        } else {
            self.config
                .metrics
                .data_denied
                .with_label_values(&[Denial::Grant.label()])
                .inc();
            // The name comes from the guest: bounded before it is logged or echoed.
            let shown = bounded(coll, COLLECTION_NAME_SHOWN);
            tracing::warn!(collection = %shown, "component asked for an ungranted collection");
            Err(WitError::Forbidden(format!(
                "collection `{shown}` is not granted"
            )))
        }
    }

    fn denied(&self, e: QueryError) -> WitError {
        self.config
            .metrics
            .data_denied
            .with_label_values(&[Denial::Firewall.label()])
            .inc();
        let reason = e.to_string();
        tracing::warn!(reason = %bounded(&reason, LOGGED_GUEST_TEXT_MAX), "firewall refused a data call");
        WitError::Invalid(reason)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Document, WitError> {
        doc_query::decode(bytes, &self.config.limits).map_err(|e| self.denied(e))
    }

    fn query(&self, bytes: &[u8]) -> Result<Query, WitError> {
        let raw = self.decode(bytes)?;
        let filter = Filter::parse(&raw, &self.config.limits).map_err(|e| self.denied(e))?;
        Ok(Query { filter })
    }

    /// Time a store call and count its failures.
    async fn timed<T>(
        &self,
        op: Op,
        coll: &str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, WitError> {
        let start = Instant::now();
        let r = fut.await;
        self.config
            .metrics
            .store_ops
            .with_label_values(&[op.label(), coll])
            .observe(start.elapsed().as_secs_f64());
        r.map_err(|e| {
            if !matches!(e, StoreError::NotFound) {
                self.config
                    .metrics
                    .store_errors
                    .with_label_values(&[op.label(), e.kind()])
                    .inc();
            }
            e.into()
        })
    }
}

impl DocumentsHost for DocumentsCtx {
    async fn insert_one(&mut self, collection: String, doc: Vec<u8>) -> Result<Vec<u8>, WitError> {
        self.grant(&collection)?;
        let doc = self.decode(&doc)?;
        doc_query::validate_document(&doc, &self.config.limits).map_err(|e| self.denied(e))?;
        let doc = doc_query::with_id(doc);
        let store = self.config.store.clone();
        let stored = self
            .timed(
                Op::InsertOne,
                &collection,
                store.insert_one(&collection, doc),
            )
            .await?;
        Ok(stored.into_bytes())
    }

    async fn find_one(
        &mut self,
        collection: String,
        filter: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, WitError> {
        self.grant(&collection)?;
        let q = self.query(&filter)?;
        let store = self.config.store.clone();
        let found = self
            .timed(Op::FindOne, &collection, store.find_one(&collection, &q))
            .await?;
        Ok(found.map(RawDocumentBuf::into_bytes))
    }

    async fn find(
        &mut self,
        collection: String,
        filter: Vec<u8>,
        options: FindOptions,
    ) -> Result<Vec<Vec<u8>>, WitError> {
        self.grant(&collection)?;
        let q = self.query(&filter)?;
        let sort = match &options.sort {
            None => None,
            Some(b) => Some(Sort::parse(&self.decode(b)?).map_err(|e| self.denied(e))?),
        };
        let projection = match &options.projection {
            None => None,
            Some(b) => Some(
                Projection::parse_checked(&self.decode(b)?, &self.config.limits)
                    .map_err(|e| self.denied(e))?,
            ),
        };
        let skip = doc_query::find_skip(options.skip).map_err(|e| self.denied(e))?;
        let spec = FindSpec {
            sort,
            projection,
            limit: doc_query::find_limit(options.limit),
            skip,
            max_bytes: self.config.limits.max_result_bytes,
        };
        let store = self.config.store.clone();
        let docs = self
            .timed(Op::Find, &collection, store.find(&collection, &q, &spec))
            .await?;
        Ok(docs.into_iter().map(RawDocumentBuf::into_bytes).collect())
    }

    async fn count(&mut self, collection: String, filter: Vec<u8>) -> Result<u64, WitError> {
        self.grant(&collection)?;
        let q = self.query(&filter)?;
        let store = self.config.store.clone();
        self.timed(Op::Count, &collection, store.count(&collection, &q))
            .await
    }

    async fn update_one(
        &mut self,
        collection: String,
        filter: Vec<u8>,
        update: Vec<u8>,
        expected_version: Option<i64>,
    ) -> Result<Vec<u8>, WitError> {
        self.grant(&collection)?;
        let q = self.query(&filter)?;
        let raw = self.decode(&update)?;
        let parsed = Update::parse(&raw, &self.config.limits).map_err(|e| self.denied(e))?;
        let change = Change { update: parsed };
        let store = self.config.store.clone();
        let doc = self
            .timed(
                Op::UpdateOne,
                &collection,
                store.update_one(&collection, &q, &change, expected_version),
            )
            .await?;
        Ok(doc.into_bytes())
    }

    async fn delete_one(&mut self, collection: String, filter: Vec<u8>) -> Result<(), WitError> {
        self.grant(&collection)?;
        let q = self.query(&filter)?;
        let store = self.config.store.clone();
        self.timed(
            Op::DeleteOne,
            &collection,
            store.delete_one(&collection, &q),
        )
        .await
    }
}
