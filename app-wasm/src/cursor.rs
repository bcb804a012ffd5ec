//! Opaque keyset cursors for listing: the sort, its direction and the last item's
//! sort value and id. Keyset (not offset) pagination stays correct while tasks are
//! added or removed between pages.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub sort: SortField,
    #[serde(rename = "d")]
    pub desc: bool,
    /// The last item's sort value: epoch millis for dates, the number for priority,
    /// `None` for a task without a due date.
    #[serde(rename = "v")]
    pub value: Option<i64>,
    #[serde(rename = "i")]
    pub id: String,
}

impl Cursor {
    pub fn after(sort: SortField, desc: bool, last: &Document) -> Option<Self> {
        let value = match last.get(sort.name()) {
            Some(Bson::DateTime(d)) => Some(d.timestamp_millis()),
            Some(Bson::Int32(p)) => Some(i64::from(*p)),
            Some(Bson::Int64(p)) => Some(*p),
            _ => None,
        };
        Some(Self {
            sort,
            desc,
            value,
            id: last.get_object_id("_id").ok()?.to_hex(),
        })
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(s: &str) -> Option<Self> {
        if s.len() > 512 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
        let c: Self = serde_json::from_slice(&bytes).ok()?;
        ObjectId::parse_str(&c.id).ok()?;
        Some(c)
    }

    fn value_bson(&self) -> Bson {
        match (self.sort, self.value) {
            (_, None) => Bson::Null,
            (SortField::Priority, Some(v)) => Bson::Int32(i32::try_from(v).unwrap_or(i32::MAX)),
            (_, Some(v)) => Bson::DateTime(DateTime::from_millis(v)),
        }
    }

    /// The filter selecting everything after this cursor in (sort, _id) order.
    /// Missing/null values sort first ascending (MongoDB's order), so they need
    /// their own branches.
    pub fn filter(&self) -> Document {
        let f = self.sort.name();
        let id = ObjectId::parse_str(&self.id).map_or(Bson::Null, Bson::ObjectId);
        let v = self.value_bson();
        let null = v == Bson::Null;
        match (self.desc, null) {
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
