//! The OpenAPI 3 document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

mod exact;

struct BearerOnTcp;

impl Modify for BearerOnTcp {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components
                .add_security_scheme("bearer_tcp", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        }
    }
}

/// The admin API. Served on the Unix socket `<data-dir>/admin.sock` (no authentication: file
/// permissions 0600 are the access control) and optionally on a loopback TCP port, where
/// every request needs `Authorization: Bearer <token>` with the token from
/// `<data-dir>/admin.token`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palisade admin API",
        description = "Local admin API of a Palisade node. Errors are `{\"error\": {\"code\", \"message\"}}`. Times are ms since the Unix epoch; ids, author keys and fingerprints are 64 hex characters; digests are `<algorithm>:<hex>`; scores are hundredths of 0.0-10.0.",
        license(name = "MIT OR Apache-2.0"),
    ),
    servers((url = "http://localhost", description = "curl --unix-socket <data-dir>/admin.sock http://localhost/v1/node")),
    paths(
        routes::node::health,
        routes::node::ready,
        routes::node::node_info,
        routes::node::store_usage,
        routes::peers::list,
        routes::peers::dial,
        routes::peers::disconnect,
        routes::peers::bans,
        routes::peers::ban,
        routes::peers::unban,
        routes::records::submit,
        routes::records::query,
        routes::records::get_record,
        routes::records::feeds,
        routes::records::feed,
        routes::records::equivocations,
        routes::verdict::verdict,
        routes::anomalies::list,
        routes::anomalies::get_anomaly,
        routes::transfer::export,
        routes::transfer::import,
        routes::backup::backup,
        routes::guard::ledger,
        routes::guard::counters,
        routes::guard::limits,
        routes::guard::set_limit,
        routes::events::events,
        openapi_json,
    ),
    modifiers(&BearerOnTcp),
    tags(
        (name = "node", description = "Health, readiness, identity"),
        (name = "peers", description = "Connections and bans"),
        (name = "records", description = "Submit, read, query, export and import records"),
        (name = "anomalies", description = "Anomaly state"),
        (name = "guard", description = "DoS protection: ledger, counters, limits"),
        (name = "events", description = "Live events (SSE)"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "node",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
#[allow(dead_code)]
fn openapi_json() {}

/// The document as pretty JSON with a trailing newline (the form checked in at
/// `docs/admin-api.openapi.json`).
pub fn document_json() -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi())
        .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}));
    exact::apply(&mut doc);
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
