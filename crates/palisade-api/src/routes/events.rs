//! `GET /v1/events`: Server-Sent Events of records, peers and bans.
//!
//! Each subscriber gets a forwarding task that reads the node's bounded broadcast channels
//! and `try_send`s into a small per-subscriber queue. Nothing here ever waits on a
//! subscriber: one that falls behind (its queue is full, or it lagged on a broadcast) gets a
//! final `lagged` event and is dropped, and its slot is freed at once. The number of
//! subscribers is capped (`admin.max_sse_subscribers`, 429 beyond).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use palisade_guard::GuardEvent;
use palisade_net::NetEvent;
use palisade_types::RecordKind;
use tokio::sync::{broadcast, mpsc};

use crate::error::ApiError;
use crate::extract::{parse_field, QueryParams};
use crate::metrics::ApiMetrics;
use crate::model::{ApiEvent, ErrorBody, EventParams};
use crate::server::AppState;

struct Filter {
    types: Option<BTreeSet<&'static str>>,
    kinds: Option<BTreeSet<RecordKind>>,
}

impl Filter {
    fn parse(p: &EventParams) -> Result<Filter, ApiError> {
        let types = match &p.types {
            None => None,
            Some(list) => {
                let mut set = BTreeSet::new();
                for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    let known = ApiEvent::TYPES.iter().find(|k| **k == t).ok_or_else(|| {
                        ApiError::invalid_field(
                            "types",
                            format!("unknown event type {t:?}; known: {}", ApiEvent::TYPES.join(", ")),
                        )
                    })?;
                    set.insert(*known);
                }
                Some(set)
            }
        };
        let kinds = match &p.kinds {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|k| parse_field::<RecordKind>("kinds", k))
                    .collect::<Result<BTreeSet<_>, _>>()?,
            ),
        };
        Ok(Filter { types, kinds })
    }

    fn accepts(&self, e: &ApiEvent) -> bool {
        if let Some(t) = &self.types {
            if !t.contains(e.type_name()) {
                return false;
            }
        }
        match (e, &self.kinds) {
            (ApiEvent::RecordStored { kind, .. }, Some(kinds)) => kinds.contains(kind),
            _ => true,
        }
    }
}

fn from_net(e: NetEvent) -> ApiEvent {
    match e {
        NetEvent::RecordStored { id, kind, author, seq, source } => {
            ApiEvent::RecordStored { id, kind, author, seq, source: source.into() }
        }
        NetEvent::PeerConnected { peer, addr, direction } => {
            ApiEvent::PeerConnected { peer, addr, direction: direction.to_string() }
        }
        NetEvent::PeerDisconnected { peer } => ApiEvent::PeerDisconnected { peer },
        NetEvent::Equivocation { author, seq } => ApiEvent::Equivocation { author, seq },
    }
}

fn from_guard(e: GuardEvent) -> ApiEvent {
    match e {
        GuardEvent::Banned { target, until_ms, reason } => ApiEvent::Banned {
            target: target.to_string(),
            until_ms: (until_ms != palisade_guard::PERMANENT_UNTIL_MS).then_some(until_ms),
            reason,
        },
        GuardEvent::Unbanned { target } => ApiEvent::Unbanned { target: target.to_string() },
        GuardEvent::Disconnect { peer, reason } => {
            ApiEvent::PeerPenaltyDisconnect { peer: peer.to_base58(), reason: reason.as_str().to_string() }
        }
    }
}

/// Keeps the subscriber gauge right however the forwarder ends.
struct Subscribed(ApiMetrics);

impl Subscribed {
    fn new(m: &ApiMetrics) -> Subscribed {
        m.sse_subscribers.inc();
        Subscribed(m.clone())
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.sse_subscribers.dec();
    }
}

static NEXT_EVENT_ID: AtomicU64 = AtomicU64::new(1);

fn to_sse(e: &ApiEvent) -> Event {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".to_string());
    Event::default()
        .event(e.type_name())
        .id(NEXT_EVENT_ID.fetch_add(1, Ordering::Relaxed).to_string())
        .data(data)
}

enum Next {
    Event(ApiEvent),
    Stop,
}

fn received<T>(r: Result<T, broadcast::error::RecvError>, map: impl FnOnce(T) -> ApiEvent) -> Next {
    match r {
        Ok(e) => Next::Event(map(e)),
        Err(broadcast::error::RecvError::Lagged(n)) => Next::Event(ApiEvent::Lagged { missed: n }),
        Err(broadcast::error::RecvError::Closed) => Next::Stop,
    }
}

/// Moves events from the node's broadcasts into one subscriber's queue, never waiting.
struct Forwarder {
    net: broadcast::Receiver<NetEvent>,
    guard: broadcast::Receiver<GuardEvent>,
    tx: mpsc::Sender<ApiEvent>,
    filter: Filter,
    /// Set when the subscriber was dropped for being slow.
    slow: Arc<std::sync::atomic::AtomicBool>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Forwarder {
    /// Runs until the subscriber hangs up, falls behind, or the server stops. Dropping the
    /// sender then ends the subscriber's stream after what is queued.
    async fn run(mut self) {
        loop {
            let next = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => Next::Stop,
                _ = self.tx.closed() => Next::Stop,
                r = self.net.recv() => received(r, from_net),
                r = self.guard.recv() => received(r, from_guard),
            };
            let event = match next {
                Next::Stop => break,
                Next::Event(e) => e,
            };
            let lagged = matches!(event, ApiEvent::Lagged { .. });
            if !lagged && !self.filter.accepts(&event) {
                continue;
            }
            match self.tx.try_send(event) {
                Ok(()) if lagged => break,
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.slow.store(true, Ordering::Relaxed);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    }
}

/// Live events (Server-Sent Events).
///
/// `event:` is the type, `data:` its JSON.
/// Heartbeat comments keep idle connections open. A subscriber that falls behind gets a
/// final `lagged` event and the stream ends: reconnect and re-query to catch up.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventParams),
    responses((status = 200, description = "SSE stream; each `data:` is an ApiEvent", content_type = "text/event-stream", body = ApiEvent),
              (status = 400, description = "Unknown type or kind", body = ErrorBody),
              (status = 429, description = "Too many subscribers", body = ErrorBody)))]
pub(crate) async fn events(
    State(s): State<AppState>,
    QueryParams(p): QueryParams<EventParams>,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(&p)?;
    let permit = s.inner.sse_slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_subscribers",
            format!(
                "{} event subscribers are connected, the maximum (admin.max_sse_subscribers); close one or raise the limit",
                s.limits().max_sse_subscribers
            ),
        )
    })?;
    let net = s.handle().subscribe();
    let guard = s.handle().guard().subscribe();
    let (tx, rx) = mpsc::channel::<ApiEvent>(s.limits().sse_queue_events.max(1));
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let forwarder =
        Forwarder { net, guard, tx, filter, slow: slow.clone(), shutdown: s.inner.shutdown.clone() };
    let subscribed = Subscribed::new(&s.inner.metrics);
    tokio::spawn(async move {
        let _permit = permit;
        let _subscribed = subscribed;
        forwarder.run().await;
    });
    let stop = s.inner.shutdown.clone();
    let stream = futures::stream::unfold((rx, slow, stop, false), |(mut rx, slow, stop, ended)| async move {
        if ended {
            return None;
        }
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            e = rx.recv() => e,
        };
        match next {
            Some(e) => Some((Ok::<_, Infallible>(to_sse(&e)), (rx, slow, stop, false))),
            // The forwarder gave up on a slow subscriber: say so, then end.
            None if slow.load(Ordering::Relaxed) => {
                Some((Ok(to_sse(&ApiEvent::Lagged { missed: 1 })), (rx, slow, stop, true)))
            }
            None => None,
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(s.limits().sse_heartbeat).text("heartbeat"))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_types::{AuthorKey, RecordId};

    fn stored(n: u8) -> NetEvent {
        NetEvent::RecordStored {
            id: RecordId([n; 32]),
            kind: RecordKind::Attestation,
            author: AuthorKey([1; 32]),
            seq: u64::from(n),
            source: palisade_store::Source::Gossip,
        }
    }

    fn forwarder(
        queue: usize,
        filter: Filter,
    ) -> (Forwarder, broadcast::Sender<NetEvent>, broadcast::Sender<GuardEvent>, mpsc::Receiver<ApiEvent>)
    {
        let (net_tx, net) = broadcast::channel(16);
        let (guard_tx, guard) = broadcast::channel(16);
        let (tx, rx) = mpsc::channel(queue);
        let f = Forwarder {
            net,
            guard,
            tx,
            filter,
            slow: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            shutdown: tokio_util::sync::CancellationToken::new(),
        };
        (f, net_tx, guard_tx, rx)
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_is_dropped_without_blocking_the_sender() {
        let (f, net_tx, _g, mut rx) = forwarder(2, Filter { types: None, kinds: None });
        let slow = f.slow.clone();
        let task = tokio::spawn(f.run());
        for n in 0..10 {
            // Broadcast sends never wait, whatever the subscriber does.
            let _ = net_tx.send(stored(n));
        }
        task.await.unwrap();
        assert!(slow.load(Ordering::Relaxed));
        let mut got = Vec::new();
        while let Some(e) = rx.recv().await {
            got.push(e);
        }
        assert_eq!(got.len(), 2, "only what fitted in its queue: {got:?}");
    }

    #[tokio::test]
    async fn a_lagging_subscriber_gets_a_final_lagged_event() {
        let (f, net_tx, _g, mut rx) = forwarder(64, Filter { types: None, kinds: None });
        // 20 events into a broadcast of 16 before the forwarder reads any: it lags by 4.
        for n in 0..20 {
            let _ = net_tx.send(stored(n));
        }
        f.run().await;
        let first = rx.recv().await.unwrap();
        assert_eq!(first, ApiEvent::Lagged { missed: 4 });
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn filters_apply_to_types_and_kinds() {
        let p = EventParams { types: Some("record_stored,unbanned".into()), kinds: Some("anomaly".into()) };
        let (f, net_tx, guard_tx, mut rx) = forwarder(64, Filter::parse(&p).unwrap());
        let task = tokio::spawn(f.run());
        let _ = net_tx.send(stored(1));
        let _ = net_tx.send(NetEvent::RecordStored {
            id: RecordId([2; 32]),
            kind: RecordKind::Anomaly,
            author: AuthorKey([1; 32]),
            seq: 2,
            source: palisade_store::Source::Local,
        });
        let _ = net_tx.send(NetEvent::PeerDisconnected { peer: "x".into() });
        let ip = palisade_guard::BanTarget::Ip("10.0.0.1".parse().unwrap());
        let _ = guard_tx.send(GuardEvent::Unbanned { target: ip });
        let a = rx.recv().await.unwrap();
        assert!(matches!(a, ApiEvent::RecordStored { kind: RecordKind::Anomaly, .. }), "{a:?}");
        let b = rx.recv().await.unwrap();
        assert_eq!(b, ApiEvent::Unbanned { target: "ip:10.0.0.1".into() });
        drop(rx);
        task.await.unwrap();
        assert!(Filter::parse(&EventParams { types: Some("weather".into()), kinds: None }).is_err());
    }
}
