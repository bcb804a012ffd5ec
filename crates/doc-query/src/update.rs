//! Update documents: `$set $unset $inc $push $pull`, nothing else.

use crate::filter::{Ctx, PullCondition, parse_pull};
use crate::{
    Limits, QueryError, check_doc_depth, invalid, not_allowed, parse_path, validate_document,
};
use bson::{Bson, Document};

#[derive(Debug, Clone)]
enum Op {
    Set(Bson),
    Unset,
    Inc(Bson),
    Push(Vec<Bson>),
    Pull(PullCondition),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Set(_) => "$set",
            Op::Unset => "$unset",
            Op::Inc(_) => "$inc",
            Op::Push(_) => "$push",
            Op::Pull(_) => "$pull",
        }
    }

    fn operand(&self) -> Bson {
        match self {
            Op::Set(v) | Op::Inc(v) => v.clone(),
            Op::Unset => Bson::String(String::new()),
            Op::Push(items) => Bson::Document(bson::doc! {"$each": items.clone()}),
            Op::Pull(cond) => cond.to_bson(),
        }
    }
}

/// A validated update.
#[derive(Debug, Clone)]
pub struct Update {
    ops: Vec<(Vec<String>, Op)>,
    limits: Limits,
}

impl Update {
    /// Parse and validate an update document. It must contain at least one operator
    /// and only operators; no two operators may touch the same or overlapping paths,
    /// and none may touch `_id`.
    pub fn parse(doc: &Document, limits: &Limits) -> Result<Self, QueryError> {
        check_doc_depth(doc, limits.max_depth)?;
        if doc.is_empty() {
            return Err(invalid("update needs at least one operator"));
        }
        // One pattern budget for every `$pull` of the update.
        let patterns = Ctx::new(limits);
        let mut ops: Vec<(Vec<String>, Op)> = Vec::new();
        for (op, fields) in doc {
            if !op.starts_with('$') {
                return Err(invalid(
                    "update must use operators ($set, $unset, $inc, $push, $pull), not a replacement document",
                ));
            }
            if !matches!(op.as_str(), "$set" | "$unset" | "$inc" | "$push" | "$pull") {
                return Err(not_allowed(op));
            }
            let Bson::Document(fields) = fields else {
                return Err(invalid(format!("`{op}` needs a document of fields")));
            };
            if fields.is_empty() {
                return Err(invalid(format!("`{op}` needs at least one field")));
            }
            for (path, v) in fields {
                let segs = parse_path(path)?;
                if segs[0] == "_id" {
                    return Err(invalid("`_id` cannot be updated"));
                }
                if ops.iter().any(|(p, _)| overlaps(p, &segs)) {
                    return Err(invalid(format!("conflicting updates to `{path}`")));
                }
                let parsed = match op.as_str() {
                    "$set" => Op::Set(value(v, limits)?),
                    "$unset" => Op::Unset,
                    "$inc" => match v {
                        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => Op::Inc(v.clone()),
                        _ => return Err(invalid("`$inc` needs a number")),
                    },
                    "$push" => match v {
                        Bson::Document(d) if d.contains_key("$each") => {
                            if d.len() != 1 {
                                return Err(invalid("`$push` supports only the `$each` modifier"));
                            }
                            match d.get("$each") {
                                Some(Bson::Array(items)) if items.len() <= limits.max_list_len => {
                                    Op::Push(
                                        items
                                            .iter()
                                            .map(|x| value(x, limits))
                                            .collect::<Result<_, _>>()?,
                                    )
                                }
                                _ => return Err(invalid("`$each` needs an array")),
                            }
                        }
                        v => Op::Push(vec![value(v, limits)?]),
                    },
                    _ => Op::Pull(parse_pull(v, &patterns)?),
                };
                ops.push((segs, parsed));
            }
        }
        Ok(Self {
            ops,
            limits: *limits,
        })
    }

    /// Apply the update to `doc` in place. On error `doc` may be partly changed, so
    /// callers apply to a copy and store it only on success.
    pub fn apply(&self, doc: &mut Document) -> Result<(), QueryError> {
        for (path, op) in &self.ops {
            apply_one(doc, path, op)?;
        }
        validate_document(doc, &self.limits)
    }

    /// The update as a document rebuilt from the parsed form (see
    /// `Filter::to_document`): operators in a fixed order, `$push` always with
    /// `$each`, `$pull` conditions as parsed.
    pub fn to_document(&self) -> Document {
        let mut out = Document::new();
        for name in ["$set", "$unset", "$inc", "$push", "$pull"] {
            let mut fields = Document::new();
            for (path, op) in self.ops.iter().filter(|(_, op)| op.name() == name) {
                fields.insert(path.join("."), op.operand());
            }
            if !fields.is_empty() {
                out.insert(name, fields);
            }
        }
        out
    }

    /// The top-level fields this update writes (used by tests and by stores that log).
    pub fn touches(&self, field: &str) -> bool {
        self.ops.iter().any(|(p, _)| p[0] == field)
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().zip(b.iter()).all(|(x, y)| x == y)
}

/// A value written by `$set`/`$push`: no operator keys inside, within the caps.
fn value(v: &Bson, limits: &Limits) -> Result<Bson, QueryError> {
    if let Bson::Document(d) = v {
        validate_document(d, limits)?;
    }
    if let Bson::Array(items) = v {
        for item in items {
            value(item, limits)?;
        }
    }
    if matches!(
        v,
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_)
    ) {
        return Err(invalid("JavaScript values are not allowed"));
    }
    Ok(v.clone())
}

/// The parent document of `path`'s last segment, creating empty documents along the
/// way when `create` is set.
fn parent<'a>(
    doc: &'a mut Document,
    path: &[String],
    create: bool,
) -> Result<Option<&'a mut Document>, QueryError> {
    let mut cur = doc;
    for seg in &path[..path.len() - 1] {
        if !cur.contains_key(seg) {
            if !create {
                return Ok(None);
            }
            cur.insert(seg.clone(), Document::new());
        }
        cur = match cur.get_mut(seg) {
            Some(Bson::Document(d)) => d,
            _ => {
                return Err(invalid(format!(
                    "cannot traverse `{seg}`: it is not an embedded document"
                )));
            }
        };
    }
    Ok(Some(cur))
}

fn apply_one(doc: &mut Document, path: &[String], op: &Op) -> Result<(), QueryError> {
    let last = &path[path.len() - 1];
    match op {
        Op::Set(v) => {
            if let Some(p) = parent(doc, path, true)? {
                p.insert(last.clone(), v.clone());
            }
        }
        Op::Unset => {
            if let Some(p) = parent(doc, path, false)? {
                p.remove(last);
            }
        }
        Op::Inc(by) => {
            let Some(p) = parent(doc, path, true)? else {
                return Ok(());
            };
            let next = match p.get(last) {
                None => by.clone(),
                Some(cur) => add(cur, by).ok_or_else(|| {
                    invalid(format!("cannot apply `$inc` to non-numeric field `{last}`"))
                })?,
            };
            p.insert(last.clone(), next);
        }
        Op::Push(items) => {
            let Some(p) = parent(doc, path, true)? else {
                return Ok(());
            };
            match p.get_mut(last) {
                None => {
                    p.insert(last.clone(), Bson::Array(items.clone()));
                }
                Some(Bson::Array(a)) => a.extend(items.iter().cloned()),
                Some(_) => {
                    return Err(invalid(format!(
                        "cannot `$push` to non-array field `{last}`"
                    )));
                }
            }
        }
        Op::Pull(conds) => {
            let Some(p) = parent(doc, path, false)? else {
                return Ok(());
            };
            match p.get_mut(last) {
                None => {}
                Some(Bson::Array(a)) => a.retain(|x| !conds.removes(x)),
                Some(_) => {
                    return Err(invalid(format!(
                        "cannot `$pull` from non-array field `{last}`"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn add(a: &Bson, b: &Bson) -> Option<Bson> {
    Some(match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => match x.checked_add(*y) {
            Some(s) => Bson::Int32(s),
            None => Bson::Int64(i64::from(*x) + i64::from(*y)),
        },
        (Bson::Int32(x), Bson::Int64(y)) => Bson::Int64(i64::from(*x).checked_add(*y)?),
        (Bson::Int64(x), Bson::Int32(y)) => Bson::Int64(x.checked_add(i64::from(*y))?),
        (Bson::Int64(x), Bson::Int64(y)) => Bson::Int64(x.checked_add(*y)?),
        (Bson::Double(x), Bson::Double(y)) => Bson::Double(x + y),
        (Bson::Double(x), Bson::Int32(y)) => Bson::Double(x + f64::from(*y)),
        (Bson::Int32(x), Bson::Double(y)) => Bson::Double(f64::from(*x) + y),
        (Bson::Double(x), Bson::Int64(y)) => Bson::Double(x + *y as f64),
        (Bson::Int64(x), Bson::Double(y)) => Bson::Double(*x as f64 + y),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn apply(update: Document, mut d: Document) -> Result<Document, QueryError> {
        Update::parse(&update, &Limits::default())?.apply(&mut d)?;
        Ok(d)
    }

    #[test]
    fn set_unset_inc() {
        let d = doc! {"_id": 1, "a": 1, "b": "x", "v": 1};
        let r = apply(
            doc! {"$set": {"b": "y", "c.d": 2}, "$unset": {"a": ""}, "$inc": {"v": 1}},
            d,
        )
        .unwrap();
        assert_eq!(r, doc! {"_id": 1, "b": "y", "v": 2, "c": {"d": 2}});
    }

    #[test]
    fn inc_widens_and_rejects_text() {
        let r = apply(doc! {"$inc": {"n": 1}}, doc! {"n": i32::MAX}).unwrap();
        assert_eq!(r, doc! {"n": i64::from(i32::MAX) + 1});
        let r = apply(doc! {"$inc": {"n": 0.5}}, doc! {"n": 1}).unwrap();
        assert_eq!(r, doc! {"n": 1.5});
        assert!(apply(doc! {"$inc": {"n": 1}}, doc! {"n": "x"}).is_err());
        assert!(apply(doc! {"$inc": {"n": "1"}}, doc! {}).is_err());
    }

    #[test]
    fn push_and_pull() {
        let r = apply(doc! {"$push": {"t": "c"}}, doc! {"t": ["a", "b"]}).unwrap();
        assert_eq!(r, doc! {"t": ["a", "b", "c"]});
        let r = apply(doc! {"$push": {"t": {"$each": ["x", "y"]}}}, doc! {}).unwrap();
        assert_eq!(r, doc! {"t": ["x", "y"]});
        let r = apply(doc! {"$pull": {"t": "a"}}, doc! {"t": ["a", "b", "a"]}).unwrap();
        assert_eq!(r, doc! {"t": ["b"]});
        let r = apply(doc! {"$pull": {"n": {"$gte": 3}}}, doc! {"n": [1, 3, 5, 2]}).unwrap();
        assert_eq!(r, doc! {"n": [1, 2]});
        assert!(apply(doc! {"$push": {"t": 1}}, doc! {"t": 1}).is_err());
    }

    #[test]
    fn disallowed_updates() {
        let l = Limits::default();
        for op in [
            "$rename",
            "$where",
            "$function",
            "$expr",
            "$currentDate",
            "$setOnInsert",
        ] {
            assert_eq!(
                Update::parse(&doc! {op: {"a": 1}}, &l).unwrap_err(),
                QueryError::OperatorNotAllowed(op.into())
            );
        }
        assert!(
            Update::parse(&doc! {"a": 1}, &l)
                .unwrap_err()
                .to_string()
                .contains("replacement")
        );
        assert!(Update::parse(&doc! {}, &l).is_err());
        assert!(Update::parse(&doc! {"$set": {"_id": 2}}, &l).is_err());
        assert!(Update::parse(&doc! {"$set": {"a": 1}, "$inc": {"a": 1}}, &l).is_err());
        assert!(Update::parse(&doc! {"$set": {"a": 1, "a.b": 2}}, &l).is_err());
        assert!(Update::parse(&doc! {"$set": {"a": {"$where": "x"}}}, &l).is_err());
        assert!(Update::parse(&doc! {"$push": {"a": {"$each": [1], "$slice": 1}}}, &l).is_err());
    }

    /// Finding 4 of the hardening review: a `$pull` document reached MongoDB raw,
    /// where it is a query over the array's elements.
    #[test]
    fn pull_documents_are_queries_held_to_the_allow_list() {
        let l = Limits::default();
        for bad in [
            doc! {"$pull": {"arr": {"x": {"$elemMatch": {"$where": "sleep(1)"}}}}},
            doc! {"$pull": {"arr": {"x": {"$type": "string"}}}},
            doc! {"$pull": {"arr": {"x": {"$size": 2}}}},
            doc! {"$pull": {"arr": {"$expr": {"$function": {"body": "x", "args": [], "lang": "js"}}}}},
            doc! {"$pull": {"arr": {}}},
        ] {
            assert!(Update::parse(&bad, &l).is_err(), "{bad:?}");
        }
        // A document of fields matches elements that are documents, like MongoDB.
        let r = apply(
            doc! {"$pull": {"arr": {"k": {"$gt": 1}, "t": "a"}}},
            doc! {"arr": [{"k": 1, "t": "a"}, {"k": 2, "t": "a", "z": 0}, {"k": 3, "t": "b"}, 5]},
        )
        .unwrap();
        assert_eq!(r, doc! {"arr": [{"k": 1, "t": "a"}, {"k": 3, "t": "b"}, 5]});
    }

    #[test]
    fn rebuilt_updates_name_only_allowed_operators() {
        let l = Limits::default();
        let u = Update::parse(
            &doc! {"$pull": {"p": {"k": 1}, "q": 3, "r": {"$gte": 2}}, "$push": {"t": "x"}, "$set": {"a.b": 1}, "$unset": {"u": 1}, "$inc": {"v": 1}},
            &l,
        )
        .unwrap();
        let d = u.to_document();
        assert_eq!(
            d,
            doc! {
                "$set": {"a.b": 1}, "$unset": {"u": ""}, "$inc": {"v": 1},
                "$push": {"t": {"$each": ["x"]}},
                "$pull": {"p": {"k": 1}, "q": 3, "r": {"$gte": 2}},
            }
        );
        let again = Update::parse(&d, &l).unwrap().to_document();
        assert_eq!(again, d, "a fixpoint");
    }

    #[test]
    fn result_is_size_capped() {
        let l = Limits {
            max_document_bytes: 100,
            ..Limits::default()
        };
        let u = Update::parse(&doc! {"$set": {"s": "x".repeat(90)}}, &l).unwrap();
        let mut d = doc! {"_id": 1, "t": "y".repeat(20)};
        assert_eq!(u.apply(&mut d), Err(QueryError::TooLarge(100)));
    }
}
