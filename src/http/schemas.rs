//! The contract's JSON Schemas, compiled in and served on the admin listener, so that an
//! envelope's `dataschema` (with the default `envelope.dataschema_base`) resolves.

use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;

use super::error::ApiError;
use crate::pipeline::envelope::{DATA_SCHEMA_FILE, ENVELOPE_SCHEMA_FILE};

const SCHEMAS: [(&str, &str); 2] = [
    (
        ENVELOPE_SCHEMA_FILE,
        include_str!("../../schema/envelope.v2.schema.json"),
    ),
    (
        DATA_SCHEMA_FILE,
        include_str!("../../schema/data.v2.schema.json"),
    ),
];

/// `GET /schemas/{file}`: one schema, as `schema/` holds it.
pub async fn schema(Path(file): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let (_, text) = SCHEMAS
        .iter()
        .find(|(name, _)| *name == file)
        .ok_or(ApiError::NotFound)?;
    Ok(([(header::CONTENT_TYPE, "application/schema+json")], *text))
}
