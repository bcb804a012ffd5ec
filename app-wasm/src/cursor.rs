//! Keyset cursors for listing: the last item's sort value and id, the position the
//! next page starts after. Keyset (not offset) pagination stays correct while tasks
//! are added or removed between pages.
//!
//! The format is plain and checked exactly (`<value>.<id>`: the value as a decimal
//! integer, or `n` for none, then 24 lower-case hex digits), so the OpenAPI
//! document can state it as a pattern and every string it allows is a position:
//! none is refused for anything but its shape. A cursor is read in the order the
//! request's `sort` gives, so it continues a listing only with the sort that
//! issued it.

use crate::task::Task;
use bson::{Bson, DateTime, Document, doc, oid::ObjectId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    Created,
    Due,
    Priority,
}

impl SortField {
    pub fn parse(s: &str) -> Option<(Self, bool)> {
        let (desc, name) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let field = match name {
            "created" => Self::Created,
            "due" => Self::Due,
            "priority" => Self::Priority,
            _ => return None,
        };
        Some((field, desc))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Due => "due",
            Self::Priority => "priority",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// The last item's sort value: epoch millis for dates, the number for priority,
    /// `None` for a task without one (no due date).
    pub value: Option<i64>,
    pub id: ObjectId,
}

/// At most 18 digits: every such number fits an i64, so a value the pattern allows
/// always parses.
const VALUE_MAX_DIGITS: usize = 18;

impl Cursor {
    pub fn after(sort: SortField, last: &Task) -> Self {
        let value = match sort {
            SortField::Created => Some(last.created.timestamp_millis()),
            SortField::Due => last.fields.due.map(|d| d.timestamp_millis()),
            SortField::Priority => Some(i64::from(last.fields.priority)),
        };
        Self { value, id: last.id }
    }

    pub fn encode(&self) -> String {
        match self.value {
            Some(v) => format!("{v}.{}", self.id.to_hex()),
            None => format!("n.{}", self.id.to_hex()),
        }
    }

    /// The exact inverse of `encode`: `^(n|-?[0-9]{1,18})\.[0-9a-f]{24}$`.
    pub fn decode(s: &str) -> Option<Self> {
        let (value, id) = s.split_once('.')?;
        let value = match value {
            "n" => None,
            v => {
                let digits = v.strip_prefix('-').unwrap_or(v);
                if digits.is_empty()
                    || digits.len() > VALUE_MAX_DIGITS
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                Some(v.parse().ok()?)
            }
        };
        if id.len() != 24 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        Some(Self {
            value,
            id: ObjectId::parse_str(id).ok()?,
        })
    }

    fn value_bson(&self, sort: SortField) -> Bson {
        match (sort, self.value) {
            (_, None) => Bson::Null,
            // Numbers compare across int32/int64 in both stores.
            (SortField::Priority, Some(v)) => Bson::Int64(v),
            (_, Some(v)) => Bson::DateTime(DateTime::from_millis(v)),
        }
    }

    /// The filter selecting everything after this cursor in (sort, _id) order.
    /// Missing/null values sort first ascending (MongoDB's order), so they need
    /// their own branches.
    pub fn filter(&self, sort: SortField, desc: bool) -> Document {
        let f = sort.name();
        let id = Bson::ObjectId(self.id);
        let v = self.value_bson(sort);
        let null = v == Bson::Null;
        match (desc, null) {
            (false, false) => doc! {"$or": [
                {f: {"$gt": v.clone()}},
                {f: v, "_id": {"$gt": id}},
            ]},
            (false, true) => doc! {"$or": [
                {f: Bson::Null, "_id": {"$gt": id}},
                {f: {"$ne": Bson::Null}},
            ]},
            (true, false) => doc! {"$or": [
                {f: {"$lt": v.clone()}},
                {f: v, "_id": {"$lt": id}},
                {f: Bson::Null},
            ]},
            (true, true) => doc! {f: Bson::Null, "_id": {"$lt": id}},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_only_the_documented_shape_is_accepted() {
        let id = ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap();
        for value in [
            None,
            Some(0),
            Some(-5),
            Some(1_733_480_000_000),
            Some(999_999_999_999_999_999),
        ] {
            let c = Cursor { value, id };
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        for bad in [
            "",
            "n",
            "5.",
            ".65a1b2c3d4e5f60718293a4b",
            "+5.65a1b2c3d4e5f60718293a4b",
            "-.65a1b2c3d4e5f60718293a4b",
            "1234567890123456789.65a1b2c3d4e5f60718293a4b",
            "5.65A1B2C3D4E5F60718293A4B",
            "5.65a1b2c3d4e5f60718293a4",
            "5.65a1b2c3d4e5f60718293a4b0",
            "N.65a1b2c3d4e5f60718293a4b",
            "5.65a1b2c3d4e5f60718293a4b.1",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad:?}");
        }
    }
}
