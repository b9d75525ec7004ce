//! init, run, config check, keys show, version.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::{palisade, sigterm, spawn_run, wait_for_line};

#[test]
fn init_then_run_starts_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = palisade(&data).arg("init").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(data.join("node.key")).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(data.join("palisade.toml").exists());

    let mut child = spawn_run(&data, &[]);
    wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn run_on_a_fresh_dir_without_init_creates_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let mut child = spawn_run(&data, &[]);
    let lines = wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    assert!(lines.iter().any(|l| l.contains("created a new node key")), "{lines:#?}");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    assert!(data.join("node.key").exists());
}

#[test]
fn config_check_with_a_bad_value_names_the_key_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("palisade.toml"), "[network]\nsync_interval_secs = 0\n").unwrap();
    let out = palisade(dir.path()).args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("network.sync_interval_secs") && err.contains("1..=86400"), "{err}");

    std::fs::write(dir.path().join("palisade.toml"), "[network]\nlisten_adress = []\n").unwrap();
    let out = palisade(dir.path()).args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_adress"));
}

#[test]
fn config_check_prints_the_effective_config_with_flag_and_env_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let out = palisade(dir.path())
        .args(["config", "check", "--listen", "/ip4/127.0.0.1/tcp/7777"])
        .env("PALISADE_METRICS_LISTEN", "off")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/ip4/127.0.0.1/tcp/7777"), "{text}");
    assert!(text.contains("listen = \"off\""), "{text}");
}

#[test]
fn explicit_missing_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = palisade(dir.path())
        .args(["--config", "/nonexistent/palisade.toml", "config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn keys_show_refuses_a_world_readable_key() {
    let dir = tempfile::tempdir().unwrap();
    assert!(palisade(dir.path()).arg("init").output().unwrap().status.success());
    let out = palisade(dir.path()).args(["keys", "show"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("peer_id: 12D3KooW"));
    std::fs::set_permissions(dir.path().join("node.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = palisade(dir.path()).args(["keys", "show"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

#[test]
fn usage_errors_exit_64_and_version_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = palisade(dir.path()).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = palisade(dir.path()).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("palisade "));
}

/// Issue 15: a store that holds a node's feed is never silently given a new identity when its
/// key file goes missing (that would orphan the feed), nor run with another node's key.
#[test]
fn a_missing_or_foreign_key_over_an_existing_feed_is_refused_with_78() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = spawn_run(&data, &[]);
    wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    let key = data.join("node.key");
    let kept = std::fs::read(&key).unwrap();

    std::fs::remove_file(&key).unwrap();
    let out = palisade(&data).args(["run", "--listen", "/ip4/127.0.0.1/tcp/0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("is missing") && stderr.contains("Restore node.key"), "{stderr}");
    assert!(!key.exists(), "no new key was created");

    // Another node's key over this store.
    let other = dir.path().join("other");
    assert!(palisade(&other).arg("init").output().unwrap().status.success());
    std::fs::copy(other.join("node.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = palisade(&data).args(["run", "--listen", "/ip4/127.0.0.1/tcp/0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("holds the feed of author"), "{stderr}");

    // A directory where the key should be.
    std::fs::remove_file(&key).unwrap();
    std::fs::create_dir(&key).unwrap();
    let out = palisade(&data).args(["keys", "show"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("not a regular file") && !stderr.contains("chmod"), "{stderr}");

    // The right key back: it runs again.
    std::fs::remove_dir(&key).unwrap();
    std::fs::write(&key, kept).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut child = spawn_run(&data, &[]);
    wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

/// Issue 20: libp2p listens with SO_REUSEPORT, so a second node on the same port used to
/// start and share the port's connections with the first. It must stop with "address in use".
#[test]
fn a_second_node_on_a_p2p_port_in_use_exits_with_address_in_use() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let first_dir = tempfile::tempdir().unwrap();
    let mut first = palisade(first_dir.path())
        .args(["run", "--listen", &listen, "--metrics-listen", "off"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut first, "palisade is running", Duration::from_secs(60));

    let second_dir = tempfile::tempdir().unwrap();
    let out = palisade(second_dir.path())
        .args(["run", "--listen", &listen, "--metrics-listen", "off"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&listen) && stderr.to_lowercase().contains("address already in use"), "{stderr}");
    // An address this machine does not have fails at start too (it used to fail later, in the
    // background), with the OS's reason and no word about another process.
    let foreign = palisade(second_dir.path())
        .args(["run", "--listen", "/ip4/192.0.2.1/tcp/7000", "--metrics-listen", "off"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&foreign.stderr);
    assert_eq!(foreign.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("192.0.2.1") && !stderr.contains("another process"), "{stderr}");
    sigterm(&first);
    assert!(first.wait().unwrap().success());
}

/// Issue 20: a bad log filter from the flag or the environment used to be silently ignored
/// (only the file's was checked). Every source is checked under its own name.
#[test]
fn a_bad_log_filter_from_any_source_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = palisade(dir.path()).args(["config", "check", "--log", "foo=["]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("--log (PALISADE_LOG)") && err.contains("foo=["), "{err}");
    let out = palisade(dir.path()).args(["config", "check"]).env("PALISADE_LOG", "foo=[").output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let out = palisade(dir.path()).args(["run"]).env("RUST_LOG", "foo=[").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("RUST_LOG"), "{err}");
    // A good one is accepted and shows in the effective config.
    let out =
        palisade(dir.path()).args(["config", "check", "--log", "warn,palisade_net=debug"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("warn,palisade_net=debug"));
}

/// Issue 20: logs written to a pipe or file carry no ANSI colour codes.
#[test]
fn logs_into_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_run(dir.path(), &[]);
    let lines = wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:#?}");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

/// Issue 20: a man page from the clap definition; `version`, `keys show` and `config check`
/// honour `--json`; a negative limit value needs no `--`.
#[test]
fn manpage_json_outputs_and_negative_values() {
    let dir = tempfile::tempdir().unwrap();
    let page = palisade(dir.path()).arg("manpage").output().unwrap();
    assert!(page.status.success());
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.contains(".TH palisade 1") && page.contains("completions"), "{page}");

    let v = palisade(dir.path()).args(["--json", "version"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert!(v["commit"].as_str().is_some_and(|c| !c.is_empty()) && v["target"].is_string(), "{v}");

    assert!(palisade(dir.path()).arg("init").output().unwrap().status.success());
    let keys = palisade(dir.path()).args(["--json", "keys", "show"]).output().unwrap();
    let keys: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    assert_eq!(keys["author"].as_str().map(str::len), Some(64), "{keys}");
    let cfg = palisade(dir.path()).args(["--json", "config", "check"]).output().unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(&cfg.stdout).unwrap();
    assert!(cfg["limits"].is_object() && cfg["store"]["min_free_disk_bytes"].is_u64(), "{cfg}");
    // `localhost` is a metrics host like any other.
    let out = palisade(dir.path())
        .args(["config", "check", "--metrics-listen", "localhost:9800"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A negative value reaches the node (no running node here: the error is "unreachable",
    // exit 2, not a usage error, exit 64).
    let out =
        palisade(dir.path()).args(["limits", "set", "disconnect_score_points", "-150"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 20: `--log-file` sends the logs to a file (rotated by size), not to stderr.
#[test]
fn log_file_receives_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("logs").join("palisade.log");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let child = palisade(dir.path())
        .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0", "--metrics-listen", "off", "--log-file"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&file).unwrap_or_default().contains("palisade is running") {
        assert!(std::time::Instant::now() < deadline, "no 'palisade is running' in {}", file.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("palisade is running"));
    assert!(std::fs::read_to_string(&file).unwrap().contains("stopped cleanly"));
    // A file that cannot be opened is a configuration error naming the key.
    let bad = palisade(dir.path()).args(["run", "--log-file", "/nonexistent-dir/x.log"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(78), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("log.file"));
}

/// Each query command offers the filters of its kind only, and every subcommand's help lists
/// the shared flags under their own heading (issue 20, CLI consistency).
#[test]
fn query_commands_offer_their_own_filters_and_global_flags_stand_apart() {
    let dir = tempfile::tempdir().unwrap();
    let help = |args: &[&str]| {
        let out = palisade(dir.path()).args(args).arg("--help").output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let attest = help(&["attest", "query"]);
    assert!(
        attest.contains("--subject")
            && !attest.contains("--min-severity")
            && !attest.contains("--fingerprint"),
        "{attest}"
    );
    let anomaly = help(&["anomaly", "query"]);
    assert!(anomaly.contains("--min-severity") && !anomaly.contains("--subject"), "{anomaly}");
    let records = help(&["records", "query"]);
    assert!(records.contains("--subject") && records.contains("--min-severity"), "{records}");
    for text in [&attest, &anomaly, &records] {
        let (own, global) = text.split_once("Global options:").expect("a Global options heading");
        assert!(global.contains("--data-dir") && !own.contains("--data-dir"), "{text}");
    }
}

/// A bootstrap peer named by DNS (`/dns4/localhost/...`), as a Kubernetes StatefulSet names its
/// pods (issue 20): the node resolves it and connects.
#[test]
fn a_bootstrap_peer_named_by_dns_is_resolved_and_dialled() {
    let first = crate::live::LiveNode::start(&[]);
    let status = first.json(&["status"]);
    let peer_id = status["peer_id"].as_str().unwrap().to_string();
    let port = status["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .find_map(|a| a.strip_prefix("/ip4/127.0.0.1/tcp/"))
        .map(|p| p.split('/').next().unwrap().to_string())
        .expect("a TCP listen address on 127.0.0.1");
    let bootstrap = format!("/dns4/localhost/tcp/{port}/p2p/{peer_id}");
    let second = crate::live::LiveNode::start(&["--bootstrap", &bootstrap]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let peers = second.json(&["peers", "list"]);
        if peers["peers"].as_array().is_some_and(|p| p.iter().any(|p| p["peer_id"] == peer_id.as_str())) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{bootstrap} was not dialled: {peers}");
        std::thread::sleep(Duration::from_millis(200));
    }
    second.stop();
    first.stop();
}

/// Issue 20: the members of a Kubernetes StatefulSet share one bootstrap list of addresses
/// without peer ids (`/dns4/palisade-N.palisade/tcp/7400`), their own among them. Each node
/// skips the entry that reaches itself, learns the others' ids in the handshake, and they
/// connect, whichever starts first.
#[test]
fn nodes_sharing_one_address_only_bootstrap_list_skip_themselves_and_connect() {
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (pa, pb) = (free_port(), free_port());
    let listen_a = format!("/ip4/127.0.0.1/tcp/{pa}");
    let listen_b = format!("/ip4/127.0.0.1/tcp/{pb}");
    let shared = [
        "--bootstrap",
        &format!("/dns4/localhost/tcp/{pa}"),
        "--bootstrap",
        &format!("/ip4/127.0.0.1/tcp/{pb}"),
    ]
    .map(String::from);
    let start = |listen: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--listen", listen];
        args.extend(shared.iter().map(String::as_str));
        let child = crate::spawn_run(dir.path(), &args);
        // Killed on drop if a wait fails.
        let mut node = crate::live::LiveNode { child, dir };
        let lines = crate::lines_of(node.child.stderr.take().unwrap());
        let mut seen = Vec::new();
        crate::wait_for_in(&lines, &mut seen, "palisade is running");
        (node, lines, seen)
    };
    let (a, lines_a, mut seen_a) = start(&listen_a);
    let (b, lines_b, mut seen_b) = start(&listen_b);
    let id = |n: &crate::live::LiveNode| n.json(&["status"])["peer_id"].as_str().unwrap().to_string();
    let (id_a, id_b) = (id(&a), id(&b));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for (node, other) in [(&a, &id_b), (&b, &id_a)] {
        loop {
            let peers = node.json(&["peers", "list"]);
            let listed = peers["peers"].as_array().unwrap();
            assert!(listed.iter().all(|p| p["peer_id"] != id(node).as_str()), "a node lists itself: {peers}");
            if listed.iter().any(|p| p["peer_id"] == other.as_str()) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not connected to {other}: {peers}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Ready: bootstrap entries are configured, a peer is connected and the own-feed check
    // (which waits up to its window for a second peer's answer) is over.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while a.json(&["status"])["ready"] != true {
        assert!(std::time::Instant::now() < deadline, "never ready: {}", a.json(&["status"]));
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each found the entry that is itself (a's through DNS and the handshake, b's as one of
    // its listen addresses) and said so.
    crate::wait_for_in(&lines_a, &mut seen_a, "bootstrap entry is this node itself");
    crate::wait_for_in(&lines_b, &mut seen_b, "bootstrap entry is this node itself");
    b.stop();
    a.stop();
}
