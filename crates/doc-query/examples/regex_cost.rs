//! The firewall's worst cases, timed: `bench/regex-cost.sh` runs this in release and
//! fails past 50 ms or 16 MiB for one filter. Each case is a filter a hostile
//! component could send, up to the 1 MiB document limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bson::{Bson, Document, doc};
use doc_query::{Filter, Limits};
use std::time::Instant;

/// Start measuring the peak anew (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory of this process since the last reset, in KiB (VmHWM).
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn fields(n: usize, cond: impl Fn(usize) -> Bson) -> Document {
    (0..n).map(|i| (format!("f{i}"), cond(i))).collect()
}

fn main() {
    let limits = Limits::default();
    let cases: Vec<(&str, Document)> = vec![
        (
            "19k nested-quantifier patterns (the finding, cut to 1 MiB)",
            fields(19_000, |_| {
                Bson::Document(doc! {"$regex": r"(\w+\s*){30}", "$options": "i"})
            }),
        ),
        (
            "16 large Unicode classes, case-folded",
            fields(16, |_| {
                Bson::Document(doc! {"$regex": r"\w{200}", "$options": "i"})
            }),
        ),
        (
            "16 distinct mid-size patterns",
            fields(16, |i| {
                Bson::Document(
                    doc! {"$regex": format!(r"\w{{{}}}[a-z]+\s\d{{1,9}}", 10 + i), "$options": "i"},
                )
            }),
        ),
        (
            "30k fields of $in lists",
            fields(15_000, |i| {
                Bson::Document(doc! {"$in": [i as i64, "a", "b", 1.5]})
            }),
        ),
        ("1000-branch $or of regex conditions", {
            let or: Vec<Bson> = (0..1000)
                .map(|i| {
                    Bson::Document(doc! {format!("f{i}"): {"$regex": "^ab+c", "$options": "i"}})
                })
                .collect();
            doc! {"$or": or}
        }),
    ];
    let mut worst_ms = 0.0f64;
    let mut worst_kib = 0u64;
    for (name, d) in cases {
        let bytes = d.to_vec().expect("encodes").len();
        assert!(
            bytes <= limits.max_document_bytes,
            "{name}: {bytes} bytes, over the document limit"
        );
        reset_peak();
        let before = peak_kib();
        let start = Instant::now();
        let outcome = Filter::parse(&d, &limits);
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let grew = peak_kib().saturating_sub(before);
        let what = match &outcome {
            Ok(f) => format!("accepted, {} compiled bytes", f.regex_memory()),
            Err(e) => format!(
                "refused: {}",
                e.to_string().chars().take(80).collect::<String>()
            ),
        };
        println!("{name}: {bytes} bytes in, {ms:.2} ms, peak +{grew} KiB, {what}");
        worst_ms = worst_ms.max(ms);
        worst_kib = worst_kib.max(grew);
    }
    println!("worst: {worst_ms:.2} ms, peak +{worst_kib} KiB");
    if worst_ms > 50.0 || worst_kib > 16 * 1024 {
        eprintln!("over the bound (50 ms, 16 MiB)");
        std::process::exit(1);
    }
}
