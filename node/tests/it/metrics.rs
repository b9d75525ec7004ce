//! Every metric the Grafana dashboard and the Prometheus alerts reference is exported by a
//! running node (scraped from its /metrics listener after some traffic).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Duration;

use libp2p::Multiaddr;
use palisade_guard::{Guard, GuardConfig};
use palisade_net::{NetConfig, NetEvent, Network};
use palisade_store::{Store, StoreConfig};
use palisade_types::ed25519_dalek::SigningKey;
use prometheus_client::registry::Registry;

use crate::{palisade, read_until_line, sigterm};

fn contrib(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Metric names in a dashboard or rule file (`palisade_…`, `libp2p_…`).
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if boundary && (rest.starts_with("palisade_") || rest.starts_with("libp2p_")) {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            i += name.len();
            out.insert(name);
        } else {
            i += 1;
        }
    }
    out
}

/// Sample names (and family names) in Prometheus/OpenMetrics text.
fn exported(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                out.insert(name.to_string());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name: String = line.chars().take_while(|c| *c != '{' && *c != ' ').collect();
            out.insert(name);
        }
    }
    out
}

fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"), "GET {path}: {out}");
    out
}

fn scrape(addr: &str) -> String {
    get(addr, "/metrics")
}

fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    let rest = line.get(start..)?.trim_start_matches('"');
    Some(rest.split(['"', ' ']).next()?.to_string())
}

#[test]
fn the_rule_file_and_dashboard_are_well_formed() {
    let alerts = contrib("contrib/prometheus/alerts.yml");
    for name in ["PalisadeNodeNotReady", "PalisadeBanStorm", "PalisadeDropRateHigh", "PalisadeNoPeers"] {
        assert!(alerts.contains(&format!("alert: {name}")), "alerts.yml lacks {name}");
    }
    assert_eq!(alerts.matches("- alert:").count(), alerts.matches("expr:").count());
    let dash: serde_json::Value = serde_json::from_str(&contrib("contrib/grafana/palisade.json")).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() > 10);
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert!(!p["targets"].as_array().unwrap().is_empty(), "panel {} has no query", p["title"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let tmp = tempfile::tempdir().unwrap();
    // A peer for the process, so the per-direction peer gauges and ingest counters exist.
    let store = Store::open(&StoreConfig::new(tmp.path().join("a/db"))).unwrap();
    let mut registry = Registry::default();
    let guard = Guard::new(GuardConfig::default(), store.clone(), &mut registry).unwrap();
    let net =
        NetConfig { listen: vec!["/ip4/127.0.0.1/tcp/0".into()], verify_workers: 1, ..NetConfig::default() };
    let identity = libp2p::identity::Keypair::ed25519_from_bytes([9; 32]).unwrap();
    let a = Network::start(net, identity, SigningKey::from_bytes(&[9; 32]), store, guard, &mut registry)
        .await
        .unwrap();
    let a_handle = a.handle();
    let mut a_events = a_handle.subscribe();
    let a_addr = loop {
        if let Some(x) = a_handle.info().await.unwrap().listen_addrs.first() {
            break x.parse::<Multiaddr>().unwrap().with(libp2p::multiaddr::Protocol::P2p(a_handle.peer_id()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    let b_dir = tmp.path().join("b");
    let mut b = palisade(&b_dir)
        .args([
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "pretty",
        ])
        .args(["--bootstrap", &a_addr.to_string()])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = b.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        read_until_line(stderr, "palisade is running", Duration::from_secs(60))
    })
    .await
    .unwrap();
    let metrics_line =
        lines.iter().find(|l| l.contains("metrics endpoint listening")).expect("metrics log line");
    let metrics_addr = field(metrics_line, "addr").unwrap();

    // Traffic: B connects to A; A publishes (B ingests it); B's API stores and imports.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, a_events.recv()).await.expect("B connects to A") {
            Ok(NetEvent::PeerConnected { .. }) => break,
            _ => continue,
        }
    }
    // Subscribe to B's events before A publishes, then wait for the record to arrive.
    let b_api = palisade_api::ApiClient::unix(b_dir.join("admin.sock"));
    let mut b_events = b_api
        .events(&palisade_api::model::EventParams { types: Some("record_stored".into()), kinds: None })
        .await
        .unwrap();
    let id = a_handle.submit(palisade_types::fixtures::attestation(1)).await.unwrap().id;
    loop {
        match tokio::time::timeout_at(deadline, b_events.next_event()).await.expect("B gets A's record") {
            Ok(Some(palisade_api::model::ApiEvent::RecordStored { id: got, .. })) if got == id => break,
            Ok(Some(_)) => continue,
            other => panic!("event stream ended: {other:?}"),
        }
    }
    let b_dir2 = b_dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        palisade(&b_dir2)
            .args(["attest", "submit", "--subject", "m", "--digest", &format!("sha256:{}", "ab".repeat(32))])
            .args(["--verdict", "pass", "--score", "9", "--scanner", "s", "--scanner-version", "1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    b_api.peers().await.unwrap();

    // Issue 20: probes need neither the socket nor a token.
    let probe_addr = metrics_addr.clone();
    let (health, ready) =
        tokio::task::spawn_blocking(move || (get(&probe_addr, "/health"), get(&probe_addr, "/ready")))
            .await
            .unwrap();
    assert!(health.ends_with("ok\n"), "{health}");
    assert!(ready.contains("\"ready\":true"), "{ready}");
    let text = tokio::task::spawn_blocking(move || scrape(&metrics_addr)).await.unwrap();
    let have = exported(&text);
    let mut want = referenced(&contrib("contrib/grafana/palisade.json"));
    want.extend(referenced(&contrib("contrib/prometheus/alerts.yml")));
    assert!(want.len() > 20, "{want:?}");
    let missing: Vec<_> = want.iter().filter(|n| !have.contains(*n)).collect();
    assert!(missing.is_empty(), "referenced but not exported: {missing:?}\n--- /metrics ---\n{text}");

    sigterm(&b);
    let status = tokio::task::spawn_blocking(move || b.wait().unwrap()).await.unwrap();
    assert!(status.success());
    a.shutdown().await.unwrap();
}
