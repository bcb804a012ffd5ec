//! The task resource: field rules, JSON <-> BSON, and merge-patch application.

use crate::problem::FieldError;
use bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use serde_json::{Map, Value, json};

pub const STATUSES: [&str; 3] = ["todo", "doing", "done"];
pub const TITLE_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_BYTES: usize = 10 * 1024;
pub const TAGS_MAX: usize = 10;
pub const TAG_MAX_CHARS: usize = 32;
const EDITABLE: [&str; 6] = ["title", "description", "status", "priority", "tags", "due"];
const READ_ONLY: [&str; 4] = ["id", "created", "updated", "version"];

/// The client-editable fields of a task, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub title: String,
    pub description: String,
    pub status: String,
    pub priority: i32,
    pub tags: Vec<String>,
    pub due: Option<DateTime>,
}

impl Fields {
    /// Validate a JSON object of editable fields; missing optional fields get their
    /// defaults. Every broken rule is reported, not just the first.
    pub fn from_json(obj: &Map<String, Value>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        for key in obj.keys() {
            if READ_ONLY.contains(&key.as_str()) {
                errors.push(FieldError::new(key.clone(), "is read-only"));
            } else if !EDITABLE.contains(&key.as_str()) {
                errors.push(FieldError::new(key.clone(), "is not a task field"));
            }
        }
        let title = match obj.get("title") {
            Some(Value::String(s)) => {
                let n = s.chars().count();
                if s.trim().is_empty() {
                    errors.push(FieldError::new("title", "must not be blank"));
                } else if n > TITLE_MAX_CHARS {
                    errors.push(FieldError::new(
                        "title",
                        format!("must be at most {TITLE_MAX_CHARS} characters"),
                    ));
                }
                s.clone()
            }
            None | Some(Value::Null) => {
                errors.push(FieldError::new("title", "is required"));
                String::new()
            }
            Some(_) => {
                errors.push(FieldError::new("title", "must be a string"));
                String::new()
            }
        };
        let description = match obj.get("description") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if s.len() <= DESCRIPTION_MAX_BYTES => s.clone(),
            Some(Value::String(_)) => {
                errors.push(FieldError::new(
                    "description",
                    format!("must be at most {DESCRIPTION_MAX_BYTES} bytes"),
                ));
                String::new()
            }
            Some(_) => {
                errors.push(FieldError::new("description", "must be a string"));
                String::new()
            }
        };
        let status = match obj.get("status") {
            None | Some(Value::Null) => "todo".to_owned(),
            Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => s.clone(),
            Some(_) => {
                errors.push(FieldError::new(
                    "status",
                    "must be one of todo, doing, done",
                ));
                String::new()
            }
        };
        let priority = match obj.get("priority") {
            None | Some(Value::Null) => 3,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(p @ 1..=5) => p as i32,
                _ => {
                    errors.push(FieldError::new(
                        "priority",
                        "must be an integer from 1 to 5",
                    ));
                    0
                }
            },
            Some(_) => {
                errors.push(FieldError::new(
                    "priority",
                    "must be an integer from 1 to 5",
                ));
                0
            }
        };
        let tags = match obj.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > TAGS_MAX {
                    errors.push(FieldError::new(
                        "tags",
                        format!("must have at most {TAGS_MAX} tags"),
                    ));
                }
                let mut tags: Vec<String> = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(t) if valid_tag(t) => {
                            if tags.contains(t) {
                                errors
                                    .push(FieldError::new(format!("tags[{i}]"), "is a duplicate"));
                            }
                            tags.push(t.clone());
                        }
                        _ => errors.push(FieldError::new(
                            format!("tags[{i}]"),
                            format!(
                                "must be a non-blank string of at most {TAG_MAX_CHARS} characters"
                            ),
                        )),
                    }
                }
                tags
            }
            Some(_) => {
                errors.push(FieldError::new("tags", "must be an array of strings"));
                Vec::new()
            }
        };
        let due = match obj.get("due") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match DateTime::parse_rfc3339_str(s) {
                Ok(d) => Some(d),
                Err(_) => {
                    errors.push(FieldError::new(
                        "due",
                        "must be an RFC 3339 date-time, e.g. 2026-12-01T17:00:00Z",
                    ));
                    None
                }
            },
            Some(_) => {
                errors.push(FieldError::new(
                    "due",
                    "must be an RFC 3339 date-time string",
                ));
                None
            }
        };
        if errors.is_empty() {
            Ok(Self {
                title,
                description,
                status,
                priority,
                tags,
                due,
            })
        } else {
            Err(errors)
        }
    }

    /// The editable fields as BSON values, in a fixed order.
    pub fn to_bson(&self) -> Document {
        doc! {
            "title": &self.title,
            "description": &self.description,
            "status": &self.status,
            "priority": self.priority,
            "tags": &self.tags,
            "due": self.due.map_or(Bson::Null, Bson::DateTime),
        }
    }

    /// The stored fields of a task as read back from the store.
    pub fn from_stored(d: &Document) -> Option<Self> {
        Some(Self {
            title: d.get_str("title").ok()?.to_owned(),
            description: d.get_str("description").unwrap_or_default().to_owned(),
            status: d.get_str("status").ok()?.to_owned(),
            priority: match d.get("priority")? {
                Bson::Int32(p) => *p,
                Bson::Int64(p) => i32::try_from(*p).ok()?,
                _ => return None,
            },
            tags: d
                .get_array("tags")
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            due: d.get_datetime("due").ok().copied(),
        })
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("title".into(), json!(self.title));
        m.insert("description".into(), json!(self.description));
        m.insert("status".into(), json!(self.status));
        m.insert("priority".into(), json!(self.priority));
        m.insert("tags".into(), json!(self.tags));
        m.insert(
            "due".into(),
            self.due.map_or(Value::Null, |d| json!(rfc3339(d))),
        );
        m
    }
}

fn valid_tag(t: &str) -> bool {
    !t.trim().is_empty() && t.chars().count() <= TAG_MAX_CHARS
}

/// RFC 3339 in UTC with exactly three fractional digits. bson prints the shortest
/// fraction (`.5Z`), which would make timestamps sort wrongly as strings.
pub fn rfc3339(d: DateTime) -> String {
    let s = d.try_to_rfc3339_string().unwrap_or_default();
    let Some(body) = s.strip_suffix('Z') else {
        return s;
    };
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    format!("{secs}.{:0<3}Z", &frac[..frac.len().min(3)])
}

/// A stored task: id and server-set fields plus the editable ones.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: ObjectId,
    pub fields: Fields,
    pub created: DateTime,
    pub updated: DateTime,
    pub version: i64,
}

impl Task {
    pub fn from_stored(d: &Document) -> Option<Self> {
        Some(Self {
            id: d.get_object_id("_id").ok()?,
            fields: Fields::from_stored(d)?,
            created: *d.get_datetime("created").ok()?,
            updated: *d.get_datetime("updated").ok()?,
            version: match d.get("version")? {
                Bson::Int64(v) => *v,
                Bson::Int32(v) => i64::from(*v),
                _ => return None,
            },
        })
    }

    pub fn etag(&self) -> String {
        etag(self.version)
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id.to_hex()));
        m.extend(self.fields.to_json());
        m.insert("created".into(), json!(rfc3339(self.created)));
        m.insert("updated".into(), json!(rfc3339(self.updated)));
        m.insert("version".into(), json!(self.version));
        Value::Object(m)
    }

    /// Apply an RFC 7396 JSON merge patch to the editable fields and validate the
    /// result. `null` resets a field to its default (and so fails for `title`).
    pub fn merge_patch(&self, patch: &Map<String, Value>) -> Result<Fields, Vec<FieldError>> {
        let mut merged = self.fields.to_json();
        let mut errors = Vec::new();
        for (k, v) in patch {
            if READ_ONLY.contains(&k.as_str()) {
                errors.push(FieldError::new(k.clone(), "is read-only"));
            } else if !EDITABLE.contains(&k.as_str()) {
                errors.push(FieldError::new(k.clone(), "is not a task field"));
            } else if v.is_null() {
                merged.remove(k);
            } else {
                merged.insert(k.clone(), v.clone());
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Fields::from_json(&merged)
    }
}

pub fn etag(version: i64) -> String {
    format!("\"v{version}\"")
}

/// Does an `If-Match` / `If-None-Match` header value name this version (or `*`)?
pub fn etag_matches(header: &str, version: i64) -> bool {
    let want = etag(version);
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == want || t.strip_prefix("W/").is_some_and(|weak| weak == want))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn defaults_and_rules() {
        let f = Fields::from_json(&obj(json!({"title": "x"}))).unwrap();
        assert_eq!(
            (f.status.as_str(), f.priority, f.tags.len()),
            ("todo", 3, 0)
        );
        let errs = Fields::from_json(&obj(json!({
            "title": {"$gt": ""}, "priority": 9, "status": "nope", "tags": ["a", "a"],
            "due": "tomorrow", "version": 3, "extra": 1
        })))
        .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "title", "priority", "status", "tags[1]", "due", "version", "extra",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"v3\"", 3));
        assert!(etag_matches("\"v1\", W/\"v3\"", 3));
        assert!(etag_matches("*", 3));
        assert!(!etag_matches("\"v2\"", 3));
    }
}
