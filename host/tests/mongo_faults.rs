//! The MongoDB store under faults, against a FerretDB this test starts, kills,
//! restarts and freezes itself. Needs TEST_FERRETDB_BIN (`.ci/run` builds it into
//! tools/bin/ferretdb); ignored otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Guest, Opts, Server, client};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Ferret {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Ferret {
    fn start_on(port: u16, dir: tempfile::TempDir) -> Self {
        Self::spawn(port, dir, None)
    }

    /// With authentication on and one user, `(database, name, password)`: the
    /// stand-in for a MongoDB whose init script created the application's user.
    fn start_with_user(user: (&str, &str, &str)) -> Self {
        Self::spawn(free_port(), tempfile::tempdir().unwrap(), Some(user))
    }

    fn spawn(port: u16, dir: tempfile::TempDir, user: Option<(&str, &str, &str)>) -> Self {
        let bin = std::env::var("TEST_FERRETDB_BIN").expect("TEST_FERRETDB_BIN");
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let mut cmd = Command::new(bin);
        if let Some((database, name, password)) = user {
            cmd.arg("--test-enable-new-auth")
                .arg(format!("--setup-database={database}"))
                .arg(format!("--setup-username={name}"))
                .env("FERRETDB_SETUP_PASSWORD", password);
        }
        let child = cmd
            .arg("--handler=sqlite")
            .arg(format!(
                "--sqlite-url=file:{}/",
                dir.path().join("data").display()
            ))
            .arg(format!("--listen-addr=127.0.0.1:{port}"))
            .arg("--debug-addr=-")
            .arg(format!(
                "--state-dir={}",
                dir.path().join("state").display()
            ))
            .arg("--telemetry=disable")
            .arg("--log-level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ferretdb");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "ferretdb did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, dir }
    }

    fn start() -> Self {
        Self::start_on(free_port(), tempfile::tempdir().unwrap())
    }

    fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL; returns what a restart needs.
    fn kill(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (port, dir)
    }

    fn signal(&self, sig: &str) {
        // The process may already be gone (after kill()); that is fine.
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        if sig == "STOP" {
            self.wait_until_stopped();
        }
    }

    /// kill(2) returns before every thread has taken the stop: until they all
    /// have, a request may still be answered (seen once: a 200 right after STOP).
    fn wait_until_stopped(&self) {
        let tasks = format!("/proc/{}/task", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stopped = std::fs::read_dir(&tasks).is_ok_and(|dir| {
                dir.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                        // The state follows the parenthesised command name.
                        stat.rsplit_once(") ")
                            .is_some_and(|(_, rest)| rest.starts_with('T'))
                    })
                })
            });
            if stopped {
                return;
            }
            assert!(Instant::now() < deadline, "ferretdb did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Ferret {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn host_on(uri: &str) -> Server {
    Server::start(
        Opts::new(Guest::App)
            .env("MONGODB_URI", uri)
            .env("MONGODB_DATABASE", "faults"),
    )
}

/// Until `/readyz` answers 200, or fail after `within`.
async fn wait_until_ready(c: &reqwest::Client, s: &Server, within: Duration) {
    let deadline = Instant::now() + within;
    while c.get(s.admin_url("/readyz")).send().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "readyz did not turn ready");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// GET the list; returns the status and how long it took.
async fn probe(c: &reqwest::Client, s: &Server) -> (u16, Duration) {
    let t = Instant::now();
    let status = c
        .get(s.url("/api/tasks?limit=1"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    (status, t.elapsed())
}

async fn wait_until_ok(c: &reqwest::Client, s: &Server, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if probe(c, s).await.0 == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs TEST_FERRETDB_BIN; .ci/run provides it"]
async fn server_down_at_startup_then_up() {
    let port = free_port();
    let s = host_on(&format!("mongodb://127.0.0.1:{port}/"));
    let c = client();
    assert_eq!(
        c.get(s.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the host starts"
    );
    let r = c.get(s.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["store"], false);
    for _ in 0..3 {
        let t = Instant::now();
        let r = c.get(s.url("/api/tasks")).send().await.unwrap();
        let took = t.elapsed();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["type"], "/problems/unavailable");
        assert!(
            took < Duration::from_secs(2),
            "answered within the server selection timeout: {took:?}"
        );
    }
    // The server comes up: the same host recovers, no restart.
    let _f = Ferret::start_on(port, tempfile::tempdir().unwrap());
    wait_until_ok(&c, &s, Duration::from_secs(15)).await;
    wait_until_ready(&c, &s, Duration::from_secs(10)).await;
}

#[tokio::test]
#[ignore = "needs TEST_FERRETDB_BIN; .ci/run provides it"]
async fn server_killed_then_restarted() {
    let f = Ferret::start();
    let s = host_on(&f.uri());
    let c = client();
    wait_until_ok(&c, &s, Duration::from_secs(10)).await;
    let created: serde_json::Value = c
        .post(s.url("/api/tasks"))
        .json(&serde_json::json!({"title": "survives"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (port, dir) = f.kill();
    for _ in 0..5 {
        let (status, took) = probe(&c, &s).await;
        assert_eq!(status, 503, "503 while the server is down");
        assert!(took < Duration::from_secs(2), "no request hangs: {took:?}");
    }
    let _f = Ferret::start_on(port, dir);
    wait_until_ok(&c, &s, Duration::from_secs(20)).await;
    for _ in 0..20 {
        let (status, _) = probe(&c, &s).await;
        assert_eq!(status, 200, "no 5xx after recovery");
    }
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        c.get(s.url(&format!("/api/tasks/{id}")))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "data written before the crash is back"
    );
}

#[tokio::test]
#[ignore = "needs TEST_FERRETDB_BIN; .ci/run provides it"]
async fn frozen_server_times_out_and_admin_stays_responsive() {
    let f = Ferret::start();
    let s = host_on(&f.uri());
    let c = client();
    wait_until_ok(&c, &s, Duration::from_secs(10)).await;
    f.signal("STOP");
    let frozen_at = Instant::now();
    let mut statuses = Vec::new();
    while frozen_at.elapsed() < Duration::from_secs(3) {
        let (status, took) = probe(&c, &s).await;
        assert!(
            took < Duration::from_millis(1800),
            "bounded by the documented deadline: {took:?}"
        );
        statuses.push(status);
        let t = Instant::now();
        assert_eq!(
            c.get(s.admin_url("/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "admin stays responsive"
        );
    }
    assert!(
        statuses.iter().all(|s| *s == 503 || *s == 504),
        "{statuses:?}"
    );
    f.signal("CONT");
    wait_until_ok(&c, &s, Duration::from_secs(15)).await;
}

#[tokio::test]
#[ignore = "needs TEST_FERRETDB_BIN; .ci/run provides it"]
async fn authenticates_as_a_user_given_apart_from_the_uri() {
    // Every character a URI's user-info would need escaped: given apart from the
    // URI, the password is used as it is, with nothing to encode.
    let password = "p@ss:w/rd%2F?#[]";
    let f = Ferret::start_with_user(("appdb", "app", password));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let host = |password_file: &std::path::Path| {
        Server::start(
            Opts::new(Guest::App)
                .env("MONGODB_URI", &f.uri())
                .env("MONGODB_DATABASE", "appdb")
                .env("MONGODB_USERNAME", "app")
                .env("MONGODB_PASSWORD_FILE", password_file.to_str().unwrap()),
        )
    };
    let c = client();
    let s = host(&file);
    wait_until_ok(&c, &s, Duration::from_secs(15)).await;
    let r = c
        .post(s.url("/api/tasks"))
        .json(&serde_json::json!({"title": "as the app user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "writes as the application's user");

    // The same server refuses a wrong password: the host is not ready, says why
    // in its log, and never logs the password.
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let s = host(&wrong);
    let r = c.get(s.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503, "not ready with a wrong password");
    assert_eq!(probe(&c, &s).await.0, 503);
    let log = s.log_text();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(
        !log.contains("not-the-password") && !log.contains(password),
        "{log}"
    );

    // No user at all: the server still answers `ping` (it needs none) but refuses
    // everything else, so the host is not ready, and says why.
    let s = Server::start(
        Opts::new(Guest::App)
            .env("MONGODB_URI", &f.uri())
            .env("MONGODB_DATABASE", "appdb"),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = c.get(s.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503, "not ready without a user");
    let body: serde_json::Value = r.json().await.unwrap();
    let why = body["store_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("indexes not ready") && why.contains("server code 13"),
        "{body}"
    );
}

#[tokio::test]
#[ignore = "needs TEST_FERRETDB_BIN; .ci/run provides it"]
async fn the_indexes_exist_once_the_host_is_ready() {
    // The sorts and filters the API offers are served from indexes (docs/mongodb.md);
    // the host creates them at start and is not ready before they exist.
    let f = Ferret::start();
    let s = host_on(&f.uri());
    let c = client();
    wait_until_ready(&c, &s, Duration::from_secs(15)).await;
    let db = mongodb::Client::with_uri_str(f.uri())
        .await
        .unwrap()
        .database("faults");
    let names = db
        .collection::<bson::Document>("tasks")
        .list_index_names()
        .await
        .unwrap();
    for keys in [
        "status_1_created_1",
        "tags_1",
        "created_1__id_1",
        "due_1__id_1",
        "priority_1__id_1",
    ] {
        assert!(names.iter().any(|n| n == keys), "{keys} missing: {names:?}");
    }
}

#[tokio::test]
#[ignore = "needs TEST_FERRETDB_BIN; .ci/run provides it"]
async fn a_second_host_on_the_same_database_becomes_ready() {
    // A rolling update, a restart: the indexes exist already, and createIndexes
    // must answer ok as MongoDB does. The stand-in dropped the connection when
    // four or more of them existed (tools/ferretdb/existing-indexes.patch), and
    // such a host never became ready; the real node's rolling update found it.
    let f = Ferret::start();
    let c = client();
    let first = host_on(&f.uri());
    wait_until_ready(&c, &first, Duration::from_secs(15)).await;
    let second = host_on(&f.uri());
    wait_until_ready(&c, &second, Duration::from_secs(15)).await;
}
