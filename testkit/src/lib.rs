//! The integration suites' shared kit (`tests/it`, `tests/kafka_it`, `tests/kafka_faults`): a
//! dev-only crate, so that each suite uses what it needs and the rest is neither compiled into
//! it twice nor hidden behind `#[allow(dead_code)]`.

pub mod broker;
pub mod fixtures;
pub mod helpers;
pub mod process;
pub mod scenarios;
pub mod telecmi_sim;

use std::path::Path;

/// The repository's root, which holds the fixtures, `config/` and `deploy/`: the kit's parent.
pub fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ lies in the repository")
}
