//! Thin, typed wrapper over the host's `documents` import: BSON in, the stored
//! documents' raw bytes out (read once, by `Task::from_stored`), the host's error
//! variant mapped to a problem response.

use crate::app::data::documents::{self, Error, FindOptions};
use crate::problem::{Kind, Problem};
use bson::{Bson, Document};

pub const TASKS: &str = "tasks";

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound => Problem::new(Kind::NotFound, "no such task"),
            Error::Conflict(m) => Problem::new(Kind::Conflict, m),
            Error::Invalid(m) => Problem::new(Kind::Validation, m),
            // A grant missing from the host's configuration is a deployment fault,
            // not the client's: report it as internal.
            Error::Forbidden(_) => {
                Problem::new(Kind::Internal, "storage is not configured for this API")
            }
            Error::Unavailable(_) => {
                Problem::new(Kind::Unavailable, "storage is unavailable, retry later")
                    .header("retry-after", "1")
            }
            Error::Internal(_) => Problem::new(Kind::Internal, "internal storage error"),
        }
    }
}

fn encode(doc: &Document) -> Result<Vec<u8>, Problem> {
    doc.to_vec()
        .map_err(|_| Problem::new(Kind::Internal, "could not encode a document"))
}

pub fn insert_one(doc: &Document) -> Result<Vec<u8>, Problem> {
    Ok(documents::insert_one(TASKS, &encode(doc)?)?)
}

pub fn find_one(filter: &Document) -> Result<Option<Vec<u8>>, Problem> {
    Ok(documents::find_one(TASKS, &encode(filter)?)?)
}

pub fn find(filter: &Document, sort: &Document, limit: u32) -> Result<Vec<Vec<u8>>, Problem> {
    let options = FindOptions {
        sort: Some(encode(sort)?),
        limit: Some(limit),
        skip: None,
        projection: None,
    };
    Ok(documents::find(TASKS, &encode(filter)?, &options)?)
}

pub fn update_one(
    filter: &Document,
    update: &Document,
    expected_version: Option<i64>,
) -> Result<Vec<u8>, Error> {
    documents::update_one(
        TASKS,
        &encode(filter).map_err(|_| Error::Internal("encode".into()))?,
        &encode(update).map_err(|_| Error::Internal("encode".into()))?,
        expected_version,
    )
}

pub fn delete_one(filter: &Document) -> Result<(), Problem> {
    Ok(documents::delete_one(TASKS, &encode(filter)?)?)
}

pub fn id_filter(id: &Bson) -> Document {
    bson::doc! {"_id": id.clone()}
}
