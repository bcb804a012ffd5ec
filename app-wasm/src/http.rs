//! The request and the response, read and written on `wasi:http` itself.
//!
//! spin-sdk's `Request` reads everything before the handler runs: every header
//! (each name and value one more call from the host into the guest's allocator),
//! the body of every request whatever its method, and it writes the response
//! through an async sink that checks, writes, flushes and polls. A host call is
//! the sandbox's toll (lifting, lowering, a resource-table lookup each): this module
//! reads only what a handler asks for and writes a response in as few calls as
//! `wasi:http` allows. Measured in docs/performance.md.

use spin_sdk::http::ResponseOutparam;
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse};
use spin_sdk::wit::wasi::http0_2_0::types::IncomingBody;
use wasi::io::streams::StreamError;

/// Bytes asked for per read of a request body (the host's ingress caps the body).
const READ_CHUNK: u64 = 64 * 1024;

/// The most `blocking-write-and-flush` takes in one call (wasi:io/streams).
const BLOCKING_WRITE_MAX: usize = 4096;

/// Bodies up to this size are written `BLOCKING_WRITE_MAX` at a time: one call
/// each, which measured faster than check-write, write and flush for a list of 20
/// (5 kB). Past it, a call per 4 kB (and a wait for the host each time its
/// two-chunk channel fills) would add up: the body goes in the chunks the host
/// permits (1 MiB).
const BLOCKING_BODY_MAX: usize = 64 * 1024;

/// An incoming request: method and target read at once, headers on demand, the
/// body only for the methods whose handlers read one.
pub struct Request {
    method: Method,
    /// The path and query, as sent.
    target: String,
    headers: Fields,
    body: Vec<u8>,
    /// `headers` is its child (wasi:http): fields drop in declaration order, so
    /// the request outlives it.
    _incoming: IncomingRequest,
}

/// The request body could not be read to its end.
#[derive(Debug)]
pub struct BodyError;

impl Request {
    pub fn read(incoming: IncomingRequest) -> Result<Self, BodyError> {
        let method = incoming.method();
        let target = incoming.path_with_query().unwrap_or_else(|| "/".to_owned());
        let headers = incoming.headers();
        let body = match method {
            Method::Post | Method::Put | Method::Patch => read_body(&incoming)?,
            _ => Vec::new(),
        };
        Ok(Self {
            method,
            target,
            headers,
            body,
            _incoming: incoming,
        })
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn path(&self) -> &str {
        split_target(&self.target).0
    }

    /// The raw query string, without the `?` ("" when there is none).
    pub fn query(&self) -> &str {
        split_target(&self.target).1
    }

    /// A header's value, its lines joined with ", " as RFC 9110 §5.3 allows for
    /// list-valued fields (the only repeated ones these handlers read); bytes that
    /// are not UTF-8 become U+FFFD, which no value they accept contains.
    pub fn header(&self, name: &str) -> Option<String> {
        join_lines(&self.headers.get(name))
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// Path and query of a request target: split at the first `?`, as RFC 3986 does.
fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

/// A field's lines as one value (see [`Request::header`]); `None` when it has none.
fn join_lines(lines: &[Vec<u8>]) -> Option<String> {
    if lines.is_empty() {
        return None;
    }
    let lines: Vec<_> = lines.iter().map(|v| String::from_utf8_lossy(v)).collect();
    Some(lines.join(", "))
}

fn read_body(incoming: &IncomingRequest) -> Result<Vec<u8>, BodyError> {
    let body = incoming.consume().map_err(|()| BodyError)?;
    let stream = body.stream().map_err(|()| BodyError)?;
    let mut buf = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => buf.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => return Err(BodyError),
        }
    }
    // The stream is a child of the body: it goes first.
    drop(stream);
    drop(IncomingBody::finish(body));
    Ok(buf)
}

/// A response as the handlers build it; written out by [`send`].
#[derive(Debug)]
pub struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// Hands the response to the host and writes its body. The host takes the body
/// as it is written, so the response goes first.
pub fn send(resp: Response, out: ResponseOutparam) {
    let entries: Vec<(String, Vec<u8>)> = resp
        .headers
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.into_bytes()))
        .collect();
    // Every header name and value here is the handlers' own; were one refused,
    // the client gets a bare 500 rather than a response missing a header.
    let (status, headers, body) = match Fields::from_list(&entries) {
        Ok(fields) => (resp.status, fields, resp.body),
        Err(_) => (500, Fields::new(), Vec::new()),
    };
    let response = OutgoingResponse::new(headers);
    if response.set_status_code(status).is_err() {
        let _ = response.set_status_code(500);
    }
    let Ok(outgoing) = response.body() else {
        return;
    };
    out.set(response);
    let Ok(stream) = outgoing.write() else {
        return;
    };
    let written = if body.len() <= BLOCKING_BODY_MAX {
        body.chunks(BLOCKING_WRITE_MAX)
            .all(|c| stream.blocking_write_and_flush(c).is_ok())
    } else {
        write_all(&stream, &body)
    };
    drop(stream);
    if written {
        let _ = OutgoingBody::finish(outgoing, None);
    }
    // Not finished: the host sees the body end early and fails the response.
}

fn write_all(stream: &wasi::io::streams::OutputStream, mut rest: &[u8]) -> bool {
    while !rest.is_empty() {
        let Ok(permitted) = stream.check_write() else {
            return false;
        };
        if permitted == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = usize::try_from(permitted).map_or(rest.len(), |p| p.min(rest.len()));
        if stream.write(&rest[..n]).is_err() {
            return false;
        }
        rest = &rest[n..];
    }
    stream.flush().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_splits_at_its_first_question_mark() {
        assert_eq!(
            split_target("/api/tasks?limit=20"),
            ("/api/tasks", "limit=20")
        );
        assert_eq!(split_target("/api/tasks"), ("/api/tasks", ""));
        assert_eq!(split_target("/api/tasks?"), ("/api/tasks", ""));
        assert_eq!(split_target("/a?q=b?c"), ("/a", "q=b?c"));
    }

    #[test]
    fn header_lines_join_as_one_list() {
        assert_eq!(join_lines(&[]), None);
        assert_eq!(join_lines(&[b"\"v1\"".to_vec()]).as_deref(), Some("\"v1\""));
        assert_eq!(
            join_lines(&[b"\"v1\"".to_vec(), b"\"v2\"".to_vec()]).as_deref(),
            Some("\"v1\", \"v2\"")
        );
        assert_eq!(
            join_lines(&[vec![b'a', 0xff]]).as_deref(),
            Some("a\u{fffd}")
        );
    }
}
