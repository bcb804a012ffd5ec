//! Routing and the handlers of `/api/tasks`.

use crate::app::data::documents::Error as DataError;
use crate::cursor::{Cursor, SortField};
use crate::data;
use crate::http::{Request, Response};
use crate::problem::{FieldError, FieldErrors, Kind, Problem, shorten};
use crate::task::{Fields, IfMatch, Precondition, Task, if_none_match};
use bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use serde_json::{Map, Value, json};
use spin_sdk::http::Method;

const OPENAPI: &str = include_str!("../openapi.json");
pub const LIST_DEFAULT_LIMIT: u32 = 20;
pub const LIST_MAX_LIMIT: u32 = 100;
const Q_MAX_CHARS: usize = 100;

type Outcome = Result<Response, Problem>;

pub fn route(req: &Request) -> Response {
    let path = req.path().to_owned();
    let method = req.method().clone();
    let outcome = match path.as_str() {
        "/api/openapi.json" => match method {
            Method::Get | Method::Head => Ok(json_response(200, OPENAPI.to_owned())),
            _ => method_not_allowed("GET, HEAD"),
        },
        "/api/tasks" => match method {
            Method::Get | Method::Head => list(req),
            Method::Post => create(req),
            _ => method_not_allowed("GET, HEAD, POST"),
        },
        p => match p.strip_prefix("/api/tasks/") {
            Some(id) if !id.is_empty() && !id.contains('/') => match method {
                Method::Get | Method::Head => get_one(req, id),
                Method::Patch => patch(req, id),
                Method::Delete => delete(req, id),
                _ => method_not_allowed("GET, HEAD, PATCH, DELETE"),
            },
            _ => Err(Problem::new(
                Kind::NotFound,
                format!("no route for {}", shorten(p.to_owned(), 128)),
            )),
        },
    };
    outcome.unwrap_or_else(|p| p.into_response(&path))
}

fn method_not_allowed(allow: &'static str) -> Outcome {
    Err(
        Problem::new(Kind::MethodNotAllowed, format!("allowed methods: {allow}"))
            .header("allow", allow),
    )
}

fn json_response(status: u16, body: String) -> Response {
    Response::new(status)
        .header("content-type", "application/json")
        .body(body)
}

fn task_response(status: u16, task: &Task) -> Response {
    Response::new(status)
        .header("content-type", "application/json")
        .header("etag", task.etag())
        .body(json_string(task))
}

/// The request's media type (without parameters), lower-cased.
fn media_type(req: &Request) -> Option<String> {
    req.header("content-type").map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

fn require_media_type(req: &Request, allowed: &[&str]) -> Result<(), Problem> {
    match media_type(req) {
        Some(m) if allowed.contains(&m.as_str()) => Ok(()),
        _ => Err(Problem::new(
            Kind::UnsupportedMediaType,
            format!("Content-Type must be {}", allowed.join(" or ")),
        )
        .header("accept-patch", "application/merge-patch+json")),
    }
}

fn json_object(req: &Request) -> Result<Map<String, Value>, Problem> {
    match serde_json::from_slice::<Value>(req.body()) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Problem::new(
            Kind::InvalidJson,
            "the body must be a JSON object",
        )),
        // serde_json's recursion limit also turns deeply nested input into this error.
        Err(e) => Err(Problem::new(
            Kind::InvalidJson,
            format!("invalid JSON: {e}"),
        )),
    }
}

fn stored_task(bytes: &[u8]) -> Result<Task, Problem> {
    Task::from_stored(bytes)
        .ok_or_else(|| Problem::new(Kind::Internal, "a stored task is malformed"))
}

/// Serializing our own types cannot fail (string keys, no maps of other keys).
fn json_string(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A task id is 24 lowercase hex digits, as the API writes them. Uppercase is
/// refused rather than accepted, so each task has exactly one URL (caches and
/// access rules keyed by URL see one resource).
fn parse_id(id: &str) -> Result<Bson, Problem> {
    let canonical = id.len() == 24
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    canonical
        .then(|| ObjectId::parse_str(id).ok())
        .flatten()
        .map(Bson::ObjectId)
        .ok_or_else(|| Problem::new(Kind::NotFound, "no such task"))
}

fn create(req: &Request) -> Outcome {
    require_media_type(req, &["application/json"])?;
    let body = json_object(req)?;
    let fields = Fields::from_json(&body).map_err(Problem::validation)?;
    let now = DateTime::now();
    let mut d = fields.to_bson();
    d.insert("created", now);
    d.insert("updated", now);
    d.insert("version", 1_i64);
    let task = stored_task(&data::insert_one(&d)?)?;
    Ok(task_response(201, &task).header("location", format!("/api/tasks/{}", task.id.to_hex())))
}

fn get_one(req: &Request, id: &str) -> Outcome {
    let id = parse_id(id)?;
    let Some(d) = data::find_one(&data::id_filter(&id))? else {
        return Err(Problem::new(Kind::NotFound, "no such task"));
    };
    let task = stored_task(&d)?;
    if req
        .header("if-none-match")
        .is_some_and(|h| if_none_match(&h, task.version))
    {
        return Ok(Response::new(304).header("etag", task.etag()));
    }
    Ok(task_response(200, &task))
}

/// The parts of a list query, validated.
struct ListQuery {
    filter: Vec<Document>,
    sort: SortField,
    desc: bool,
    limit: u32,
    cursor: Option<Cursor>,
}

/// Most query parameters a list request may carry; the API defines six.
pub const MAX_QUERY_PARAMS: usize = 16;

fn parse_list_query(query: &str) -> Result<ListQuery, Problem> {
    let mut errors = FieldErrors::default();
    let mut q = ListQuery {
        filter: Vec::new(),
        sort: SortField::Created,
        desc: false,
        limit: LIST_DEFAULT_LIMIT,
        cursor: None,
    };
    // Known names are checked for repeats in constant time; unknown ones are errors
    // whatever they repeat. The parameter count is capped before any is looked at.
    let mut seen: Vec<&'static str> = Vec::new();
    let params = form_urlencoded::parse(query.as_bytes());
    if params.clone().nth(MAX_QUERY_PARAMS).is_some() {
        errors.push(FieldError::new(
            "query",
            format!("at most {MAX_QUERY_PARAMS} query parameters are allowed"),
        ));
        return Err(errors.into_problem(Kind::InvalidQuery));
    }
    for (k, v) in params {
        let Some(name) = ["status", "tag", "q", "sort", "limit", "cursor"]
            .into_iter()
            .find(|n| *n == k)
        else {
            errors.push_with(|| {
                FieldError::new(k.to_string(), "is not a query parameter of this API")
            });
            continue;
        };
        if seen.contains(&name) {
            errors.push(FieldError::new(name, "is given more than once"));
            continue;
        }
        seen.push(name);
        match name {
            "status" if crate::task::STATUSES.contains(&v.as_ref()) => {
                q.filter.push(doc! {"status": v.as_ref()});
            }
            "status" => errors.push(FieldError::new(
                "status",
                "must be one of todo, doing, done",
            )),
            "tag"
                if !crate::task::is_blank(&v)
                    && v.chars().count() <= crate::task::TAG_MAX_CHARS =>
            {
                q.filter.push(doc! {"tags": v.as_ref()});
            }
            "tag" => errors.push(FieldError::new("tag", "must be 1-32 characters")),
            "q" if !v.is_empty() && v.chars().count() <= Q_MAX_CHARS => {
                q.filter
                    .push(doc! {"title": {"$regex": regex_escape(&v), "$options": "i"}});
            }
            "q" => errors.push(FieldError::new(
                "q",
                format!("must be 1-{Q_MAX_CHARS} characters"),
            )),
            "sort" => match SortField::parse(&v) {
                Some((f, desc)) => (q.sort, q.desc) = (f, desc),
                None => errors.push(FieldError::new(
                    "sort",
                    "must be created, due or priority, optionally prefixed with - for descending",
                )),
            },
            "limit" => match v.parse::<u32>() {
                Ok(n @ 1..=LIST_MAX_LIMIT) => q.limit = n,
                _ => errors.push(FieldError::new(
                    "limit",
                    format!("must be an integer from 1 to {LIST_MAX_LIMIT}"),
                )),
            },
            _ => match Cursor::decode(&v) {
                Some(c) => q.cursor = Some(c),
                None => errors.push(FieldError::new(
                    "cursor",
                    "is not a cursor: pass the previous page's next_cursor unchanged",
                )),
            },
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(errors.into_problem(Kind::InvalidQuery))
    }
}

/// Escape a user's search text so it matches literally, in both the Rust regex
/// syntax (embedded store) and PCRE (MongoDB): backslash before every metacharacter.
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn list(req: &Request) -> Outcome {
    let mut q = parse_list_query(req.query())?;
    if let Some(c) = &q.cursor {
        q.filter.push(c.filter(q.sort, q.desc));
    }
    let filter = match q.filter.len() {
        0 => Document::new(),
        1 => q.filter.remove(0),
        _ => doc! {"$and": q.filter.into_iter().map(Bson::Document).collect::<Vec<_>>()},
    };
    let dir = if q.desc { -1 } else { 1 };
    let sort = doc! {q.sort.name(): dir, "_id": dir};
    // One extra tells whether there is a next page without a count.
    let docs = data::find(&filter, &sort, q.limit + 1)?;
    let more = docs.len() > q.limit as usize;
    let items = docs
        .iter()
        .take(q.limit as usize)
        .map(|d| stored_task(d))
        .collect::<Result<Vec<_>, _>>()?;
    let next = if more {
        items.last().map(|t| Cursor::after(q.sort, t).encode())
    } else {
        None
    };
    #[derive(serde::Serialize)]
    struct Page<'a> {
        items: &'a [Task],
        next_cursor: Option<String>,
    }
    Ok(json_response(
        200,
        json_string(&Page {
            items: &items,
            next_cursor: next,
        }),
    ))
}

/// `If-Match`, parsed before anything is read or written: a malformed one is the
/// client's error whatever the task's state (400, where a stale one is 412).
fn if_match_header(req: &Request) -> Result<Option<Precondition>, Problem> {
    let Some(value) = req.header("if-match") else {
        return Ok(None);
    };
    Precondition::parse(&value).map(Some).ok_or_else(|| {
        Problem::new(
            Kind::InvalidHeader,
            "If-Match must be * or a comma-separated list of entity tags such as \"v3\"",
        )
    })
}

fn patch(req: &Request, id: &str) -> Outcome {
    require_media_type(req, &["application/merge-patch+json", "application/json"])?;
    let if_match = if_match_header(req)?;
    let id = parse_id(id)?;
    let body = json_object(req)?;
    let Some(d) = data::find_one(&data::id_filter(&id))? else {
        return Err(Problem::new(Kind::NotFound, "no such task"));
    };
    let current = stored_task(&d)?;
    // Field rules are per field, so validating the patch merged onto the current
    // task and then writing only the patched fields is valid whatever else changed
    // meanwhile: an unconditional patch needs no read-modify-write retry loop.
    // An invalid patch is refused before If-Match is looked at: re-reading the
    // task would not make it valid, so the client learns what to fix first.
    let fields = current.merge_patch(&body).map_err(Problem::validation)?;
    let precondition = if_match.map(|p| p.check(current.version));
    if precondition == Some(IfMatch::Stale) {
        return Err(stale(current.version));
    }
    let all = fields.to_bson();
    let mut set = Document::new();
    for key in body.keys() {
        if let Some(v) = all.get(key) {
            set.insert(key.clone(), v.clone());
        }
    }
    set.insert("updated", DateTime::now());
    let update = doc! {"$set": set, "$inc": {"version": 1_i64}};
    // With If-Match the write must land on exactly the version the client saw;
    // `If-Match: *` asks only that the task exists, which the write itself checks.
    let expected = (precondition == Some(IfMatch::Current)).then_some(current.version);
    match data::update_one(&data::id_filter(&id), &update, expected) {
        Ok(d) => Ok(task_response(200, &stored_task(&d)?)),
        Err(DataError::Conflict(_)) => Err(stale(current.version + 1)),
        Err(e) => Err(e.into()),
    }
}

fn stale(current: i64) -> Problem {
    Problem::new(
        Kind::PreconditionFailed,
        "If-Match does not match the task's current ETag; re-read it and retry",
    )
    .with("current_version_at_least", json!(current))
}

fn delete(req: &Request, id: &str) -> Outcome {
    let if_match = if_match_header(req)?;
    let id = parse_id(id)?;
    let mut filter = data::id_filter(&id);
    if let Some(precondition) = if_match {
        let Some(d) = data::find_one(&filter)? else {
            return Err(Problem::new(Kind::NotFound, "no such task"));
        };
        let current = stored_task(&d)?;
        match precondition.check(current.version) {
            IfMatch::Stale => return Err(stale(current.version)),
            // `*`: it exists; the delete below needs no version.
            IfMatch::Any => {}
            IfMatch::Current => {
                filter.insert("version", current.version);
                return match data::delete_one(&filter) {
                    Ok(()) => Ok(Response::new(204)),
                    Err(p) if p.kind == Kind::NotFound => Err(stale(current.version + 1)),
                    Err(p) => Err(p),
                };
            }
        }
    }
    data::delete_one(&filter)?;
    Ok(Response::new(204))
}
