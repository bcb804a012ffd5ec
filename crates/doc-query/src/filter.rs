//! Filters: parse (= validate against the allow-list) and match.

use crate::eval::{compare_same_bracket, resolve, values_equal};
use crate::{Limits, QueryError, check_doc_depth, invalid, parse_path};
use bson::{Bson, Document};
use regex::{Regex, RegexBuilder};
use std::cmp::Ordering;

/// A validated filter.
#[derive(Debug, Clone)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Nor(Vec<Filter>),
    Field { path: Vec<String>, conds: Vec<Cond> },
}

/// One condition on a field's value.
#[derive(Debug, Clone)]
pub enum Cond {
    Eq(Bson),
    Ne(Bson),
    Cmp(Ordering, bool, Bson),
    In(Vec<Bson>),
    Nin(Vec<Bson>),
    Exists(bool),
    Regex(Box<Regex>),
    Not(Vec<Cond>),
}

impl Filter {
    /// Parse and validate a filter document. An empty document matches everything.
    pub fn parse(doc: &Document, limits: &Limits) -> Result<Self, QueryError> {
        check_doc_depth(doc, limits.max_depth)?;
        parse_doc(doc, limits)
    }

    /// Whether `doc` satisfies the filter.
    pub fn matches(&self, doc: &Document) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(doc)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(doc)),
            Filter::Nor(fs) => !fs.iter().any(|f| f.matches(doc)),
            Filter::Field { path, conds } => {
                let values = resolve(doc, path);
                conds.iter().all(|c| c.matches(&values))
            }
        }
    }
}

/// If `filter` is exactly `{_id: <literal>}` (or `{_id: {$eq: <literal>}}`), the id:
/// stores use it to turn a scan into a key lookup.
pub fn id_equality(filter: &Document) -> Option<&Bson> {
    if filter.len() != 1 {
        return None;
    }
    match filter.get("_id")? {
        Bson::Document(d) if d.len() == 1 => match d.get("$eq")? {
            Bson::Document(_) | Bson::Array(_) | Bson::RegularExpression(_) => None,
            v => Some(v),
        },
        Bson::Document(_) | Bson::Array(_) | Bson::RegularExpression(_) => None,
        v => Some(v),
    }
}

fn parse_doc(doc: &Document, limits: &Limits) -> Result<Filter, QueryError> {
    let mut parts = Vec::with_capacity(doc.len());
    for (key, value) in doc {
        let part = match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let Bson::Array(items) = value else {
                    return Err(invalid(format!("`{key}` needs an array of filters")));
                };
                if items.is_empty() || items.len() > limits.max_list_len {
                    return Err(invalid(format!(
                        "`{key}` needs 1-{} filters",
                        limits.max_list_len
                    )));
                }
                let subs = items
                    .iter()
                    .map(|item| match item {
                        Bson::Document(d) => parse_doc(d, limits),
                        _ => Err(invalid(format!("`{key}` elements must be documents"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                match key.as_str() {
                    "$and" => Filter::And(subs),
                    "$or" => Filter::Or(subs),
                    _ => Filter::Nor(subs),
                }
            }
            k if k.starts_with('$') => return Err(QueryError::OperatorNotAllowed(k.to_owned())),
            k => Filter::Field {
                path: parse_path(k)?,
                conds: parse_conditions(value, limits)?,
            },
        };
        parts.push(part);
    }
    Ok(if parts.len() == 1 {
        parts.remove(0)
    } else {
        Filter::And(parts)
    })
}

/// A field's condition: an operator document, a regex literal, or a value to equal.
fn parse_conditions(value: &Bson, limits: &Limits) -> Result<Vec<Cond>, QueryError> {
    match value {
        Bson::Document(d) if d.keys().any(|k| k.starts_with('$')) => {
            if !d.keys().all(|k| k.starts_with('$')) {
                return Err(invalid("cannot mix operators and fields in one condition"));
            }
            parse_operators(d, limits)
        }
        Bson::RegularExpression(r) => Ok(vec![regex_cond(
            r.pattern.as_str(),
            r.options.as_str(),
            limits,
        )?]),
        v => Ok(vec![Cond::Eq(literal(v)?)]),
    }
}

fn literal(v: &Bson) -> Result<Bson, QueryError> {
    match v {
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
            Err(invalid("JavaScript values are not allowed"))
        }
        Bson::Document(d) if d.keys().any(|k| k.starts_with('$')) => {
            Err(invalid("operators are not allowed inside a value"))
        }
        v => Ok(v.clone()),
    }
}

fn list(v: &Bson, op: &str, limits: &Limits) -> Result<Vec<Bson>, QueryError> {
    let Bson::Array(items) = v else {
        return Err(invalid(format!("`{op}` needs an array")));
    };
    if items.len() > limits.max_list_len {
        return Err(invalid(format!(
            "`{op}` takes at most {} values",
            limits.max_list_len
        )));
    }
    items.iter().map(literal).collect()
}

fn parse_operators(ops: &Document, limits: &Limits) -> Result<Vec<Cond>, QueryError> {
    let mut conds = Vec::with_capacity(ops.len());
    let options = match ops.get("$options") {
        None => None,
        Some(Bson::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid("`$options` must be a string")),
    };
    if options.is_some() && !ops.contains_key("$regex") {
        return Err(invalid("`$options` needs `$regex`"));
    }
    for (op, v) in ops {
        let cond = match op.as_str() {
            "$eq" => Cond::Eq(literal(v)?),
            "$ne" => Cond::Ne(literal(v)?),
            "$gt" => Cond::Cmp(Ordering::Greater, false, literal(v)?),
            "$gte" => Cond::Cmp(Ordering::Greater, true, literal(v)?),
            "$lt" => Cond::Cmp(Ordering::Less, false, literal(v)?),
            "$lte" => Cond::Cmp(Ordering::Less, true, literal(v)?),
            "$in" => Cond::In(list(v, op, limits)?),
            "$nin" => Cond::Nin(list(v, op, limits)?),
            "$exists" => match v {
                Bson::Boolean(b) => Cond::Exists(*b),
                Bson::Int32(i) => Cond::Exists(*i != 0),
                Bson::Int64(i) => Cond::Exists(*i != 0),
                _ => return Err(invalid("`$exists` needs a boolean")),
            },
            "$regex" => match v {
                Bson::String(p) => regex_cond(p, options.unwrap_or(""), limits)?,
                Bson::RegularExpression(r) if options.is_none() => {
                    regex_cond(r.pattern.as_str(), r.options.as_str(), limits)?
                }
                _ => return Err(invalid("`$regex` needs a string pattern")),
            },
            "$options" => continue,
            "$not" => match v {
                Bson::Document(d) if !d.is_empty() && d.keys().all(|k| k.starts_with('$')) => {
                    Cond::Not(parse_operators(d, limits)?)
                }
                Bson::RegularExpression(r) => Cond::Not(vec![regex_cond(
                    r.pattern.as_str(),
                    r.options.as_str(),
                    limits,
                )?]),
                _ => return Err(invalid("`$not` needs an operator document or a regex")),
            },
            other => return Err(QueryError::OperatorNotAllowed(other.to_owned())),
        };
        conds.push(cond);
    }
    Ok(conds)
}

fn regex_cond(pattern: &str, options: &str, limits: &Limits) -> Result<Cond, QueryError> {
    if pattern.len() > limits.max_regex_len {
        return Err(invalid(format!(
            "`$regex` pattern longer than {} bytes",
            limits.max_regex_len
        )));
    }
    let mut b = RegexBuilder::new(pattern);
    for c in options.chars() {
        match c {
            'i' => b.case_insensitive(true),
            'm' => b.multi_line(true),
            's' => b.dot_matches_new_line(true),
            'x' => b.ignore_whitespace(true),
            _ => return Err(invalid(format!("`$options` flag `{c}` is not allowed"))),
        };
    }
    // The regex crate runs in linear time (no catastrophic backtracking); the size
    // limit bounds what a hostile pattern can make it allocate.
    let re = b
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| invalid(format!("bad `$regex`: {e}")))?;
    Ok(Cond::Regex(Box::new(re)))
}

/// Equality against the values a path reached: an array matches if it equals the
/// operand or any of its elements does; a missing field equals `null`.
fn eq_any(values: &[&Bson], operand: &Bson) -> bool {
    if values.is_empty() {
        return matches!(operand, Bson::Null);
    }
    values.iter().any(|v| {
        values_equal(v, operand)
            || matches!(v, Bson::Array(items) if items.iter().any(|x| values_equal(x, operand)))
    })
}

/// The values a comparison looks at: each reached value, and the elements of arrays.
fn flattened<'a>(values: &[&'a Bson]) -> Vec<&'a Bson> {
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        out.push(*v);
        if let Bson::Array(items) = v {
            out.extend(items.iter());
        }
    }
    out
}

impl Cond {
    fn matches(&self, values: &[&Bson]) -> bool {
        match self {
            Cond::Eq(x) => eq_any(values, x),
            Cond::Ne(x) => !eq_any(values, x),
            Cond::In(xs) => xs.iter().any(|x| eq_any(values, x)),
            Cond::Nin(xs) => !xs.iter().any(|x| eq_any(values, x)),
            Cond::Exists(want) => values.is_empty() != *want,
            Cond::Cmp(dir, or_equal, x) => {
                // `$gte: null` / `$lte: null` match null and missing, like `$eq: null`.
                if *or_equal && matches!(x, Bson::Null) && eq_any(values, x) {
                    return true;
                }
                flattened(values)
                    .into_iter()
                    .any(|v| match compare_same_bracket(v, x) {
                        Some(o) => o == *dir || (*or_equal && o == Ordering::Equal),
                        None => false,
                    })
            }
            Cond::Regex(re) => flattened(values).into_iter().any(|v| match v {
                Bson::String(s) | Bson::Symbol(s) => re.is_match(s),
                _ => false,
            }),
            Cond::Not(conds) => !conds.iter().all(|c| c.matches(values)),
        }
    }

    /// Used by `$pull`: does a single array element satisfy every condition?
    pub(crate) fn matches_value(conds: &[Cond], v: &Bson) -> bool {
        conds.iter().all(|c| c.matches(&[v]))
    }
}

pub(crate) fn parse_conditions_for_pull(
    value: &Bson,
    limits: &Limits,
) -> Result<Vec<Cond>, QueryError> {
    parse_conditions(value, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{DateTime, bson, doc};

    fn f(d: Document) -> Filter {
        Filter::parse(&d, &Limits::default()).expect("valid filter")
    }

    fn err(d: Document) -> QueryError {
        Filter::parse(&d, &Limits::default()).expect_err("must be rejected")
    }

    #[test]
    fn injection_operators_are_rejected() {
        for op in [
            "$where",
            "$function",
            "$expr",
            "$accumulator",
            "$text",
            "$comment",
            "$jsonSchema",
        ] {
            assert_eq!(
                err(doc! {op: "1"}),
                QueryError::OperatorNotAllowed(op.into()),
                "{op}"
            );
        }
        for op in [
            "$where",
            "$function",
            "$elemMatch",
            "$size",
            "$type",
            "$mod",
            "$all",
            "$foo",
        ] {
            assert_eq!(
                err(doc! {"a": {op: "1"}}),
                QueryError::OperatorNotAllowed(op.into()),
                "{op}"
            );
        }
        // Nested under logical operators too.
        assert!(matches!(
            err(doc! {"$or": [{"a": 1}, {"$where": "sleep(1000)"}]}),
            QueryError::OperatorNotAllowed(_)
        ));
        assert!(matches!(
            err(doc! {"a": {"$not": {"$expr": 1}}}),
            QueryError::OperatorNotAllowed(_)
        ));
        assert!(
            err(doc! {"a": {"$eq": {"$gt": 1}}})
                .to_string()
                .contains("operators")
        );
        assert!(
            err(doc! {"a": {"$gt": 1, "b": 2}})
                .to_string()
                .contains("mix")
        );
        assert!(
            err(doc! {"a": bson::JavaScriptCodeWithScope { code: "x".into(), scope: doc!{} }})
                .to_string()
                .contains("JavaScript")
        );
    }

    #[test]
    fn depth_bomb_is_rejected() {
        let mut d = doc! {"a": 1};
        for _ in 0..100 {
            d = doc! {"$and": [d]};
        }
        assert!(matches!(err(d), QueryError::TooDeep(32)));
    }

    #[test]
    fn regex_is_capped_and_options_allow_listed() {
        assert!(
            err(doc! {"t": {"$regex": "a".repeat(300)}})
                .to_string()
                .contains("longer")
        );
        assert!(
            err(doc! {"t": {"$regex": "a", "$options": "g"}})
                .to_string()
                .contains("flag")
        );
        assert!(
            err(doc! {"t": {"$options": "i"}})
                .to_string()
                .contains("needs")
        );
        let r = f(doc! {"t": {"$regex": "^wr", "$options": "i"}});
        assert!(r.matches(&doc! {"t": "Write docs"}));
        assert!(!r.matches(&doc! {"t": "rewrite"}));
        assert!(!r.matches(&doc! {"t": 5}));
    }

    #[test]
    fn comparison_operators() {
        let d = doc! {"n": 5, "s": "m", "t": DateTime::from_millis(1000)};
        assert!(f(doc! {"n": {"$gt": 4}}).matches(&d));
        assert!(f(doc! {"n": {"$gte": 5.0}}).matches(&d));
        assert!(!f(doc! {"n": {"$lt": 5}}).matches(&d));
        assert!(f(doc! {"n": {"$lte": 5_i64}}).matches(&d));
        assert!(f(doc! {"n": {"$gt": 1, "$lt": 10}}).matches(&d));
        assert!(!f(doc! {"n": {"$gt": 1, "$lt": 3}}).matches(&d));
        assert!(f(doc! {"t": {"$lt": DateTime::from_millis(2000)}}).matches(&d));
        // Different type bracket never matches: {"$gt": ""} on a number is false.
        assert!(!f(doc! {"n": {"$gt": ""}}).matches(&d));
        assert!(f(doc! {"s": {"$gt": ""}}).matches(&d));
        assert!(f(doc! {"n": {"$ne": 4}}).matches(&d));
        assert!(!f(doc! {"n": {"$ne": 5}}).matches(&d));
    }

    #[test]
    fn arrays_and_missing_fields() {
        let d = doc! {"tags": ["a", "b"], "x": Bson::Null};
        assert!(f(doc! {"tags": "a"}).matches(&d));
        assert!(f(doc! {"tags": ["a", "b"]}).matches(&d));
        assert!(!f(doc! {"tags": "c"}).matches(&d));
        assert!(f(doc! {"tags": {"$in": ["c", "b"]}}).matches(&d));
        assert!(!f(doc! {"tags": {"$nin": ["c", "b"]}}).matches(&d));
        assert!(f(doc! {"tags": {"$ne": "c"}}).matches(&d));
        assert!(f(doc! {"missing": Bson::Null}).matches(&d));
        assert!(f(doc! {"x": Bson::Null}).matches(&d));
        assert!(f(doc! {"missing": {"$exists": false}}).matches(&d));
        assert!(f(doc! {"x": {"$exists": true}}).matches(&d));
        assert!(f(doc! {"missing": {"$ne": 1}}).matches(&d));
        assert!(f(doc! {"missing": {"$nin": [1]}}).matches(&d));
        assert!(!f(doc! {"missing": {"$gt": 1}}).matches(&d));
    }

    #[test]
    fn logical_operators() {
        let d = doc! {"a": 1, "b": 2};
        assert!(f(doc! {"$and": [{"a": 1}, {"b": 2}]}).matches(&d));
        assert!(!f(doc! {"$and": [{"a": 1}, {"b": 3}]}).matches(&d));
        assert!(f(doc! {"$or": [{"a": 9}, {"b": 2}]}).matches(&d));
        assert!(!f(doc! {"$nor": [{"a": 9}, {"b": 2}]}).matches(&d));
        assert!(f(doc! {"a": {"$not": {"$gt": 5}}}).matches(&d));
        assert!(!f(doc! {"a": {"$not": {"$lt": 5}}}).matches(&d));
        assert!(f(doc! {"zz": {"$not": {"$gt": 5}}}).matches(&d));
        assert!(f(doc! {}).matches(&d));
        assert!(err(doc! {"$or": []}).to_string().contains("1-"));
        assert!(err(doc! {"$or": {"a": 1}}).to_string().contains("array"));
    }

    #[test]
    fn embedded_documents_and_paths() {
        let d = doc! {"o": {"n": "x", "k": [{"v": 1}, {"v": 2}]}};
        assert!(f(doc! {"o.n": "x"}).matches(&d));
        assert!(f(doc! {"o.k.v": 2}).matches(&d));
        assert!(f(doc! {"o": {"n": "x", "k": [{"v": 1}, {"v": 2}]}}).matches(&d));
        assert!(!f(doc! {"o": {"k": [{"v": 1}, {"v": 2}], "n": "x"}}).matches(&d));
        assert!(err(doc! {"o..n": 1}).to_string().contains("not allowed"));
        assert!(err(doc! {"o.$n": 1}).to_string().contains("not allowed"));
    }

    #[test]
    fn id_equality_fast_path() {
        assert_eq!(id_equality(&doc! {"_id": "x"}), Some(&bson!("x")));
        assert_eq!(id_equality(&doc! {"_id": {"$eq": 3}}), Some(&bson!(3)));
        assert_eq!(id_equality(&doc! {"_id": {"$gt": 3}}), None);
        assert_eq!(id_equality(&doc! {"_id": "x", "a": 1}), None);
        assert_eq!(id_equality(&doc! {"_id": ["x"]}), None);
    }
}
