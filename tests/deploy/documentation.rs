//! The documentation against the code and the repository: docs/configuration.md has a row,
//! with its environment variable and built-in default, for every key a user can set and names
//! no key that does not exist; and every relative link in README.md and docs/ leads to a file
//! and heading that exist.
//!
//! The keys are read from the schema itself rather than from `Settings::default()` serialised,
//! because optional keys (`server.tls`, the `_file` secrets, ...) are absent from the defaults.
//! Each table is asked for its fields by setting a key it cannot have: with
//! `deny_unknown_fields`, serde's answer lists the fields it expected.

use std::collections::BTreeSet;
use std::path::Path;

use figment::Figment;
use figment::error::Kind;
use figment::providers::{Format, Toml};
use serde_json::Value;
use telecmi_bridge::config::{ENV_PREFIX, Settings};

use crate::support::{clean, read, relative, repo};

const REFERENCE: &str = "docs/configuration.md";
const PROBE: &str = "telecmi_bridge_probe";

/// Tables nest at most this deep (`kafka.security` is 2); bounds the walk.
const MAX_DEPTH: usize = 4;

/// The fields of the table at `path`, or `None` when `path` is a value (or a map of values,
/// such as `kafka.properties`), whose entries are the user's to name.
fn table_fields(path: &[String]) -> Option<Vec<&'static str>> {
    let toml = if path.is_empty() {
        format!("{PROBE} = 0\n")
    } else {
        format!("[{}]\n{PROBE} = 0\n", path.join("."))
    };
    let error = Figment::new()
        .merge(Toml::string(&toml))
        .extract::<Settings>()
        .err()?;
    error.into_iter().find_map(|error| match error.kind {
        Kind::UnknownField(field, expected) if field == PROBE => Some(expected.to_vec()),
        _ => None,
    })
}

/// Every settable key, dotted (`server.tls.certificate_path`), and every table (`server.tls`).
fn schema_keys() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut keys = BTreeSet::new();
    let mut tables = BTreeSet::new();
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = pending.pop() {
        assert!(
            path.len() <= MAX_DEPTH,
            "{path:?} nests deeper than expected"
        );
        match table_fields(&path) {
            Some(fields) => {
                if !path.is_empty() {
                    tables.insert(path.join("."));
                }
                for field in fields {
                    let mut child = path.clone();
                    child.push((*field).to_owned());
                    pending.push(child);
                }
            }
            None => {
                keys.insert(path.join("."));
            }
        }
    }
    (keys, tables)
}

fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase())
}

/// A row of the reference: `| `key` | `VARIABLE...` | default | meaning |`.
struct Row {
    key: String,
    variable: String,
    default: String,
}

fn documented_rows(page: &str) -> Vec<Row> {
    page.lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix('|')?.split('|').map(str::trim);
            let key = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            Some(Row {
                key: key.to_owned(),
                variable: cells.next()?.to_owned(),
                default: cells.next()?.to_owned(),
            })
        })
        .collect()
}

/// How the reference writes a built-in default: `` `text` `` for a string (`` `""` `` when
/// empty), the JSON text otherwise; `None` for maps and for keys without a default.
fn written_default(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if text.is_empty() => Some("`\"\"`".to_owned()),
        Value::String(text) => Some(format!("`{text}`")),
        Value::Null | Value::Object(_) => None,
        other => Some(format!("`{other}`")),
    }
}

/// Every backticked `section.word...` in the page (prose and tables alike).
fn dotted_mentions(page: &str, sections: &BTreeSet<String>) -> BTreeSet<String> {
    page.split('`')
        .skip(1)
        .step_by(2)
        .filter(|text| {
            text.split_once('.').is_some_and(|(section, rest)| {
                sections.contains(section)
                    && !rest.is_empty()
                    && text
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._".contains(c))
            })
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_schema_walk_finds_optional_and_nested_keys() {
    let (keys, tables) = schema_keys();
    for key in [
        "server.listen",
        "server.tls.certificate_path",
        "kafka.security.sasl_password_file",
        "kafka.properties",
        "routing.event_topics",
        "auth.hmac_timestamp_header",
        "reconcile.secret_file",
    ] {
        assert!(keys.contains(key), "{key} not found in {keys:?}");
    }
    assert!(tables.contains("server.tls") && tables.contains("kafka.security"));
    assert!(keys.len() > 100, "only {} keys found", keys.len());
}

#[test]
fn every_configuration_key_is_documented_with_its_variable() {
    let (keys, _) = schema_keys();
    let page = read(REFERENCE);
    let rows = documented_rows(&page);
    let mut missing = Vec::new();
    for key in &keys {
        let expected = format!("`{}", env_name(key));
        match rows.iter().find(|row| &row.key == key) {
            Some(row) => assert!(
                row.variable.starts_with(&expected),
                "{REFERENCE}: the row of {key} should give its variable {expected}`, not {}",
                row.variable
            ),
            None => missing.push(key.as_str()),
        }
    }
    assert!(
        missing.is_empty(),
        "{REFERENCE} has no row for {missing:?}: add one (key, variable, default, meaning)"
    );
}

#[test]
fn every_documented_default_is_the_built_in_one() {
    let defaults = serde_json::to_value(Settings::default()).expect("the defaults serialise");
    let mut compared = 0;
    for row in documented_rows(&read(REFERENCE)) {
        let value = row
            .key
            .split('.')
            .try_fold(&defaults, |node, part| node.get(part));
        let Some(expected) = value.and_then(written_default) else {
            continue;
        };
        // Lists are written with a space after each comma, as in config/default.toml.
        assert_eq!(
            row.default.replace(", ", ","),
            expected,
            "{REFERENCE}: the default of {}",
            row.key
        );
        compared += 1;
    }
    assert!(compared > 80, "only {compared} defaults compared");
}

#[test]
fn the_configuration_reference_names_no_key_that_does_not_exist() {
    let (keys, tables) = schema_keys();
    let page = read(REFERENCE);
    let mut seen = BTreeSet::new();
    for Row { key, .. } in documented_rows(&page) {
        assert!(
            keys.contains(&key),
            "{REFERENCE} documents {key}, which is not a configuration key"
        );
        assert!(
            seen.insert(key.clone()),
            "{REFERENCE} documents {key} twice"
        );
    }
    let sections: BTreeSet<String> = keys
        .iter()
        .filter_map(|key| key.split('.').next())
        .map(str::to_owned)
        .collect();
    for mention in dotted_mentions(&page, &sections) {
        // An entry of a map is the user's to name (`routing.event_topics.answered`).
        let known = keys.contains(&mention)
            || tables.contains(&mention)
            || keys
                .iter()
                .any(|key| mention.starts_with(&format!("{key}.")));
        assert!(
            known,
            "{REFERENCE} mentions `{mention}`, which is not a configuration key"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Links.

/// The pages whose relative links must resolve: the README and every page under docs/.
fn pages() -> Vec<String> {
    let mut pages = vec!["README.md".to_owned()];
    let docs = std::fs::read_dir(repo().join("docs")).expect("docs/ is readable");
    for entry in docs {
        let path = entry.expect("a docs/ entry").path();
        if path.extension().is_some_and(|extension| extension == "md") {
            pages.push(relative(&path));
        }
    }
    pages.sort();
    pages
}

/// The page's text outside fenced code blocks, where `](` is code, not a link.
fn prose(page: &str) -> Vec<&str> {
    let mut in_code = false;
    page.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                return false;
            }
            !in_code
        })
        .collect()
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(page: &str) -> BTreeSet<String> {
    prose(page)
        .into_iter()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| anchor(heading.trim_start_matches('#')))
        .collect()
}

/// The targets of `[text](target)` links that stay in the repository.
fn relative_links(page: &str) -> Vec<String> {
    prose(page)
        .into_iter()
        .flat_map(|line| line.split("](").skip(1))
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_owned()))
        .filter(|target| !target.contains("://") && !target.starts_with("mailto:"))
        .collect()
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        let directory = Path::new(&page).parent().unwrap_or(Path::new(""));
        for link in relative_links(&text) {
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                let joined = repo().join(directory).join(file);
                assert!(joined.exists(), "{page}: the link {link} leads nowhere");
                relative(&clean(&joined))
            };
            if !fragment.is_empty() && target.ends_with(".md") {
                assert!(
                    anchors(&read(&target)).contains(fragment),
                    "{page}: the link {link} names no heading of {target}"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked > 50,
        "only {checked} links found: is the parser broken?"
    );
}
