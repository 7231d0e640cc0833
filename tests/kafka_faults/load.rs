//! Steady webhook load, as TeleCMI would send it, with a ledger of every answer: concurrent
//! senders, one conversation each, each event re-sent until it gets a 2xx (the same payload,
//! so the same event id), then the next one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::message::Message;
use serde_json::Value;
use telecmi_bridge::domain::TopicName;
use tokio::task::JoinHandle;

use crate::helpers::consumer_from_beginning;

#[derive(Debug, Default)]
pub struct SenderLedger {
    pub conversation: String,
    /// Event ids answered 2xx, in the order they were sent.
    pub acknowledged: Vec<String>,
    pub events: usize,
    pub refused_503: usize,
    pub refused_without_retry_after: usize,
    pub other_statuses: Vec<u16>,
    pub connection_errors: usize,
}

pub struct Load {
    running: Arc<AtomicBool>,
    senders: Vec<JoinHandle<SenderLedger>>,
}

impl Load {
    pub fn start(url: String, senders: usize, run: &str) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("HTTP client");
        let senders = (0..senders)
            .map(|sender| {
                let conversation = format!("{run}-c{sender}");
                tokio::spawn(send_conversation(
                    http.clone(),
                    url.clone(),
                    conversation,
                    running.clone(),
                ))
            })
            .collect();
        Self { running, senders }
    }

    pub async fn stop(self) -> Vec<SenderLedger> {
        self.running.store(false, Ordering::Relaxed);
        let mut ledgers = Vec::new();
        for sender in self.senders {
            ledgers.push(sender.await.expect("sender task"));
        }
        ledgers
    }
}

async fn send_conversation(
    http: reqwest::Client,
    url: String,
    conversation: String,
    running: Arc<AtomicBool>,
) -> SenderLedger {
    let mut ledger = SenderLedger {
        conversation: conversation.clone(),
        ..SenderLedger::default()
    };
    let mut step = 0_u64;
    'events: while running.load(Ordering::Relaxed) {
        step += 1;
        ledger.events += 1;
        let body = format!(
            r#"{{"type":"event","status":"answered","cmiuuid":"{conversation}-{step}","conversation_uuid":"{conversation}","direction":"inbound","from":"919876543210","to":"918037011223","time":{}}}"#,
            1_700_000_000_000_u64 + step
        );
        loop {
            match http.post(&url).body(body.clone()).send().await {
                Ok(response) if response.status().is_success() => {
                    let answer: Value = response.json().await.unwrap_or_default();
                    let id = answer["id"].as_str().expect("2xx carries the event id");
                    ledger.acknowledged.push(id.to_owned());
                    continue 'events;
                }
                Ok(response) if response.status() == 503 => {
                    ledger.refused_503 += 1;
                    if !response.headers().contains_key("retry-after") {
                        ledger.refused_without_retry_after += 1;
                    }
                }
                Ok(response) => ledger.other_statuses.push(response.status().as_u16()),
                Err(_) => ledger.connection_errors += 1,
            }
            if !running.load(Ordering::Relaxed) {
                break 'events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    ledger
}

/// What Kafka holds for a run, checked against the ledgers.
#[derive(Debug)]
pub struct Verdict {
    pub events: usize,
    pub acknowledged: usize,
    pub refused_503: usize,
    pub refused_without_retry_after: usize,
    pub connection_errors: usize,
    pub found: usize,
    pub duplicates: usize,
    pub lost: Vec<String>,
    pub out_of_order: Vec<String>,
}

impl Verdict {
    pub fn row(&self, scenario: &str) -> String {
        format!(
            "| {scenario} | {} | {} | {} | {} | {} | {} | {} |",
            self.events,
            self.acknowledged,
            self.refused_503,
            self.connection_errors,
            self.found,
            self.duplicates,
            self.lost.len()
        )
    }

    /// Prints the row (and appends it to `$FAULT_REPORT` if set), then asserts nothing 2xx'd
    /// was lost and every conversation kept its order.
    pub fn report_and_check(&self, scenario: &str) {
        let row = self.row(scenario);
        eprintln!("{row}");
        if let Ok(path) = std::env::var("FAULT_REPORT") {
            use std::io::Write;
            let mut file = std::fs::File::options()
                .create(true)
                .append(true)
                .open(path)
                .expect("FAULT_REPORT file");
            writeln!(file, "{row}").expect("write FAULT_REPORT");
        }
        assert!(
            self.lost.is_empty(),
            "{scenario}: 2xx'd but not in Kafka: {:?}",
            self.lost
        );
        assert_eq!(
            self.refused_without_retry_after, 0,
            "{scenario}: 503 answers without Retry-After"
        );
        assert!(
            self.out_of_order.is_empty(),
            "{scenario}: conversations out of order: {:?}",
            self.out_of_order
        );
        assert!(
            self.acknowledged > 50,
            "{scenario}: too little traffic to mean anything"
        );
    }
}

/// Reads every topic from the beginning until each acknowledged id was seen (then one idle
/// second more, to count duplicates) or `timeout` passed.
pub async fn verify(
    bootstrap_servers: &str,
    topics: &[TopicName],
    ledgers: &[SenderLedger],
    timeout: Duration,
) -> Verdict {
    let consumer = consumer_from_beginning(bootstrap_servers, topics);

    let wanted: HashSet<&str> = ledgers
        .iter()
        .flat_map(|ledger| ledger.acknowledged.iter().map(String::as_str))
        .collect();
    let mut copies: HashMap<String, usize> = HashMap::new();
    let mut sequence_per_key: HashMap<String, Vec<String>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let all_found = wanted.iter().all(|id| copies.contains_key(*id));
        let wait_until = if all_found {
            (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline)
        } else {
            deadline
        };
        let Ok(received) = tokio::time::timeout_at(wait_until, consumer.recv()).await else {
            break;
        };
        let message = received.expect("message");
        let envelope: Value =
            serde_json::from_slice(message.payload().unwrap_or_default()).expect("envelope");
        let id = envelope["id"].as_str().unwrap_or_default().to_owned();
        let key = message
            .key()
            .map(|key| String::from_utf8_lossy(key).into_owned())
            .unwrap_or_default();
        *copies.entry(id.clone()).or_default() += 1;
        sequence_per_key.entry(key).or_default().push(id);
    }

    let lost = wanted
        .iter()
        .filter(|id| !copies.contains_key(**id))
        .map(|id| (*id).to_owned())
        .collect();
    let out_of_order = ledgers
        .iter()
        .filter(|ledger| {
            let acknowledged: HashSet<&String> = ledger.acknowledged.iter().collect();
            let mut first_seen: Vec<&String> = Vec::new();
            for id in sequence_per_key
                .get(&ledger.conversation)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if acknowledged.contains(id) && !first_seen.contains(&id) {
                    first_seen.push(id);
                }
            }
            let expected: Vec<&String> = ledger.acknowledged.iter().collect();
            first_seen != expected
        })
        .map(|ledger| ledger.conversation.clone())
        .collect();
    Verdict {
        events: ledgers.iter().map(|ledger| ledger.events).sum(),
        acknowledged: wanted.len(),
        refused_503: ledgers.iter().map(|ledger| ledger.refused_503).sum(),
        refused_without_retry_after: ledgers
            .iter()
            .map(|ledger| ledger.refused_without_retry_after)
            .sum(),
        connection_errors: ledgers.iter().map(|ledger| ledger.connection_errors).sum(),
        found: wanted.iter().filter(|id| copies.contains_key(**id)).count(),
        duplicates: copies.values().map(|count| count.saturating_sub(1)).sum(),
        lost,
        out_of_order,
    }
}
