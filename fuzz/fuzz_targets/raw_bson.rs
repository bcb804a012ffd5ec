//! The raw-BSON size and depth check (`doc_query::check_encoded`): whatever the bytes,
//! it returns (no panic, no deep recursion), and what it accepts decodes into a
//! document no deeper than the limit, so the recursive code after it is safe.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = doc_query::Limits::default();
    if doc_query::check_encoded(data, &limits).is_ok() {
        if let Ok(doc) = bson::Document::from_reader(data) {
            assert!(depth(&bson::Bson::Document(doc)) <= limits.max_depth, "accepted a document deeper than the limit");
        }
    }
    // decode is check_encoded + from_reader: it must agree with the two above.
    let _ = doc_query::decode(data, &limits);
});

fn depth(v: &bson::Bson) -> usize {
    match v {
        bson::Bson::Document(d) => 1 + d.values().map(depth).max().unwrap_or(0),
        bson::Bson::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
