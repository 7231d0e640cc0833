//! A TeleCMI call-record API simulator on 127.0.0.1:0: both product lines' four endpoints with
//! the documented request and answer shapes (tests/fixtures/telecmi-api/), paging, the
//! credential check (404), and faults switched on per request.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use telecmi_bridge::reconcile::Product;
use telecmi_bridge::reconcile::telecmi::Endpoint;
use tokio::task::JoinHandle;

pub const CHUB_APP_ID: u64 = 1_111_112;
pub const INDIA_APP_ID: u64 = 1_111_113;
pub const SIMULATED_SECRET: &str = "simulated-app-secret";

/// What the next request gets instead of its page; each fault serves one request.
#[derive(Debug, Clone)]
pub enum Fault {
    Status(u16),
    /// The page, after this pause.
    Slow(Duration),
    /// Not JSON at all.
    Malformed,
    /// The page's JSON cut in half, sent whole as far as HTTP is concerned.
    Truncated,
    /// 429 with `Retry-After` in seconds.
    RateLimited(u64),
}

struct Arrival {
    /// Inserted once this page of `endpoint` has been served.
    after_page: u64,
    endpoint: Endpoint,
    records: Vec<Value>,
}

struct Calls {
    product: Product,
    records: HashMap<Endpoint, Vec<Value>>,
    faults: VecDeque<Fault>,
    arrivals: Vec<Arrival>,
    requests: Vec<(Endpoint, Value)>,
}

type Shared = Arc<Mutex<Calls>>;

pub struct Simulator {
    pub address: SocketAddr,
    calls: Shared,
    server: JoinHandle<()>,
}

impl Simulator {
    pub async fn start(product: Product) -> Self {
        let calls = Arc::new(Mutex::new(Calls {
            product,
            records: HashMap::new(),
            faults: VecDeque::new(),
            arrivals: Vec::new(),
            requests: Vec::new(),
        }));
        let router = Endpoint::ALL
            .into_iter()
            .fold(Router::new(), |router, endpoint| {
                router.route(endpoint.path(product), post(answer))
            })
            .with_state(Arc::clone(&calls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the simulator");
        let address = listener.local_addr().expect("simulator address");
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("simulator runs");
        });
        Self {
            address,
            calls,
            server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().expect("simulator state")
    }

    pub fn add_records(&self, endpoint: Endpoint, records: impl IntoIterator<Item = Value>) {
        self.calls()
            .records
            .entry(endpoint)
            .or_default()
            .extend(records);
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.calls().faults.extend(faults);
    }

    /// New calls that appear once `after_page` of `endpoint` is served; pages are newest
    /// first, so later pages shift. Each call of this serves one such page.
    pub fn arrive_after_page(&self, endpoint: Endpoint, after_page: u64, records: Vec<Value>) {
        self.calls().arrivals.push(Arrival {
            after_page,
            endpoint,
            records,
        });
    }

    /// The bodies of the requests served so far, per endpoint.
    pub fn requests(&self) -> Vec<(Endpoint, Value)> {
        self.calls().requests.clone()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A CHUB record as the answered/missed samples show it: `from` a number, `to` a string.
pub fn chub_record(number: u64, time_ms: i64) -> Value {
    json!({
        "cmiuid": format!("00000000-0000-4000-8000-{number:012}"),
        "time": time_ms,
        "from": 919_000_000_000_u64 + number,
        "to": "918000000000",
        "duration": 12,
        "billedsec": 12,
        "agent": "201_1111112",
        "rate": 0.5,
        "name": "unknown",
    })
}

/// A CHUB India record: a 24-hex-digit `_id`, `rate` a string.
pub fn india_record(number: u64, time_ms: i64) -> Value {
    json!({
        "_id": format!("{number:024x}"),
        "time": time_ms,
        "from": 919_000_000_000_u64 + number,
        "to": 918_000_000_000_u64,
        "billedsec": 30,
        "rate": "0.49",
        "name": "unknown",
    })
}

async fn answer(State(calls): State<Shared>, uri: Uri, body: axum::body::Bytes) -> Response {
    let request = String::from_utf8_lossy(&body).into_owned();
    let (fault, page_body) = match serve_page(&calls, &uri, &body) {
        Ok(planned) => planned,
        Err((status, body)) => return json_answer(status, body.to_string()),
    };
    match fault {
        None => json_answer(StatusCode::OK, page_body),
        // Some APIs echo the request in their error answers; the client must not pass it on.
        Some(Fault::Status(status)) => json_answer(
            StatusCode::from_u16(status).expect("a status code"),
            json!({"code": status, "msg": "simulated", "request": request}).to_string(),
        ),
        Some(Fault::Slow(pause)) => {
            tokio::time::sleep(pause).await;
            json_answer(StatusCode::OK, page_body)
        }
        Some(Fault::Malformed) => {
            json_answer(StatusCode::OK, "<html>bad gateway</html>".to_owned())
        }
        Some(Fault::Truncated) => {
            let cut = page_body.len() / 2;
            json_answer(StatusCode::OK, page_body[..cut].to_owned())
        }
        Some(Fault::RateLimited(seconds)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, seconds.to_string())],
        )
            .into_response(),
    }
}

/// Checks the request and builds its page under the lock; the fault it takes is applied after.
fn serve_page(
    calls: &Shared,
    uri: &Uri,
    body: &[u8],
) -> Result<(Option<Fault>, String), (StatusCode, Value)> {
    let mut calls = calls.lock().expect("simulator state");
    let product = calls.product;
    let Some(endpoint) = Endpoint::ALL
        .into_iter()
        .find(|endpoint| endpoint.path(product) == uri.path())
    else {
        return Err((
            StatusCode::NOT_FOUND,
            json!({"code": 404, "msg": "no such API"}),
        ));
    };
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return Err(bad_request("body is not JSON"));
    };
    calls.requests.push((endpoint, request.clone()));
    let (app_id, secret_key) = match product {
        Product::Chub => (CHUB_APP_ID, "secret"),
        Product::ChubIndia => (INDIA_APP_ID, "token"),
    };
    if request["appid"].as_u64() != Some(app_id)
        || request[secret_key].as_str() != Some(SIMULATED_SECRET)
    {
        return Err((
            StatusCode::NOT_FOUND,
            json!({"code": 404, "msg": "Invalid app id or secret"}),
        ));
    }
    let page = request["page"].as_u64().unwrap_or(1);
    let limit = request["limit"].as_u64().unwrap_or(10);
    if page == 0 || limit == 0 || (product == Product::Chub && limit > 20) {
        return Err(bad_request("page or limit out of range"));
    }
    let start = request["start_date"].as_i64().unwrap_or(i64::MIN);
    let end = request["end_date"].as_i64().unwrap_or(i64::MAX);
    let fault = calls.faults.pop_front();

    let mut in_window: Vec<&Value> = calls
        .records
        .get(&endpoint)
        .into_iter()
        .flatten()
        .filter(|record| {
            record["time"]
                .as_i64()
                .is_some_and(|time| (start..=end).contains(&time))
        })
        .collect();
    in_window.sort_by_key(|record| std::cmp::Reverse(record["time"].as_i64()));
    let total = in_window.len();
    let skip = usize::try_from((page - 1) * limit).unwrap_or(usize::MAX);
    let cdr: Vec<Value> = in_window
        .into_iter()
        .skip(skip)
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .cloned()
        .collect();
    let count_key = match product {
        Product::Chub => "count",
        Product::ChubIndia => "total",
    };
    let page_body = json!({"code": 200, count_key: total, "cdr": cdr}).to_string();

    if let Some(position) = calls
        .arrivals
        .iter()
        .position(|arrival| arrival.endpoint == endpoint && arrival.after_page == page)
    {
        let arrival = calls.arrivals.remove(position);
        calls
            .records
            .entry(endpoint)
            .or_default()
            .extend(arrival.records);
    }
    Ok((fault, page_body))
}

fn json_answer(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn bad_request(message: &str) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"code": 400, "msg": message}),
    )
}
