//! `spin.toml` cannot be run here (no Spin CLI), so it is checked against what it
//! names: the route against what the host serves, the sources and the dependency
//! against what `build.rs` builds and composes, the build command against the one
//! `build.rs` runs, the watch globs against the tree, and the capabilities against
//! what the adapter needs (and nothing more).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the workspace")
        .to_owned()
}

fn toml_file(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

fn manifest() -> toml::Table {
    toml_file(&root().join("spin.toml"))
}

fn component(m: &toml::Table) -> &toml::Table {
    m["component"]["tasks"]
        .as_table()
        .expect("[component.tasks]")
}

fn strings(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(toml::Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The packages, profile and target of the `spin build` command.
struct Build {
    packages: Vec<String>,
    profile: String,
    target: String,
    tokens: Vec<String>,
}

fn build(m: &toml::Table) -> Build {
    let command = component(m)["build"]["command"]
        .as_str()
        .expect("build.command");
    let tokens: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    assert_eq!(&tokens[..2], ["cargo", "build"], "{command}");
    let after = |flag: &str| -> Vec<String> {
        tokens
            .windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    };
    let one = |flag: &str| {
        let v = after(flag);
        assert_eq!(v.len(), 1, "{flag} once in {command}");
        v[0].clone()
    };
    Build {
        packages: after("-p"),
        profile: one("--profile"),
        target: one("--target"),
        tokens,
    }
}

/// The workspace package whose cdylib `spin build` writes to `path`.
fn package_for(path: &str, b: &Build) -> String {
    let file = Path::new(path);
    assert_eq!(
        file.parent().expect("a directory"),
        Path::new("target").join(&b.target).join(&b.profile),
        "{path} is not where `{}` writes",
        b.tokens.join(" ")
    );
    assert_eq!(file.extension().and_then(|e| e.to_str()), Some("wasm"));
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a file name");
    let package = b
        .packages
        .iter()
        .find(|p| p.replace('-', "_") == stem)
        .unwrap_or_else(|| panic!("{path}: no package built by the command makes it"));
    let workspace = toml_file(&root().join("Cargo.toml"));
    let member = strings(workspace["workspace"].get("members"))
        .into_iter()
        .find(|dir| {
            toml_file(&root().join(dir).join("Cargo.toml"))["package"]["name"].as_str()
                == Some(package.as_str())
        })
        .unwrap_or_else(|| panic!("{package} is not a workspace member"));
    let member = toml_file(&root().join(member).join("Cargo.toml"));
    assert_eq!(
        strings(member["lib"].get("crate-type")),
        ["cdylib"],
        "{package} must build a component"
    );
    package.clone()
}

#[test]
fn the_route_is_what_the_host_serves() {
    let m = manifest();
    assert_eq!(m["spin_manifest_version"].as_integer(), Some(2));
    let triggers = m["trigger"]["http"].as_array().expect("[[trigger.http]]");
    assert_eq!(triggers.len(), 1);
    let route = triggers[0]["route"].as_str().expect("route");
    assert_eq!(triggers[0]["component"].as_str(), Some("tasks"));
    let prefix = route
        .strip_suffix("...")
        .expect("a wildcard route: the handler routes below it itself");
    // Every path the OpenAPI document (served by the component) declares is under
    // the trigger's route. (That the host labels exactly those paths in its
    // metrics is `ingress::tests::the_routes_are_the_documented_paths`.)
    let openapi: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("app-wasm/openapi.json")).expect("openapi.json"),
    )
    .expect("openapi.json is JSON");
    let documented: BTreeSet<&str> = openapi["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    assert!(!documented.is_empty());
    for r in &documented {
        assert!(r.starts_with(prefix), "{r} is outside {route}");
    }
}

#[test]
fn sources_and_dependency_are_what_build_rs_builds_and_composes() {
    let m = manifest();
    let b = build(&m);
    let c = component(&m);
    assert_eq!(b.target, "wasm32-wasip2");
    let workspace = toml_file(&root().join("Cargo.toml"));
    assert!(
        workspace["profile"].get(&b.profile).is_some(),
        "profile `{}` is not defined",
        b.profile
    );
    assert_eq!(
        package_for(c["source"].as_str().expect("source"), &b),
        "app-wasm"
    );
    let deps = c["dependencies"].as_table().expect("dependencies");
    assert_eq!(deps.len(), 1);
    let (import, dep) = deps.iter().next().expect("one dependency");
    // The dependency is named by the import it satisfies: the handler's only
    // non-WASI import (engine::tests checks the artifact has exactly that one).
    assert_eq!(import, "app:data/documents@0.1.0");
    assert_eq!(
        package_for(dep["path"].as_str().expect("path"), &b),
        "documents-kv"
    );
    // build.rs runs the same build (plus its own --target-dir).
    let build_rs = std::fs::read_to_string(root().join("host/build.rs")).expect("build.rs");
    for t in b.tokens.iter().skip(1) {
        assert!(
            build_rs.contains(&format!("\"{t}\"")),
            "build.rs does not pass {t}"
        );
    }
}

#[test]
fn capabilities_are_the_key_value_store_and_nothing_else() {
    let m = manifest();
    let c = component(&m);
    assert_eq!(strings(c.get("key_value_stores")), ["default"]);
    assert_eq!(
        c.get("dependencies_inherit_configuration")
            .and_then(toml::Value::as_bool),
        Some(true),
        "the adapter opens the store, so it must inherit key_value_stores"
    );
    assert!(strings(c.get("allowed_outbound_hosts")).is_empty());
    for absent in [
        "files",
        "environment",
        "variables",
        "sqlite_databases",
        "ai_models",
    ] {
        assert!(c.get(absent).is_none(), "{absent} must not be granted");
    }
    assert!(m.get("variables").is_none());
}

#[test]
fn watch_globs_match_files() {
    let m = manifest();
    for pattern in strings(component(&m)["build"].get("watch")) {
        let full = root().join(&pattern);
        let n = glob::glob(full.to_str().expect("utf-8 path"))
            .expect("a valid glob")
            .filter_map(Result::ok)
            .count();
        assert!(n > 0, "watch pattern {pattern} matches nothing");
    }
}
