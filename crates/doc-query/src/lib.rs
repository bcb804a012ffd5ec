//! MongoDB-style queries over BSON, restricted to an allow-list.
//!
//! Parsing *is* validation: a [`Filter`], [`Update`], [`Sort`] or [`Projection`] can
//! only be built from input that uses allowed operators, stays under the depth and
//! size caps, and names well-formed field paths. That is the NoSQL-injection firewall:
//! the host parses every guest-supplied document here before any store sees it, and
//! the embedded store evaluates the parsed form, so both stores agree on semantics.
//!
//! Semantics follow MongoDB where it matters to callers: equality on an array field
//! matches any element, a missing field equals `null`, comparisons only match values
//! of the same type bracket (numbers compare across int/long/double), `$ne`/`$nin`/
//! `$not` match documents where the field is missing.

mod eval;
mod filter;
mod select;
mod update;

pub use eval::{compare_total, sort_bytes, sort_bytes_of, values_equal};
pub use filter::Filter;
pub use select::{SelectError, Window, id_key, select, version_matches};
pub use update::Update;

use bson::{Bson, Document};
use std::cmp::Ordering;

/// Caps applied while parsing. Everything that comes from outside is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting of documents and arrays in any input.
    pub max_depth: usize,
    /// Maximum length in bytes of a `$regex` pattern.
    pub max_regex_len: usize,
    /// Maximum encoded size of a stored document (also checked after updates).
    pub max_document_bytes: usize,
    /// Maximum number of elements in an `$in`/`$nin` list or `$and`/`$or`/`$nor`.
    pub max_list_len: usize,
    /// Maximum number of `$regex` conditions in one filter (or one update's `$pull`s).
    pub max_regexes: usize,
    /// Maximum heap the compiled `$regex` patterns of one filter may use together.
    pub max_regex_compiled_bytes: usize,
    /// Maximum bytes of documents one `find` may hold to answer (its window of
    /// `skip + limit` candidates): without it, 1,000 documents of 1 MiB each are a
    /// gigabyte held by the host for one call.
    pub max_result_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_regex_len: 256,
            max_document_bytes: 1024 * 1024,
            max_list_len: 1000,
            max_regexes: 16,
            max_regex_compiled_bytes: 2 << 20,
            max_result_bytes: 16 << 20,
        }
    }
}

/// Why a query document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("operator `{0}` is not allowed")]
    OperatorNotAllowed(String),
    #[error("input is nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("document is larger than {0} bytes")]
    TooLarge(usize),
    #[error(
        "the documents to return are larger than {0} bytes; ask for fewer, or project fewer fields"
    )]
    ResultTooLarge(usize),
    #[error("{0}")]
    Invalid(String),
}

/// An operator name from the input, cut to a length fit for an error message (and
/// so for a log line): a key may be as long as the document.
pub(crate) fn not_allowed(op: &str) -> QueryError {
    const SHOWN: usize = 64;
    QueryError::OperatorNotAllowed(if op.len() <= SHOWN {
        op.to_owned()
    } else {
        let mut end = SHOWN;
        while !op.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &op[..end])
    })
}

pub(crate) fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::Invalid(msg.into())
}

/// The largest `limit` a `find` may ask for; larger values (and none) are capped here.
pub const MAX_FIND_LIMIT: u32 = 1000;

/// The largest `skip` a `find` may ask for: a sorted scan holds `skip + limit`
/// documents, so this bounds its working set.
pub const MAX_FIND_SKIP: u32 = 10_000;

/// The skip a `find` runs with: as asked (none is 0), refused past [`MAX_FIND_SKIP`].
pub fn find_skip(asked: Option<u32>) -> Result<u32, QueryError> {
    let skip = asked.unwrap_or(0);
    if skip > MAX_FIND_SKIP {
        return Err(invalid(format!("`skip` may be at most {MAX_FIND_SKIP}")));
    }
    Ok(skip)
}

/// The limit a `find` runs with: as asked, at most [`MAX_FIND_LIMIT`].
pub fn find_limit(asked: Option<u32>) -> u32 {
    asked.unwrap_or(MAX_FIND_LIMIT).min(MAX_FIND_LIMIT)
}

/// Decode a document that came from outside: size and depth are checked on the raw
/// bytes, without recursion, before anything recursive touches them (host calls run
/// on the guest's fiber stack).
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Document, QueryError> {
    check_encoded(bytes, limits)?;
    Document::from_reader(bytes).map_err(|_| invalid("not a BSON document"))
}

/// What a store decodes of each stored document it tests and orders: only the
/// top-level fields the filter and the sort read (with a sort, `_id` too: its
/// tie-break), or the whole document when a projection will be applied to it.
/// Decoding a list's candidates whole was 17 % of a list's time in its profile;
/// the fields left out are never read, so every answer is the same (a property
/// test in tests/rebuild.rs checks matching and order on partial documents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reads {
    /// `None`: the whole document.
    fields: Option<Vec<String>>,
}

impl Reads {
    pub fn new(filter: &Filter, sort: Option<&Sort>, projection: Option<&Projection>) -> Self {
        if projection.is_some() {
            return Self::whole();
        }
        let mut fields = Vec::new();
        filter.top_fields(&mut fields);
        if let Some(s) = sort {
            fields.push("_id");
            s.top_fields(&mut fields);
        }
        fields.sort_unstable();
        fields.dedup();
        Self {
            fields: Some(fields.into_iter().map(String::from).collect()),
        }
    }

    /// Every field.
    pub fn whole() -> Self {
        Self { fields: None }
    }

    /// The fields of `bytes` (a stored, valid document) this reads, in stored order.
    pub fn decode(&self, bytes: &[u8]) -> Result<Document, bson::error::Error> {
        let Some(fields) = &self.fields else {
            return Document::from_reader(bytes);
        };
        let mut doc = Document::new();
        if fields.is_empty() {
            return Ok(doc);
        }
        for elem in bson::RawDocument::from_bytes(bytes)?.iter_elements() {
            let elem = elem?;
            let key = elem.key().as_str();
            if fields.iter().any(|f| f == key) {
                doc.insert(key, Bson::try_from(elem.value()?)?);
            }
        }
        Ok(doc)
    }
}

/// `doc` with an `_id`: as given, or a fresh ObjectId put first, where MongoDB puts it.
pub fn with_id(doc: Document) -> Document {
    if doc.contains_key("_id") {
        return doc;
    }
    let mut out = Document::new();
    out.insert("_id", Bson::ObjectId(bson::oid::ObjectId::new()));
    out.extend(doc);
    out
}

/// Check a document that is about to be stored: size, depth, and no `$`-prefixed or
/// dotted keys anywhere (they would be ambiguous with operators and paths).
pub fn validate_document(doc: &Document, limits: &Limits) -> Result<(), QueryError> {
    let size = encoded_len(doc)?;
    if size > limits.max_document_bytes {
        return Err(QueryError::TooLarge(limits.max_document_bytes));
    }
    fn walk_doc(doc: &Document, depth: usize, limits: &Limits) -> Result<(), QueryError> {
        if depth > limits.max_depth {
            return Err(QueryError::TooDeep(limits.max_depth));
        }
        for (k, v) in doc {
            if k.is_empty() || k.starts_with('$') || k.contains('.') || k.contains('\0') {
                return Err(invalid(format!("field name `{k}` is not allowed")));
            }
            walk_value(v, depth, limits)?;
        }
        Ok(())
    }
    fn walk_value(v: &Bson, depth: usize, limits: &Limits) -> Result<(), QueryError> {
        match v {
            Bson::Document(d) => walk_doc(d, depth + 1, limits),
            Bson::Array(a) => {
                if depth + 1 > limits.max_depth {
                    return Err(QueryError::TooDeep(limits.max_depth));
                }
                a.iter().try_for_each(|x| walk_value(x, depth + 1, limits))
            }
            Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
                Err(invalid("JavaScript values are not allowed"))
            }
            _ => Ok(()),
        }
    }
    walk_doc(doc, 1, limits)
}

/// Encoded BSON size of a document.
pub fn encoded_len(doc: &Document) -> Result<usize, QueryError> {
    doc.to_vec()
        .map(|b| b.len())
        .map_err(|e| invalid(format!("unencodable document: {e}")))
}

/// Check size and nesting depth of an encoded document *before* decoding it.
///
/// Decoding and validation recurse; this walk does not (it keeps its own stack), so a
/// hostile depth bomb is refused without touching the caller's stack. That matters in
/// the host, where data calls run on the guest's small async fiber stack.
pub fn check_encoded(bytes: &[u8], limits: &Limits) -> Result<(), QueryError> {
    use bson::raw::{RawBsonRef, RawDocument};
    if bytes.len() > limits.max_document_bytes {
        return Err(QueryError::TooLarge(limits.max_document_bytes));
    }
    let malformed = || invalid("not a well-formed BSON document");
    let root = RawDocument::from_bytes(bytes).map_err(|_| malformed())?;
    let mut stack = vec![root.iter()];
    while let Some(top) = stack.last_mut() {
        let Some(item) = top.next() else {
            stack.pop();
            continue;
        };
        let (_, value) = item.map_err(|_| malformed())?;
        let child = match value {
            RawBsonRef::Document(d) => d,
            RawBsonRef::Array(a) => {
                RawDocument::from_bytes(a.as_bytes()).map_err(|_| malformed())?
            }
            RawBsonRef::JavaScriptCode(_) | RawBsonRef::JavaScriptCodeWithScope(_) => {
                return Err(invalid("JavaScript values are not allowed"));
            }
            _ => continue,
        };
        if stack.len() + 1 > limits.max_depth {
            return Err(QueryError::TooDeep(limits.max_depth));
        }
        stack.push(child.iter());
    }
    Ok(())
}

/// Depth of a decoded document, stopping early once past `cap`.
pub(crate) fn check_doc_depth(doc: &Document, cap: usize) -> Result<(), QueryError> {
    doc.values().try_for_each(|v| check_depth(v, 2, cap))
}

/// Depth of nested documents/arrays, stopping early once past `cap`.
pub(crate) fn check_depth(v: &Bson, depth: usize, cap: usize) -> Result<(), QueryError> {
    if depth > cap {
        return Err(QueryError::TooDeep(cap));
    }
    match v {
        Bson::Document(d) => d.values().try_for_each(|x| check_depth(x, depth + 1, cap)),
        Bson::Array(a) => a.iter().try_for_each(|x| check_depth(x, depth + 1, cap)),
        _ => Ok(()),
    }
}

/// A dotted field path such as `tags` or `owner.name`.
pub(crate) fn parse_path(path: &str) -> Result<Vec<String>, QueryError> {
    if path.is_empty() || path.len() > 256 {
        return Err(invalid("field path must be 1-256 bytes"));
    }
    let segs: Vec<String> = path.split('.').map(str::to_owned).collect();
    for s in &segs {
        if s.is_empty() || s.starts_with('$') || s.contains('\0') {
            return Err(invalid(format!("field path `{path}` is not allowed")));
        }
    }
    Ok(segs)
}

/// Numeric value of a sort/projection flag: 1/-1 or 0/1 in any numeric type or bool.
fn flag(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(d) if d.fract() == 0.0 && d.abs() <= 1.0 => Some(*d as i64),
        Bson::Boolean(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// A validated sort specification: `{field: 1 | -1, ...}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sort {
    keys: Vec<(Vec<String>, bool)>,
}

impl Sort {
    /// At most this many sort keys.
    pub const MAX_KEYS: usize = 8;

    pub fn parse(spec: &Document) -> Result<Self, QueryError> {
        if spec.len() > Self::MAX_KEYS {
            return Err(invalid(format!("at most {} sort keys", Self::MAX_KEYS)));
        }
        let mut keys = Vec::with_capacity(spec.len());
        for (k, v) in spec {
            let path = parse_path(k)?;
            let asc = match flag(v) {
                Some(1) => true,
                Some(-1) => false,
                _ => return Err(invalid(format!("sort value for `{k}` must be 1 or -1"))),
            };
            keys.push((path, asc));
        }
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The specification rebuilt from the parsed form, always with `1`/`-1`.
    pub fn to_document(&self) -> Document {
        let mut d = Document::new();
        for (path, asc) in &self.keys {
            d.insert(path.join("."), if *asc { 1 } else { -1 });
        }
        d
    }

    /// If this sort is by one top-level field and then `_id` in the same direction
    /// (or by the field alone, ascending: ties fall back to `_id` ascending), that
    /// field and whether ascending: the order of an index on (field, `_id`), read
    /// forward or backward.
    pub fn single_field(&self) -> Option<(&str, bool)> {
        match self.keys.as_slice() {
            [(f, asc), (id, id_asc)]
                if f.len() == 1 && id.len() == 1 && id[0] == "_id" && asc == id_asc =>
            {
                Some((f[0].as_str(), *asc))
            }
            [(f, true)] if f.len() == 1 => Some((f[0].as_str(), true)),
            _ => None,
        }
    }

    /// The top-level field of every sort key, into `out`.
    pub fn top_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        out.extend(
            self.keys
                .iter()
                .filter_map(|(p, _)| p.first().map(String::as_str)),
        );
    }

    /// Order two documents; ties fall back to `_id` so results are deterministic.
    pub fn compare(&self, a: &Document, b: &Document) -> Ordering {
        for (path, asc) in &self.keys {
            let va = eval::sort_key(a, path);
            let vb = eval::sort_key(b, path);
            let ord = compare_total(&va, &vb);
            if ord != Ordering::Equal {
                return if *asc { ord } else { ord.reverse() };
            }
        }
        compare_total(
            a.get("_id").unwrap_or(&Bson::Null),
            b.get("_id").unwrap_or(&Bson::Null),
        )
    }
}

/// A validated projection: only inclusions or only exclusions of top-level fields
/// (`_id` may be excluded from an inclusion projection).
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    include: bool,
    fields: Vec<String>,
    keep_id: bool,
}

impl Projection {
    /// Parse a projection that came from outside: checked as a document first (size,
    /// depth, keys), then as a projection.
    pub fn parse_checked(spec: &Document, limits: &Limits) -> Result<Self, QueryError> {
        validate_document(spec, limits)?;
        Self::parse(spec)
    }

    pub fn parse(spec: &Document) -> Result<Self, QueryError> {
        let mut include: Option<bool> = None;
        let mut fields = Vec::new();
        let mut keep_id = true;
        for (k, v) in spec {
            if k.contains('.') {
                return Err(invalid("projection supports top-level fields only"));
            }
            parse_path(k)?;
            let on = match flag(v) {
                Some(1) => true,
                Some(0) => false,
                _ => {
                    return Err(invalid(format!(
                        "projection value for `{k}` must be 0 or 1"
                    )));
                }
            };
            if k == "_id" {
                keep_id = on;
                continue;
            }
            match include {
                Some(mode) if mode != on => {
                    return Err(invalid("projection cannot mix inclusion and exclusion"));
                }
                _ => include = Some(on),
            }
            fields.push(k.clone());
        }
        Ok(Self {
            // Only `_id` named: `{_id: 0}` is an exclusion, `{_id: 1}` an inclusion.
            include: include.unwrap_or(keep_id && !spec.is_empty()),
            fields,
            keep_id,
        })
    }

    /// The specification rebuilt from the parsed form, always with `0`/`1`.
    pub fn to_document(&self) -> Document {
        let on = i32::from(self.include);
        let mut d = Document::new();
        if !self.keep_id {
            d.insert("_id", 0);
        } else if self.include && self.fields.is_empty() {
            d.insert("_id", 1);
        }
        for f in &self.fields {
            d.insert(f.clone(), on);
        }
        d
    }

    pub fn apply(&self, doc: Document) -> Document {
        if self.include {
            let mut out = Document::new();
            if self.keep_id
                && let Some(id) = doc.get("_id")
            {
                out.insert("_id", id.clone());
            }
            for f in &self.fields {
                if let Some(v) = doc.get(f) {
                    out.insert(f.clone(), v.clone());
                }
            }
            out
        } else {
            let mut doc = doc;
            for f in &self.fields {
                doc.remove(f);
            }
            if !self.keep_id {
                doc.remove("_id");
            }
            doc
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn find_limit_caps_and_defaults_to_the_cap() {
        assert_eq!(find_limit(None), MAX_FIND_LIMIT);
        assert_eq!(find_limit(Some(5)), 5);
        assert_eq!(find_limit(Some(u32::MAX)), MAX_FIND_LIMIT);
        assert_eq!(find_skip(None), Ok(0));
        assert_eq!(find_skip(Some(MAX_FIND_SKIP)), Ok(MAX_FIND_SKIP));
        assert!(find_skip(Some(MAX_FIND_SKIP + 1)).is_err());
    }

    #[test]
    fn decode_and_checked_projection_refuse_before_parsing() {
        let limits = Limits::default();
        assert_eq!(
            decode(&doc! {"a": 1}.to_vec().unwrap(), &limits),
            Ok(doc! {"a": 1})
        );
        assert!(decode(b"garbage", &limits).is_err());
        let tiny = Limits {
            max_document_bytes: 8,
            ..limits
        };
        assert!(matches!(
            Projection::parse_checked(&doc! {"title": 1}, &tiny),
            Err(QueryError::TooLarge(8))
        ));
        assert!(Projection::parse_checked(&doc! {"title": 1}, &limits).is_ok());
    }

    #[test]
    fn with_id_keeps_a_given_id_and_puts_a_new_one_first() {
        assert_eq!(
            with_id(doc! {"a": 1, "_id": "x"}),
            doc! {"a": 1, "_id": "x"}
        );
        let d = with_id(doc! {"a": 1});
        assert_eq!(d.keys().collect::<Vec<_>>(), ["_id", "a"]);
        assert!(matches!(d.get("_id"), Some(Bson::ObjectId(_))));
    }

    #[test]
    fn stored_documents_reject_operator_keys_anywhere() {
        let l = Limits::default();
        assert!(validate_document(&doc! {"a": 1, "b": {"c": [1, 2]}}, &l).is_ok());
        assert!(validate_document(&doc! {"$where": "1"}, &l).is_err());
        assert!(validate_document(&doc! {"a": {"$gt": 1}}, &l).is_err());
        assert!(validate_document(&doc! {"a.b": 1}, &l).is_err());
    }

    #[test]
    fn stored_documents_are_size_and_depth_capped() {
        let l = Limits {
            max_document_bytes: 64,
            ..Limits::default()
        };
        let big = doc! {"s": "x".repeat(100)};
        assert_eq!(validate_document(&big, &l), Err(QueryError::TooLarge(64)));
        let mut deep = doc! {"x": 1};
        for _ in 0..40 {
            deep = doc! {"x": deep};
        }
        assert_eq!(
            validate_document(&deep, &Limits::default()),
            Err(QueryError::TooDeep(32))
        );
    }

    #[test]
    fn encoded_depth_bomb_is_refused_without_decoding() {
        let l = Limits::default();
        // Build 10 000 levels as raw bytes: decoding this recursively would overflow.
        let mut bytes = bson::doc! {"x": 1}.to_vec().unwrap();
        for _ in 0..10_000 {
            let mut outer = Vec::with_capacity(bytes.len() + 8);
            let len = (4 + 1 + 2 + bytes.len() + 1) as i32;
            outer.extend_from_slice(&len.to_le_bytes());
            outer.push(0x03);
            outer.extend_from_slice(b"a\0");
            outer.extend_from_slice(&bytes);
            outer.push(0);
            bytes = outer;
        }
        assert_eq!(
            check_encoded(
                &bytes,
                &Limits {
                    max_document_bytes: usize::MAX,
                    ..l
                }
            ),
            Err(QueryError::TooDeep(32))
        );
        assert!(check_encoded(&bson::doc! {"a": [1, {"b": [2]}]}.to_vec().unwrap(), &l).is_ok());
        assert!(check_encoded(&[1, 2, 3], &l).is_err());
        assert!(
            check_encoded(
                &bson::doc! {"s": "x".repeat(100)}.to_vec().unwrap(),
                &Limits {
                    max_document_bytes: 50,
                    ..l
                }
            )
            .is_err()
        );
    }

    #[test]
    fn sort_orders_by_keys_then_id() {
        let s = Sort::parse(&doc! {"p": -1}).unwrap();
        let a = doc! {"_id": 1, "p": 2};
        let b = doc! {"_id": 2, "p": 2};
        let c = doc! {"_id": 3, "p": 5};
        let mut v = vec![a.clone(), b.clone(), c.clone()];
        v.sort_by(|x, y| s.compare(x, y));
        assert_eq!(v, vec![c, a, b]);
        assert!(Sort::parse(&doc! {"p": 2}).is_err());
        assert!(Sort::parse(&doc! {"$p": 1}).is_err());
    }

    #[test]
    fn sort_puts_missing_and_null_first_ascending() {
        let s = Sort::parse(&doc! {"due": 1}).unwrap();
        let a = doc! {"_id": 1, "due": bson::DateTime::from_millis(5)};
        let b = doc! {"_id": 2};
        let c = doc! {"_id": 3, "due": Bson::Null};
        let mut v = vec![a.clone(), b.clone(), c.clone()];
        v.sort_by(|x, y| s.compare(x, y));
        assert_eq!(v, vec![b, c, a]);
    }

    #[test]
    fn projection_modes() {
        let d = doc! {"_id": 1, "a": 1, "b": 2, "c": 3};
        let inc = Projection::parse(&doc! {"a": 1, "_id": 0}).unwrap();
        assert_eq!(inc.apply(d.clone()), doc! {"a": 1});
        let exc = Projection::parse(&doc! {"b": 0}).unwrap();
        assert_eq!(exc.apply(d.clone()), doc! {"_id": 1, "a": 1, "c": 3});
        let only_id = Projection::parse(&doc! {"_id": 0}).unwrap();
        assert_eq!(only_id.apply(d), doc! {"a": 1, "b": 2, "c": 3});
        assert!(Projection::parse(&doc! {"a": 1, "b": 0}).is_err());
        assert!(Projection::parse(&doc! {"a.b": 1}).is_err());
    }
}
