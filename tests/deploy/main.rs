//! The deployment files under `deploy/` checked against the code: no container engine or
//! cluster is needed, so a renamed configuration key, a moved port, a shortened grace period or
//! a forgotten `COPY` fails here rather than at deploy time.
//!
//! What the container would see is rebuilt from the files: the image's `ENV` overlaid by the
//! compose service's `environment`, or by the ConfigMap (`envFrom`) and the container's `env`
//! in Kubernetes. That environment is then loaded with the bridge's own `Settings::load` (and
//! once through the binary's `check-config`), and the other files are compared with the
//! settings it produces.

// `figment::Jail` closures return figment's own (large) error type.
#![allow(clippy::result_large_err)]

mod compose;
mod deployment;
mod dockerfile;
mod dockerignore;
mod documentation;
mod environment;
mod image;
mod interpolation;
mod kubernetes;
mod probes;
mod prometheus;
mod spool;
mod support;
