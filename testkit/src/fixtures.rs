//! The TeleCMI sample payloads, and the same payloads as form or query fields.

use std::path::PathBuf;

use serde_json::{Map, Value};

pub struct Fixture {
    pub name: String,
    /// The body exactly as stored (pretty-printed JSON, or the raw documented text).
    pub body: Vec<u8>,
    /// The parsed object; `None` for the raw sample that strict JSON rejects.
    pub object: Option<Map<String, Value>>,
}

fn dir() -> PathBuf {
    crate::repository().join("tests/fixtures/telecmi")
}

/// Every strict-JSON sample, sorted by name.
pub fn json_fixtures() -> Vec<Fixture> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("fixtures directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 24, "the 24 documented samples");
    paths
        .into_iter()
        .map(|path| {
            let body = std::fs::read(&path).expect("fixture");
            let object = match serde_json::from_slice(&body).expect("strict JSON") {
                Value::Object(object) => object,
                _ => panic!("{} is not an object", path.display()),
            };
            Fixture {
                name: path
                    .file_stem()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                body,
                object: Some(object),
            }
        })
        .collect()
}

/// CHUB India's sample exactly as documented, with the leading-zero literal `04471000000`.
pub fn raw_leading_zero_fixture() -> Fixture {
    let path = dir().join("raw/chub-india-outbound-started-leg-a.as-documented.txt");
    Fixture {
        name: "chub-india-outbound-started-leg-a.as-documented".to_owned(),
        body: std::fs::read(path).expect("raw fixture"),
        object: None,
    }
}

/// The fields as text, the way a form or query string carries them.
pub fn as_text_pairs(object: &Map<String, Value>) -> Vec<(String, String)> {
    object
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key.clone(), text)
        })
        .collect()
}

/// `application/x-www-form-urlencoded` text of the fields (also a valid query string).
pub fn form_encoded(object: &Map<String, Value>) -> String {
    serde_urlencoded::to_string(as_text_pairs(object)).expect("form encoding")
}
