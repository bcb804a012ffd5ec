//! The firewall's cost is bounded whatever a (hostile) component sends: any filter up
//! to the document size limit, however many `$regex` conditions it holds and
//! whatever their patterns, is either refused or parsed with its compiled patterns
//! under `Limits::max_regex_compiled_bytes` (and so far under 16 MiB). Time is
//! measured in `bench/regex-cost.sh`, not here: machines are noisy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bson::{Bson, Document};
use doc_query::{Filter, Limits};
use proptest::prelude::*;

/// Patterns chosen to be expensive: large Unicode classes under case folding,
/// counted repetitions, nested quantifiers (refused), alternations.
fn pattern() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        r"\w",
        r"\s",
        r"\d",
        r"\W",
        r".",
        r"[a-z]",
        r"[^x]",
        r"a",
        r"\b",
        r"(?:ab)",
        r"(\w+\s*)",
        r"(a|aa)",
        r"[\p{L}]",
    ]);
    let quant = prop::sample::select(vec!["", "+", "*", "?", "{30}", "{1,100}", "{200}"]);
    prop::collection::vec((atoms, quant), 1..6).prop_map(|parts| {
        let mut p: String = parts.into_iter().map(|(a, q)| format!("{a}{q}")).collect();
        p.truncate(256);
        p
    })
}

fn condition() -> impl Strategy<Value = Bson> {
    (pattern(), prop::sample::select(vec!["", "i", "is", "ix"])).prop_map(|(p, o)| {
        let mut d = Document::new();
        d.insert("$regex", p);
        if !o.is_empty() {
            d.insert("$options", o);
        }
        Bson::Document(d)
    })
}

/// Thousands of fields, each a regex condition, some under `$not` or `$or`.
fn filter() -> impl Strategy<Value = Document> {
    prop::collection::vec((condition(), 0u8..3), 1..3000).prop_map(|conds| {
        let mut d = Document::new();
        let mut or = Vec::new();
        for (i, (c, shape)) in conds.into_iter().enumerate() {
            match shape {
                0 => {
                    d.insert(format!("f{i}"), c);
                }
                1 => {
                    let mut not = Document::new();
                    not.insert("$not", c);
                    d.insert(format!("f{i}"), not);
                }
                _ => {
                    let mut one = Document::new();
                    one.insert(format!("f{i}"), c);
                    or.push(Bson::Document(one));
                }
            }
        }
        if !or.is_empty() {
            or.truncate(1000);
            d.insert("$or", or);
        }
        d
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_regex_heavy_filter_is_refused_or_bounded(d in filter()) {
        let limits = Limits::default();
        let size = d.to_vec().expect("encodes").len();
        prop_assume!(size <= limits.max_document_bytes);
        match Filter::parse(&d, &limits) {
            Ok(f) => {
                prop_assert!(f.regex_memory() <= limits.max_regex_compiled_bytes,
                    "{} bytes compiled", f.regex_memory());
            }
            Err(e) => prop_assert!(matches!(e, doc_query::QueryError::Invalid(_)), "{e:?}"),
        }
    }
}
