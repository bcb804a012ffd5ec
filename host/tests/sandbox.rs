//! The sandbox: a component that tries to escape or exhaust its limits gets the
//! documented error, quickly, and the host keeps serving everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Guest, Opts, Server, client, get_json, problem};
use std::time::{Duration, Instant};

#[tokio::test]
async fn guest_sees_no_environment_files_sockets_or_network() {
    // Secrets in the host's environment must not be visible to the guest.
    let s = Server::start(
        Opts::new(Guest::Fault)
            .env("SUPER_SECRET_TOKEN", "hunter2")
            .env("DATABASE_PASSWORD", "x"),
    );
    let c = client();

    let env = get_json(&c, &s, "/fault/env").await;
    assert_eq!(
        env["vars"],
        serde_json::json!([]),
        "no environment variables"
    );
    assert_eq!(env["args"], 0, "no arguments");

    let data_file = s.data_dir.join("store.redb");
    assert!(data_file.exists());
    for path in [
        "/etc/passwd",
        data_file.to_str().unwrap(),
        "store.redb",
        ".",
    ] {
        let f = get_json(&c, &s, &format!("/fault/file?path={path}")).await;
        assert!(
            f["read"].as_str().unwrap().starts_with("Err"),
            "reading {path}: {f}"
        );
        assert!(f["list_cwd"].as_str().unwrap().starts_with("Err"), "{f}");
    }

    // A real listener the guest would reach if sockets were allowed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sock = get_json(&c, &s, &format!("/fault/socket?addr={addr}")).await;
    assert!(
        sock["connect"].as_str().unwrap().starts_with("Err"),
        "{sock}"
    );

    // Outbound HTTP, to our own API even: denied by the host.
    let api = s.api.trim_start_matches("http://").to_owned();
    let out = get_json(
        &c,
        &s,
        &format!("/fault/outbound?url=http://{api}/fault/ok"),
    )
    .await;
    assert_eq!(
        out["outbound"], "error: ErrorCode::HttpRequestDenied",
        "{out}"
    );
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "nothing connected to the listener"
    );
}

#[tokio::test]
async fn only_granted_collections_are_reachable() {
    let s = Server::start(Opts::new(Guest::Fault));
    let c = client();
    for coll in ["secrets", "users", "tasks2", "TASKS", "", "tasks%00"] {
        let r = get_json(&c, &s, &format!("/fault/ungranted?collection={coll}")).await;
        assert!(
            r["outcome"].as_str().unwrap().starts_with("forbidden"),
            "{coll}: {r}"
        );
    }
    let r = get_json(&c, &s, "/fault/ungranted?collection=tasks").await;
    assert_eq!(r["outcome"], "ok", "the granted collection works");

    // A second grant is honoured, and only it.
    let s2 = Server::start(Opts::new(Guest::Fault).arg("--grant").arg("tasks,notes"));
    assert_eq!(
        get_json(&c, &s2, "/fault/ungranted?collection=notes").await["outcome"],
        "ok"
    );
    assert!(
        get_json(&c, &s2, "/fault/ungranted?collection=secrets").await["outcome"]
            .as_str()
            .unwrap()
            .starts_with("forbidden")
    );
}

#[tokio::test]
async fn runaway_guests_are_stopped_and_others_keep_being_served() {
    let s = Server::start(
        Opts::new(Guest::Fault)
            .arg("--deadline-ms")
            .arg("1500")
            .arg("--memory-limit-mib")
            .arg("32"),
    );
    let c = client();

    // Each failure mode alone: the documented status and problem type.
    let t = Instant::now();
    let p = problem(c.get(s.url("/fault/loop")).send().await.unwrap(), 504).await;
    assert_eq!(p["type"], "/problems/handler-timeout");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "stopped at its deadline, took {took:?}"
    );
    let p = problem(c.get(s.url("/fault/alloc")).send().await.unwrap(), 500).await;
    assert_eq!(p["type"], "/problems/handler-memory-limit");
    let p = problem(c.get(s.url("/fault/trap")).send().await.unwrap(), 500).await;
    assert_eq!(p["type"], "/problems/handler-failed");
    assert!(
        !p.to_string().contains("panicked"),
        "no guest internals leak: {p}"
    );

    // Runaways on every worker while healthy traffic continues.
    let mut bad = Vec::new();
    for i in 0..6 {
        let c = c.clone();
        let url = s.url(if i % 2 == 0 {
            "/fault/loop"
        } else {
            "/fault/alloc"
        });
        bad.push(tokio::spawn(async move {
            c.get(url).send().await.unwrap().status().as_u16()
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..40 {
        let t = Instant::now();
        let r = get_json(&c, &s, "/fault/ok").await;
        assert_eq!(r["outcome"], "ok");
        worst = worst.max(t.elapsed());
    }
    // Not a latency benchmark: only that healthy requests did not wait for the
    // runaways' 1.5 s deadline (guests yield on every 1 ms epoch tick).
    assert!(
        worst < Duration::from_millis(1400),
        "a healthy request waited {worst:?}"
    );
    let mut statuses: Vec<u16> = Vec::new();
    for b in bad {
        statuses.push(b.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, vec![500, 500, 500, 504, 504, 504]);

    // Still healthy afterwards, and the traps were counted by kind.
    let r = c.get(s.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let metrics = common::metrics_text(&c, &s).await;
    for line in [
        r#"wasm_guest_traps_total{kind="deadline"} 4"#,
        r#"wasm_guest_traps_total{kind="memory"} 4"#,
        r#"wasm_guest_traps_total{kind="trap"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line}");
    }
}

#[tokio::test]
async fn bad_component_artifacts_fail_fast_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.cwasm");
    std::fs::write(&bogus, b"\x7fELF not really").unwrap();
    let err = refused_at_start(&bogus, dir.path());
    assert!(err.contains("bogus.cwasm"), "{err}");
}

/// Starts the host with `component` and expects it to exit with an error; its stderr.
fn refused_at_start(component: &std::path::Path, data_dir: &std::path::Path) -> String {
    let out = std::process::Command::new(common::HOST)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--component",
        ])
        .arg(component)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `.cwasm` is native code outside the sandbox: without `--allow-precompiled` the
/// host refuses to start with one, and says why.
#[tokio::test]
async fn precompiled_native_code_needs_an_explicit_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused_at_start(&common::precompiled(common::Guest::App), dir.path());
    assert!(
        err.contains("--allow-precompiled") && err.contains("outside the sandbox"),
        "{err}"
    );
}

#[tokio::test]
async fn guest_observes_none_of_the_hosts_configuration_or_secrets() {
    // A MongoDB URI with credentials (a closed port: the host starts and serves
    // without it), secrets in the environment and a secret file: everything a
    // deployment gives the host. The guest dumps all WASI lets it observe.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let password = "Mongo-Pa55word-6f1c2e";
    let uri = format!("mongodb://tasks-admin:{password}@127.0.0.1:{port}/?authSource=admin");
    let secret_dir = tempfile::tempdir().unwrap();
    let token_file = secret_dir.path().join("api-token");
    std::fs::write(&token_file, "file-secret-9b7d").unwrap();
    let s = Server::start(
        Opts::new(Guest::Fault)
            .env("MONGODB_URI", &uri)
            .env("MONGODB_DATABASE", "tasks_secret_db")
            .env("API_TOKEN_FILE", token_file.to_str().unwrap())
            .env("SUPER_SECRET_TOKEN", "env-secret-3a8e"),
    );
    let c = client();
    let first = get_json(&c, &s, "/fault/observe").await;
    let second = get_json(&c, &s, "/fault/observe").await;

    assert_eq!(
        first["env"],
        serde_json::json!([]),
        "no environment: {first}"
    );
    assert_eq!(
        first["args"],
        serde_json::json!([]),
        "no arguments: {first}"
    );
    assert_eq!(first["initial_cwd"], serde_json::Value::Null, "{first}");
    assert_eq!(
        first["preopens"],
        serde_json::json!([]),
        "no directories: {first}"
    );

    let dump = format!("{first}{second}");
    let data_dir = s.data_dir.display().to_string();
    let secret_dir = secret_dir.path().display().to_string();
    for needle in [
        uri.as_str(),
        password,
        "tasks-admin",
        "mongodb",
        "tasks_secret_db",
        "file-secret-9b7d",
        "env-secret-3a8e",
        "SUPER_SECRET_TOKEN",
        data_dir.as_str(),
        secret_dir.as_str(),
        s.api.trim_start_matches("http://"),
        s.admin.trim_start_matches("http://"),
    ] {
        assert!(
            !dump.contains(needle),
            "the guest observed {needle:?}: {dump}"
        );
    }

    // Clocks are the real ones (a handler needs the date); they carry nothing else.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let wall = first["wall_clock_secs"].as_u64().unwrap();
    assert!(now.abs_diff(wall) < 300, "wall clock {wall} vs {now}");
    // A fresh instance per request: nothing random is carried from one to the next.
    for k in ["random", "insecure_random", "insecure_seed"] {
        assert_ne!(first[k], second[k], "{k} repeated across requests");
        assert_eq!(first[k].as_str().unwrap().len(), 32, "{k}");
    }
}
