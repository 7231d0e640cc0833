//! `docs/asyncapi.yaml` describes what the bridge writes: one channel per topic of the default
//! routing (with the combined topic), an operation per channel, and for each golden envelope
//! the channel its topic has declares a message whose payload schema it validates against.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use telecmi_bridge::config::RoutingSettings;
use telecmi_bridge::pipeline::{Kind, Router};

use crate::golden::{golden_dir, read_schema, schema_errors, validator_of};

fn document() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/asyncapi.yaml");
    let text = std::fs::read_to_string(&path).expect("docs/asyncapi.yaml");
    serde_yaml_ng::from_str(&text).expect("the AsyncAPI document is YAML")
}

/// A local `$ref` (`#/a/b`) within the document.
fn resolve<'d>(document: &'d Value, reference: &Value) -> &'d Value {
    let pointer = reference["$ref"]
        .as_str()
        .and_then(|reference| reference.strip_prefix('#'))
        .unwrap_or_else(|| panic!("not a local reference: {reference}"));
    document
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer} does not resolve"))
}

fn channel_for<'d>(document: &'d Value, topic: &str) -> &'d Value {
    document["channels"]
        .as_object()
        .expect("channels")
        .values()
        .find(|channel| channel["address"] == topic)
        .unwrap_or_else(|| panic!("no channel for {topic}"))
}

#[test]
fn the_asyncapi_document_names_every_topic_and_the_schema_each_message_validates_against() {
    let document = document();
    assert_eq!(document["asyncapi"], "3.0.0");

    let routing = RoutingSettings {
        combined_topic_enabled: true,
        ..RoutingSettings::default()
    };
    let topics: BTreeSet<String> = routing
        .all_topics()
        .iter()
        .map(|topic| topic.as_str().to_owned())
        .collect();
    let channels = document["channels"].as_object().expect("channels");
    let addresses: BTreeSet<String> = channels
        .values()
        .map(|channel| channel["address"].as_str().expect("address").to_owned())
        .collect();
    assert_eq!(addresses, topics, "channels against the default topics");
    let operated: BTreeSet<String> = document["operations"]
        .as_object()
        .expect("operations")
        .values()
        .map(|operation| {
            assert_eq!(operation["action"], "send");
            resolve(&document, &operation["channel"])["address"].to_string()
        })
        .collect();
    assert_eq!(operated.len(), channels.len(), "an operation per channel");

    let router = Router::new(&routing);
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut checked = 0;
    for entry in std::fs::read_dir(golden_dir()).expect("tests/golden") {
        let path = entry.expect("entry").path();
        let envelope: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("golden")).expect("JSON");
        let kind = match envelope["data"]["kind"].as_str() {
            Some("cdr") => Kind::Cdr,
            _ => Kind::Event,
        };
        let topic = router.topic_for(kind, envelope["data"]["status"].as_str());
        let wanted = match kind {
            Kind::Cdr => "callCdr",
            Kind::Event => "callEvent",
        };
        let message = resolve(
            &document,
            &channel_for(&document, topic.as_str())["messages"][wanted],
        );
        let payload = &message["payload"];
        assert_eq!(
            payload["schemaFormat"],
            "application/schema+json;version=draft-2020-12"
        );
        let schema_file = payload["schema"]["$ref"].as_str().expect("a schema file");
        let validator = validator_of(&read_schema(&docs.join(Path::new(schema_file))));
        let errors = schema_errors(&validator, &envelope);
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        checked += 1;
    }
    assert_eq!(checked, 25, "every golden envelope");
}
