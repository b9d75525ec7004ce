//! The listeners: the Unix socket and the token file are created safely, and every
//! connection is served within the admin API's connection limits (issue 17): at most
//! `admin.max_connections` open per listener (503 and close beyond), a request head that
//! must arrive within `admin.header_timeout_secs` and pass the head guard (`head.rs`), then
//! hyper for that one request (keep-alive off), so idle or slow clients cannot hold the
//! node's file descriptors and every refusal has the API's error body.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use axum::http::StatusCode;

use crate::error::{ApiError, ServeError};
use crate::metrics::{ApiMetrics, ListenerLabels};

/// Longest Unix socket path (sun_path is 108 bytes including the terminating NUL).
pub(crate) const MAX_SOCKET_PATH_BYTES: usize = 107;

/// How long a refused connection's 503 may take to write before the socket is dropped.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_millis(50);

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub(crate) max_connections: usize,
    pub(crate) header_timeout: Duration,
}

/// Accepts connections on `listener` until `stop`, serving each with `app` within `limits`.
/// On `stop`, open connections finish their current request and close.
pub(crate) async fn serve<L: axum::serve::Listener>(
    mut listener: L,
    app: Router,
    limits: ConnLimits,
    metrics: ApiMetrics,
    name: &'static str,
    stop: CancellationToken,
) {
    let labels = ListenerLabels { listener: name.to_string() };
    let open = metrics.connections.get_or_create(&labels).clone();
    let refused = metrics.connections_refused.get_or_create(&labels).clone();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (io, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.inc();
            refuse(io, limits.max_connections).await;
            continue;
        };
        open.inc();
        let (app, stop, open, metrics) = (app.clone(), stop.clone(), open.clone(), metrics.clone());
        connections.spawn(async move {
            serve_connection(io, app, limits.header_timeout, &metrics, stop).await;
            open.dec();
            drop(slot);
        });
    }
    while connections.join_next().await.is_some() {}
}

/// Serves one request: its head read and judged by the guard, then hyper with the head
/// replayed (keep-alive off: hyper answers `Connection: close` and closes after it).
async fn serve_connection<I>(
    mut io: I,
    app: Router,
    header_timeout: Duration,
    metrics: &ApiMetrics,
    stop: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let head = tokio::select! {
        head = crate::head::read_head(&mut io, header_timeout, metrics) => head,
        _ = stop.cancelled() => None,
    };
    let Some(head) = head else { return };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The head is already here; the timer bounds nothing more than a guard gap would.
    // Half-closed connections stay unsupported (hyper's default): a read EOF is how a
    // departed event-stream subscriber is noticed at once, not at its next heartbeat.
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(false);
    let io = crate::head::Replay::new(head, io);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Header timeouts, resets, malformed requests: the client's business.
        debug!(error = %e, "admin API connection ended with an error");
    }
}

/// Answers a connection over the cap with a 503 in the API's error shape and closes it.
async fn refuse<I: tokio::io::AsyncWrite + Unpin>(mut io: I, max: usize) {
    let error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        format!("{max} connections are open on this listener, the maximum (admin.max_connections); close idle connections and retry"),
    );
    let response = crate::head::response_bytes(&error);
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, io.write_all(&response)).await;
}

/// Binds the socket at `path` with mode 0600 from the first moment: it is bound inside a
/// fresh 0700 directory next to `path`, chmod-ed, then renamed into place.
pub(crate) fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    let io = |what: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| ServeError::Io { what, path: p, source }
    };
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH_BYTES {
        return Err(ServeError::PathTooLong { path: path.to_path_buf(), len });
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.file_type().is_socket() {
                return Err(ServeError::NotASocket { path: path.to_path_buf() });
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(ServeError::SocketInUse { path: path.to_path_buf() }),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    info!(path = %path.display(), "replacing a stale admin socket (left by a crash)");
                    std::fs::remove_file(path).map_err(io("cannot remove the stale socket", path))?;
                }
                Err(e) => return Err(io("cannot check the existing socket", path)(e)),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot inspect", path)(e)),
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let private = parent.join(format!(".palisade-sock-{}-{n}", std::process::id()));
    let tmp = private.join("s");
    let listener = if tmp.as_os_str().len() <= MAX_SOCKET_PATH_BYTES {
        let _ = std::fs::remove_dir_all(&private);
        std::fs::DirBuilder::new().mode(0o700).create(&private).map_err(io("cannot create", &private))?;
        let bound = std::os::unix::net::UnixListener::bind(&tmp)
            .map_err(io("cannot bind the admin socket", &tmp))
            .and_then(|l| {
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                    .map_err(io("cannot set permissions of", &tmp))?;
                std::fs::rename(&tmp, path).map_err(io("cannot move the admin socket to", path))?;
                Ok(l)
            });
        let _ = std::fs::remove_dir_all(&private);
        bound?
    } else {
        // Path too long for the detour; bind in place (the data directory is 0700).
        let l =
            std::os::unix::net::UnixListener::bind(path).map_err(io("cannot bind the admin socket", path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("cannot set permissions of", path))?;
        l
    };
    listener.set_nonblocking(true).map_err(io("cannot configure", path))?;
    tokio::net::UnixListener::from_std(listener).map_err(io("cannot register", path))
}

/// Generates a 256-bit token and writes it (hex, one line) to `path` with mode 0600.
pub(crate) fn write_token(path: &Path) -> Result<String, ServeError> {
    use rand_core::RngCore;
    use std::io::Write;
    let mut raw = [0u8; 32];
    rand_core::OsRng.try_fill_bytes(&mut raw).map_err(|e| ServeError::Random(e.to_string()))?;
    let token = hex::encode(raw);
    let io = |what: &'static str| {
        let p = path.to_path_buf();
        move |source| ServeError::Io { what, path: p, source }
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot replace the token file")(e)),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("cannot create the token file"))?;
    writeln!(f, "{token}").map_err(io("cannot write the token file"))?;
    f.sync_all().map_err(io("cannot write the token file"))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_at_the_socket_path_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.sock");
        std::fs::write(&p, "precious").unwrap();
        assert!(matches!(bind_unix(&p), Err(ServeError::NotASocket { .. })));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "precious");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.sock");
        // A socket file nobody listens on: what a crash leaves behind.
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        assert!(p.exists());
        let live = bind_unix(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(bind_unix(&p), Err(ServeError::SocketInUse { .. })));
        drop(live);
        // No private directory is left behind.
        let leftovers: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("admin.sock")]);
    }

    #[test]
    fn token_files_are_0600_and_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.token");
        let a = write_token(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let b = write_token(&p).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(std::fs::read_to_string(&p).unwrap().trim(), b);
    }
}
