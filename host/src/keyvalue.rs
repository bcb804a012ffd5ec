//! The `fermyon:spin/key-value@2.0.0` capability, off unless `--key-value-store`
//! names a store. It exists for one purpose: running the tasks API composed with
//! `adapters/documents-kv` (the `spin up` build) in this host, so the Spin dev loop is
//! tested end to end without the Spin CLI. Stores are tables of a redb file in the
//! data dir (`kv.redb`), written with fsync before a `set` or `delete` returns.
//!
//! Like Spin, a component may open only the labels it is granted (Spin takes them
//! from `key_value_stores` in spin.toml); any other label answers `access-denied`.
//! Keys, values, the number of keys listed and the stores open at once are bounded.

use crate::telemetry::Metrics;
use anyhow::Context as _;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{HasData, Resource, ResourceTable};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin-key-value",
        interfaces: "import fermyon:spin/key-value@2.0.0;",
        imports: { default: async | trappable },
        with: { "fermyon:spin/key-value.store": super::OpenStore },
    });
}

use bindings::fermyon::spin::key_value::{Error, Host, HostStore};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 4 << 20;
/// Most keys `get-keys` returns; a store with more answers `other`.
pub const MAX_KEYS: usize = 100_000;
/// Most stores one instance may hold open (Spin's `store-table-full`).
pub const MAX_OPEN_STORES: usize = 16;

/// A store opened by the guest: the resource behind `store`.
pub struct OpenStore {
    label: String,
}

/// A store's table: string keys, byte values.
type KvTable = TableDefinition<'static, &'static str, &'static [u8]>;

fn table(label: &str) -> KvTable {
    // A 'static name lets the definition move into blocking write tasks. One is made
    // per configured label, once at start, so the leak is bounded by the config.
    TableDefinition::new(Box::leak(format!("kv/{label}").into_boxed_str()))
}

/// App-wide state, fixed at start.
#[derive(Clone)]
pub struct KeyValueConfig {
    db: Arc<Database>,
    /// The granted labels and their tables.
    tables: Arc<BTreeMap<String, KvTable>>,
    metrics: Metrics,
}

impl KeyValueConfig {
    /// Open (or create) `kv.redb` in `dir` serving `labels`.
    pub fn open(dir: &Path, labels: &[String], metrics: Metrics) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
        let path = dir.join("kv.redb");
        let db = Database::create(&path)
            .with_context(|| format!("opening key-value store {}", path.display()))?;
        Ok(Self {
            db: Arc::new(db),
            tables: Arc::new(labels.iter().map(|l| (l.clone(), table(l))).collect()),
            metrics,
        })
    }

    /// Per-instance state for one request.
    pub fn context(&self) -> KeyValueCtx {
        KeyValueCtx {
            config: Some(self.clone()),
            open: 0,
        }
    }
}

/// Per-instance state. Without a config (the default) every `open` is denied.
#[derive(Default)]
pub struct KeyValueCtx {
    config: Option<KeyValueConfig>,
    open: usize,
}

/// What the bindings are implemented on: the context and the instance's resource
/// table (shared with WASI, as every wasmtime host capability does).
pub struct KeyValueView<'a> {
    pub ctx: &'a mut KeyValueCtx,
    pub table: &'a mut ResourceTable,
}

struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValueView<'a>;
}

/// Link `fermyon:spin/key-value@2.0.0` into a linker whose store data is `T`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> KeyValueView<'_>,
) -> wasmtime::Result<()> {
    bindings::fermyon::spin::key_value::add_to_linker::<T, HasKeyValue>(linker, get)
}

/// A failure of the backing file: logged here, opaque to the guest.
fn backend(e: impl std::fmt::Display) -> Error {
    tracing::error!(error = %e, "key-value store operation failed");
    Error::Other("key-value store error; see host logs".into())
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::Other(format!(
            "key longer than {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

impl KeyValueView<'_> {
    /// The config and the table of an open store. A store resource only exists if
    /// `open` succeeded, so both are there.
    fn store(
        &self,
        store: &Resource<OpenStore>,
    ) -> wasmtime::Result<(KeyValueConfig, KvTable, String)> {
        let label = self.table.get(store)?.label.clone();
        let config = self
            .ctx
            .config
            .clone()
            .ok_or_else(|| wasmtime::Error::msg("key-value store used without a config"))?;
        let def = *config
            .tables
            .get(&label)
            .ok_or_else(|| wasmtime::Error::msg("key-value store label vanished"))?;
        Ok((config, def, label))
    }
}

impl KeyValueConfig {
    fn observe<T>(&self, op: &'static str, label: &str, start: Instant, r: &Result<T, Error>) {
        self.metrics
            .store_ops
            .with_label_values(&[op, label])
            .observe(start.elapsed().as_secs_f64());
        if r.is_err() {
            self.metrics
                .store_errors
                .with_label_values(&[op, "kv"])
                .inc();
        }
    }

    fn read<R>(
        &self,
        def: KvTable,
        empty: R,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let txn = self.db.begin_read().map_err(backend)?;
        match txn.open_table(def) {
            Ok(t) => f(&t),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(e) => Err(backend(e)),
        }
    }

    /// A durable write, off the async workers (commit fsyncs).
    async fn write(
        &self,
        def: KvTable,
        f: impl FnOnce(&mut redb::Table<&'static str, &'static [u8]>) -> Result<(), redb::StorageError>
        + Send
        + 'static,
    ) -> Result<(), Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(backend)?;
            txn.set_durability(Durability::Immediate).map_err(backend)?;
            {
                let mut t = txn.open_table(def).map_err(backend)?;
                f(&mut t).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
        .map_err(backend)?
    }
}

impl Host for KeyValueView<'_> {}

impl HostStore for KeyValueView<'_> {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, Error>> {
        let granted = self
            .ctx
            .config
            .as_ref()
            .is_some_and(|c| c.tables.contains_key(&label));
        if !granted {
            let shown = crate::telemetry::bounded(&label, 64);
            tracing::warn!(label = %shown, "component asked for an ungranted key-value store");
            return Ok(Err(Error::AccessDenied));
        }
        if self.ctx.open >= MAX_OPEN_STORES {
            return Ok(Err(Error::StoreTableFull));
        }
        self.ctx.open += 1;
        Ok(Ok(self.table.push(OpenStore { label })?))
    }

    async fn get(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let (config, def, label) = self.store(&store)?;
        let start = Instant::now();
        let r = check_key(&key).and_then(|()| {
            config.read(def, None, |t| {
                Ok(t.get(key.as_str())
                    .map_err(backend)?
                    .map(|v| v.value().to_vec()))
            })
        });
        config.observe("kv_get", &label, start, &r);
        Ok(r)
    }

    async fn set(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (config, def, label) = self.store(&store)?;
        let start = Instant::now();
        let r = match check_key(&key) {
            Err(e) => Err(e),
            Ok(()) if value.len() > MAX_VALUE_BYTES => Err(Error::Other(format!(
                "value larger than {MAX_VALUE_BYTES} bytes"
            ))),
            Ok(()) => {
                config
                    .write(def, move |t| {
                        t.insert(key.as_str(), value.as_slice()).map(drop)
                    })
                    .await
            }
        };
        config.observe("kv_set", &label, start, &r);
        Ok(r)
    }

    async fn delete(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (config, def, label) = self.store(&store)?;
        let start = Instant::now();
        let r = match check_key(&key) {
            Err(e) => Err(e),
            Ok(()) => {
                config
                    .write(def, move |t| t.remove(key.as_str()).map(drop))
                    .await
            }
        };
        config.observe("kv_delete", &label, start, &r);
        Ok(r)
    }

    async fn exists(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let (config, def, label) = self.store(&store)?;
        let start = Instant::now();
        let r = check_key(&key).and_then(|()| {
            config.read(def, false, |t| {
                Ok(t.get(key.as_str()).map_err(backend)?.is_some())
            })
        });
        config.observe("kv_exists", &label, start, &r);
        Ok(r)
    }

    async fn get_keys(
        &mut self,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let (config, def, label) = self.store(&store)?;
        let start = Instant::now();
        let r = config.read(def, Vec::new(), |t| {
            let mut keys = Vec::new();
            for entry in t.iter().map_err(backend)? {
                if keys.len() == MAX_KEYS {
                    return Err(Error::Other(format!("more than {MAX_KEYS} keys")));
                }
                keys.push(entry.map_err(backend)?.0.value().to_owned());
            }
            Ok(keys)
        });
        config.observe("kv_get_keys", &label, start, &r);
        Ok(r)
    }

    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        self.ctx.open = self.ctx.open.saturating_sub(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> KeyValueConfig {
        KeyValueConfig::open(
            dir,
            &["default".to_owned()],
            Metrics::new().expect("metrics"),
        )
        .expect("open")
    }

    #[tokio::test]
    async fn stores_are_granted_bounded_and_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ctx = config(dir.path()).context();
        let mut table = ResourceTable::new();
        let mut kv = KeyValueView {
            ctx: &mut ctx,
            table: &mut table,
        };
        assert!(matches!(
            kv.open("other".into()).await.expect("no trap"),
            Err(Error::AccessDenied)
        ));
        let s = kv
            .open("default".into())
            .await
            .expect("no trap")
            .expect("granted");
        let rep = |s: &Resource<OpenStore>| Resource::<OpenStore>::new_borrow(s.rep());
        assert_eq!(
            kv.get(rep(&s), "k".into())
                .await
                .expect("no trap")
                .expect("get"),
            None
        );
        kv.set(rep(&s), "k".into(), b"v".to_vec())
            .await
            .expect("no trap")
            .expect("set");
        assert_eq!(
            kv.get(rep(&s), "k".into())
                .await
                .expect("no trap")
                .expect("get"),
            Some(b"v".to_vec())
        );
        assert!(
            kv.exists(rep(&s), "k".into())
                .await
                .expect("no trap")
                .expect("exists")
        );
        assert_eq!(
            kv.get_keys(rep(&s)).await.expect("no trap").expect("keys"),
            vec!["k".to_owned()]
        );
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            kv.set(rep(&s), long, Vec::new()).await.expect("no trap"),
            Err(Error::Other(_))
        ));
        assert!(matches!(
            kv.set(rep(&s), "big".into(), vec![0; MAX_VALUE_BYTES + 1])
                .await
                .expect("no trap"),
            Err(Error::Other(_))
        ));
        kv.delete(rep(&s), "k".into())
            .await
            .expect("no trap")
            .expect("delete");
        assert!(
            !kv.exists(rep(&s), "k".into())
                .await
                .expect("no trap")
                .expect("exists")
        );
        // Deleting what is not there is not an error (the interface says so).
        kv.delete(rep(&s), "k".into())
            .await
            .expect("no trap")
            .expect("delete");
        kv.set(rep(&s), "kept".into(), b"1".to_vec())
            .await
            .expect("no trap")
            .expect("set");

        // One instance cannot hold more than MAX_OPEN_STORES open; closing frees a slot.
        let mut open = vec![s];
        while open.len() < MAX_OPEN_STORES {
            open.push(
                kv.open("default".into())
                    .await
                    .expect("no trap")
                    .expect("open"),
            );
        }
        assert!(matches!(
            kv.open("default".into()).await.expect("no trap"),
            Err(Error::StoreTableFull)
        ));
        let last = open.pop().expect("one");
        HostStore::drop(&mut kv, last).await.expect("drop");
        kv.open("default".into())
            .await
            .expect("no trap")
            .expect("a slot is free again");

        // Writes were committed: a fresh open of the file sees them.
        drop(open);
        drop(ctx);
        let mut ctx = config(dir.path()).context();
        let mut table = ResourceTable::new();
        let mut kv = KeyValueView {
            ctx: &mut ctx,
            table: &mut table,
        };
        let s = kv
            .open("default".into())
            .await
            .expect("no trap")
            .expect("open");
        assert_eq!(
            kv.get(s, "kept".into())
                .await
                .expect("no trap")
                .expect("get"),
            Some(b"1".to_vec())
        );
    }

    /// `wit/spin-key-value/key-value.wit` must be spin-sdk's own file, so the host
    /// provides exactly the interface the adapter (built with spin-sdk) imports.
    #[test]
    fn vendored_wit_is_spin_sdks() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--locked",
                "--filter-platform",
                "wasm32-wasip2",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo metadata");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let sdk = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|p| p["name"] == "spin-sdk")
            .expect("spin-sdk is a workspace dependency");
        let sdk_dir = Path::new(sdk["manifest_path"].as_str().expect("path"))
            .parent()
            .expect("dir")
            .to_owned();
        let theirs = std::fs::read_to_string(sdk_dir.join("wit/deps/spin@2.0.0/key-value.wit"))
            .expect("spin-sdk's key-value.wit");
        let ours = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("wit/spin-key-value/key-value.wit"),
        )
        .expect("vendored key-value.wit");
        assert_eq!(ours, theirs);
    }
}
