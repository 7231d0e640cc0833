//! The integration test binary: the bridge over HTTP against the in-process mock cluster, and
//! the envelope contract (golden files, JSON Schema) over every fixture.

mod access;
mod cli;
mod fixtures;
mod golden;
mod helpers;
mod ingest;
mod limits;
mod privacy;
mod rejections;
mod scenarios;
mod spool;
