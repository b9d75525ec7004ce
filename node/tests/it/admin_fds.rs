//! Issue 17, with a real process at a real file-descriptor limit: 1,100 idle TCP connections
//! to the admin listener of a node started with `RLIMIT_NOFILE` 1,024 must not starve the
//! Unix-socket API or the p2p listener, and the node closes every one of them by itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{read_until_line, sigterm, BIN};

const IDLE_CONNECTIONS: usize = 1_100;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// A field of a JSON log line.
fn json_field(line: &str, key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get(key)?.as_str().map(str::to_string)
}

#[test]
fn idle_admin_connections_cannot_exhaust_the_node_fd_limit() {
    // The test itself holds 1,100 sockets: raise its own soft limit (prlimit(1); `unsafe`
    // and so setrlimit(2) are forbidden here).
    let me = std::process::id().to_string();
    let raised = Command::new("prlimit").args(["--pid", &me, "--nofile=8192:"]).status();
    assert!(raised.is_ok_and(|s| s.success()), "prlimit could not raise the test's own fd limit to 8192");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("palisade.toml"),
        "[admin]\nlisten = \"127.0.0.1:0\"\nheader_timeout_secs = 3\n",
    )
    .unwrap();
    let mut child = Command::new("prlimit")
        .arg("--nofile=1024:1024")
        .arg(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0", "--metrics-listen", "off", "--log-format", "json"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit runs palisade");
    let lines = read_until_line(child.stderr.take().unwrap(), "palisade is running", Duration::from_secs(60));
    let admin: std::net::SocketAddr = lines
        .iter()
        .find_map(|l| json_field(l, "tcp").filter(|t| t != "off"))
        .expect("the admin TCP address is logged")
        .parse()
        .unwrap();
    let p2p: std::net::SocketAddr = lines
        .iter()
        .find_map(|l| json_field(l, "address").filter(|a| a.contains("/tcp/")))
        .map(|a| {
            let parts: Vec<&str> = a.split('/').collect();
            format!("{}:{}", parts[2], parts[4])
        })
        .expect("the p2p TCP address is logged")
        .parse()
        .unwrap();

    let mut idle: Vec<TcpStream> = (0..IDLE_CONNECTIONS)
        .map(|i| TcpStream::connect(admin).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    // Give the accept loop a moment to take what it will.
    std::thread::sleep(Duration::from_millis(500));
    let fds = open_fds(child.id());
    assert!(fds < 900, "the node holds {fds} file descriptors with 1,100 idle admin clients");

    // The Unix-socket API answers.
    let status = crate::palisade(dir.path()).args(["--json", "status"]).output().unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    // The p2p listener accepts and speaks multistream-select.
    let mut p = TcpStream::connect(p2p).unwrap();
    p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    p.write_all(b"\x13/multistream/1.0.0\n").unwrap();
    let mut hello = [0u8; 20];
    p.read_exact(&mut hello).expect("the p2p listener answers");
    assert_eq!(&hello, b"\x13/multistream/1.0.0\n");

    // Every idle connection is closed by the node: refused at once (503) or at the header
    // timeout (3 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused = 0;
    for s in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).unwrap();
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(_) => refused += usize::from(buf.starts_with(b"HTTP/1.1 503")),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("an idle admin connection was still open after 30 s: {e}"),
        }
    }
    // At most 128 are held at once (admin.max_connections); the rest were refused at once,
    // except those that arrived after held ones timed out and took their slots.
    assert!(refused >= IDLE_CONNECTIONS / 2, "only {refused} connections were refused with 503");
    assert!(open_fds(child.id()) < 900);
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}
