//! Normalisation's unit tests, beside the module so that `normalise.rs` reads as the code alone.

use super::*;
use serde_json::json;

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("test input is an object"),
    }
}

#[test]
fn numbers_become_text_and_text_numbers_become_integers() {
    let normalised = normalise(fields(json!({
        "from": 440000000002u64, "to": "0044", "appid": 2222223,
        "answeredsec": "11", "time": "1634720920615", "record": "TRUE",
        "custom": "{\"crm\": \"true\"}", "extra_params": "not json", "status": "Answered"
    })));
    let f = &normalised.fields;
    assert_eq!(f["from"], "440000000002");
    assert_eq!(f["to"], "0044");
    assert_eq!(f["app_id"], "2222223");
    assert!(!f.contains_key("appid"));
    assert_eq!(f["answeredsec"], json!(11));
    assert_eq!(f["time"], json!(1634720920615u64));
    assert_eq!(f["record"], json!(true));
    assert_eq!(f["custom"], json!({"crm": "true"}));
    assert_eq!(f["extra_params"], "not json");
    assert_eq!(normalised.status.as_deref(), Some("answered"));
    assert_eq!(normalised.kind, Kind::Cdr);
    assert!(normalised.kind_inferred);
    assert!(normalised.warnings.is_empty(), "{:?}", normalised.warnings);
}

#[test]
fn seconds_and_milliseconds_give_the_same_instant() {
    let millis = normalise(fields(json!({"time": 1634720920000u64})));
    let seconds = normalise(fields(json!({"time": 1634720920})));
    assert_eq!(millis.event_time, seconds.event_time);
    assert_eq!(
        millis.event_time.map(OffsetDateTime::unix_timestamp),
        Some(1634720920)
    );
}

#[test]
fn rfc3339_times_are_accepted_without_warning() {
    let normalised = normalise(fields(json!({"time": "2022-04-22T13:49:00+05:30"})));
    assert!(normalised.warnings.is_empty(), "{:?}", normalised.warnings);
    assert_eq!(
        normalised.event_time.map(OffsetDateTime::unix_timestamp),
        Some(1650615540)
    );
}

#[test]
fn wrong_types_move_to_unconverted_with_a_coded_warning() {
    let normalised = normalise(fields(json!({
        "answeredsec": "eleven", "record": [1], "from": {"x": 1}, "time": -5, "appid": [7]
    })));
    assert_eq!(
        Value::Object(normalised.unconverted.clone()),
        json!({"answeredsec": "eleven", "record": [1], "from": {"x": 1}, "app_id": [7]})
    );
    for key in ["answeredsec", "record", "from", "app_id", "appid"] {
        assert!(!normalised.fields.contains_key(key), "{key} left in fields");
    }
    let coded: Vec<(WarningCode, Option<&str>)> = normalised
        .warnings
        .iter()
        .map(|warning| (warning.code, warning.field.as_deref()))
        .collect();
    assert_eq!(
        coded,
        [
            (WarningCode::UnconvertibleValue, Some("answeredsec")),
            (WarningCode::UnconvertibleValue, Some("record")),
            (WarningCode::UnconvertibleValue, Some("from")),
            (WarningCode::UnconvertibleValue, Some("appid")),
            (WarningCode::UnusableTime, Some("time")),
        ]
    );
    assert_eq!(
        normalised.fields["time"],
        json!(-5),
        "an integer, if unusable"
    );
    assert_eq!(normalised.event_time, None);
}

#[test]
fn conversation_falls_back_to_leg_a_cmiuuid_then_call_id() {
    let leg_a = normalise(fields(json!({"cmiuuid": "A", "call_id": "C", "leg": "a"})));
    assert_eq!(leg_a.conversation_id, "A");
    assert_eq!(leg_a.conversation_source, ConversationSource::Cmiuuid);
    let leg_b = normalise(fields(json!({"cmiuuid": "B", "call_id": "C", "leg": "b"})));
    assert_eq!(leg_b.conversation_id, "C");
    let leg_b_alone = normalise(fields(json!({"cmiuuid": "B", "leg": "b"})));
    assert_eq!(leg_b_alone.conversation_id, "B");
    let nothing = normalise(fields(json!({"status": "x"})));
    assert_eq!(nothing.conversation_id, nothing.id.to_string());
    assert_eq!(nothing.conversation_source, ConversationSource::EventId);
}

#[test]
fn ids_ignore_encoding_but_not_identity() {
    let json_typed = normalise(fields(json!({
        "type": "cdr", "status": "missed", "cmiuuid": "X", "time": 1650625417426u64, "to": 1
    })));
    let text_typed = normalise(fields(json!({
        "type": "CDR", "status": "MISSED", "cmiuuid": "X", "time": "1650625417426", "to": "1"
    })));
    assert_eq!(json_typed.id, text_typed.id);
    let other_status = normalise(fields(json!({
        "type": "cdr", "status": "answered", "cmiuuid": "X", "time": 1650625417426u64
    })));
    assert_ne!(json_typed.id, other_status.id);

    let without_leg_id = normalise(fields(json!({"status": "x", "to": 1})));
    let same_as_text = normalise(fields(json!({"to": "1", "status": "x"})));
    let different = normalise(fields(json!({"status": "x", "to": 2})));
    assert_eq!(without_leg_id.id, same_as_text.id);
    assert_ne!(without_leg_id.id, different.id);
}

#[test]
fn attribute_values_lose_control_characters_and_noncharacters_with_a_warning() {
    let normalised = normalise(fields(json!({
        "type": "event", "status": "Answ\u{7}ered\n", "conversation_uuid": "conv\u{0}-1",
        "cmiuuid": "leg\u{7f}\u{85}-a\u{fffe}", "app_id": "\u{1b}"
    })));
    assert_eq!(normalised.status.as_deref(), Some("answered"));
    assert_eq!(normalised.conversation_id, "conv-1");
    assert_eq!(normalised.call_leg_id.as_deref(), Some("leg-a"));
    assert_eq!(normalised.app_id, None, "nothing left is absent");
    assert_eq!(normalised.fields["conversation_uuid"], "conv\u{0}-1");
    for key in ["status", "conversation_uuid", "cmiuuid", "app_id"] {
        assert!(
            normalised.warnings.iter().any(|warning| {
                warning.code == WarningCode::AttributeCharactersRemoved
                    && warning.field.as_deref() == Some(key)
            }),
            "{key}: {:?}",
            normalised.warnings
        );
    }
    let clean = normalise(fields(json!({
        "type": "event", "status": "answered", "conversation_uuid": "conv-1", "cmiuuid": "leg-a"
    })));
    assert_eq!(normalised.id, clean.id, "the same event, cleaned");
    assert!(clean.warnings.is_empty());
}

#[test]
fn conflicting_aliases_keep_the_canonical_key_and_warn() {
    let normalised = normalise(fields(json!({"appid": 1, "app_id": 2})));
    assert_eq!(normalised.app_id.as_deref(), Some("2"));
    assert_eq!(normalised.warnings.len(), 1);
}

#[test]
fn aliases_are_renamed_alone_and_dropped_silently_beside_an_equal_canonical_key() {
    let alone = normalise(fields(json!({"cmiuid": "X", "appid": 7})));
    assert_eq!(alone.fields["cmiuuid"], "X");
    assert_eq!(alone.fields["app_id"], "7");
    assert!(!alone.fields.contains_key("cmiuid") && !alone.fields.contains_key("appid"));
    let equal = normalise(fields(json!({"appid": 7, "app_id": "7"})));
    assert!(equal.warnings.is_empty(), "{:?}", equal.warnings);
    assert!(!equal.fields.contains_key("appid"));
    assert_eq!(equal.fields["app_id"], "7");
}
