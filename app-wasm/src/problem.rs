//! RFC 9457 problem details. Every error the API returns is one of these, with a
//! stable `type` per kind of error (documented in the OpenAPI document).

use serde_json::{Value, json};
use spin_sdk::http::Response;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// One kind of error: its stable type URI suffix, status and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Validation,
    InvalidJson,
    InvalidQuery,
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
            Kind::Validation | Kind::InvalidJson | Kind::InvalidQuery => 400,
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
            field: field.into(),
            message: message.into(),
        }
    }
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

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let list = errors
            .iter()
            .map(|e| json!({"field": e.field, "message": e.message}))
            .collect();
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(Kind::Validation, detail).with("errors", Value::Array(list))
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
        let mut b = Response::builder();
        b.status(self.kind.status())
            .header("content-type", CONTENT_TYPE);
        for (k, v) in self.headers {
            b.header(k, v);
        }
        b.body(body.to_string()).build()
    }
}
