//! Peers: list, dial, disconnect; bans.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use libp2p::{Multiaddr, PeerId};
use palisade_guard::BanTarget;

use crate::error::ApiError;
use crate::extract::{parse_field, JsonBody};
use crate::model::{
    BanList, BanRequest, BanView, DialRequest, DialResponse, DisconnectResponse, ErrorBody, PeerLimiters,
    PeerList, PeerView, UnbanResponse,
};
use crate::server::AppState;

/// Longest manual ban: ten years.
pub(crate) const MAX_BAN_SECS: u64 = 10 * 365 * 24 * 3600;
/// Longest ban reason, in characters.
pub(crate) const MAX_BAN_REASON_CHARS: usize = 256;

/// Connected peers.
///
/// With their guard state: score, rate limiters, bytes in and out.
#[utoipa::path(get, path = "/v1/peers", tag = "peers",
    responses((status = 200, description = "Connected peers", body = PeerList),
              (status = 503, description = "The network is stopping", body = ErrorBody)))]
pub(crate) async fn list(State(s): State<AppState>) -> Result<Json<PeerList>, ApiError> {
    let peers = s.handle().peers().await?;
    let guard = s.handle().guard();
    let peers = peers
        .into_iter()
        .map(|p| {
            let state = p.peer_id.parse::<PeerId>().ok().and_then(|id| guard.peer_state(&id));
            PeerView {
                addr: p.addr,
                direction: p.direction.to_string(),
                connections: p.connections,
                since_ms: p.since_ms,
                agent: p.agent,
                gossip_score: p.gossip_score,
                score: state.as_ref().map(|g| g.score_points).unwrap_or(0.0),
                allowlisted: state.as_ref().is_some_and(|g| g.allowlisted),
                banned_until_ms: state.as_ref().and_then(|g| g.banned_until_ms),
                bytes_in: state.as_ref().map(|g| g.bytes_in).unwrap_or(0),
                bytes_out: state.as_ref().map(|g| g.bytes_out).unwrap_or(0),
                limiters: state
                    .as_ref()
                    .map(|g| PeerLimiters {
                        messages: g.messages.into(),
                        message_bytes: g.message_bytes.into(),
                        cost_units: g.cost_units.into(),
                        records: g.records.into(),
                    })
                    .unwrap_or_default(),
                peer_id: p.peer_id,
            }
        })
        .collect();
    Ok(Json(PeerList { peers }))
}

/// Dial a peer.
///
/// Answers once the connection is up (with the peer's id), or with why the dial failed
/// (unreachable, refused, wrong peer id, handshake timeout).
#[utoipa::path(post, path = "/v1/peers/dial", tag = "peers", request_body = DialRequest,
    responses((status = 200, description = "Connected", body = DialResponse),
              (status = 400, description = "Not a multiaddr", body = ErrorBody),
              (status = 502, description = "The dial failed: unreachable, refused, another peer id, handshake failed (the message says why)", body = ErrorBody)))]
pub(crate) async fn dial(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<DialRequest>,
) -> Result<Json<DialResponse>, ApiError> {
    let addr: Multiaddr = parse_field("addr", &req.addr)?;
    if addr.is_empty() {
        return Err(ApiError::invalid_field(
            "addr",
            "is empty; give a multiaddr such as /ip4/10.0.0.5/tcp/7400/p2p/12D3KooW…",
        ));
    }
    let peer = s.handle().dial(addr.clone()).await?;
    Ok(Json(DialResponse { addr: addr.to_string(), peer_id: peer.to_string() }))
}

/// Disconnect a peer.
///
/// Closes every connection to it (it may reconnect; ban it to keep it out).
#[utoipa::path(post, path = "/v1/peers/{peer_id}/disconnect", tag = "peers",
    params(("peer_id" = String, Path, description = "Peer id")),
    responses((status = 200, description = "Disconnected", body = DisconnectResponse),
              (status = 400, description = "Not a peer id", body = ErrorBody),
              (status = 404, description = "Not connected", body = ErrorBody)))]
pub(crate) async fn disconnect(
    State(s): State<AppState>,
    Path(peer_id): Path<String>,
) -> Result<Json<DisconnectResponse>, ApiError> {
    let peer: PeerId = parse_field("peer_id", &peer_id)?;
    if !s.handle().disconnect(peer).await? {
        return Err(ApiError::not_found(format!("peer {peer} is not connected")));
    }
    Ok(Json(DisconnectResponse { peer_id: peer.to_base58(), disconnected: true }))
}

/// Bans in force.
#[utoipa::path(get, path = "/v1/bans", tag = "peers",
    responses((status = 200, description = "Bans in force", body = BanList)))]
pub(crate) async fn bans(State(s): State<AppState>) -> Json<BanList> {
    let mut bans: Vec<BanView> = s.handle().guard().bans().into_iter().map(BanView::from).collect();
    bans.sort_by(|a, b| a.target.cmp(&b.target));
    Json(BanList { bans })
}

/// `peer:<id>`, `ip:<addr>`, or a bare peer id or IP address.
pub(crate) fn parse_target(field: &str, text: &str) -> Result<BanTarget, ApiError> {
    if let Ok(t) = text.parse::<BanTarget>() {
        return Ok(t);
    }
    if let Ok(p) = text.parse::<PeerId>() {
        return Ok(BanTarget::Peer(p));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(BanTarget::Ip(palisade_guard::canonical_ip(ip)));
    }
    Err(ApiError::invalid_field(
        field,
        format!(
            "{:?} is not `peer:<peer id>`, `ip:<address>`, a peer id or an IP address",
            text.chars().take(120).collect::<String>()
        ),
    ))
}

/// Ban a peer or an IP.
///
/// Closes its connections and refuses new ones. Persisted (survives restarts) before the
/// answer.
#[utoipa::path(post, path = "/v1/bans", tag = "peers", request_body = BanRequest,
    responses((status = 201, description = "Banned", body = BanView),
              (status = 400, description = "Bad target or duration", body = ErrorBody)))]
pub(crate) async fn ban(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<BanRequest>,
) -> Result<(StatusCode, Json<BanView>), ApiError> {
    let target = parse_target("target", &req.target)?;
    if target == palisade_guard::BanTarget::Peer(s.handle().peer_id()) {
        return Err(ApiError::invalid_field(
            "target",
            "is this node's own peer id; a node cannot ban itself (ban the other peer, or its IP)",
        ));
    }
    let guard = s.handle().guard().clone();
    let duration = if req.permanent {
        Duration::from_millis(u64::MAX)
    } else {
        let secs = req.duration_secs.unwrap_or_else(|| guard.limits().ban_duration_secs);
        if !(1..=MAX_BAN_SECS).contains(&secs) {
            return Err(ApiError::invalid_field(
                "duration_secs",
                format!("is {secs}; allowed is 1..={MAX_BAN_SECS} (ten years), or set \"permanent\": true"),
            ));
        }
        Duration::from_secs(secs)
    };
    let reason = req.reason.unwrap_or_else(|| "admin".to_string());
    if reason.chars().count() > MAX_BAN_REASON_CHARS {
        return Err(ApiError::invalid_field("reason", "is longer than 256 characters"));
    }
    let g = guard.clone();
    tokio::task::spawn_blocking(move || g.ban(target, duration, &reason)).await??;
    let view = guard
        .bans()
        .into_iter()
        .find(|b| b.target == target)
        .map(BanView::from)
        .ok_or_else(|| ApiError::internal("the ban was applied but is not in the ban table"))?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Lift a ban.
#[utoipa::path(delete, path = "/v1/bans/{target}", tag = "peers",
    params(("target" = String, Path, description = "`peer:<id>`, `ip:<address>`, a peer id or an IP address")),
    responses((status = 200, description = "Ban lifted", body = UnbanResponse),
              (status = 400, description = "Bad target", body = ErrorBody),
              (status = 404, description = "No such ban", body = ErrorBody)))]
pub(crate) async fn unban(
    State(s): State<AppState>,
    Path(target): Path<String>,
) -> Result<Json<UnbanResponse>, ApiError> {
    let target = parse_target("target", &target)?;
    let guard = s.handle().guard().clone();
    let lifted = tokio::task::spawn_blocking(move || guard.unban(&target)).await??;
    if !lifted {
        return Err(ApiError::not_found(format!("{target} is not banned")));
    }
    Ok(Json(UnbanResponse { target: target.to_string(), unbanned: true }))
}
