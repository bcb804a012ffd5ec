//! RFC 9457 problem details. Every error the API returns is one of these, with a
//! stable `type` per kind of error (documented in the OpenAPI document).

use crate::http::Response;
use serde_json::{Value, json};

pub const CONTENT_TYPE: &str = "application/problem+json";

/// One kind of error: its stable type URI suffix, status and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Validation,
    InvalidJson,
    InvalidQuery,
    InvalidHeader,
    NotFound,
    MethodNotAllowed,
    UnsupportedMediaType,
    Conflict,
    PreconditionFailed,
    Unavailable,
    Internal,
}

impl Kind {
    pub fn status(self) -> u16 {
        match self {
            Kind::Validation | Kind::InvalidJson | Kind::InvalidQuery | Kind::InvalidHeader => 400,
            Kind::NotFound => 404,
            Kind::MethodNotAllowed => 405,
            Kind::Conflict => 409,
            Kind::PreconditionFailed => 412,
            Kind::UnsupportedMediaType => 415,
            Kind::Unavailable => 503,
            Kind::Internal => 500,
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Kind::Validation => "validation-error",
            Kind::InvalidJson => "invalid-json",
            Kind::InvalidQuery => "invalid-query",
            Kind::InvalidHeader => "invalid-header",
            Kind::NotFound => "not-found",
            Kind::MethodNotAllowed => "method-not-allowed",
            Kind::UnsupportedMediaType => "unsupported-media-type",
            Kind::Conflict => "conflict",
            Kind::PreconditionFailed => "precondition-failed",
            Kind::Unavailable => "unavailable",
            Kind::Internal => "internal",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Validation => "The request body failed validation",
            Kind::InvalidJson => "The request body is not valid JSON",
            Kind::InvalidQuery => "The query string is invalid",
            Kind::InvalidHeader => "A request header is malformed",
            Kind::NotFound => "No such resource",
            Kind::MethodNotAllowed => "Method not allowed on this resource",
            Kind::UnsupportedMediaType => "Unsupported media type",
            Kind::Conflict => "The request conflicts with the current state",
            Kind::PreconditionFailed => "The resource changed since you read it",
            Kind::Unavailable => "The service is temporarily unavailable",
            Kind::Internal => "Internal error",
        }
    }
}

/// Longest request path echoed as a problem's `instance`.
pub const INSTANCE_SHOWN: usize = 256;

/// A problem response under construction.
#[derive(Debug)]
pub struct Problem {
    pub kind: Kind,
    detail: String,
    extra: Vec<(&'static str, Value)>,
    headers: Vec<(&'static str, String)>,
}

/// One failed field rule, reported in the `errors` extension member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: shorten(field.into(), FIELD_NAME_SHOWN),
            message: message.into(),
        }
    }
}

/// Errors reported in one response. Input decides how many rules it breaks (85,000
/// unknown keys fit in a 1 MiB body), so the list is capped and the rest counted:
/// an uncapped list ran the handler out of memory.
pub const MAX_REPORTED_ERRORS: usize = 10;
/// Longest field or parameter name echoed back (names come from the client).
const FIELD_NAME_SHOWN: usize = 64;

/// The errors of one request: the first [`MAX_REPORTED_ERRORS`], and a count of the rest.
#[derive(Debug, Default)]
pub struct FieldErrors {
    list: Vec<FieldError>,
    more: usize,
}

impl FieldErrors {
    pub fn push(&mut self, e: FieldError) {
        self.push_with(|| e);
    }

    /// Record an error whose field name is built only if it will be shown.
    pub fn push_with(&mut self, make: impl FnOnce() -> FieldError) {
        if self.list.len() < MAX_REPORTED_ERRORS {
            self.list.push(make());
        } else {
            self.more += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    #[cfg(test)]
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|e| e.field.as_str())
    }

    /// The problem these errors make: `kind` with a detail line and an `errors` list.
    pub fn into_problem(self, kind: Kind) -> Problem {
        let list = self
            .list
            .iter()
            .map(|e| json!({"field": e.field, "message": e.message}))
            .collect();
        let mut detail = self
            .list
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        if self.more > 0 {
            detail.push_str(&format!("; and {} more", self.more));
        }
        Problem::new(kind, detail)
            .with("errors", Value::Array(list))
            .with("errors_not_shown", json!(self.more))
    }
}

/// At most `max` bytes of `s`, cut on a character boundary, marked when cut.
pub fn shorten(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            extra: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn validation(errors: FieldErrors) -> Self {
        errors.into_problem(Kind::Validation)
    }

    pub fn with(mut self, key: &'static str, value: Value) -> Self {
        self.extra.push((key, value));
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn into_response(self, instance: &str) -> Response {
        // The path comes from the client (up to the host's URI limit): echo a prefix.
        let instance = shorten(instance.to_owned(), INSTANCE_SHOWN);
        let mut body = json!({
            "type": format!("/problems/{}", self.kind.slug()),
            "title": self.kind.title(),
            "status": self.kind.status(),
            "detail": self.detail,
            "instance": instance,
        });
        if let Value::Object(map) = &mut body {
            for (k, v) in self.extra {
                map.insert(k.to_owned(), v);
            }
        }
        let mut resp = Response::new(self.kind.status()).header("content-type", CONTENT_TYPE);
        for (k, v) in self.headers {
            resp = resp.header(k, v);
        }
        resp.body(body.to_string())
    }
}
