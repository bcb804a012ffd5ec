//! Command line and environment. Every flag has an env fallback (12-factor); secrets
//! come from the environment or a mounted file and are never logged.

use crate::telemetry::LogFormat;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "host",
    version,
    about = "Serves the tasks API: a sandboxed WebAssembly component behind a Rust host that owns the data and the secrets."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API and the admin endpoints (the default).
    Serve,
    /// Compile a component ahead of time to a `.cwasm` that `--component` loads
    /// without compiling (checked against this build's engine at load). With
    /// `--dir`, compile the built-in component into that directory, for
    /// `--precompiled-dir`.
    Precompile {
        /// The component (`.wasm`) to compile; omit it with `--dir`.
        #[arg(required_unless_present = "dir", conflicts_with = "dir")]
        input: Option<PathBuf>,
        /// Where to write the compiled artifact.
        #[arg(short, long, required_unless_present = "dir", conflicts_with = "dir")]
        output: Option<PathBuf>,
        /// Compile the built-in component into this directory, under the name
        /// `--precompiled-dir` looks for.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Use only the architecture's baseline CPU features (x86-64: SSE2), so the
        /// artifact loads on any CPU of the architecture (images, fleets). Default:
        /// this CPU's features.
        #[arg(long)]
        portable: bool,
    },
    /// Ask the admin port's `/readyz` (at `--admin-listen`, on loopback) and exit 0
    /// if ready, 1 if not: the container HEALTHCHECK, with no shell or curl needed.
    Healthcheck {
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

/// `host serve`'s flags, in the groups `--help` shows them in (and
/// docs/configuration.md lists them in; a test keeps the two equal).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub component: ComponentArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
    #[command(flatten)]
    pub process: ProcessArgs,
}

/// Where the host listens.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Listening")]
pub struct NetArgs {
    /// Address of the public API listener.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address of the admin listener (/healthz, /readyz, /metrics); also what
    /// `host healthcheck` asks (on loopback when this is a wildcard address).
    #[arg(
        long,
        env = "ADMIN_LISTEN_ADDR",
        default_value = "0.0.0.0:9090",
        global = true
    )]
    pub admin_listen: SocketAddr,
}

/// The component served and what it may reach.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Component")]
pub struct ComponentArgs {
    /// Component to serve: a `.wasm` component or a `.cwasm` made by `host precompile`.
    /// Default: the tasks API component built into this binary.
    #[arg(long, env = "COMPONENT_PATH")]
    pub component: Option<PathBuf>,

    /// Directory holding the built-in component's compiled form (`host precompile
    /// --dir`). Used when this engine accepts it; otherwise (another CPU, another
    /// build) the component is compiled at start, with a warning.
    #[arg(long, env = "PRECOMPILED_DIR")]
    pub precompiled_dir: Option<PathBuf>,

    /// Load precompiled native code: a `.cwasm` given to `--component`, or
    /// `--precompiled-dir`. Such a file is machine code that runs outside the sandbox
    /// with this host's privileges: allow it only for files you built (`host
    /// precompile`). Even then it is refused unless it and every directory above it
    /// belong to this user or root and nobody else can write them.
    #[arg(long, env = "ALLOW_PRECOMPILED")]
    pub allow_precompiled: bool,

    /// Where compiled components are kept between starts, so a restart loads the
    /// compiled form instead of compiling again. Default: `compile-cache` in the
    /// data directory. Must belong to this user and be writable by nobody else;
    /// entries are checked (SHA-256, then wasmtime's engine check) before use.
    #[arg(long, env = "COMPILE_CACHE_DIR")]
    pub compile_cache_dir: Option<PathBuf>,

    /// Compile at every start instead of using the compile cache.
    #[arg(long, env = "NO_COMPILE_CACHE")]
    pub no_compile_cache: bool,

    /// Collections the component may use through `documents`; all others answer
    /// `forbidden`. Comma-separated.
    #[arg(
        long = "grant",
        env = "GRANTS",
        value_delimiter = ',',
        default_value = "tasks"
    )]
    pub grants: Vec<String>,

    /// Key-value stores (`fermyon:spin/key-value@2.0.0`) the component may open, as
    /// `key_value_stores` in spin.toml. Empty (the default): the interface is not
    /// provided at all. Set it to run the Spin build of the tasks API (the handler
    /// composed with `adapters/documents-kv`); stored in `kv.redb` in the data dir.
    #[arg(
        long = "key-value-store",
        env = "KEY_VALUE_STORES",
        value_delimiter = ','
    )]
    pub key_value_stores: Vec<String>,
}

/// The embedded store, or MongoDB.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Store")]
pub struct StoreArgs {
    /// Directory of the embedded store (used when no MongoDB URI is configured).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Page cache of the embedded store, in MiB (redb's own default is 1 GiB).
    #[arg(long, env = "EMBEDDED_CACHE_MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub embedded_cache_mib: u64,

    /// MongoDB connection string. Prefer MONGODB_URI_FILE in deployments.
    #[arg(
        long,
        env = "MONGODB_URI",
        hide_env_values = true,
        conflicts_with = "mongodb_uri_file"
    )]
    pub mongodb_uri: Option<String>,

    /// File holding the MongoDB connection string (e.g. a mounted Kubernetes Secret).
    #[arg(long, env = "MONGODB_URI_FILE")]
    pub mongodb_uri_file: Option<PathBuf>,

    /// MongoDB user, when the credentials are not in the URI: the password then
    /// needs no URL-encoding and comes from its own file (or MONGODB_PASSWORD).
    #[arg(
        long,
        env = "MONGODB_USERNAME",
        conflicts_with = "mongodb_username_file"
    )]
    pub mongodb_username: Option<String>,

    /// File holding the MongoDB user name (e.g. a mounted Kubernetes Secret).
    #[arg(long, env = "MONGODB_USERNAME_FILE")]
    pub mongodb_username_file: Option<PathBuf>,

    /// File holding the MongoDB user's password. Without it the password is read
    /// from the environment variable MONGODB_PASSWORD, which has no flag: a
    /// password never goes on a command line.
    #[arg(long, env = "MONGODB_PASSWORD_FILE")]
    pub mongodb_password_file: Option<PathBuf>,

    /// Database the MongoDB user is defined in (default: --mongodb-database).
    #[arg(long, env = "MONGODB_AUTH_SOURCE")]
    pub mongodb_auth_source: Option<String>,

    /// MongoDB database holding the granted collections.
    #[arg(long, env = "MONGODB_DATABASE", default_value = "tasks")]
    pub mongodb_database: String,

    /// Most connections in the MongoDB pool.
    #[arg(long, env = "MONGODB_MAX_POOL_SIZE", default_value_t = 32)]
    pub mongodb_max_pool_size: u32,

    /// Connections the MongoDB pool keeps open when idle.
    #[arg(long, env = "MONGODB_MIN_POOL_SIZE", default_value_t = 0)]
    pub mongodb_min_pool_size: u32,

    /// How long an operation waits for a usable server before answering 503.
    /// Kept below --deadline-ms so the client gets a 503, not a 504.
    #[arg(
        long,
        env = "MONGODB_SERVER_SELECTION_TIMEOUT_MS",
        default_value_t = 700
    )]
    pub mongodb_server_selection_timeout_ms: u64,

    /// TCP/TLS connect timeout for new pool connections.
    #[arg(long, env = "MONGODB_CONNECT_TIMEOUT_MS", default_value_t = 700)]
    pub mongodb_connect_timeout_ms: u64,

    /// Bound on every MongoDB operation (the driver has no socket timeout).
    #[arg(long, env = "MONGODB_OP_TIMEOUT_MS", default_value_t = 800)]
    pub mongodb_op_timeout_ms: u64,

    /// Write concern: `majority` or a number of nodes.
    #[arg(long, env = "MONGODB_WRITE_CONCERN", default_value = "majority")]
    pub mongodb_write_concern: String,

    /// Require writes to be journaled before they are acknowledged.
    #[arg(long, env = "MONGODB_JOURNAL", default_value_t = true, action = clap::ArgAction::Set)]
    pub mongodb_journal: bool,
}

/// What one request, and all of them together, may use.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitsArgs {
    /// Linear memory limit of one request's instance, in MiB.
    #[arg(long, env = "MEMORY_LIMIT_MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub memory_limit_mib: u64,

    /// Wall-clock deadline of one request inside the component, in milliseconds.
    #[arg(long, env = "REQUEST_DEADLINE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub deadline_ms: u64,

    /// Epoch tick in milliseconds: how often a running guest yields to other
    /// requests and checks its deadline.
    #[arg(long, env = "EPOCH_TICK_MS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub epoch_tick_ms: u64,

    /// Largest accepted request body, in bytes (larger: 413).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest request head: the request target plus every header, in bytes
    /// (larger: 431).
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1024 * 1024))]
    pub max_header_bytes: u32,

    /// Longest request target (path and query), in bytes (longer: 414).
    #[arg(long, env = "MAX_URI_BYTES", default_value_t = 8 * 1024, value_parser = clap::value_parser!(u32).range(256..=64 * 1024))]
    pub max_uri_bytes: u32,

    /// Memory the host may hold on behalf of requests, in MiB: request bodies being
    /// read, instance memory while handlers run, responses clients have not taken
    /// yet. Past it, new requests get 503 + Retry-After instead of the process
    /// growing until it is killed. The default fits a 1 GiB container with room
    /// for the engine, the store's cache and the connections.
    #[arg(long, env = "MEMORY_BUDGET_MIB", default_value_t = 128, value_parser = clap::value_parser!(u64).range(8..=1_048_576))]
    pub memory_budget_mib: u64,

    /// Open connections on the API port, across all workers; more are closed at
    /// accept. Lowered at start to fit the open-file limit, with a warning.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Requests handled at once across all workers; more get 503 + Retry-After.
    #[arg(long, env = "MAX_CONCURRENCY", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrency: u32,

    /// Instances alive at once (the pool's slots), split evenly among the API
    /// workers; a request waits for one of its worker's, up to its deadline. Each
    /// slot used keeps its first pages resident afterwards (what makes the next
    /// instance cheap; measured about 1.3 MiB, at most 2.25 MiB), outside the
    /// memory budget: this caps that memory, about 31 MiB by default.
    #[arg(long, env = "MAX_INSTANCES", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_instances: u32,
}

/// How long a client may take.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Timeouts")]
pub struct TimeoutArgs {
    /// Time a client has to send a complete request head, from connect or from the
    /// end of its previous response; so also the keep-alive idle timeout. Put it
    /// above the upstream keep-alive timeout of any proxy in front.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub header_read_timeout_ms: u64,

    /// Time a client has to send the whole request body once its head has arrived
    /// (slower: 408 and the connection is closed).
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub body_read_timeout_ms: u64,

    /// Longest a response write may wait on a client that does not read (then the
    /// connection is closed).
    #[arg(long, env = "WRITE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub write_timeout_ms: u64,

    /// Longest a client may take to read a whole response, from its first byte;
    /// unlike --write-timeout-ms, progress does not extend it (then the connection
    /// is closed). A reader that takes a byte every few seconds would otherwise
    /// hold its response in memory for ever.
    #[arg(long, env = "RESPONSE_WRITE_DEADLINE_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub response_write_deadline_ms: u64,
}

/// Threads, shutdown, logs.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Process")]
pub struct ProcessArgs {
    /// API worker threads, each a single-threaded runtime with its own listener
    /// socket (SO_REUSEPORT). 0 = one per CPU.
    #[arg(long, env = "WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Seconds to keep accepting requests after SIGTERM/SIGINT, with /readyz
    /// answering 503, before the listeners close: the time a load balancer
    /// (kube-proxy, an ingress) takes to stop sending new connections here. A
    /// second signal ends it early.
    #[arg(long, env = "SHUTDOWN_DELAY_SECS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub shutdown_delay_secs: u64,

    /// Seconds to let in-flight requests finish after the listeners close.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Benchmarks only: also serve GET /bench/native/tasks/{id}, the same lookup as
    /// the component's GET /api/tasks/{id} done natively (the baseline of bench/).
    #[arg(long, env = "BENCH_NATIVE_ROUTE", hide = true)]
    pub bench_native_route: bool,

    /// Log format: text for terminals, json for containers.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl LimitsArgs {
    /// What one instance may take and how long it may run, for the engine.
    pub fn engine(&self) -> crate::engine::Limits {
        crate::engine::Limits {
            memory_bytes: usize::try_from(self.memory_limit_mib << 20).unwrap_or(usize::MAX),
            deadline: std::time::Duration::from_millis(self.deadline_ms),
            epoch_tick: std::time::Duration::from_millis(self.epoch_tick_ms),
            max_instances: self.max_instances,
        }
    }
}

impl ServeArgs {
    /// Validate before anything binds, so bad configuration fails fast and clearly.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self
            .component
            .grants
            .iter()
            .any(|g| !valid_collection_name(g))
        {
            bail!("--grant: collection names must be 1-64 characters of [A-Za-z0-9_-]");
        }
        if self
            .component
            .key_value_stores
            .iter()
            .any(|l| !valid_collection_name(l))
        {
            bail!("--key-value-store: labels must be 1-64 characters of [A-Za-z0-9_-]");
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_body_bytes > 64 * 1024 * 1024 {
            bail!("--max-body-bytes must be between 1 byte and 64 MiB");
        }
        if self.component.precompiled_dir.is_some() && !self.component.allow_precompiled {
            bail!(
                "--precompiled-dir loads native code that runs outside the sandbox: pass --allow-precompiled (ALLOW_PRECOMPILED=true) if you built it"
            );
        }
        if self.limits.epoch_tick_ms > self.limits.deadline_ms {
            bail!("--epoch-tick-ms must not exceed --deadline-ms");
        }
        // The database is told the same bound (maxTimeMS): past the request's
        // deadline nobody waits for the answer, so it must stop working before.
        let mongodb = self
            .store
            .mongodb_uri
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty())
            || self.store.mongodb_uri_file.is_some();
        if mongodb
            && (self.store.mongodb_op_timeout_ms == 0
                || self.store.mongodb_op_timeout_ms >= self.limits.deadline_ms)
        {
            bail!(
                "--mongodb-op-timeout-ms ({}) must be between 1 and --deadline-ms ({}): past the request's deadline the database would still work on a query nobody waits for",
                self.store.mongodb_op_timeout_ms,
                self.limits.deadline_ms
            );
        }
        if !mongodb
            && (self.store.mongodb_username.is_some() || self.store.mongodb_username_file.is_some())
        {
            bail!("a MongoDB user is set but no MONGODB_URI (or MONGODB_URI_FILE) to use it with");
        }
        if self.limits.memory_limit_mib > self.limits.memory_budget_mib {
            bail!(
                "--memory-limit-mib ({}) must not exceed --memory-budget-mib ({}): one request could never run",
                self.limits.memory_limit_mib,
                self.limits.memory_budget_mib
            );
        }
        Ok(())
    }

    /// The MongoDB URI, from the flag/env or the file. Never log the result.
    pub fn mongodb_uri(&self) -> anyhow::Result<Option<String>> {
        if let Some(uri) = &self.store.mongodb_uri {
            return Ok(Some(uri.trim().to_owned()).filter(|u| !u.is_empty()));
        }
        match &self.store.mongodb_uri_file {
            None => Ok(None),
            Some(path) => {
                let uri = std::fs::read_to_string(path)
                    .with_context(|| format!("reading MONGODB_URI_FILE {}", path.display()))?;
                Ok(Some(uri.trim().to_owned()).filter(|u| !u.is_empty()))
            }
        }
    }

    /// The MongoDB user given apart from the URI (`--mongodb-username` or its
    /// file, the password from its file or `MONGODB_PASSWORD`), if any. Never log
    /// the result.
    pub fn mongodb_credential(&self) -> anyhow::Result<Option<MongoCredential>> {
        self.mongodb_credential_with(std::env::var_os(PASSWORD_ENV))
    }

    fn mongodb_credential_with(
        &self,
        password_env: Option<std::ffi::OsString>,
    ) -> anyhow::Result<Option<MongoCredential>> {
        let store = &self.store;
        let username = match (&store.mongodb_username, &store.mongodb_username_file) {
            (Some(name), _) => Some(name.trim().to_owned()),
            (None, Some(path)) => Some(read_secret(path, "MONGODB_USERNAME_FILE")?),
            (None, None) => None,
        };
        let password = match (&store.mongodb_password_file, password_env) {
            (Some(path), _) => Some(read_secret(path, "MONGODB_PASSWORD_FILE")?),
            (None, Some(p)) => Some(
                p.into_string()
                    .map_err(|_| anyhow::anyhow!("{PASSWORD_ENV} is not valid UTF-8"))?,
            ),
            (None, None) => None,
        };
        match (username, password) {
            (None, None) => Ok(None),
            (Some(u), _) if u.is_empty() => bail!("the MongoDB user name is empty"),
            (Some(username), Some(password)) => Ok(Some(MongoCredential {
                username,
                password,
                source: store
                    .mongodb_auth_source
                    .clone()
                    .unwrap_or_else(|| store.mongodb_database.clone()),
            })),
            (Some(_), None) => bail!(
                "a MongoDB user is set but no password: set MONGODB_PASSWORD_FILE (or MONGODB_PASSWORD)"
            ),
            (None, Some(_)) => bail!(
                "a MongoDB password is set but no user: set MONGODB_USERNAME (or MONGODB_USERNAME_FILE)"
            ),
        }
    }

    pub fn workers(&self) -> usize {
        if self.process.workers > 0 {
            self.process.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// The MongoDB password's environment variable: read directly, with no flag, so
/// that no one is tempted to pass it on a command line (`ps` shows those).
pub const PASSWORD_ENV: &str = "MONGODB_PASSWORD";

/// A MongoDB user given apart from the URI.
pub struct MongoCredential {
    pub username: String,
    pub password: String,
    /// The database the user is defined in.
    pub source: String,
}

/// A secret from a mounted file, without the line end an editor or `echo` adds
/// (Kubernetes Secrets have none; a password never ends in a newline on purpose).
fn read_secret(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

pub fn valid_collection_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("host").chain(args.iter().copied())).expect("parses")
    }

    #[test]
    fn defaults_are_sane() {
        let c = parse(&[]).serve;
        assert_eq!(c.net.listen.port(), 8080);
        assert_eq!(c.net.admin_listen.port(), 9090);
        assert_eq!(c.component.grants, vec!["tasks"]);
        assert_eq!(
            (c.limits.memory_limit_mib, c.limits.deadline_ms),
            (64, 1000)
        );
        c.validate().expect("defaults validate");
    }

    #[test]
    fn precompiled_native_code_is_an_explicit_choice() {
        assert!(
            parse(&["--precompiled-dir", "/opt/p"])
                .serve
                .validate()
                .is_err()
        );
        parse(&["--precompiled-dir", "/opt/p", "--allow-precompiled"])
            .serve
            .validate()
            .expect("opted in");
        assert!(!parse(&[]).serve.component.allow_precompiled);
    }

    #[test]
    fn a_database_operation_ends_before_its_request() {
        let m = ["--mongodb-uri", "mongodb://db:27017/"];
        let with = |extra: &[&str]| parse(&[&m[..], extra].concat()).serve.validate();
        assert!(with(&["--deadline-ms", "500"]).is_err());
        assert!(with(&["--mongodb-op-timeout-ms", "1000"]).is_err());
        with(&["--deadline-ms", "500", "--mongodb-op-timeout-ms", "400"])
            .expect("below the deadline");
        parse(&["--deadline-ms", "200"])
            .serve
            .validate()
            .expect("no MongoDB, no database bound to compare");
    }

    #[test]
    fn grants_are_comma_separated_and_checked() {
        let c = parse(&["--grant", "tasks,notes"]).serve;
        assert_eq!(c.component.grants, vec!["tasks", "notes"]);
        assert!(parse(&["--grant", "a.b"]).serve.validate().is_err());
    }

    #[test]
    fn key_value_is_off_by_default_and_labels_are_checked() {
        assert!(parse(&[]).serve.component.key_value_stores.is_empty());
        let c = parse(&["--key-value-store", "default,cache"]).serve;
        assert_eq!(c.component.key_value_stores, vec!["default", "cache"]);
        c.validate().expect("valid labels");
        assert!(
            parse(&["--key-value-store", "../x"])
                .serve
                .validate()
                .is_err()
        );
    }

    #[test]
    fn uri_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("uri");
        std::fs::write(&f, "mongodb://u:p@db:27017/\n").expect("write");
        let c = parse(&["--mongodb-uri-file", f.to_str().expect("utf8")]).serve;
        assert_eq!(
            c.mongodb_uri().expect("reads").as_deref(),
            Some("mongodb://u:p@db:27017/")
        );
    }

    /// docs/configuration.md lists every `host serve` flag under its `--help`
    /// group, with its variable and default: the rows as clap defines them.
    #[test]
    fn a_mongodb_user_comes_apart_from_the_uri_with_its_password_from_a_file_or_the_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("password");
        // A password with every character a URI would need escaped.
        std::fs::write(&file, "p@ss:w/rd%?#\n").expect("write");
        let uri = ["--mongodb-uri", "mongodb://db:27017/"];
        let c = parse(
            &[
                &uri[..],
                &["--mongodb-username", "app", "--mongodb-password-file"],
                &[file.to_str().expect("utf-8")],
            ]
            .concat(),
        )
        .serve;
        let cred = c.mongodb_credential_with(None).expect("ok").expect("some");
        assert_eq!(
            (
                cred.username.as_str(),
                cred.password.as_str(),
                cred.source.as_str()
            ),
            ("app", "p@ss:w/rd%?#", "tasks")
        );

        let c = parse(
            &[
                &uri[..],
                &[
                    "--mongodb-username",
                    "app",
                    "--mongodb-auth-source",
                    "admin",
                ],
            ]
            .concat(),
        )
        .serve;
        let cred = c
            .mongodb_credential_with(Some("from-env".into()))
            .expect("ok")
            .expect("some");
        assert_eq!(
            (cred.password.as_str(), cred.source.as_str()),
            ("from-env", "admin")
        );

        let c = parse(&[&uri[..], &["--mongodb-username", "app"]].concat()).serve;
        let e = c
            .mongodb_credential_with(None)
            .err()
            .expect("no password")
            .to_string();
        assert!(e.contains("MONGODB_PASSWORD_FILE"), "{e}");
        let c = parse(&uri).serve;
        assert!(c.mongodb_credential_with(None).expect("ok").is_none());
        let e = c
            .mongodb_credential_with(Some("x".into()))
            .err()
            .expect("no user")
            .to_string();
        assert!(e.contains("MONGODB_USERNAME"), "{e}");

        let c = parse(&["--mongodb-username", "app"]).serve;
        let e = c.validate().expect_err("no URI").to_string();
        assert!(e.contains("MONGODB_URI"), "{e}");
    }

    #[test]
    fn the_configuration_doc_lists_every_flag_as_defined() {
        use clap::CommandFactory;
        let doc = include_str!("../../docs/configuration.md");
        // (group, flag, env, default) from the doc's tables.
        let mut documented = Vec::new();
        let mut group = "";
        for line in doc.lines() {
            if let Some(h) = line.strip_prefix("### ") {
                group = h;
            }
            let cells: Vec<&str> = line.split(" | ").collect();
            if let [first, env, default, ..] = cells[..]
                && let Some(flag) = first.strip_prefix("| `--")
            {
                // The default's first word: `64`, `tasks`, `0` (one per CPU), off.
                let default = default.split(' ').next().unwrap_or("").trim_matches('`');
                documented.push((
                    group.to_owned(),
                    flag.trim_end_matches('`').to_owned(),
                    env.trim_matches('`').to_owned(),
                    default.to_owned(),
                ));
            }
        }
        let mut defined = Vec::new();
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if arg.is_hide_set() || long == "help" || long == "version" {
                continue;
            }
            let env = arg
                .get_env()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            // A switch's default `false` reads "off"; none at all is described in
            // words (unset, built-in, a path).
            let default = match defaults.join(",").as_str() {
                "false" => "off".to_owned(),
                d => d.to_owned(),
            };
            defined.push((
                arg.get_help_heading().unwrap_or("").to_owned(),
                long.to_owned(),
                env,
                default,
            ));
        }
        assert!(defined.len() >= 30, "{defined:?}");
        for d in &defined {
            let row = documented.iter().find(|r| r.1 == d.1);
            let Some(row) = row else {
                panic!("--{} is not in docs/configuration.md", d.1)
            };
            assert_eq!((&row.0, &row.2), (&d.0, &d.2), "--{}: group and env", d.1);
            if !d.3.is_empty() {
                assert_eq!(row.3, d.3, "--{}: default", d.1);
            }
        }
        let flags: Vec<&String> = defined.iter().map(|d| &d.1).collect();
        let stale: Vec<&String> = documented
            .iter()
            .map(|r| &r.1)
            .filter(|f| !flags.contains(f))
            .collect();
        assert!(stale.is_empty(), "documented but not a flag: {stale:?}");
    }
}
