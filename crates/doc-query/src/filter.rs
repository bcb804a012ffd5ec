//! Filters: parse (= validate against the allow-list) and match.

use crate::eval::{compare_same_bracket, resolve, sort_bytes, values_equal};
use crate::{Limits, QueryError, check_doc_depth, invalid, not_allowed, parse_path};
use bson::{Bson, Document};
use regex_automata::meta;
use regex_automata::util::syntax;
use std::cell::Cell;
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
    Regex(Box<Pattern>),
    Not(Vec<Cond>),
}

/// A `$regex` condition: the compiled matcher and the source it was built from, so
/// the condition can be written back out exactly (`Filter::to_document`).
#[derive(Debug, Clone)]
pub struct Pattern {
    re: meta::Regex,
    pattern: String,
    options: String,
}

impl Filter {
    /// Parse and validate a filter document. An empty document matches everything.
    pub fn parse(doc: &Document, limits: &Limits) -> Result<Self, QueryError> {
        check_doc_depth(doc, limits.max_depth)?;
        parse_doc(doc, &Ctx::new(limits))
    }

    /// The filter as a document, rebuilt from the parsed form: only what the
    /// allow-list understood is in it. This is what a store that speaks MongoDB's
    /// language sends, never the document the guest sent ("parse, don't validate").
    /// Field conditions are written with explicit operators (`{a: {$gt: 1}}`), except
    /// a lone equality on a scalar, written as the value (`{a: 1}`, see `field_condition`).
    pub fn to_document(&self) -> Document {
        match self {
            Filter::And(parts) => {
                // `And` is associative: nested ones are flattened, and fields with
                // distinct paths are written as one document (the shape `{a: .., b: ..}`
                // parses from), so rebuilding is a fixpoint.
                fn flatten<'a>(parts: &'a [Filter], out: &mut Vec<&'a Filter>) {
                    for p in parts {
                        match p {
                            Filter::And(inner) => flatten(inner, out),
                            p => out.push(p),
                        }
                    }
                }
                let mut flat = Vec::new();
                flatten(parts, &mut flat);
                let mut merged = Document::new();
                for part in &flat {
                    match part {
                        Filter::Field { path, conds } if !merged.contains_key(path.join(".")) => {
                            merged.insert(path.join("."), field_condition(conds));
                        }
                        _ => {
                            let items: Vec<Bson> = flat
                                .iter()
                                .map(|p| Bson::Document(p.to_document()))
                                .collect();
                            let mut d = Document::new();
                            d.insert("$and", items);
                            return d;
                        }
                    }
                }
                merged
            }
            Filter::Or(parts) => logical("$or", parts),
            Filter::Nor(parts) => logical("$nor", parts),
            Filter::Field { path, conds } => {
                let mut d = Document::new();
                d.insert(path.join("."), field_condition(conds));
                d
            }
        }
    }

    /// The heap the filter's compiled patterns hold (the bound
    /// `Limits::max_regex_compiled_bytes` keeps).
    pub fn regex_memory(&self) -> usize {
        fn conds(cs: &[Cond]) -> usize {
            cs.iter()
                .map(|c| match c {
                    Cond::Regex(p) => p.re.memory_usage(),
                    Cond::Not(inner) => conds(inner),
                    _ => 0,
                })
                .sum()
        }
        match self {
            Filter::And(parts) | Filter::Or(parts) | Filter::Nor(parts) => {
                parts.iter().map(Filter::regex_memory).sum()
            }
            Filter::Field { conds: cs, .. } => conds(cs),
        }
    }

    /// Whether this is the empty filter, which matches everything.
    pub fn is_empty(&self) -> bool {
        matches!(self, Filter::And(parts) if parts.is_empty())
    }

    /// If the filter is exactly `_id` equal to a scalar, that id: stores use it to
    /// turn a scan into a key lookup.
    pub fn id_equality(&self) -> Option<&Bson> {
        match self {
            Filter::Field { path, conds } if path.len() == 1 && path[0] == "_id" => {
                match conds.as_slice() {
                    [Cond::Eq(v)]
                        if !matches!(
                            v,
                            Bson::Document(_) | Bson::Array(_) | Bson::RegularExpression(_)
                        ) =>
                    {
                        Some(v)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Inclusive bounds, as [`sort_bytes`] encodings, on the sort value at top-level
    /// `field` of every document this filter matches whose value there has an
    /// encoding: where a store reading an index on `field` may start and stop (it
    /// still applies the whole filter to what it reads). `None` on a side: no bound
    /// (the filter says nothing there, or nothing with an encoding).
    pub fn sort_bounds(&self, field: &str) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        type Bounds = (Option<Vec<u8>>, Option<Vec<u8>>);
        // Both sides must hold: the tighter bound of each.
        fn both((lo, hi): Bounds, (l, h): Bounds) -> Bounds {
            let tighter = |a: Option<Vec<u8>>, b: Option<Vec<u8>>, pick_max: bool| match (a, b) {
                (Some(a), Some(b)) => Some(if (a > b) == pick_max { a } else { b }),
                (a, b) => a.or(b),
            };
            (tighter(lo, l, true), tighter(hi, h, false))
        }
        match self {
            Filter::And(parts) => parts
                .iter()
                .map(|p| p.sort_bounds(field))
                .fold((None, None), both),
            // Either side may hold: the looser bound, and none if one part has none.
            Filter::Or(parts) if !parts.is_empty() => {
                let all: Vec<Bounds> = parts.iter().map(|p| p.sort_bounds(field)).collect();
                let lo = all.iter().map(|b| b.0.clone()).collect::<Option<Vec<_>>>();
                let hi = all.iter().map(|b| b.1.clone()).collect::<Option<Vec<_>>>();
                (
                    lo.and_then(|v| v.into_iter().min()),
                    hi.and_then(|v| v.into_iter().max()),
                )
            }
            Filter::Field { path, conds } if path.len() == 1 && path[0] == field => conds
                .iter()
                .map(|c| match c {
                    Cond::Eq(x) => (sort_bytes(x), sort_bytes(x)),
                    Cond::Cmp(Ordering::Greater, _, x) => (sort_bytes(x), None),
                    Cond::Cmp(_, _, x) => (None, sort_bytes(x)),
                    _ => (None, None),
                })
                .fold((None, None), both),
            _ => (None, None),
        }
    }

    /// The top-level field of every path the filter tests, into `out` (repeats
    /// possible): what a document must carry for [`Filter::matches`] to answer as it
    /// would on the whole document.
    pub fn top_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Filter::And(fs) | Filter::Or(fs) | Filter::Nor(fs) => {
                fs.iter().for_each(|f| f.top_fields(out));
            }
            Filter::Field { path, .. } => out.extend(path.first().map(String::as_str)),
        }
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

fn logical(op: &str, parts: &[Filter]) -> Document {
    let items: Vec<Bson> = parts
        .iter()
        .map(|p| Bson::Document(p.to_document()))
        .collect();
    let mut d = Document::new();
    d.insert(op, items);
    d
}

/// One field's conditions as a filter value: a lone equality on a scalar is
/// written as the plain value (`{_id: x}`), everything else as an operator
/// document. The two mean the same to MongoDB, but FerretDB 1.24 pushes only the
/// plain form down to its backend: `{_id: {$eq: x}}` scanned the collection
/// (2.6 ms vs 0.7 ms per lookup in 50 documents, measured with pymongo). Documents,
/// arrays and regexes keep `$eq`: as plain values they would read as operators,
/// element matches or patterns.
fn field_condition(conds: &[Cond]) -> Bson {
    match conds {
        [
            Cond::Eq(
                v @ (Bson::ObjectId(_)
                | Bson::String(_)
                | Bson::Int32(_)
                | Bson::Int64(_)
                | Bson::Double(_)
                | Bson::Boolean(_)
                | Bson::DateTime(_)),
            ),
        ] => v.clone(),
        conds => Bson::Document(conds_document(conds)),
    }
}

/// One field's conditions as an operator document.
fn conds_document(conds: &[Cond]) -> Document {
    let mut d = Document::new();
    for c in conds {
        c.write(&mut d);
    }
    d
}

fn parse_doc(doc: &Document, cx: &Ctx) -> Result<Filter, QueryError> {
    let limits = cx.limits;
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
                        Bson::Document(d) => parse_doc(d, cx),
                        _ => Err(invalid(format!("`{key}` elements must be documents"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                match key.as_str() {
                    "$and" => Filter::And(subs),
                    "$or" => Filter::Or(subs),
                    _ => Filter::Nor(subs),
                }
            }
            k if k.starts_with('$') => return Err(not_allowed(k)),
            k => Filter::Field {
                path: parse_path(k)?,
                conds: parse_conditions(value, cx)?,
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
fn parse_conditions(value: &Bson, cx: &Ctx) -> Result<Vec<Cond>, QueryError> {
    match value {
        Bson::Document(d) if d.keys().any(|k| k.starts_with('$')) => {
            if !d.keys().all(|k| k.starts_with('$')) {
                return Err(invalid("cannot mix operators and fields in one condition"));
            }
            parse_operators(d, cx)
        }
        Bson::RegularExpression(r) => Ok(vec![regex_cond(
            r.pattern.as_str(),
            r.options.as_str(),
            cx,
        )?]),
        v => Ok(vec![Cond::Eq(literal(v)?)]),
    }
}

/// A value to compare with. Checked at every depth: MongoDB gives meaning to a
/// `$`-key or a regex inside some values (a regex in `$in` is a pattern match, a
/// document in `$pull` is a query), and the embedded store would compare them as
/// plain values, so the two stores would disagree. Patterns go through `$regex`.
fn literal(v: &Bson) -> Result<Bson, QueryError> {
    fn check(v: &Bson) -> Result<(), QueryError> {
        match v {
            Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
                Err(invalid("JavaScript values are not allowed"))
            }
            Bson::RegularExpression(_) => Err(invalid(
                "regular expressions are allowed only as `$regex` (or a field's whole value)",
            )),
            Bson::Document(d) => d.iter().try_for_each(|(k, v)| {
                if k.starts_with('$') {
                    Err(invalid("operators are not allowed inside a value"))
                } else {
                    check(v)
                }
            }),
            Bson::Array(items) => items.iter().try_for_each(check),
            _ => Ok(()),
        }
    }
    // Depth was bounded by the caller's `check_doc_depth` before parsing began.
    check(v)?;
    Ok(v.clone())
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

fn parse_operators(ops: &Document, cx: &Ctx) -> Result<Vec<Cond>, QueryError> {
    let limits = cx.limits;
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
                Bson::String(p) => regex_cond(p, options.unwrap_or(""), cx)?,
                Bson::RegularExpression(r) if options.is_none() => {
                    regex_cond(r.pattern.as_str(), r.options.as_str(), cx)?
                }
                _ => return Err(invalid("`$regex` needs a string pattern")),
            },
            "$options" => continue,
            "$not" => match v {
                Bson::Document(d) if !d.is_empty() && d.keys().all(|k| k.starts_with('$')) => {
                    Cond::Not(parse_operators(d, cx)?)
                }
                Bson::RegularExpression(r) => Cond::Not(vec![regex_cond(
                    r.pattern.as_str(),
                    r.options.as_str(),
                    cx,
                )?]),
                _ => return Err(invalid("`$not` needs an operator document or a regex")),
            },
            other => return Err(not_allowed(other)),
        };
        conds.push(cond);
    }
    Ok(conds)
}

/// What one parse (a filter, or an update's `$pull` conditions) has spent so far on
/// patterns: their number and the compiled size they may still use. Compiling a
/// pattern is the one costly step of parsing (a Unicode-aware `\w` with `i` is a
/// large automaton), and a filter may hold thousands of fields.
pub(crate) struct Ctx<'a> {
    pub(crate) limits: &'a Limits,
    regexes: Cell<usize>,
    compiled_left: Cell<usize>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(limits: &'a Limits) -> Self {
        Self {
            limits,
            regexes: Cell::new(0),
            compiled_left: Cell::new(limits.max_regex_compiled_bytes),
        }
    }
}

fn regex_cond(pattern: &str, options: &str, cx: &Ctx) -> Result<Cond, QueryError> {
    let limits = cx.limits;
    if pattern.len() > limits.max_regex_len {
        return Err(invalid(format!(
            "`$regex` pattern longer than {} bytes",
            limits.max_regex_len
        )));
    }
    let count = cx.regexes.get() + 1;
    if count > limits.max_regexes {
        return Err(invalid(format!(
            "at most {} `$regex` conditions per query",
            limits.max_regexes
        )));
    }
    cx.regexes.set(count);
    let mut syn = syntax::Config::new();
    for c in options.chars() {
        syn = match c {
            'i' => syn.case_insensitive(true),
            'm' => syn.multi_line(true),
            's' => syn.dot_matches_new_line(true),
            'x' => syn.ignore_whitespace(true),
            _ => return Err(invalid(format!("`$options` flag `{c}` is not allowed"))),
        };
    }
    linear_in_both_engines(pattern, options)?;
    // The regex engine runs in linear time; the size limit bounds what this pattern
    // may allocate, from what the whole query may still compile. Only the NFA is
    // built up front (the PikeVM and the lazy DFA search with it, the lazy DFA's
    // cache bounded on its own): the full and one-pass DFAs, which other crates'
    // features may enable in the same build, would each add their own size.
    let left = cx.compiled_left.get();
    let re = meta::Builder::new()
        .syntax(syn)
        .configure(
            meta::Config::new()
                .nfa_size_limit(Some(left))
                .dfa(false)
                .onepass(false)
                .backtrack(false)
                .hybrid_cache_capacity(left.min(1 << 20)),
        )
        .build(pattern)
        .map_err(|e| {
            if e.size_limit().is_some() {
                invalid(format!(
                    "`$regex` patterns of one query may compile to at most {} bytes",
                    limits.max_regex_compiled_bytes
                ))
            } else {
                invalid(format!("bad `$regex`: {e}"))
            }
        })?;
    cx.compiled_left.set(left.saturating_sub(re.memory_usage()));
    Ok(Cond::Regex(Box::new(Pattern {
        re,
        pattern: pattern.to_owned(),
        options: options.to_owned(),
    })))
}

/// The patterns accepted are those that mean the same and run in linear time both
/// here (Rust's regex crate: always linear) and in MongoDB (PCRE, a backtracking
/// engine). PCRE backtracks exponentially on a repetition of something that can
/// match in more than one way: `(a+)+`, `(a|aa)+`, `(\w+\s*){30}`. So a repeated
/// group may not itself hold a repetition or an alternation. Back-references and
/// look-around never get here: Rust's parser refuses them. docs/security.md lists
/// what is accepted.
fn linear_in_both_engines(pattern: &str, options: &str) -> Result<(), QueryError> {
    use regex_syntax::ast::{Ast, parse::ParserBuilder};
    let ast = ParserBuilder::new()
        .ignore_whitespace(options.contains('x'))
        .nest_limit(64)
        .build()
        .parse(pattern)
        .map_err(|e| invalid(format!("bad `$regex`: {e}")))?;
    // Whether `ast` can match in more than one way by itself: it repeats or
    // alternates (a single-character class does neither).
    fn ambiguous(ast: &Ast) -> bool {
        match ast {
            Ast::Repetition(_) | Ast::Alternation(_) => true,
            Ast::Group(g) => ambiguous(&g.ast),
            Ast::Concat(c) => c.asts.iter().any(ambiguous),
            _ => false,
        }
    }
    fn check(ast: &Ast) -> Result<(), QueryError> {
        match ast {
            Ast::Repetition(r) => {
                if ambiguous(&r.ast) {
                    return Err(invalid(
                        "`$regex`: a repeated group may not repeat or alternate inside (nested quantifiers backtrack exponentially in MongoDB)",
                    ));
                }
                check(&r.ast)
            }
            Ast::Group(g) => check(&g.ast),
            Ast::Concat(c) => c.asts.iter().try_for_each(check),
            Ast::Alternation(a) => a.asts.iter().try_for_each(check),
            _ => Ok(()),
        }
    }
    check(&ast)
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
            Cond::Regex(p) => flattened(values).into_iter().any(|v| match v {
                Bson::String(s) | Bson::Symbol(s) => p.re.is_match(s),
                _ => false,
            }),
            Cond::Not(conds) => !conds.iter().all(|c| c.matches(values)),
        }
    }

    /// Add this condition to an operator document.
    fn write(&self, d: &mut Document) {
        let list = |xs: &[Bson]| Bson::Array(xs.to_vec());
        match self {
            Cond::Eq(x) => d.insert("$eq", x.clone()),
            Cond::Ne(x) => d.insert("$ne", x.clone()),
            Cond::Cmp(dir, or_equal, x) => {
                let op = match (dir, or_equal) {
                    (Ordering::Greater, false) => "$gt",
                    (Ordering::Greater, true) => "$gte",
                    (_, false) => "$lt",
                    (_, true) => "$lte",
                };
                d.insert(op, x.clone())
            }
            Cond::In(xs) => d.insert("$in", list(xs)),
            Cond::Nin(xs) => d.insert("$nin", list(xs)),
            Cond::Exists(b) => d.insert("$exists", *b),
            Cond::Regex(p) => {
                let r = d.insert("$regex", p.pattern.as_str());
                if p.options.is_empty() {
                    r
                } else {
                    d.insert("$options", p.options.as_str())
                }
            }
            Cond::Not(conds) => d.insert("$not", conds_document(conds)),
        };
    }

    /// The value form MongoDB gives `$pull` for a plain value or a pattern.
    pub(crate) fn pull_value(conds: &[Cond]) -> Bson {
        match conds {
            // A document value would read as a query over the elements: keep `$eq`.
            [Cond::Eq(v)] if !matches!(v, Bson::Document(_)) => v.clone(),
            [Cond::Regex(p)] => match (
                bson::raw::CString::try_from(p.pattern.as_str()),
                bson::raw::CString::try_from(p.options.as_str()),
            ) {
                (Ok(pattern), Ok(options)) => {
                    Bson::RegularExpression(bson::Regex { pattern, options })
                }
                // A NUL byte cannot be in a BSON regex: keep the operator form.
                _ => Bson::Document(conds_document(conds)),
            },
            conds => Bson::Document(conds_document(conds)),
        }
    }

    /// Used by `$pull`: does a single array element satisfy every condition?
    pub(crate) fn matches_value(conds: &[Cond], v: &Bson) -> bool {
        conds.iter().all(|c| c.matches(&[v]))
    }
}

/// A `$pull` condition. As in MongoDB: a document of fields is a query over the
/// elements (which must be documents), anything else (a value, a pattern, an
/// operator document) is a condition on each element's value.
#[derive(Debug, Clone)]
pub(crate) enum PullCondition {
    Value(Vec<Cond>),
    Query(Filter),
}

pub(crate) fn parse_pull(value: &Bson, cx: &Ctx) -> Result<PullCondition, QueryError> {
    match value {
        Bson::Document(d) if d.is_empty() => Err(invalid("`$pull` needs a condition")),
        Bson::Document(d) if !d.keys().any(|k| k.starts_with('$')) => {
            Ok(PullCondition::Query(parse_doc(d, cx)?))
        }
        v => Ok(PullCondition::Value(parse_conditions(v, cx)?)),
    }
}

impl PullCondition {
    /// Does this array element go?
    pub(crate) fn removes(&self, element: &Bson) -> bool {
        match (self, element) {
            (PullCondition::Value(conds), v) => Cond::matches_value(conds, v),
            (PullCondition::Query(f), Bson::Document(d)) => f.matches(d),
            (PullCondition::Query(_), _) => false,
        }
    }

    pub(crate) fn to_bson(&self) -> Bson {
        match self {
            PullCondition::Value(conds) => Cond::pull_value(conds),
            PullCondition::Query(f) => Bson::Document(f.to_document()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{DateTime, bson, doc};

    fn regex_value(pattern: &str, options: &str) -> Bson {
        Bson::RegularExpression(bson::Regex {
            pattern: pattern.try_into().unwrap(),
            options: options.try_into().unwrap(),
        })
    }

    fn f(d: Document) -> Filter {
        Filter::parse(&d, &Limits::default()).expect("valid filter")
    }

    fn err(d: Document) -> QueryError {
        Filter::parse(&d, &Limits::default()).expect_err("must be rejected")
    }

    #[test]
    fn patterns_that_backtrack_in_pcre_are_refused() {
        for bad in [
            r"(a+)+$",
            r"^(a|aa)+$",
            r"(\w+\s*){30}",
            r"(?:x*y?)*",
            r"((ab)*c)+",
            r"(a|b)*",
        ] {
            let e = err(doc! {"t": {"$regex": bad}});
            assert!(
                matches!(&e, QueryError::Invalid(m) if m.contains("nested quantifiers")),
                "{bad}: {e:?}"
            );
        }
        for good in [
            r"^wr",
            r"a+b*c?",
            r"[ab]+",
            r"(?:abc){3}",
            r"(ab)+",
            r"\d{4}-\d{2}",
            r"foo|bar",
            r"(foo|bar)baz",
        ] {
            f(doc! {"t": {"$regex": good}});
        }
    }

    #[test]
    fn a_query_holds_a_bounded_number_of_patterns() {
        let limits = Limits::default();
        let mut d = Document::new();
        for i in 0..limits.max_regexes {
            d.insert(format!("f{i}"), doc! {"$regex": "^x"});
        }
        f(d.clone());
        d.insert("one_more", regex_value("^y", ""));
        assert!(matches!(err(d), QueryError::Invalid(m) if m.contains("at most 16")));
        // `$not` and `$or` branches count too.
        let mut or = Vec::new();
        for _ in 0..=limits.max_regexes {
            or.push(Bson::Document(doc! {"t": {"$not": regex_value("^x", "")}}));
        }
        err(doc! {"$or": or});
    }

    #[test]
    fn the_patterns_of_a_query_share_one_compiled_size_budget() {
        // Each `\w{40}` with `i` is a large Unicode automaton: a few fit, then the
        // budget refuses, and what was compiled stays under it.
        let limits = Limits::default();
        let mut d = Document::new();
        let mut refused = false;
        for i in 0..limits.max_regexes {
            d.insert(format!("f{i}"), doc! {"$regex": r"\w{40}", "$options": "i"});
            match Filter::parse(&d, &limits) {
                Ok(filter) => assert!(filter.regex_memory() <= limits.max_regex_compiled_bytes),
                Err(QueryError::Invalid(m)) if m.contains("compile to at most") => {
                    refused = true;
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(refused, "16 large patterns must not all fit");
    }

    #[test]
    fn operator_names_in_errors_are_cut() {
        let long = format!("${}", "x".repeat(100_000));
        let e = err(doc! {long: 1});
        assert!(e.to_string().len() < 120, "{}", e.to_string().len());
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
        assert_eq!(f(doc! {"_id": "x"}).id_equality(), Some(&bson!("x")));
        assert_eq!(f(doc! {"_id": {"$eq": 3}}).id_equality(), Some(&bson!(3)));
        assert_eq!(f(doc! {"_id": {"$gt": 3}}).id_equality(), None);
        assert_eq!(f(doc! {"_id": "x", "a": 1}).id_equality(), None);
        assert_eq!(f(doc! {"_id": ["x"]}).id_equality(), None);
    }

    /// Finding 4 of the hardening review: regexes and `$`-keys hidden inside values.
    #[test]
    fn values_hide_no_operators_or_patterns_at_any_depth() {
        let re = regex_value(&"a".repeat(5000), "iu");
        for bad in [
            doc! {"title": {"$in": [re.clone()]}},
            doc! {"title": {"$nin": ["x", re.clone()]}},
            doc! {"title": {"$eq": re.clone()}},
            doc! {"o": {"$eq": {"x": re.clone()}}},
            doc! {"o": {"x": {"$elemMatch": {"$where": "sleep(100)"}}}},
            doc! {"o": {"$in": [{"x": {"y": {"$gt": 1}}}]}},
            doc! {"o": [{"k": {"$expr": {"$function": {}}}}]},
        ] {
            assert!(Filter::parse(&bad, &Limits::default()).is_err(), "{bad:?}");
        }
        // A whole-value regex is a pattern, held to the pattern limits.
        assert!(err(doc! {"t": re}).to_string().contains("longer"));
    }

    #[test]
    fn rebuilt_filters_say_the_same_with_explicit_operators() {
        let cases = [
            (doc! {}, doc! {}),
            // A lone equality on a scalar stays a plain value (FerretDB pushes
            // only that form down); on a document or array it keeps `$eq`.
            (doc! {"a": {"$eq": 1}}, doc! {"a": 1}),
            (doc! {"a": {"$eq": {"b": 1}}}, doc! {"a": {"$eq": {"b": 1}}}),
            (doc! {"a": {"$eq": [1]}}, doc! {"a": {"$eq": [1]}}),
            (doc! {"a": {"$eq": null}}, doc! {"a": {"$eq": null}}),
            (
                doc! {"a": 1, "b": {"$gt": 2, "$lte": 9}},
                doc! {"a": 1, "b": {"$gt": 2, "$lte": 9}},
            ),
            (
                doc! {"t": regex_value("^a", "i")},
                doc! {"t": {"$regex": "^a", "$options": "i"}},
            ),
            (
                doc! {"$or": [{"a": {"$in": [1, 2]}}, {"b": {"$not": {"$exists": true}}}]},
                doc! {"$or": [{"a": {"$in": [1, 2]}}, {"b": {"$not": {"$exists": true}}}]},
            ),
            (
                doc! {"$and": [{"a": 1}, {"a": 2}]},
                doc! {"$and": [{"a": 1}, {"a": 2}]},
            ),
        ];
        for (input, want) in cases {
            let got = f(input.clone()).to_document();
            assert_eq!(got, want, "{input:?}");
            assert_eq!(f(got.clone()).to_document(), got, "a fixpoint");
        }
    }
}
