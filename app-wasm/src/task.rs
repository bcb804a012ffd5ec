//! The task resource: field rules, JSON <-> BSON, and merge-patch application.

use crate::problem::{FieldError, FieldErrors};
use bson::{Bson, DateTime, Document, RawBsonRef, RawDocument, doc, oid::ObjectId};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

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
    /// The defaults of every optional field; `title` has none.
    fn defaults() -> Self {
        Self {
            title: String::new(),
            description: String::new(),
            status: "todo".to_owned(),
            priority: 3,
            tags: Vec::new(),
            due: None,
        }
    }

    /// Validate a JSON object of editable fields; missing optional fields get their
    /// defaults. Every broken rule is counted; the first few are reported.
    pub fn from_json(obj: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        check_keys(obj, &mut errors);
        let mut fields = Self::defaults();
        if !matches!(obj.get("title"), Some(v) if !v.is_null()) {
            errors.push(FieldError::new("title", "is required"));
        }
        for key in EDITABLE {
            if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
                fields.set(key, v, &mut errors);
            }
        }
        if errors.is_empty() {
            Ok(fields)
        } else {
            Err(errors)
        }
    }

    /// Validate one field's new value and store it; a broken rule is recorded instead.
    fn set(&mut self, key: &str, v: &Value, errors: &mut FieldErrors) {
        match key {
            "title" => match v {
                Value::String(s) if is_blank(s) => {
                    errors.push(FieldError::new("title", "must not be blank"));
                }
                Value::String(s) if s.chars().count() > TITLE_MAX_CHARS => {
                    errors.push(FieldError::new(
                        "title",
                        format!("must be at most {TITLE_MAX_CHARS} characters"),
                    ))
                }
                Value::String(s) => self.title = s.clone(),
                _ => errors.push(FieldError::new("title", "must be a string")),
            },
            "description" => match v {
                Value::String(s) if s.len() <= DESCRIPTION_MAX_BYTES => {
                    self.description = s.clone();
                }
                Value::String(_) => errors.push(FieldError::new(
                    "description",
                    format!("must be at most {DESCRIPTION_MAX_BYTES} bytes"),
                )),
                _ => errors.push(FieldError::new("description", "must be a string")),
            },
            "status" => match v {
                Value::String(s) if STATUSES.contains(&s.as_str()) => self.status = s.clone(),
                _ => errors.push(FieldError::new(
                    "status",
                    "must be one of todo, doing, done",
                )),
            },
            "priority" => match json_integer(v) {
                Some(p @ 1..=5) => self.priority = p as i32,
                _ => errors.push(FieldError::new(
                    "priority",
                    "must be an integer from 1 to 5",
                )),
            },
            "tags" => match v {
                // Refused by count before anything else: the per-item checks are
                // worth doing only on a list that can be valid.
                Value::Array(items) if items.len() > TAGS_MAX => errors.push(FieldError::new(
                    "tags",
                    format!("must have at most {TAGS_MAX} tags"),
                )),
                Value::Array(items) => {
                    let mut tags: Vec<String> = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        match item {
                            Value::String(t) if valid_tag(t) => {
                                if tags.contains(t) {
                                    errors.push(FieldError::new(
                                        format!("tags[{i}]"),
                                        "is a duplicate",
                                    ));
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
                    self.tags = tags;
                }
                _ => errors.push(FieldError::new("tags", "must be an array of strings")),
            },
            "due" => match v {
                Value::String(s) => match DateTime::parse_rfc3339_str(s) {
                    Ok(d) if (DUE_MIN_MILLIS..=DUE_MAX_MILLIS).contains(&d.timestamp_millis()) => {
                        self.due = Some(d);
                    }
                    Ok(_) => errors.push(FieldError::new(
                        "due",
                        "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z in UTC",
                    )),
                    Err(_) => errors.push(FieldError::new(
                        "due",
                        "must be an RFC 3339 date-time, e.g. 2026-12-01T17:00:00Z",
                    )),
                },
                _ => errors.push(FieldError::new(
                    "due",
                    "must be an RFC 3339 date-time string",
                )),
            },
            _ => {}
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
}

impl Fields {
    fn reset(&mut self, key: &str, defaults: &Fields) {
        match key {
            "description" => self.description.clone_from(&defaults.description),
            "status" => self.status.clone_from(&defaults.status),
            "priority" => self.priority = defaults.priority,
            "tags" => self.tags.clone_from(&defaults.tags),
            "due" => self.due = defaults.due,
            _ => {}
        }
    }
}

/// Keys that are not editable fields. Counted before any value is looked at, so an
/// object of 85,000 unknown keys costs one pass and a short error list.
fn check_keys(obj: &Map<String, Value>, errors: &mut FieldErrors) {
    for key in obj.keys() {
        if READ_ONLY.contains(&key.as_str()) {
            errors.push_with(|| FieldError::new(key.clone(), "is read-only"));
        } else if !EDITABLE.contains(&key.as_str()) {
            errors.push_with(|| FieldError::new(key.clone(), "is not a task field"));
        }
    }
}

/// `due` must be a date-time of years 0001-9999 in UTC: what RFC 3339 (and BSON's
/// formatter) can write back. Outside it a stored value could not be displayed.
const DUE_MIN_MILLIS: i64 = -62_135_596_800_000;
const DUE_MAX_MILLIS: i64 = LAST_OF_9999;

fn valid_tag(t: &str) -> bool {
    !is_blank(t) && t.chars().count() <= TAG_MAX_CHARS
}

/// A date-time in RFC 3339, UTC, with exactly three fractional digits
/// (`2026-12-07T16:50:00.000Z`), written into a buffer on the stack. bson prints the
/// shortest fraction (`.5Z`), which would make timestamps sort wrongly as strings,
/// and its formatter (the `time` crate's, then a `format!` to pad it) cost a list of
/// 20 sixty formatting passes and allocations. Years outside 0000-9999 have no RFC
/// 3339 form; as bson's formatter did, later instants write as the last one of
/// 9999 and earlier ones as an empty string (`due` is checked to be in 0001-9999,
/// `created` and `updated` are set here).
pub struct Rfc3339 {
    buf: [u8; 24],
    len: usize,
}

impl Rfc3339 {
    pub fn new(d: DateTime) -> Self {
        const DAY_MS: i64 = 86_400_000;
        let ms = d.timestamp_millis().min(LAST_OF_9999);
        let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
        let mut out = Self {
            buf: [0; 24],
            len: 0,
        };
        if !(0..=9999).contains(&year) {
            return out;
        }
        let t = ms.rem_euclid(DAY_MS);
        let fields = [
            (year, 4, b'-'),
            (month, 2, b'-'),
            (day, 2, b'T'),
            (t / 3_600_000, 2, b':'),
            (t / 60_000 % 60, 2, b':'),
            (t / 1000 % 60, 2, b'.'),
            (t % 1000, 3, b'Z'),
        ];
        let mut at = 0;
        for (value, width, sep) in fields {
            let mut v = value;
            for i in (0..width).rev() {
                // In 0..=9 by construction: value is non-negative and below 10^width.
                out.buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            out.buf[at + width] = sep;
            at += width + 1;
        }
        out.len = at;
        out
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// 9999-12-31T23:59:59.999Z.
const LAST_OF_9999: i64 = 253_402_300_799_999;

/// The proleptic Gregorian (year, month, day) of a day count from 1970-01-01
/// (Howard Hinnant's `civil_from_days`), for any day an i64 of milliseconds holds.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The JSON of a task, written straight from the struct (no `serde_json::Value`
/// in between: a list of 20 built maps and dropped them for every request). The
/// keys in sorted order, as before.
impl Serialize for Task {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let f = &self.fields;
        let mut m = serializer.serialize_map(Some(10))?;
        m.serialize_entry("created", &Rfc3339::new(self.created))?;
        m.serialize_entry("description", &f.description)?;
        m.serialize_entry("due", &f.due.map(Rfc3339::new))?;
        m.serialize_entry("id", &self.id.to_hex())?;
        m.serialize_entry("priority", &f.priority)?;
        m.serialize_entry("status", &f.status)?;
        m.serialize_entry("tags", &f.tags)?;
        m.serialize_entry("title", &f.title)?;
        m.serialize_entry("updated", &Rfc3339::new(self.updated))?;
        m.serialize_entry("version", &self.version)?;
        m.end()
    }
}

/// A stored integer, whichever width the writer chose.
fn integer(value: RawBsonRef<'_>) -> Option<i64> {
    match value {
        RawBsonRef::Int32(v) => Some(i64::from(v)),
        RawBsonRef::Int64(v) => Some(v),
        _ => None,
    }
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
    /// A task as read back from the store, in one pass over its raw BSON: no
    /// decoded document in between, the strings copied once. `None` when the bytes
    /// are not a document, or a required field is missing or of another type. A
    /// repeated key counts by its last value, as in a decoded document.
    pub fn from_stored(bytes: &[u8]) -> Option<Self> {
        // Outer None: absent; inner None: present with another type.
        let (mut id, mut title, mut status, mut priority) = (None, None, None, None);
        let (mut created, mut updated, mut version) = (None, None, None);
        let (mut description, mut tags, mut due) = (None, None, None);
        for element in RawDocument::from_bytes(bytes).ok()? {
            let (key, value) = element.ok()?;
            match key.as_str() {
                "_id" => id = Some(value.as_object_id()),
                "title" => title = Some(value.as_str()),
                "description" => description = Some(value.as_str()),
                "status" => status = Some(value.as_str()),
                "priority" => priority = Some(integer(value).and_then(|p| i32::try_from(p).ok())),
                "tags" => tags = Some(value.as_array()),
                "due" => due = Some(value.as_datetime()),
                "created" => created = Some(value.as_datetime()),
                "updated" => updated = Some(value.as_datetime()),
                "version" => version = Some(integer(value)),
                _ => {}
            }
        }
        let tags = match tags.flatten() {
            // Strings kept, other values skipped; a malformed element fails the task.
            Some(a) => a
                .into_iter()
                .filter_map(|t| t.map(|t| t.as_str().map(str::to_owned)).transpose())
                .collect::<Result<Vec<_>, _>>()
                .ok()?,
            None => Vec::new(),
        };
        Some(Self {
            id: id??,
            fields: Fields {
                title: title??.to_owned(),
                description: description.flatten().unwrap_or_default().to_owned(),
                status: status??.to_owned(),
                priority: priority??,
                tags,
                due: due.flatten(),
            },
            created: created??,
            updated: updated??,
            version: version??,
        })
    }

    pub fn etag(&self) -> String {
        etag(self.version)
    }

    /// Apply an RFC 7396 JSON merge patch to the editable fields. Only the fields the
    /// patch names are validated: a stored value that today's rules would refuse
    /// must not make every later patch of other fields fail. `null` resets a field
    /// to its default (and so fails for `title`, which has none).
    pub fn merge_patch(&self, patch: &Map<String, Value>) -> Result<Fields, FieldErrors> {
        let mut errors = FieldErrors::default();
        check_keys(patch, &mut errors);
        let mut fields = self.fields.clone();
        let defaults = Fields::defaults();
        for key in EDITABLE {
            match patch.get(key) {
                None => {}
                Some(Value::Null) if key == "title" => {
                    errors.push(FieldError::new("title", "is required"));
                }
                Some(Value::Null) => fields.reset(key, &defaults),
                Some(v) => fields.set(key, v, &mut errors),
            }
        }
        if errors.is_empty() {
            Ok(fields)
        } else {
            Err(errors)
        }
    }
}

pub fn etag(version: i64) -> String {
    format!("\"v{version}\"")
}

/// What an `If-Match` header asks of an existing task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version will do.
    Any,
    /// The version listed (strong comparison) is the current one.
    Current,
    /// No listed tag is the current version: 412.
    Stale,
}

/// An `If-Match` field value (RFC 9110, 13.1.1): `*`, or a comma-separated list of
/// entity tags (`"v3"`, `W/"v3"`), with optional spaces and tabs around each.
/// Exactly the language of the OpenAPI document's pattern for the header, so what
/// the contract calls malformed is what the API answers 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    Any,
    Tags(Vec<String>),
}

impl Precondition {
    /// `None` when the value is not `*` or a list of entity tags (an empty value,
    /// a bare word, `"v1", *`, an unterminated quote, a control character...).
    pub fn parse(value: &str) -> Option<Self> {
        let ows = |b: &[u8], mut i: usize| {
            while matches!(b.get(i), Some(b' ' | b'\t')) {
                i += 1;
            }
            i
        };
        let b = value.as_bytes();
        let mut i = ows(b, 0);
        if b.get(i) == Some(&b'*') && ows(b, i + 1) == b.len() {
            return Some(Self::Any);
        }
        let mut tags = Vec::new();
        loop {
            let start = i;
            if b[i..].starts_with(b"W/") {
                i += 2;
            }
            if b.get(i) != Some(&b'"') {
                return None;
            }
            i += 1;
            // etagc: %x21 / %x23-7E (obs-text is not accepted).
            while matches!(b.get(i), Some(&c) if c == 0x21 || (0x23..=0x7e).contains(&c)) {
                i += 1;
            }
            if b.get(i) != Some(&b'"') {
                return None;
            }
            i += 1;
            tags.push(value[start..i].to_owned());
            i = ows(b, i);
            match b.get(i) {
                None => return Some(Self::Tags(tags)),
                Some(b',') => i = ows(b, i + 1),
                Some(_) => return None,
            }
        }
    }

    /// Strong comparison (RFC 9110, 13.1.1): a weak tag never matches.
    pub fn check(&self, version: i64) -> IfMatch {
        match self {
            Self::Any => IfMatch::Any,
            Self::Tags(tags) if tags.contains(&etag(version)) => IfMatch::Current,
            Self::Tags(_) => IfMatch::Stale,
        }
    }
}

/// Blank as the OpenAPI document's `"pattern": "\\S"` means it: only ECMA-262
/// whitespace (JSON Schema patterns are ECMA-262 regexes). Rust's `trim` uses
/// Unicode's White_Space, which also counts U+0085 (NEL) but not U+FEFF, so a
/// title of two NELs was schema-valid yet refused (found by schemathesis).
pub(crate) fn is_blank(s: &str) -> bool {
    s.chars().all(|c| {
        matches!(
            c,
            '\t' | '\n'
                | '\u{b}'
                | '\u{c}'
                | '\r'
                | ' '
                | '\u{a0}'
                | '\u{1680}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
        ) || ('\u{2000}'..='\u{200a}').contains(&c)
    })
}

/// An integer in JSON Schema's sense: `1.0` is the integer 1 (the OpenAPI
/// document's `"type": "integer"`, and what a JavaScript client may well send).
fn json_integer(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
            .map(|f| f as i64)
    })
}

/// `If-None-Match` uses the weak comparison (RFC 9110, 13.1.2): `W/"v3"` names v3 too.
pub fn if_none_match(header: &str, version: i64) -> bool {
    let want = etag(version);
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == want || t.strip_prefix("W/").is_some_and(|weak| weak == want))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What `Rfc3339` replaced: bson's formatter, its fraction padded to three digits.
    fn rfc3339_by_bson(d: DateTime) -> String {
        let s = d.try_to_rfc3339_string().unwrap_or_default();
        let Some(body) = s.strip_suffix('Z') else {
            return s;
        };
        let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
        format!("{secs}.{:0<3}Z", &frac[..frac.len().min(3)])
    }

    #[test]
    fn rfc3339_writes_what_bson_wrote() {
        const DAY: i64 = 86_400_000;
        let year_0 = -62_167_219_200_000;
        let after_9999 = 253_402_300_800_000;
        let mut millis = vec![
            0,
            -1,
            1,
            year_0,
            year_0 - 1,
            after_9999,
            after_9999 - 1,
            DUE_MIN_MILLIS,
            DUE_MAX_MILLIS,
            i64::MIN,
            i64::MAX,
        ];
        // Every day from 1899 to 2001 (1900 is no leap year, 2000 is), at a moving
        // time of day; then the whole range in steps of about 18 days.
        let mut t = 0;
        for day in -25_567..11_688 {
            t = (t + 7_919_123) % DAY;
            millis.push(day * DAY + t);
        }
        let step = (after_9999 - year_0) / 200_000;
        for k in -2..200_003 {
            millis.push(year_0 + k * step + (k * 7_919) % 1000);
        }
        for ms in millis {
            let d = DateTime::from_millis(ms);
            assert_eq!(Rfc3339::new(d).as_str(), rfc3339_by_bson(d), "{ms}");
        }
    }

    fn stored(d: Document) -> Vec<u8> {
        d.to_vec().unwrap()
    }

    fn full() -> Document {
        doc! {
            "_id": ObjectId::from_bytes([7; 12]),
            "title": "write \"docs\"",
            "description": "d",
            "status": "doing",
            "priority": 4,
            "tags": ["a", 7, "b"],
            "due": DateTime::from_millis(1_798_761_600_000),
            "created": DateTime::from_millis(1_765_000_000_123),
            "updated": DateTime::from_millis(1_765_000_000_456),
            "version": 3_i64,
        }
    }

    #[test]
    fn a_stored_task_is_read_in_one_pass_and_written_as_the_api_documents_it() {
        let t = Task::from_stored(&stored(full())).unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            json!({
                "created": "2025-12-06T05:46:40.123Z",
                "description": "d",
                "due": "2027-01-01T00:00:00.000Z",
                "id": "07".repeat(12),
                "priority": 4,
                "status": "doing",
                "tags": ["a", "b"],
                "title": "write \"docs\"",
                "updated": "2025-12-06T05:46:40.456Z",
                "version": 3,
            })
            .to_string()
        );
    }

    #[test]
    fn stored_optional_fields_default_and_required_ones_are_checked() {
        let mut d = full();
        for k in ["description", "tags", "due"] {
            d.remove(k);
        }
        d.insert("priority", 2_i64);
        d.insert("version", 5_i32);
        let t = Task::from_stored(&stored(d)).unwrap();
        assert_eq!(
            (
                t.fields.description.as_str(),
                t.fields.tags.len(),
                t.fields.due
            ),
            ("", 0, None)
        );
        assert_eq!((t.fields.priority, t.version), (2, 5));
        for k in [
            "_id", "title", "status", "priority", "created", "updated", "version",
        ] {
            let mut d = full();
            d.remove(k);
            assert!(Task::from_stored(&stored(d)).is_none(), "{k} missing");
            let mut d = full();
            d.insert(k, Bson::Boolean(true));
            assert!(
                Task::from_stored(&stored(d)).is_none(),
                "{k} of another type"
            );
        }
        let mut d = full();
        d.insert("priority", i64::from(i32::MAX) + 1);
        assert!(
            Task::from_stored(&stored(d)).is_none(),
            "priority out of range"
        );
        assert!(
            Task::from_stored(b"\x05\x00\x00").is_none(),
            "not a document"
        );
        let mut bytes = stored(full());
        bytes.truncate(bytes.len() - 8);
        assert!(Task::from_stored(&bytes).is_none(), "truncated");
    }

    #[test]
    fn a_repeated_stored_key_counts_by_its_last_value() {
        // Two "status" keys, as a raw document can hold them.
        let mut d = full();
        d.remove("status");
        let mut bytes = stored(d);
        let tail = stored(doc! {"status": "todo", "x": 1}).split_off(4);
        let extra = stored(doc! {"status": "done"}).split_off(4);
        bytes.pop();
        bytes.extend_from_slice(&extra[..extra.len() - 1]);
        bytes.extend_from_slice(&tail);
        let len = u32::try_from(bytes.len()).unwrap().to_le_bytes();
        bytes[..4].copy_from_slice(&len);
        assert_eq!(Task::from_stored(&bytes).unwrap().fields.status, "todo");
    }

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
        let fields: Vec<_> = errs.fields().collect();
        for f in [
            "title", "priority", "status", "tags[1]", "due", "version", "extra",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn blank_is_ecma_262_whitespace_as_in_the_schema_pattern() {
        for blank in ["", " ", "\t\n", "\u{feff}", "\u{3000}\u{2009}"] {
            let errs = Fields::from_json(&obj(json!({"title": blank}))).unwrap_err();
            assert_eq!(errs.fields().collect::<Vec<_>>(), ["title"], "{blank:?}");
        }
        // U+0085 matches `\S` in ECMA-262: a title, and a tag.
        let f =
            Fields::from_json(&obj(json!({"title": "\u{85}\u{85}", "tags": ["\u{85}"]}))).unwrap();
        assert_eq!(f.tags, ["\u{85}"]);
    }

    #[test]
    fn priority_is_an_integer_in_json_schemas_sense() {
        // Found by schemathesis: `1.0` is a valid `"type": "integer"`.
        let f = Fields::from_json(&obj(json!({"title": "x", "priority": 1.0}))).unwrap();
        assert_eq!(f.priority, 1);
        for bad in [
            json!(1.5),
            json!(0),
            json!(6),
            json!(5.000001),
            json!(1e300),
            json!("2"),
        ] {
            let errs = Fields::from_json(&obj(json!({"title": "x", "priority": bad}))).unwrap_err();
            assert_eq!(errs.fields().collect::<Vec<_>>(), ["priority"], "{bad}");
        }
    }

    #[test]
    fn etags() {
        assert!(if_none_match("\"v3\"", 3));
        assert!(if_none_match("\"v1\", W/\"v3\"", 3));
        assert!(if_none_match("*", 3));
        assert!(!if_none_match("\"v2\"", 3));
        let if_match = |h: &str, v| Precondition::parse(h).map(|p| p.check(v));
        assert_eq!(if_match("\"v3\"", 3), Some(IfMatch::Current));
        assert_eq!(if_match(" \"v1\" ,\t\"v3\" ", 3), Some(IfMatch::Current));
        assert_eq!(
            if_match("W/\"v3\"", 3),
            Some(IfMatch::Stale),
            "strong comparison"
        );
        assert_eq!(if_match("\"v2\"", 3), Some(IfMatch::Stale));
        assert_eq!(
            if_match("\"a,b\", \"\"", 3),
            Some(IfMatch::Stale),
            "a comma inside a tag"
        );
        assert_eq!(if_match(" * ", 3), Some(IfMatch::Any));
        for malformed in [
            "",
            " ",
            "v3",
            "\"v3",
            "\"v1\", *",
            "*, \"v3\"",
            "\"v1\",",
            ",\"v1\"",
            "\"v1\" \"v3\"",
            "w/\"v3\"",
            "\"v\u{e9}\"",
            "\"v\u{7f}\"",
            "**",
        ] {
            assert_eq!(if_match(malformed, 3), None, "{malformed:?}");
        }
    }

    #[test]
    fn error_lists_are_capped_and_counted() {
        let mut m = Map::new();
        for i in 0..85_000 {
            m.insert(format!("k{i}"), json!(1));
        }
        m.insert("title".into(), json!("x"));
        let errs = Fields::from_json(&m).unwrap_err();
        assert_eq!(errs.fields().count(), crate::problem::MAX_REPORTED_ERRORS);
        let tags: Vec<Value> = (0..300_000).map(|_| json!(1)).collect();
        let errs = Fields::from_json(&obj(json!({"title": "x", "tags": tags}))).unwrap_err();
        assert_eq!(errs.fields().collect::<Vec<_>>(), ["tags"]);
    }

    #[test]
    fn due_is_held_to_years_1_to_9999_in_utc() {
        for bad in ["0000-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59"] {
            let errs = Fields::from_json(&obj(json!({"title": "x", "due": bad}))).unwrap_err();
            assert_eq!(errs.fields().collect::<Vec<_>>(), ["due"], "{bad}");
        }
        for good in ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
            assert!(
                Fields::from_json(&obj(json!({"title": "x", "due": good}))).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn a_patch_validates_only_what_it_touches() {
        let mut t = Task {
            id: ObjectId::new(),
            fields: Fields::from_json(&obj(json!({"title": "x"}))).unwrap(),
            created: DateTime::now(),
            updated: DateTime::now(),
            version: 1,
        };
        // A stored value today's rules refuse (written before they existed).
        t.fields.due = Some(DateTime::from_millis(DUE_MIN_MILLIS - 1));
        let f = t.merge_patch(&obj(json!({"status": "done"}))).unwrap();
        assert_eq!(f.status, "done");
        let errs = t
            .merge_patch(&obj(json!({"title": null, "priority": 9})))
            .unwrap_err();
        assert_eq!(errs.fields().collect::<Vec<_>>(), ["title", "priority"]);
        assert_eq!(t.merge_patch(&obj(json!({"due": null}))).unwrap().due, None);
    }
}
