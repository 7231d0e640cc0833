//! Publishing a missing CDR from TeleCMI's record of the call, through the webhook's pipeline:
//! decode (here: the pulled record as the payload) -> privacy -> normalise -> envelope -> route
//! (`pipeline::to_records`, as the webhook and `replay` take it) -> the Kafka publisher. The record is kept as the envelope's original; every Kafka record
//! carries the header `telecmi-origin: reconcile`.
//!
//! The event id follows the webhook rule (`pipeline::normalise`): on CHUB the record's
//! `cmiuid` stands as the webhook's `cmiuuid`, so a recovered CDR has the id its webhook CDR
//! would have had when that CDR carried the same `status` and `time` and no `leg`. On CHUB India
//! the id is derived from the pulled record's fields: stable from run to run, never equal to a
//! webhook CDR's.

use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

use super::telecmi::CallRecord;
use crate::config::{Bootstrap, DeliveryMode, DeliverySettings, Settings};
use crate::pipeline::{
    Decoded, Encoding, EnvelopeAttributes, Original, OriginalPayload, Privacy, Router, to_records,
};
use crate::publish::kafka::kafka_client_config;
use crate::publish::{KafkaPublisher, PublishError, Publisher, Rejection};

/// The header that marks a record published by reconciliation rather than by a webhook.
pub const ORIGIN_HEADER: &str = "telecmi-origin";
pub const ORIGIN_RECONCILE: &str = "reconcile";

/// The pulled record as the payload of a CDR webhook: what the endpoint says (`type`,
/// `direction`, `status`) and the app id are added where the record lacks them; the record
/// itself is the original.
pub fn decoded_cdr(record: &CallRecord, app_id: u64) -> Decoded {
    let mut fields = record.fields.clone();
    let endpoint = record.endpoint;
    for (key, value) in [
        ("type", Value::from("cdr")),
        ("direction", Value::from(endpoint.direction())),
        ("status", Value::from(endpoint.status())),
        ("appid", Value::from(app_id)),
    ] {
        fields.entry(key).or_insert(value);
    }
    let original = RawValue::from_string(Value::Object(record.fields.clone()).to_string())
        .unwrap_or_else(|_| RawValue::NULL.to_owned());
    Decoded {
        encoding: Encoding::Json,
        fields,
        original: Original {
            payload: OriginalPayload::Json(original),
            raw: None,
            query: None,
            privacy: None,
            origin: Some(ORIGIN_RECONCILE),
        },
        warnings: Vec::new(),
    }
}

/// Publishes recovered CDRs with the bridge's own routing, privacy and producer settings.
pub struct Recovery {
    attributes: EnvelopeAttributes,
    router: Router,
    privacy: Option<Privacy>,
    publisher: KafkaPublisher,
    app_id: u64,
}

impl Recovery {
    pub fn new(settings: &Settings, app_id: u64) -> Result<Self, String> {
        let Bootstrap::Brokers(brokers) = &settings.kafka.bootstrap_servers else {
            return Err(
                "kafka.bootstrap_servers is `embedded`: nothing to recover into".to_owned(),
            );
        };
        // Acknowledged by Kafka before a CDR counts as published, whatever the server's mode.
        let delivery = DeliverySettings {
            mode: DeliveryMode::Kafka,
            ..settings.delivery.clone()
        };
        let config = kafka_client_config(&settings.kafka, brokers, &delivery);
        let publisher = KafkaPublisher::new(&config, settings.ack_timeout())
            .map_err(|error| format!("cannot create the Kafka producer: {error}"))?;
        Ok(Self {
            attributes: EnvelopeAttributes::new(&settings.envelope),
            router: Router::new(&settings.routing),
            privacy: Privacy::new(&settings.privacy),
            publisher,
            app_id,
        })
    }

    /// Publishes one record's CDR and answers its event id once Kafka acknowledged it.
    pub async fn publish(&self, record: &CallRecord) -> Result<Uuid, PublishError> {
        let (normalised, mut records) = to_records(
            decoded_cdr(record, self.app_id),
            self.privacy.as_ref(),
            &self.attributes,
            &self.router,
            None,
            OffsetDateTime::now_utc(),
        )
        .map_err(|error| {
            PublishError::Rejected(Rejection::Serialisation(std::sync::Arc::new(error)))
        })?;
        for outbound in &mut records {
            outbound
                .headers
                .push((ORIGIN_HEADER, ORIGIN_RECONCILE.to_owned()));
        }
        self.publisher.publish(records).await?;
        Ok(normalised.id)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;
    use crate::pipeline::{normalise, to_envelope};
    use crate::reconcile::telecmi::Endpoint;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn pulled(endpoint: Endpoint, fields: Value) -> CallRecord {
        let fields = object(fields);
        CallRecord {
            endpoint,
            id: fields["cmiuid"].as_str().unwrap_or_default().to_owned(),
            time_ms: fields["time"].as_i64().unwrap_or_default(),
            from: None,
            to: None,
            agent: None,
            fields,
        }
    }

    #[test]
    fn a_recovered_chub_cdr_has_the_event_id_of_its_webhook_cdr() {
        let webhook = json!({
            "virtual_number": 440000000000_u64, "appid": 2222223, "type": "cdr",
            "direction": "inbound", "cmiuuid": "16132200-57fa-47b5-888d-4ab5b7e631ee",
            "user": "204_2222223", "status": "answered", "to": 440000000001_u64,
            "from": 440000000002_u64, "time": 1634720920615_u64, "answeredsec": 11,
        });
        let webhook_id = normalise(object(webhook)).id;
        let record = pulled(
            Endpoint::Answered,
            json!({
                "cmiuid": "16132200-57fa-47b5-888d-4ab5b7e631ee", "time": 1634720920615_u64,
                "from": 440000000002_u64, "to": "440000000001", "duration": 11,
                "billedsec": 60, "agent": "204_2222223", "name": "unknown",
            }),
        );
        let recovered = normalise(decoded_cdr(&record, 2_222_223).fields);
        assert_eq!(recovered.id, webhook_id);
        assert_eq!(
            recovered.call_leg_id.as_deref(),
            Some("16132200-57fa-47b5-888d-4ab5b7e631ee")
        );
        assert_eq!(recovered.direction.as_deref(), Some("inbound"));
        assert_eq!(recovered.status.as_deref(), Some("answered"));

        let missed = pulled(Endpoint::Missed, record.fields.clone().into());
        let missed_id = normalise(decoded_cdr(&missed, 2_222_223).fields).id;
        assert_ne!(missed_id, webhook_id, "the status is part of the id");
    }

    #[test]
    fn the_pulled_record_is_the_envelopes_original() {
        let fields = json!({"_id": "5d95e1c9a3b4c2001f8e4a10", "time": 1570114729565_u64,
            "to": 919100000000_u64, "from": "209_1111113", "rate": "0.49"});
        let record = CallRecord {
            endpoint: Endpoint::OutAnswered,
            id: "5d95e1c9a3b4c2001f8e4a10".to_owned(),
            time_ms: 1_570_114_729_565,
            from: None,
            to: None,
            agent: None,
            fields: object(fields.clone()),
        };
        let (normalised, envelope) = to_envelope(
            &EnvelopeAttributes::default(),
            decoded_cdr(&record, 1_111_113),
            OffsetDateTime::UNIX_EPOCH,
        )
        .expect("envelope");
        let envelope: Value = serde_json::from_slice(&envelope.value).expect("JSON");
        assert_eq!(envelope["data"]["original"]["payload"], fields);
        assert_eq!(envelope["origin"], ORIGIN_RECONCILE, "marked as recovered");
        assert_eq!(envelope["data"]["kind"], "cdr");
        assert_eq!(envelope["data"]["direction"], "outbound");
        assert_eq!(envelope["data"]["fields"]["to"], "919100000000");
        let again = normalise(decoded_cdr(&record, 1_111_113).fields);
        assert_eq!(normalised.id, again.id, "stable from run to run");
    }
}
