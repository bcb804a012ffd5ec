//! Starts the real `host` binary on 127.0.0.1:0 and talks to it over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const HOST: &str = env!("CARGO_BIN_EXE_host");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guest {
    /// The tasks API.
    App,
    /// The test-only misbehaving component.
    Fault,
    /// The Spin build: the tasks API composed with `adapters/documents-kv`, run with
    /// the host's `fermyon:spin/key-value` (`--key-value-store default`).
    SpinApp,
}

impl Guest {
    /// `App` under `TEST_GUEST=spin` is the Spin build: `.ci/run` reruns the API
    /// suites that way, so the composed component passes the same tests.
    fn resolve(self) -> Self {
        match (self, std::env::var("TEST_GUEST").as_deref()) {
            (Guest::App, Ok("spin")) => Guest::SpinApp,
            (g, Ok("spin" | "") | Err(_)) => g,
            (_, Ok(other)) => panic!("TEST_GUEST={other}: only `spin` is known"),
        }
    }
}

/// Whether `Guest::App` runs as the Spin build in this test run.
pub fn spin_mode() -> bool {
    Guest::App.resolve() == Guest::SpinApp
}

/// `GET /readyz` on the admin address (host:port) answers 200.
fn admin_says_ready(admin: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(admin) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(3)));
    let mut head = [0u8; 16];
    conn.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_ok()
        && conn.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.1 200")
}

/// Whether the servers of this test run use MongoDB (`TEST_STORE=mongodb`).
pub fn store_is_mongodb() -> bool {
    std::env::var("TEST_STORE").as_deref() == Ok("mongodb")
}

/// A precompiled component, made once and shared by every test binary. The cache key
/// includes the sizes and mtimes of both the host binary and the component, so a
/// rebuild never reuses a stale artifact (wasmtime would refuse it anyway).
pub fn precompiled(guest: Guest) -> PathBuf {
    static APP: OnceLock<PathBuf> = OnceLock::new();
    static FAULT: OnceLock<PathBuf> = OnceLock::new();
    static SPIN_APP: OnceLock<PathBuf> = OnceLock::new();
    let (cell, wasm) = match guest {
        Guest::App => (&APP, env!("APP_COMPONENT")),
        Guest::Fault => (&FAULT, env!("FAULT_COMPONENT")),
        Guest::SpinApp => (&SPIN_APP, env!("SPIN_APP_COMPONENT")),
    };
    cell.get_or_init(|| {
        let stamp = |p: &str| {
            let m = std::fs::metadata(p).expect("stat");
            let t = m
                .modified()
                .expect("mtime")
                .duration_since(std::time::UNIX_EPOCH)
                .expect("epoch");
            format!("{}-{}", m.len(), t.as_nanos())
        };
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join(format!("{guest:?}-{}-{}.cwasm", stamp(HOST), stamp(wasm)));
        if !out.exists() {
            let tmp = dir.join(format!("{guest:?}-{}.tmp", std::process::id()));
            let status = Command::new(HOST)
                .args(["precompile", wasm, "-o"])
                .arg(&tmp)
                .env("RUST_LOG", "warn")
                .status()
                .expect("run host precompile");
            assert!(status.success(), "precompile failed");
            std::fs::rename(&tmp, &out).expect("publish cwasm");
        }
        out
    })
    .clone()
}

pub struct Opts {
    pub guest: Guest,
    pub data_dir: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Open-file limit (soft and hard) to start the host under.
    pub nofile: Option<u32>,
}

impl Opts {
    pub fn new(guest: Guest) -> Self {
        Self {
            guest,
            data_dir: None,
            args: Vec::new(),
            env: Vec::new(),
            nofile: None,
        }
    }
    pub fn nofile(mut self, n: u32) -> Self {
        self.nofile = Some(n);
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_owned());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }
    pub fn data_dir(mut self, d: &Path) -> Self {
        self.data_dir = Some(d.to_owned());
        self
    }
}

pub struct Server {
    child: Child,
    pub api: String,
    pub admin: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(opts: Opts) -> Self {
        let (tmp, data_dir) = match opts.data_dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let p = t.path().to_owned();
                (Some(t), p)
            }
        };
        let guest = opts.guest.resolve();
        // `exec` keeps the host's PID the child's, for kill and terminate.
        let mut cmd = match opts.nofile {
            None => Command::new(HOST),
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(HOST);
                c
            }
        };
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--admin-listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--component")
            .arg(precompiled(guest))
            // The suites' components are precompiled here, by this test run.
            .arg("--allow-precompiled")
            .args(&opts.args)
            .env_remove("MONGODB_URI")
            .env_remove("MONGODB_URI_FILE")
            .env_remove("MONGODB_DATABASE")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // TEST_STORE=mongodb runs the same suite against MongoDB (FerretDB in
        // .ci/run), one database per data dir so a restart finds its data.
        if std::env::var("TEST_STORE").as_deref() == Ok("mongodb") {
            use std::hash::{Hash, Hasher};
            let uri = std::env::var("TEST_MONGODB_URI")
                .expect("TEST_STORE=mongodb needs TEST_MONGODB_URI");
            let mut h = std::collections::hash_map::DefaultHasher::new();
            data_dir.hash(&mut h);
            cmd.env("MONGODB_URI", uri)
                .env("MONGODB_DATABASE", format!("e2e_{:016x}", h.finish()));
        }
        let spin = guest == Guest::SpinApp;
        if spin && !opts.args.iter().any(|a| a == "--key-value-store") {
            cmd.args(["--key-value-store", "default"]);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn host");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "listening"
                {
                    let _ = tx.send((
                        v["api"].as_str().unwrap_or("").to_owned(),
                        v["admin"].as_str().unwrap_or("").to_owned(),
                    ));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let (api, admin) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "host did not start; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        // The mode under test must be the mode that runs: never silently redb.
        let wanted = match std::env::var("TEST_STORE").as_deref() {
            Ok("mongodb") if !opts.env.iter().any(|(k, _)| k == "MONGODB_URI") => {
                "using the MongoDB store"
            }
            _ if opts.env.iter().any(|(k, _)| k == "MONGODB_URI") => "using the MongoDB store",
            _ => "using the embedded store",
        };
        assert!(
            logs.lock().unwrap().iter().any(|l| l.contains(wanted)),
            "expected the host to log {wanted:?}"
        );
        if spin {
            let wanted = "providing fermyon:spin/key-value@2.0.0";
            assert!(
                logs.lock().unwrap().iter().any(|l| l.contains(wanted)),
                "expected the host to log {wanted:?}"
            );
        }
        // On MongoDB the host is ready only once its indexes exist, shortly after
        // it listens: the suites start on a ready host, as a Service routes only
        // to ready pods. (A test that sets its own MONGODB_URI watches readiness
        // itself.)
        if store_is_mongodb() && !opts.env.iter().any(|(k, _)| k == "MONGODB_URI") {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !admin_says_ready(&admin) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self {
            child,
            api: format!("http://{api}"),
            admin: format!("http://{admin}"),
            data_dir,
            _tmp: tmp,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.api, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{}", self.admin, path)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "host did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the server but keep its data dir alive for a restart.
    pub fn stop_keep_data(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        self.kill();
        (self.data_dir.clone(), self._tmp.take())
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET an API path that must answer 200, as JSON.
pub async fn get_json(c: &reqwest::Client, s: &Server, path: &str) -> serde_json::Value {
    let r = c.get(s.url(path)).send().await.expect("send");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

/// The admin port's Prometheus text.
pub async fn metrics_text(c: &reqwest::Client, s: &Server) -> String {
    c.get(s.admin_url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// POST a task; panics unless it is created.
pub async fn create(c: &reqwest::Client, s: &Server, body: serde_json::Value) -> serde_json::Value {
    let r = c
        .post(s.url("/api/tasks"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201, "create failed: {:?}", r.text().await);
    r.json().await.expect("json")
}

/// `post` as a new task and `patch` as a merge patch of the task at `task_url`: each
/// must be refused with a 400 problem document.
pub async fn refused_as_new_and_as_patch(
    c: &reqwest::Client,
    s: &Server,
    task_url: &str,
    post: String,
    patch: String,
) {
    let r = c
        .post(s.url("/api/tasks"))
        .header("content-type", "application/json")
        .body(post)
        .send()
        .await
        .expect("send");
    problem(r, 400).await;
    let r = c
        .patch(task_url)
        .header("content-type", "application/merge-patch+json")
        .body(patch)
        .send()
        .await
        .expect("send");
    problem(r, 400).await;
}

pub async fn problem(r: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(r.status(), status);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json",
        "errors must be RFC 9457 problem documents"
    );
    let body: serde_json::Value = r.json().await.expect("problem json");
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().unwrap().starts_with("/problems/"));
    body
}
