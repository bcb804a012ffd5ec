//! A component that misbehaves on purpose. The host's sandbox tests load it instead of
//! the tasks API and check that every escape attempt fails the documented way while
//! the host keeps serving. Never deployed.

// Generated bindings need `unsafe`; the hand-written code below contains none.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "app:data/handler",
});

use app::data::documents::{self, Error, FindOptions};
use bson::doc;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

fn reply(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .build()
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn error_kind(e: &Error) -> String {
    match e {
        Error::NotFound => "not-found".into(),
        Error::Conflict(m) => format!("conflict: {m}"),
        Error::Invalid(m) => format!("invalid: {m}"),
        Error::Forbidden(m) => format!("forbidden: {m}"),
        Error::Unavailable(m) => format!("unavailable: {m}"),
        Error::Internal(m) => format!("internal: {m}"),
    }
}

fn data_result<T>(r: Result<T, Error>) -> Response {
    match r {
        Ok(_) => reply(200, r#"{"outcome":"ok"}"#.into()),
        Err(e) => reply(200, format!(r#"{{"outcome":{}}}"#, quote(&error_kind(&e)))),
    }
}

fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query()
        .split('&')
        .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

fn encode(d: &bson::Document) -> Vec<u8> {
    d.to_vec().unwrap_or_default()
}

#[http_component]
async fn handle(req: Request) -> Response {
    match req.path() {
        "/fault/ok" => {
            // A healthy request that also goes through the data interface.
            data_result(documents::count("tasks", &encode(&doc! {})))
        }
        "/fault/loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "/fault/alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        "/fault/trap" => panic!("deliberate trap"),
        "/fault/env" => {
            let names: Vec<String> = std::env::vars_os()
                .map(|(k, _)| quote(&k.to_string_lossy()))
                .collect();
            let args = std::env::args_os().count();
            reply(
                200,
                format!(r#"{{"vars":[{}],"args":{args}}}"#, names.join(",")),
            )
        }
        "/fault/observe" => observe(),
        "/fault/file" => {
            let path = query_param(&req, "path").unwrap_or("/etc/passwd");
            let read = std::fs::read(path).map(|b| b.len());
            let dir = std::fs::read_dir(".").map(|d| d.count());
            reply(
                200,
                format!(
                    r#"{{"read":{},"list_cwd":{}}}"#,
                    quote(&format!("{read:?}")),
                    quote(&format!("{dir:?}"))
                ),
            )
        }
        "/fault/socket" => {
            let addr = query_param(&req, "addr").unwrap_or("127.0.0.1:9");
            let r = std::net::TcpStream::connect(addr).map(|_| ());
            reply(
                200,
                format!(r#"{{"connect":{}}}"#, quote(&format!("{r:?}"))),
            )
        }
        "/fault/outbound" => {
            let url = query_param(&req, "url").unwrap_or("http://127.0.0.1:9/");
            let outgoing = Request::new(Method::Get, url);
            let r: Result<Response, _> = spin_sdk::http::send(outgoing).await;
            let shown = match r {
                Ok(resp) => format!("status {}", resp.status()),
                Err(e) => format!("error: {e}"),
            };
            reply(200, format!(r#"{{"outbound":{}}}"#, quote(&shown)))
        }
        "/fault/ungranted" => {
            let coll = query_param(&req, "collection").unwrap_or("secrets");
            data_result(documents::find_one(coll, &encode(&doc! {})))
        }
        "/fault/inject" => {
            let filter = match query_param(&req, "op").unwrap_or("") {
                "where" => doc! {"$where": "sleep(10000) || true"},
                "function" => {
                    doc! {"title": {"$function": {"body": "return 1", "args": [], "lang": "js"}}}
                }
                "expr" => doc! {"$expr": {"$eq": ["$title", "$description"]}},
                "gt-empty" => doc! {"title": {"$gt": ""}, "$comment": "x"},
                "depth" => {
                    let mut d = doc! {"title": "x"};
                    for _ in 0..200 {
                        d = doc! {"$and": [d]};
                    }
                    d
                }
                "regex-long" => doc! {"title": {"$regex": "a".repeat(10_000)}},
                // An operator name as long as a request allows: it must not reach
                // the host's log lines whole.
                "op-long" => {
                    let mut d = bson::Document::new();
                    d.insert(format!("${}", "k".repeat(200_000)), 1);
                    d
                }
                // The review's filter: PCRE backtracks exponentially on it, and
                // compiling a thousand of them took seconds and hundreds of MiB.
                "regex-heavy" => (0..1000)
                    .map(|i| {
                        (
                            format!("f{i}"),
                            bson::Bson::Document(doc! {"$regex": r"(\w+\s*){30}", "$options": "i"}),
                        )
                    })
                    .collect(),
                "regex-backtrack" => doc! {"title": {"$regex": "^(a|aa)+$"}},
                _ => doc! {},
            };
            let opts = FindOptions {
                sort: None,
                limit: None,
                skip: None,
                projection: None,
            };
            data_result(documents::find("tasks", &encode(&filter), &opts))
        }
        "/fault/inject-update" => {
            let update = match query_param(&req, "op").unwrap_or("") {
                "rename" => doc! {"$rename": {"title": "t"}},
                "replace" => doc! {"title": "replaced"},
                "id" => doc! {"$set": {"_id": "other"}},
                _ => doc! {"$set": {"touched": true}},
            };
            data_result(documents::update_one(
                "tasks",
                &encode(&doc! {}),
                &encode(&update),
                None,
            ))
        }
        "/fault/insert-operator" => data_result(documents::insert_one(
            "tasks",
            &encode(&doc! {"title": "x", "$where": "1"}),
        )),
        "/fault/garbage" => {
            // Not BSON at all.
            data_result(documents::count("tasks", &[0xff, 0x00, 0x01]))
        }
        _ => reply(404, r#"{"outcome":"no such fault"}"#.into()),
    }
}

/// Everything WASI lets a component learn about where it runs, read through the
/// WASI interfaces themselves rather than std's view of them: environment, arguments,
/// working directory, preopened directories, clocks and randomness. The secret
/// isolation test asserts that none of the host's configuration shows up here.
fn observe() -> Response {
    use wasip2::cli::environment;
    use wasip2::clocks::{monotonic_clock, wall_clock};
    use wasip2::filesystem::preopens;
    use wasip2::random::{insecure, insecure_seed, random};

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let list = |v: Vec<String>| v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(",");
    let env: Vec<String> = environment::get_environment()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let preopens: Vec<String> = preopens::get_directories()
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    let wall = wall_clock::now();
    let (seed_lo, seed_hi) = insecure_seed::insecure_seed();
    let body = format!(
        r#"{{"env":[{}],"args":[{}],"initial_cwd":{},"preopens":[{}],"wall_clock_secs":{},"wall_clock_resolution_ns":{},"monotonic_ns":{},"monotonic_resolution_ns":{},"random":{},"insecure_random":{},"insecure_seed":"{seed_lo:016x}{seed_hi:016x}"}}"#,
        list(env),
        list(environment::get_arguments()),
        environment::initial_cwd().map_or("null".into(), |c| quote(&c)),
        list(preopens),
        wall.seconds,
        wall_clock::resolution().nanoseconds,
        monotonic_clock::now(),
        monotonic_clock::resolution(),
        quote(&hex(&random::get_random_bytes(16))),
        quote(&hex(&insecure::get_insecure_random_bytes(16))),
    );
    reply(200, body)
}
