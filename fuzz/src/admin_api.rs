//! Target 4: the admin API — request bodies (every JSON body type: record submissions, bans,
//! dials, limit changes, NDJSON imports) and query strings and path segments of every route,
//! sent over the Unix socket to a real `ApiServer` in front of a real node (store, guard,
//! network listening on loopback only), through the typed client's raw request method.
//!
//! One node serves the whole fuzzing process (starting one per input would cost more than the
//! requests); its store grows with what the fuzzer submits and imports. Admins are trusted, but
//! the API must still answer every request with a well-formed answer and never fall over.
//!
//! Invariants:
//! - every request gets an answer within the deadline (no hang, no dropped connection);
//! - no 5xx except `503` with code `unavailable`/`busy`, `507` (disk) and `502 dial_failed`
//!   (a loopback port nobody listens on): a 500 is a bug (a caught panic, a
//!   store error on a healthy store, or an unhandled case); any panic aborts the fuzzer;
//! - every error answer is the documented JSON shape `{"error": {"code", "message"}}` with a
//!   non-empty code and message; JSON answers are valid JSON;
//! - a JSON body over `admin.max_body_bytes` is refused with 413 before it is parsed;
//! - a record the API acknowledged (201) can be read back by its id;
//! - answers stay bounded (pages, exports of a small store).
//!
//! Raw mode: an input that starts with [`RAW_MARKER`] is written to the socket as it is (the
//! rest of the input); the write side is closed at once when the head is unfinished, else
//! after the answer or [`RAW_WHOLE_WAIT`]. Whatever the bytes, the answer is
//! nothing (a head the client never finished) or one well-formed HTTP/1 response, and every
//! 4xx/5xx in it has the error body: hyper's own empty-bodied 400/414/431 for malformed
//! HTTP never reach a client (the head guard answers those).
//!
//! Not sent: `GET /v1/events` (a stream that never ends by design; covered by the API's own
//! tests). `POST /v1/peers/dial` bodies are fuzzed, but their `addr` is rewritten to a
//! loopback address, so the fuzzer never makes the node dial the outside world.

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use hyper::Method;
use palisade_api::model::ErrorBody;
use palisade_api::{ApiClient, ApiConfig, ApiServer};
use palisade_net::{NetConfig, Network};

use crate::common;

/// Routes with their method; `{...}` segments are filled from the input.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/health"),
    ("GET", "/v1/ready"),
    ("GET", "/v1/node"),
    ("GET", "/v1/peers"),
    ("POST", "/v1/peers/dial"),
    ("POST", "/v1/peers/{}/disconnect"),
    ("GET", "/v1/bans"),
    ("POST", "/v1/bans"),
    ("DELETE", "/v1/bans/{}"),
    ("POST", "/v1/records"),
    ("GET", "/v1/records"),
    ("GET", "/v1/records/{}"),
    ("GET", "/v1/feeds"),
    ("GET", "/v1/feeds/{}"),
    ("GET", "/v1/equivocations"),
    ("GET", "/v1/subjects/{}/verdict"),
    ("GET", "/v1/anomalies"),
    ("GET", "/v1/anomalies/{}"),
    ("GET", "/v1/export"),
    ("POST", "/v1/import"),
    ("GET", "/v1/guard/ledger"),
    ("GET", "/v1/guard/counters"),
    ("GET", "/v1/limits"),
    ("PUT", "/v1/limits/{}"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/no-such-route"),
];

/// Routes whose body is one JSON document (capped at `max_body_bytes`).
const JSON_BODY_ROUTES: &[(&str, &str)] =
    &[("POST", "/v1/peers/dial"), ("POST", "/v1/bans"), ("POST", "/v1/records"), ("PUT", "/v1/limits/{}")];

/// Query parameter names the routes know (records filter, pages, verdicts, anomalies, ledger).
const QUERY_KEYS: &[&str] = &[
    "kind",
    "author",
    "subject",
    "fingerprint",
    "source",
    "min_severity",
    "state",
    "since_ms",
    "until_ms",
    "exclude_revoked",
    "limit",
    "cursor",
    "envelope",
    "policy",
    "authors",
    "threshold",
    "unknown_param",
];

/// JSON object keys the request bodies use.
const BODY_KEYS: &[&str] = &[
    "kind",
    "target",
    "duration_secs",
    "permanent",
    "reason",
    "addr",
    "value",
    "subject",
    "name",
    "digests",
    "scanner",
    "version",
    "verdict",
    "score",
    "finding_counts",
    "findings",
    "source",
    "stream_type",
    "labels",
    "severity_number",
    "window_start_ms",
    "window_end_ms",
    "fingerprint",
    "state",
    "comment",
    "envelope",
    "id",
];

const MAX_BODY_BYTES: usize = 64 * 1024;
const REQUEST_DEADLINE: Duration = Duration::from_secs(20);
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// First byte of a raw-mode input.
pub const RAW_MARKER: u8 = 0xff;
/// How long a raw-mode request with a finished head waits for its answer before the write
/// side is closed (a body shorter than its declared length would otherwise wait for
/// `admin.body_timeout_secs`).
const RAW_WHOLE_WAIT: Duration = Duration::from_millis(300);

struct Node {
    rt: tokio::runtime::Runtime,
    client: ApiClient,
    socket: std::path::PathBuf,
    // Kept alive for the whole process.
    _dir: tempfile::TempDir,
    _network: Network,
    _api: ApiServer,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => panic!("no tokio runtime: {e}"),
        };
        let dir = common::temp_dir();
        let store = match common::open_store(&dir.path().join("db")) {
            Ok(s) => s,
            Err(e) => panic!("cannot open the store: {e}"),
        };
        let mut registry = prometheus_client::registry::Registry::default();
        let guard = match palisade_guard::Guard::new(Default::default(), store.clone(), &mut registry) {
            Ok(g) => g,
            Err(e) => panic!("guard: {e}"),
        };
        let net =
            NetConfig { listen: vec!["/ip4/127.0.0.1/tcp/0".into()], mdns: false, ..NetConfig::default() };
        let identity = match libp2p::identity::Keypair::ed25519_from_bytes([0x77; 32]) {
            Ok(k) => k,
            Err(e) => panic!("identity: {e}"),
        };
        let author = palisade_types::fixtures::key(0x78);
        let network = match rt.block_on(Network::start(net, identity, author, store, guard, &mut registry)) {
            Ok(n) => n,
            Err(e) => panic!("network: {e}"),
        };
        let mut cfg = ApiConfig::new(dir.path());
        cfg.limits.max_body_bytes = MAX_BODY_BYTES;
        cfg.limits.requests_per_sec = 1_000_000;
        cfg.limits.burst_requests = 1_000_000;
        cfg.limits.request_timeout = Duration::from_secs(10);
        let api = match rt.block_on(ApiServer::start(cfg, network.handle(), &mut registry)) {
            Ok(a) => a,
            Err(e) => panic!("api: {e}"),
        };
        let client = ApiClient::unix(api.socket_path()).with_timeout(REQUEST_DEADLINE);
        let socket = api.socket_path().to_path_buf();
        Node { rt, client, socket, _dir: dir, _network: network, _api: api }
    })
}

/// A JSON value, depth-limited.
fn json(u: &mut Unstructured<'_>, depth: u8) -> serde_json::Value {
    use serde_json::Value;
    let choice: u8 = u.arbitrary().unwrap_or(0);
    match choice % if depth == 0 { 6 } else { 8 } {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary().unwrap_or(false)),
        2 => Value::from(u.arbitrary::<i64>().unwrap_or(0)),
        3 => Value::from(u.arbitrary::<u64>().unwrap_or(u64::MAX)),
        4 => serde_json::Number::from_f64(u.arbitrary().unwrap_or(0.5))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        5 => Value::String(u.arbitrary().unwrap_or_default()),
        6 => {
            let n = u.int_in_range(0..=6u8).unwrap_or(0);
            Value::Array((0..n).map(|_| json(u, depth - 1)).collect())
        }
        _ => {
            let n = u.int_in_range(0..=8u8).unwrap_or(0);
            let mut m = serde_json::Map::new();
            for _ in 0..n {
                let k = match u.arbitrary::<u8>().unwrap_or(0) {
                    k if usize::from(k) < BODY_KEYS.len() * 4 => {
                        BODY_KEYS[usize::from(k) % BODY_KEYS.len()].to_string()
                    }
                    _ => u.arbitrary().unwrap_or_default(),
                };
                m.insert(k, json(u, depth - 1));
            }
            Value::Object(m)
        }
    }
}

/// A known-good body for a route (mutated by `Body::Patched`).
fn good_body(route: &str, n: u8) -> serde_json::Value {
    use serde_json::json;
    match route {
        "/v1/records" => serde_json::to_value(common::statement(n, n)).unwrap_or_default(),
        "/v1/bans" => json!({
            "target": format!("peer:{}", common::peer(n)),
            "duration_secs": 60 + u64::from(n),
            "reason": "fuzz"
        }),
        "/v1/peers/dial" => json!({ "addr": format!("/ip4/127.0.0.1/tcp/{}", 1 + u16::from(n)) }),
        "/v1/limits/{}" => json!({ "value": 100 + u32::from(n) }),
        _ => json!({}),
    }
}

#[derive(Arbitrary, Debug)]
enum Segment {
    /// A plausible value: record ids, authors, peers, digests, limit keys, ban targets.
    Known(u8),
    Raw(String),
}

fn segment(s: &Segment) -> String {
    let known = |i: u8| -> String {
        let r = common::pool_record(i);
        match i % 8 {
            0 => r.id().to_string(),
            1 => r.author().to_string(),
            2 => common::peer(i).to_base58(),
            3 => format!("ip:10.0.0.{i}"),
            4 => "sha256:0101010101010101010101010101010101010101010101010101010101010101".into(),
            5 => hex::encode(common::anomaly_fingerprint(i).as_bytes()),
            6 => ["peer_messages_per_sec", "max_bans", "max_established_total", "allowlist_ips"]
                [usize::from(i / 8) % 4]
                .into(),
            _ => format!("peer:{}", common::peer(i)),
        }
    };
    let text = match s {
        Segment::Known(i) => known(*i),
        Segment::Raw(t) => t.clone(),
    };
    percent_encode(&text, false)
}

/// Percent-encodes everything but unreserved characters (and `=`/`&` when `query_raw`).
fn percent_encode(s: &str, query_raw: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (query_raw && b"=&,:".contains(&b));
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Arbitrary, Debug)]
enum QueryChoice {
    None,
    Pairs(Vec<(u8, Segment)>),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum BodyChoice {
    None,
    /// Any bytes.
    Raw(Vec<u8>),
    /// A JSON document built from the input.
    Json,
    /// The route's valid body with some fields replaced.
    Patched {
        n: u8,
        fields: u8,
    },
    /// A valid body padded past the body cap (must be refused with 413).
    Huge {
        n: u8,
    },
    /// NDJSON import lines: pool envelopes, some damaged.
    Import {
        lines: Vec<(u8, u8)>,
    },
}

#[derive(Arbitrary, Debug)]
struct Request {
    route: u8,
    /// Use another method than the route's (405 paths).
    other_method: Option<u8>,
    segment: Segment,
    query: QueryChoice,
    body: BodyChoice,
}

fn import_lines(lines: &[(u8, u8)]) -> Vec<u8> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for (i, damage) in lines.iter().take(16) {
        let mut wire = common::pool_record(*i).wire_bytes().to_vec();
        if damage % 4 == 1 {
            let len = wire.len();
            if let Some(b) = wire.get_mut(usize::from(*damage) % len) {
                *b ^= 0x5a;
            }
        }
        let line = match damage % 4 {
            2 => format!(
                "{{\"envelope\": \"{}\", \"id\": \"{}\"}}",
                base64::engine::general_purpose::STANDARD.encode(&wire),
                common::pool_record(damage.wrapping_add(1)).id()
            ),
            3 => format!("not json {damage}"),
            _ => format!("{{\"envelope\": \"{}\"}}", base64::engine::general_purpose::STANDARD.encode(&wire)),
        };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Runs one input.
pub fn run(data: &[u8]) {
    if let Some((&RAW_MARKER, raw)) = data.split_first() {
        return raw_request(raw);
    }
    let mut u = Unstructured::new(data);
    let Ok(req) = Request::arbitrary(&mut u) else { return };
    let (route_method, template) = ROUTES[usize::from(req.route) % ROUTES.len()];
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    let method = match req.other_method {
        Some(m) => methods[usize::from(m) % methods.len()],
        None => route_method,
    };
    let seg = segment(&req.segment);
    let mut path = template.replace("{}", &seg);
    match &req.query {
        QueryChoice::None => {}
        QueryChoice::Pairs(pairs) => {
            let q: Vec<String> = pairs
                .iter()
                .take(8)
                .map(|(k, v)| format!("{}={}", QUERY_KEYS[usize::from(*k) % QUERY_KEYS.len()], segment(v)))
                .collect();
            path = format!("{path}?{}", q.join("&"));
        }
        QueryChoice::Raw(r) => path = format!("{path}?{}", percent_encode(r, true)),
    }
    // An empty `{}` segment matches no route (404 before any body is read).
    let json_route =
        JSON_BODY_ROUTES.contains(&(method, template)) && !(template.contains("{}") && seg.is_empty());
    let mut expect_too_large = false;
    let mut body = match &req.body {
        BodyChoice::None => None,
        BodyChoice::Raw(b) => Some(b.clone()),
        BodyChoice::Json => Some(json(&mut u, 3).to_string().into_bytes()),
        BodyChoice::Patched { n, fields } => {
            let mut v = good_body(template, *n);
            if let Some(obj) = v.as_object_mut() {
                for i in 0..(fields % 4) {
                    let k = BODY_KEYS[usize::from(n.wrapping_add(i.wrapping_mul(7))) % BODY_KEYS.len()];
                    obj.insert(k.to_string(), json(&mut u, 2));
                }
            }
            Some(v.to_string().into_bytes())
        }
        BodyChoice::Huge { n } => {
            let mut v = good_body(template, *n).to_string().into_bytes();
            // Whitespace after the document: still one valid JSON text, just too long.
            v.resize(MAX_BODY_BYTES + 1 + usize::from(*n) * 100, b' ');
            expect_too_large = json_route;
            Some(v)
        }
        BodyChoice::Import { lines } => Some(import_lines(lines)),
    };
    // Never let the fuzzer make the node dial anything but loopback. The server parses bodies
    // with the same serde_json, so what does not parse here does not parse there either.
    if template == "/v1/peers/dial" && !expect_too_large {
        if let Some(Ok(serde_json::Value::Object(mut obj))) = body.as_deref().map(serde_json::from_slice) {
            if obj.contains_key("addr") {
                let port = 1 + path.len() % 60_000;
                obj.insert("addr".into(), serde_json::Value::from(format!("/ip4/127.0.0.1/tcp/{port}")));
            }
            body = Some(serde_json::Value::Object(obj).to_string().into_bytes());
        }
    }
    check(method, &path, body, expect_too_large);
}

fn check(method: &str, path: &str, body: Option<Vec<u8>>, expect_too_large: bool) {
    let n = node();
    let m = match Method::from_bytes(method.as_bytes()) {
        Ok(m) => m,
        Err(e) => panic!("method {method}: {e}"),
    };
    // Imports are NDJSON; everything else is JSON (a wrong type is a 415, tested elsewhere).
    let ct = body.as_ref().map(|_| {
        if path.starts_with("/v1/import") {
            "application/x-ndjson"
        } else {
            "application/json"
        }
    });
    let answer = n.rt.block_on(n.client.request_raw_as(m, path, body, ct));
    let raw = match answer {
        Ok(r) => r,
        Err(e) => panic!("{method} {path}: no answer: {e}"),
    };
    let status = raw.status;
    let text = String::from_utf8_lossy(&raw.body);
    assert!(raw.body.len() <= MAX_ANSWER_BYTES, "{method} {path}: {} byte answer", raw.body.len());
    check_error_answer(&format!("{method} {path}"), status, &raw.body, path == "/v1/peers/dial");
    if expect_too_large {
        assert_eq!(status, 413, "{method} {path}: an over-cap body was not refused with 413: {text}");
    }
    let is_json = raw
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&raw.body) {
            panic!("{method} {path}: JSON answer does not parse ({e}): {text}");
        }
    }
    if status == 201 && path.starts_with("/v1/records") {
        let id = serde_json::from_slice::<serde_json::Value>(&raw.body)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(String::from));
        let Some(id) = id else { panic!("201 for a record without its id: {text}") };
        let back = n.rt.block_on(n.client.request_raw(Method::GET, &format!("/v1/records/{id}"), None));
        assert_eq!(back.map(|r| r.status).ok(), Some(200), "an acknowledged record {id} does not read back");
    }
}

/// An error answer (4xx, 5xx) is the documented JSON shape with a code and a message, and a
/// 5xx is one of the documented ones.
fn check_error_answer(what: &str, status: u16, body: &[u8], dial: bool) {
    if status < 400 {
        return;
    }
    let text = String::from_utf8_lossy(body);
    let err: ErrorBody = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => panic!("{what}: {status} answer is not the JSON error shape ({e}): {text}"),
    };
    assert!(!err.error.code.is_empty() && !err.error.message.is_empty(), "{what}: empty error: {text}");
    if status >= 500 {
        // 507: the machine's disk is below the node's flood stage (documented, not a bug).
        let documented = (status == 503 && matches!(err.error.code.as_str(), "unavailable" | "busy"))
            || (status == 507 && err.error.code == "insufficient_storage")
            || (status == 502 && err.error.code == "dial_failed" && dial);
        assert!(documented, "{what}: server error {status}: {text}");
    }
}

/// Raw mode: `bytes` on a fresh connection, the write side closed, the answer judged.
fn raw_request(bytes: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = node();
    let answer = n.rt.block_on(async {
        let mut s = match tokio::net::UnixStream::connect(&n.socket).await {
            Ok(s) => s,
            Err(e) => panic!("cannot connect to the admin socket: {e}"),
        };
        // The server may answer and close before it has read everything (a refusal).
        let _ = s.write_all(bytes).await;
        // An unfinished head would wait for `admin.header_timeout_secs`: close the write
        // side at once (the guard then ends the connection without an answer). A finished
        // one is answered while the connection is whole (hyper treats a read EOF as the
        // client gone); a body shorter than its length is given a moment, then the same.
        let mut req = httparse::Request::new(&mut []);
        let partial = matches!(req.parse(bytes), Ok(httparse::Status::Partial));
        let mut wait_whole = if partial { Duration::ZERO } else { RAW_WHOLE_WAIT };
        if partial {
            let _ = s.shutdown().await;
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
        loop {
            let patience = if out.is_empty() && !wait_whole.is_zero() {
                (tokio::time::Instant::now() + wait_whole).min(deadline)
            } else {
                deadline
            };
            match tokio::time::timeout_at(patience, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
                Ok(Ok(k)) => out.extend_from_slice(buf.get(..k).unwrap_or_default()),
                Err(_) if patience < deadline => {
                    let _ = s.shutdown().await;
                    wait_whole = Duration::ZERO;
                }
                Err(_) => return (out, false),
            }
            assert!(out.len() <= MAX_ANSWER_BYTES, "raw: answer over {MAX_ANSWER_BYTES} bytes");
        }
    });
    let (answer, ended) = answer;
    let what =
        format!("raw {:?}", String::from_utf8_lossy(bytes.get(..bytes.len().min(200)).unwrap_or_default()));
    let mut rest = answer.as_slice();
    // Interim 100 Continue answers come before the final one.
    loop {
        if rest.is_empty() {
            // The client closed before finishing a head: there is nobody to answer.
            return;
        }
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            panic!("{what}: an answer without a complete head: {:?}", String::from_utf8_lossy(rest));
        };
        let head = String::from_utf8_lossy(rest.get(..end).unwrap_or_default()).to_string();
        let status: u16 = match head.get(..12) {
            Some(l) if l.starts_with("HTTP/1.1 ") || l.starts_with("HTTP/1.0 ") => {
                l.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
            }
            _ => panic!("{what}: not an HTTP/1 status line: {head:?}"),
        };
        assert!((100..600).contains(&status), "{what}: status line {head:?}");
        let body = rest.get(end + 4..).unwrap_or_default();
        if status == 100 {
            rest = body;
            continue;
        }
        let lower = head.to_ascii_lowercase();
        if lower.contains("content-type: text/event-stream")
            || lower.contains("content-type: application/x-ndjson")
        {
            // A stream (events, export) answers 200 and goes on; its items are checked by the
            // API's own tests.
            assert_eq!(status, 200, "{what}: {head}");
            return;
        }
        assert!(ended, "{what}: the answer did not end within {REQUEST_DEADLINE:?}: {head}");
        let length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        if status >= 400 {
            let Some(length) = length else {
                panic!("{what}: an error answer without Content-Length: {head}")
            };
            let body = body.get(..length).unwrap_or_else(|| panic!("{what}: a short error body: {head}"));
            check_error_answer(&what, status, body, true);
        }
        return;
    }
}
