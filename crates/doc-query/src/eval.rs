//! Value comparison and path resolution with MongoDB's rules.

use bson::{Bson, Document};
use std::cmp::Ordering;

/// MongoDB's canonical type order, used to sort values of different types.
fn bracket(v: &Bson) -> u8 {
    match v {
        Bson::MinKey => 0,
        Bson::Null | Bson::Undefined => 1,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 2,
        Bson::String(_) | Bson::Symbol(_) => 3,
        Bson::Document(_) => 4,
        Bson::Array(_) => 5,
        Bson::Binary(_) => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Timestamp(_) => 10,
        Bson::RegularExpression(_) => 11,
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) | Bson::DbPointer(_) => 12,
        Bson::MaxKey => 13,
    }
}

fn as_f64(v: &Bson) -> Option<f64> {
    match v {
        Bson::Int32(i) => Some(f64::from(*i)),
        // i64 -> f64 loses precision past 2^53; exact i64 comparison is done below.
        Bson::Int64(i) => Some(*i as f64),
        Bson::Double(d) => Some(*d),
        _ => None,
    }
}

fn compare_numbers(a: &Bson, b: &Bson) -> Ordering {
    match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => x.cmp(y),
        (Bson::Int64(x), Bson::Int64(y)) => x.cmp(y),
        (Bson::Int32(x), Bson::Int64(y)) => i64::from(*x).cmp(y),
        (Bson::Int64(x), Bson::Int32(y)) => x.cmp(&i64::from(*y)),
        _ => {
            let (x, y) = (as_f64(a).unwrap_or(f64::NAN), as_f64(b).unwrap_or(f64::NAN));
            // MongoDB sorts NaN below every other number.
            x.partial_cmp(&y)
                .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()).reverse())
        }
    }
}

fn str_of(v: &Bson) -> &str {
    match v {
        Bson::String(s) => s,
        Bson::Symbol(s) => s,
        _ => "",
    }
}

/// Compare two values of the same type bracket; `None` if the brackets differ.
pub(crate) fn compare_same_bracket(a: &Bson, b: &Bson) -> Option<Ordering> {
    if bracket(a) != bracket(b) {
        return None;
    }
    Some(compare_total(a, b))
}

/// A total order over all BSON values (MongoDB's sort order).
pub fn compare_total(a: &Bson, b: &Bson) -> Ordering {
    let (ba, bb) = (bracket(a), bracket(b));
    if ba != bb {
        return ba.cmp(&bb);
    }
    match (a, b) {
        _ if ba == 2 => compare_numbers(a, b),
        _ if ba == 3 => str_of(a).cmp(str_of(b)),
        (Bson::Document(x), Bson::Document(y)) => {
            for ((kx, vx), (ky, vy)) in x.iter().zip(y.iter()) {
                let o = compare_total(vx, vy).then_with(|| kx.cmp(ky));
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Bson::Array(x), Bson::Array(y)) => {
            for (vx, vy) in x.iter().zip(y.iter()) {
                let o = compare_total(vx, vy);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then_with(|| u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(&y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.cmp(y),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => x
            .pattern
            .as_str()
            .cmp(y.pattern.as_str())
            .then_with(|| x.options.as_str().cmp(y.options.as_str())),
        _ => Ordering::Equal,
    }
}

/// Equality as MongoDB's `$eq` sees it: numbers by value, documents field by field
/// in order, arrays element by element.
pub fn values_equal(a: &Bson, b: &Bson) -> bool {
    match (a, b) {
        (Bson::Document(x), Bson::Document(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((kx, vx), (ky, vy))| kx == ky && values_equal(vx, vy))
        }
        (Bson::Array(x), Bson::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (Bson::Null | Bson::Undefined, Bson::Null | Bson::Undefined) => true,
        _ => bracket(a) == bracket(b) && compare_total(a, b) == Ordering::Equal,
    }
}

/// The values a dotted path reaches in `doc`. Arrays along the way fan out over their
/// document elements (or are indexed by a numeric segment). An empty result means
/// the field is missing.
pub(crate) fn resolve<'a>(doc: &'a Document, path: &[String]) -> Vec<&'a Bson> {
    let mut out = Vec::new();
    resolve_in_doc(doc, path, &mut out);
    out
}

fn resolve_in_doc<'a>(doc: &'a Document, path: &[String], out: &mut Vec<&'a Bson>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if let Some(v) = doc.get(first) {
        resolve_in_value(v, rest, out);
    }
}

fn resolve_in_value<'a>(v: &'a Bson, rest: &[String], out: &mut Vec<&'a Bson>) {
    if rest.is_empty() {
        out.push(v);
        return;
    }
    match v {
        Bson::Document(d) => resolve_in_doc(d, rest, out),
        Bson::Array(items) => {
            if let Ok(i) = rest[0].parse::<usize>() {
                if let Some(item) = items.get(i) {
                    resolve_in_value(item, &rest[1..], out);
                }
            } else {
                for item in items {
                    if let Bson::Document(d) = item {
                        resolve_in_doc(d, rest, out);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The value a sort key sees: the first value the path reaches, `null` if missing.
/// An order-preserving encoding of a sort value, for index keys: for any two values
/// that have one, comparing the bytes is [`compare_total`] (equal values, such as 1
/// and 1.0, encode the same). Each encoding ends where it ends (fixed length, or a
/// terminator), so a key may go on after it (an index appends the `_id`'s).
///
/// `None` for values without one: documents, arrays, binaries, Decimal128, regexes,
/// code, and int64s past 2^53 (which a double cannot hold exactly). A store keeps
/// documents whose sort value is one of those outside its index, and always
/// considers them.
pub fn sort_bytes(v: &Bson) -> Option<Vec<u8>> {
    const EXACT: i64 = 1 << 53;
    let mut out = vec![bracket(v)];
    let number = |out: &mut Vec<u8>, d: f64| {
        // NaN sorts below every number (MongoDB), below -inf's encoding here.
        let bits = if d.is_nan() {
            0
        } else {
            let b = (if d == 0.0 { 0.0f64 } else { d }).to_bits();
            if b >> 63 == 1 { !b } else { b | 1 << 63 }
        };
        out.extend_from_slice(&bits.to_be_bytes());
    };
    match v {
        Bson::MinKey | Bson::MaxKey | Bson::Null | Bson::Undefined => {}
        Bson::Int32(i) => number(&mut out, f64::from(*i)),
        Bson::Int64(i) if (-EXACT..=EXACT).contains(i) => number(&mut out, *i as f64),
        Bson::Double(d) => number(&mut out, *d),
        Bson::String(s) | Bson::Symbol(s) => {
            // 0x00 escaped as 00 FF and 00 00 at the end: a prefix sorts first.
            for b in s.bytes() {
                out.push(b);
                if b == 0 {
                    out.push(0xff);
                }
            }
            out.extend_from_slice(&[0, 0]);
        }
        Bson::ObjectId(o) => out.extend_from_slice(&o.bytes()),
        Bson::Boolean(b) => out.push(u8::from(*b)),
        Bson::DateTime(d) => {
            out.extend_from_slice(&((d.timestamp_millis() as u64) ^ 1 << 63).to_be_bytes())
        }
        Bson::Timestamp(t) => {
            out.extend_from_slice(&t.time.to_be_bytes());
            out.extend_from_slice(&t.increment.to_be_bytes());
        }
        _ => return None,
    }
    Some(out)
}

/// [`sort_bytes`] of the value a sort on top-level `field` orders `doc` by (missing
/// is null, as in a sort).
pub fn sort_bytes_of(doc: &Document, field: &str) -> Option<Vec<u8>> {
    sort_bytes(&sort_key(doc, &[field.to_owned()]))
}

pub(crate) fn sort_key(doc: &Document, path: &[String]) -> Bson {
    resolve(doc, path)
        .first()
        .map_or(Bson::Null, |v| (*v).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{bson, doc, oid::ObjectId};

    #[test]
    fn numbers_compare_across_types() {
        assert!(values_equal(&Bson::Int32(1), &Bson::Double(1.0)));
        assert!(values_equal(&Bson::Int64(7), &Bson::Int32(7)));
        assert_eq!(
            compare_total(&Bson::Int64(i64::MAX), &Bson::Int64(i64::MAX - 1)),
            Ordering::Greater
        );
        assert!(!values_equal(&Bson::Int32(1), &Bson::String("1".into())));
    }

    #[test]
    fn type_order_matches_mongodb() {
        let order = [
            Bson::Null,
            bson!(1),
            bson!("a"),
            bson!({"a": 1}),
            bson!([1]),
            Bson::ObjectId(ObjectId::new()),
            bson!(true),
            Bson::DateTime(bson::DateTime::from_millis(0)),
        ];
        for w in order.windows(2) {
            assert_eq!(compare_total(&w[0], &w[1]), Ordering::Less, "{w:?}");
        }
    }

    #[test]
    fn resolve_fans_out_over_arrays() {
        let d = doc! {"a": [{"b": 1}, {"b": 2}, 3], "c": {"d": "x"}};
        let p = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(resolve(&d, &p("a.b")), vec![&bson!(1), &bson!(2)]);
        assert_eq!(resolve(&d, &p("a.1.b")), vec![&bson!(2)]);
        assert_eq!(resolve(&d, &p("c.d")), vec![&bson!("x")]);
        assert!(resolve(&d, &p("c.e")).is_empty());
    }
}
