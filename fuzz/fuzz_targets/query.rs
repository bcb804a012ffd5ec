//! The operator allow-list: filters, updates, sorts and projections parsed from any
//! document the guest can send. Nothing may panic; an accepted filter or update
//! must survive a round trip through its own document form and evaluate against a
//! task without panicking.
#![no_main]

use bson::{Document, doc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = doc_query::Limits::default();
    let Ok(spec) = doc_query::decode(data, &limits) else {
        return;
    };
    let task = doc! {
        "_id": bson::oid::ObjectId::from_bytes([7; 12]), "title": "t", "status": "todo",
        "priority": 3, "tags": ["a", "b"], "version": 1_i64, "owner": {"name": "n"},
    };
    if let Ok(filter) = doc_query::Filter::parse(&spec, &limits) {
        let again = doc_query::Filter::parse(&filter.to_document(), &limits)
            .expect("a parsed filter's document form parses again");
        assert_eq!(filter.matches(&task), again.matches(&task));
    }
    if let Ok(update) = doc_query::Update::parse(&spec, &limits) {
        let mut t = task.clone();
        let _ = update.apply(&mut t);
        doc_query::Update::parse(&update.to_document(), &limits)
            .expect("a parsed update's document form parses again");
    }
    if let Ok(sort) = doc_query::Sort::parse(&spec) {
        let _ = sort.compare(&task, &Document::new());
    }
    if let Ok(p) = doc_query::Projection::parse_checked(&spec, &limits) {
        let _ = p.apply(task);
    }
});
