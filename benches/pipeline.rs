//! Per-event cost of the pure pipeline (decode -> normalise -> envelope -> route) on the
//! TeleCMI fixture mix, as JSON bodies and as form bodies. `cargo bench --bench pipeline`;
//! criterion reports the time per mix and events per second ("thrpt").

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;
use telecmi_bridge::config::RoutingSettings;
use telecmi_bridge::pipeline::{
    Decoded, EncodedEvent, Envelope, EnvelopeAttributes, RawRequest, Router, decode, normalise,
    to_envelope,
};
use time::OffsetDateTime;

/// The binary's allocator, so that the figures are the shipped ones.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Body {
    content_type: &'static str,
    bytes: Vec<u8>,
}

/// The strict-JSON fixtures, compact as a sender would post them, and the same fields as
/// form bodies.
fn fixture_mix() -> (Vec<Body>, Vec<Body>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/telecmi");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let objects: Vec<serde_json::Map<String, Value>> = paths
        .iter()
        .map(|path| {
            let text = std::fs::read(path).expect("fixture");
            serde_json::from_slice(&text).expect("a JSON object")
        })
        .collect();
    let json = objects
        .iter()
        .map(|object| Body {
            content_type: "application/json",
            bytes: serde_json::to_vec(object).expect("compact JSON"),
        })
        .collect();
    let form = objects
        .iter()
        .map(|object| {
            let pairs: Vec<(&str, String)> = object
                .iter()
                .map(|(key, value)| match value {
                    Value::String(text) => (key.as_str(), text.clone()),
                    other => (key.as_str(), other.to_string()),
                })
                .collect();
            Body {
                content_type: "application/x-www-form-urlencoded",
                bytes: serde_urlencoded::to_string(pairs)
                    .expect("form body")
                    .into_bytes(),
            }
        })
        .collect();
    (json, form)
}

fn raw_request(body: &Body) -> RawRequest<'_> {
    RawRequest {
        is_get: false,
        content_type: Some(body.content_type),
        content_encoding: None,
        query: None,
        body: &body.bytes,
        reserved_query_param: Some("bridge_token"),
    }
}

/// Everything the webhook handler does between the body and the producer.
fn process(router: &Router, body: &Body, received_at: OffsetDateTime) -> usize {
    let request = raw_request(body);
    let decoded = decode(&request).expect("fixtures decode");
    let (normalised, envelope) =
        to_envelope(&EnvelopeAttributes::default(), decoded, received_at).expect("envelope");
    router.route(&normalised, envelope, received_at).len()
}

fn pipeline(criterion: &mut Criterion) {
    let router = Router::new(&RoutingSettings::default());
    let received_at = OffsetDateTime::now_utc();
    let (json, form) = fixture_mix();
    let mut group = criterion.benchmark_group("pipeline");
    for (name, mix) in [("json_fixture_mix", &json), ("form_fixture_mix", &form)] {
        group.throughput(Throughput::Elements(mix.len() as u64));
        group.bench_function(name, |bench| {
            bench.iter(|| {
                mix.iter()
                    .map(|body| process(&router, black_box(body), received_at))
                    .sum::<usize>()
            })
        });
    }
    group.finish();

    // The steps apart, on the JSON mix, to show where the time goes.
    let requests: Vec<RawRequest<'_>> = json.iter().map(raw_request).collect();
    let decoded: Vec<_> = requests
        .iter()
        .map(|request| decode(request).expect("fixtures decode"))
        .collect();
    let normalised: Vec<_> = decoded
        .iter()
        .map(|decoded| normalise(decoded.fields.clone()))
        .collect();
    let mut steps = criterion.benchmark_group("steps");
    steps.throughput(Throughput::Elements(json.len() as u64));
    steps.bench_function("decode", |bench| {
        bench.iter(|| {
            requests
                .iter()
                .map(|request| decode(black_box(request)).map_or(0, |d| d.fields.len()))
                .sum::<usize>()
        })
    });
    // Normalisation takes the fields by value; copying them for each run is not timed.
    steps.bench_function("normalise", |bench| {
        bench.iter_batched(
            || decoded.clone(),
            |decoded: Vec<Decoded>| {
                decoded
                    .into_iter()
                    .map(|decoded| normalise(black_box(decoded.fields)).fields.len())
                    .sum::<usize>()
            },
            BatchSize::SmallInput,
        )
    });
    let attributes = EnvelopeAttributes::default();
    steps.bench_function("envelope", |bench| {
        bench.iter(|| {
            decoded
                .iter()
                .zip(&normalised)
                .map(|(decoded, normalised)| {
                    Envelope::new(
                        &attributes,
                        decoded.encoding,
                        &decoded.original,
                        normalised,
                        received_at,
                    )
                    .to_bytes()
                    .map_or(0, |bytes| bytes.len())
                })
                .sum::<usize>()
        })
    });
    steps.bench_function("route", |bench| {
        let envelope = EncodedEvent {
            value: b"{}".to_vec(),
            content_type: "application/cloudevents+json; charset=utf-8",
            attribute_headers: Vec::new(),
        };
        bench.iter(|| {
            normalised
                .iter()
                .map(|normalised| {
                    router
                        .route(black_box(normalised), envelope.clone(), received_at)
                        .len()
                })
                .sum::<usize>()
        })
    });
    steps.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
