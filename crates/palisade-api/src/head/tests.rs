//! The head guard judged on its own, and held against hyper: every head it lets through,
//! hyper must hand to the service (else hyper would answer its own empty-bodied error).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

fn verdict(bytes: &[u8]) -> Result<Head, (u16, &'static str)> {
    judge(bytes).map_err(|r| (r.error.status.as_u16(), r.error.code))
}

#[test]
fn well_formed_heads_pass_and_partial_ones_wait() {
    for ok in [
        &b"GET /v1/node HTTP/1.1\r\nHost: palisade\r\n\r\n"[..],
        b"\r\nGET /v1/node HTTP/1.0\r\n\r\n",
        b"POST /v1/records HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n{}",
        b"POST /v1/import HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n",
        b"FOO /v1/node HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(verdict(ok), Ok(Head::Complete), "{}", String::from_utf8_lossy(ok));
    }
    for partial in [&b""[..], b"GET", b"GET /v1/node HTTP/1.1\r\nHost: pal", b"GET / HTTP/1.1\r\n\r"] {
        assert_eq!(verdict(partial), Ok(Head::Partial), "{}", String::from_utf8_lossy(partial));
    }
}

#[test]
fn malformed_heads_are_refused_with_their_code() {
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"G<T / HTTP/1.1\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"GET /a b HTTP/1.1\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"GET / HTTP/2.0\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(), 400, "bad_request"),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(), 400, "bad_request"),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec(), 400, "bad_request"),
        (format!("GET / HTTP/1.1\r\n{many}\r\n").into_bytes(), 431, "headers_too_large"),
        (
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(MAX_HEADER_BYTES)).into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            format!("GET / HTTP/1.1\r\nX: {}", "y".repeat(MAX_HEAD_BYTES)).into_bytes(),
            431,
            "headers_too_large",
        ),
        (format!("GET /{} HTTP/1.1\r\n\r\n", "x".repeat(MAX_URI_BYTES)).into_bytes(), 414, "uri_too_long"),
        (format!("GET /{}", "x".repeat(MAX_REQUEST_LINE_BYTES)).into_bytes(), 414, "uri_too_long"),
    ];
    for (bytes, status, code) in cases {
        assert_eq!(
            verdict(&bytes),
            Err((status, code)),
            "{}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        );
    }
}

#[test]
fn refusals_are_the_documented_error_shape() {
    let r = judge(b"G<T / HTTP/1.1\r\n\r\n").unwrap_err();
    let bytes = response_bytes(&r.error);
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    assert!(head.contains("content-type: application/json") && head.contains("connection: close"), "{head}");
    assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
    let err: crate::model::ErrorBody = serde_json::from_str(body).unwrap();
    assert_eq!(err.error.code, "bad_request");
    assert!(err.error.message.contains("method"), "{}", err.error.message);
}

/// A small deterministic generator (xorshift64*), so a failure names its case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A valid head with one to three mutations of the kinds that trip HTTP parsers.
fn mutated_head(rng: &mut Rng) -> Vec<u8> {
    const BASES: [&[u8]; 5] = [
        b"GET /v1/records?kind=attestation&limit=10 HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
        b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /v1/import HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n0\r\n\r\n",
        b"DELETE /v1/bans/peer%3Aab HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"\r\nPUT /v1/limits/x HTTP/1.1\r\nContent-Length: 0\r\nUpgrade: h2c\r\n\r\n",
    ];
    const INTERESTING: &[u8] = b" \t\r\n:;,/?#%\"{}<>\\\x00\x01\x7f\x80\xff0aZ-";
    let mut head = BASES[rng.below(BASES.len())].to_vec();
    for _ in 0..1 + rng.below(3) {
        if head.is_empty() {
            break;
        }
        let at = rng.below(head.len());
        match rng.below(6) {
            0 => head[at] = INTERESTING[rng.below(INTERESTING.len())],
            1 => head.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 => {
                head.remove(at);
            }
            3 => {
                let line: &[u8] = [
                    &b"Content-Length: 7\r\n"[..],
                    b"Transfer-Encoding: chunked\r\n",
                    b"Transfer-Encoding: identity\r\n",
                    b"Content-Length: +3\r\n",
                    b"Host: a\r\n",
                    b"X:\r\n",
                    b" folded\r\n",
                ][rng.below(7)];
                let line_start = head.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
                head.splice(line_start..line_start, line.iter().copied());
            }
            4 => head[at] = rng.next() as u8,
            _ => head.truncate(at.max(1)),
        }
    }
    head
}

/// Whether hyper, given `bytes` on a connection, hands a request to the service.
async fn hyper_serves(bytes: Vec<u8>) -> bool {
    use tokio::io::AsyncWriteExt;
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let served = Arc::new(AtomicBool::new(false));
    let flag = served.clone();
    let service = hyper::service::service_fn(move |_req| {
        flag.store(true, Ordering::SeqCst);
        async { Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new())) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(hyper_util::rt::TokioIo::new(server), service);
    client.write_all(&bytes).await.unwrap();
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
    served.load(Ordering::SeqCst)
}

#[tokio::test]
async fn every_head_the_guard_passes_hyper_serves() {
    // The referee itself: hyper serves a good head and refuses a bad one.
    assert!(hyper_serves(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()).await);
    assert!(
        !hyper_serves(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec()).await
    );
    let mut rng = Rng(0x5eed_0017);
    let (mut passed, mut refused) = (0, 0);
    for case in 0..3_000 {
        let head = mutated_head(&mut rng);
        match judge(&head) {
            Ok(Head::Complete) => {
                passed += 1;
                assert!(
                    hyper_serves(head.clone()).await,
                    "case {case}: the guard passed a head hyper refuses: {:?}",
                    String::from_utf8_lossy(&head)
                );
            }
            Ok(Head::Partial) => {}
            Err(_) => refused += 1,
        }
    }
    eprintln!("guard passed {passed}, refused {refused} of 3000 mutated heads");
    // Neither side of the comparison is empty.
    assert!(passed > 300 && refused > 300, "passed {passed}, refused {refused}");
}
