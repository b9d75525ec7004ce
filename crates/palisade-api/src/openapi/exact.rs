//! Makes the generated document exact: what the handlers accept and answer, no more, no less.
//!
//! utoipa derives the shapes from the Rust types; the rules the handlers check on top of the
//! types (hex ids, digest syntax, page sizes, enums of names, the statuses every middleware
//! layer can answer) are added here, each defined once and applied wherever the field or the
//! layer occurs. schemathesis runs against the served document in CI (`.ci/schemathesis.sh`):
//! positive data must be accepted, negative data refused, every response must match.

use serde_json::{json, Map, Value};

use palisade_types::limits as wire;

/// 64 lowercase hex characters: record ids, author keys, fingerprints.
pub(crate) const HEX64: &str = "^[0-9a-f]{64}$";

/// A page cursor of the record indexes: 1 to 256 bytes as lowercase hex.
pub(crate) const INDEX_CURSOR: &str = "^(?:[0-9a-f]{2}){1,256}$";

/// An equivocation page cursor: `<author>:<seq as 16 hex>`.
pub(crate) const EQUIVOCATION_CURSOR: &str = "^[0-9a-f]{64}:[0-9a-f]{16}$";

/// `<algorithm>:<hex>` as the handlers check it (see `palisade_types::Digest`): the
/// algorithms with a fixed size must have it; others are 1 to 32 characters of
/// `[A-Za-z0-9_-]` and 1 to 64 bytes.
pub(crate) fn digest_pattern() -> String {
    let mut fixed = Vec::new();
    let mut names = Vec::new();
    for (algorithm, sizes) in palisade_types::Digest::FIXED_SIZES {
        names.push(regex_escape(algorithm));
        let lens: Vec<String> = sizes.iter().map(|n| format!("[0-9a-f]{{{}}}", n * 2)).collect();
        fixed.push(format!("{}:(?:{})", regex_escape(algorithm), lens.join("|")));
    }
    format!(
        "^(?:{}|(?!(?:{}):){}{{1,{}}}:(?:[0-9a-f]{{2}}){{1,{}}})$",
        fixed.join("|"),
        names.join("|"),
        palisade_types::Digest::ALGORITHM_CHARS,
        wire::MAX_DIGEST_ALGORITHM_BYTES,
        wire::MAX_DIGEST_VALUE_BYTES
    )
}

fn regex_escape(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_string() } else { format!("\\{c}") }).collect()
}

/// A libp2p peer id in base58 (`12D3KooW…` for Ed25519 keys, `Qm…` for hashed keys). The
/// pattern admits a few strings that do not decode; the `peer-id` format names the exact rule.
const PEER_ID: &str = "^(?:12D3KooW[1-9A-HJ-NP-Za-km-z]{44}|Qm[1-9A-HJ-NP-Za-km-z]{44})$";

/// A ban target: `peer:<id>`, `ip:<address>`, or a bare peer id or IP address.
const BAN_TARGET: &str = "^(?:peer:|ip:)?[0-9A-Za-z.:]{2,64}$";

/// A multiaddr: `/`-separated protocol components.
const MULTIADDR: &str = "^(?:/[0-9A-Za-z._~%:+=-]+)+$";

/// A string that matches `pattern`.
fn text(pattern: &str) -> Value {
    json!({"type": "string", "pattern": pattern})
}

/// The schema of a query or path parameter, by name (and, where one name means two things,
/// by the path it is on).
fn parameter_schema(path: &str, name: &str) -> Option<Value> {
    Some(match (path, name) {
        (_, "id" | "author" | "fingerprint") => text(HEX64),
        ("/v1/feeds" | "/v1/anomalies", "cursor") => text(HEX64),
        ("/v1/equivocations", "cursor") => text(EQUIVOCATION_CURSOR),
        ("/v1/guard/ledger", "cursor") => return None,
        (_, "cursor") => text(INDEX_CURSOR),
        (_, "subject" | "digest") => text(&digest_pattern()),
        (_, "limit") => json!({"type": "integer", "minimum": 1, "maximum": palisade_store::QUERY_LIMIT_MAX}),
        (_, "kind") => json!({"type": "string", "enum": record_kinds()}),
        ("/v1/anomalies", "state") => {
            let mut states = anomaly_states();
            states.push("all".into());
            json!({"type": "string", "enum": states})
        }
        (_, "state") => json!({"type": "string", "enum": anomaly_states()}),
        (_, "min_severity") => {
            json!({"type": "integer", "minimum": 1, "maximum": wire::MAX_SEVERITY_NUMBER})
        }
        (_, "source") => json!({"type": "string", "minLength": 1, "maxLength": wire::MAX_URI_BYTES}),
        (_, "authors") => {
            let n = crate::config::MAX_POLICY_AUTHORS;
            text(&format!("^[0-9a-f]{{64}}(?:,[0-9a-f]{{64}}){{0,{}}}$", n - 1))
        }
        (_, "threshold") => {
            json!({"type": "integer", "minimum": 1, "maximum": crate::config::MAX_POLICY_AUTHORS})
        }
        (_, "peer_id") => json!({"type": "string", "format": "peer-id", "pattern": PEER_ID}),
        (_, "target") => json!({"type": "string", "format": "ban-target", "pattern": BAN_TARGET}),
        (_, "key") => json!({"type": "string", "enum": limit_keys()}),
        _ => return None,
    })
}

/// Free text on one line: no control characters (`palisade_types::validate`).
const TEXT: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
/// Free text that may span lines: tab and newline are the only control characters allowed.
const MULTILINE_TEXT: &str = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$";
/// Text that is not blank and has no control characters (names, versions).
const NONBLANK_TEXT: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
/// Identifiers such as `CVE-2024-3094`: printable ASCII without spaces.
const IDENTIFIER: &str = "^[!-~]+$";
/// A URI: a scheme, a colon, and no whitespace or control characters.
const URI: &str = r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00-\x1f\x7f-\x9f]+$";
/// Label and annotation keys.
const LABEL_KEY: &str = "^[A-Za-z_][A-Za-z0-9_.]*$";

/// The schema of a request or response property, by `(schema, property)`.
fn property_schema(schema: &str, property: &str) -> Option<Value> {
    Some(match (schema, property) {
        ("DialRequest", "addr") => {
            json!({"type": "string", "format": "multiaddr", "pattern": MULTIADDR, "maxLength": 1024})
        }
        ("BanRequest", "target") => json!({"type": "string", "format": "ban-target", "pattern": BAN_TARGET}),
        ("BanRequest", "duration_secs") => {
            json!({"type": ["integer", "null"], "minimum": 1, "maximum": crate::routes::peers::MAX_BAN_SECS})
        }
        ("BanRequest", "reason") => {
            json!({"type": ["string", "null"], "maxLength": crate::routes::peers::MAX_BAN_REASON_CHARS})
        }
        ("SetLimitRequest", "value") => json!({
            "description": "A number, a string, or a list of strings: the key's type and range (GET /v1/limits shows each key's value).",
            "oneOf": [
                {"type": "number"},
                {"type": "string", "maxLength": 4096},
                {"type": "array", "items": {"type": "string", "maxLength": 128}, "maxItems": palisade_guard::MAX_ALLOWLIST_ENTRIES},
            ]
        }),
        ("Subject", "name") | ("Tool", "name") => bytes_string(1, wire::MAX_NAME_BYTES, NONBLANK_TEXT),
        ("Subject", "digests") => {
            json!({"type": "array", "minItems": 1, "maxItems": wire::MAX_SUBJECT_DIGESTS, "items": text(&digest_pattern())})
        }
        ("Tool", "version") => bytes_string(1, wire::MAX_VERSION_BYTES, NONBLANK_TEXT),
        ("Finding", "id") => bytes_string(1, wire::MAX_FINDING_ID_BYTES, IDENTIFIER),
        ("Finding", "aliases") => {
            json!({"type": "array", "maxItems": wire::MAX_FINDING_ALIASES, "items": bytes_string(1, wire::MAX_FINDING_ID_BYTES, IDENTIFIER)})
        }
        ("Attestation", "findings") => {
            json!({"type": "array", "maxItems": wire::MAX_FINDINGS, "items": {"$ref": "#/components/schemas/Finding"}})
        }
        ("Attestation", "report_digest") => json!({"oneOf": [{"type": "null"}, text(&digest_pattern())]}),
        ("Anomaly", "source") => bytes_string(1, wire::MAX_URI_BYTES, URI),
        ("Anomaly", "severity_text") => bytes_string(0, wire::MAX_SEVERITY_TEXT_BYTES, TEXT),
        ("Anomaly", "summary") | ("AnomalyUpdate", "comment") | ("Revocation", "reason") => {
            bytes_string(0, wire::MAX_TEXT_BYTES, MULTILINE_TEXT)
        }
        ("Anomaly", "evidence") => {
            json!({"type": "array", "maxItems": wire::MAX_EVIDENCE_DIGESTS, "items": text(&digest_pattern())})
        }
        ("Anomaly", "labels") => json!({
            "type": "object", "required": ["kind"],
            "maxProperties": wire::MAX_LABELS,
            "propertyNames": {"minLength": 1, "maxLength": wire::MAX_LABEL_KEY_BYTES, "pattern": LABEL_KEY},
            "properties": {"kind": bytes_string(1, wire::MAX_LABEL_VALUE_BYTES, TEXT)},
            "additionalProperties": bytes_string(0, wire::MAX_LABEL_VALUE_BYTES, TEXT),
            "description": "Identifying labels; `kind` is required. The fingerprint is computed from them.",
        }),
        ("Anomaly", "annotations") => json!({
            "type": "object", "maxProperties": wire::MAX_ANNOTATIONS,
            "propertyNames": {"minLength": 1, "maxLength": wire::MAX_LABEL_KEY_BYTES, "pattern": LABEL_KEY},
            "additionalProperties": bytes_string(0, wire::MAX_ANNOTATION_VALUE_BYTES, TEXT),
        }),
        ("AnomalyUpdate", "fingerprint") | ("Revocation", "target") => text(HEX64),
        _ => return None,
    })
}

/// A string limit. The record format bounds UTF-8 bytes; JSON Schema counts characters, so
/// the document's lengths are exact for ASCII text (schemathesis runs with the ASCII codec).
fn bytes_string(min: usize, max: usize, pattern: &str) -> Value {
    json!({"type": "string", "minLength": min, "maxLength": max, "pattern": pattern, "description": format!("At most {max} bytes of UTF-8.")})
}

fn record_kinds() -> Vec<String> {
    palisade_types::RecordKind::ALL.iter().map(|k| k.as_str().to_string()).collect()
}

fn anomaly_states() -> Vec<String> {
    palisade_types::AnomalyState::ALL.iter().map(|s| s.as_str().to_string()).collect()
}

fn limit_keys() -> Vec<String> {
    let keys = palisade_guard::GuardConfig::runtime_keys();
    let mut out: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    out.extend(keys.iter().map(|k| format!("limits.{k}")));
    out
}

/// Applies every rule to the generated document.
pub(crate) fn apply(doc: &mut Value) {
    // Properties first: flattening copies the statement schemas into `Statement`.
    constrain_properties(doc);
    flatten_tagged_variants(doc);
    operation_rules(doc);
    constrain_parameters(doc);
    bound_unsigned_integers(doc);
    add_layer_responses(doc);
    add_links(doc);
}

/// utoipa writes an internally tagged enum as `allOf: [$ref X, {kind}]`, which no body can
/// satisfy when X forbids extra properties. Each branch becomes X with `kind` added.
fn flatten_tagged_variants(doc: &mut Value) {
    let Some(schemas) = doc.pointer("/components/schemas").and_then(Value::as_object).cloned() else {
        return;
    };
    let Some(target) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) else { return };
    for schema in target.values_mut() {
        let Some(branches) = schema.get_mut("oneOf").and_then(Value::as_array_mut) else { continue };
        for branch in branches.iter_mut() {
            let Some([Value::Object(reference), Value::Object(tag)]) =
                branch.get("allOf").and_then(Value::as_array).map(Vec::as_slice)
            else {
                continue;
            };
            let Some(name) = reference.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next())
            else {
                continue;
            };
            let Some(Value::Object(base)) = schemas.get(name) else { continue };
            let mut merged = base.clone();
            let tag_props = tag.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
            let props = merged.entry("properties").or_insert_with(|| json!({}));
            if let Some(props) = props.as_object_mut() {
                props.extend(tag_props);
            }
            let mut required: Vec<Value> =
                tag.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
            required.extend(base.get("required").and_then(Value::as_array).cloned().unwrap_or_default());
            merged.insert("required".into(), Value::Array(required));
            merged.insert("additionalProperties".into(), Value::Bool(false));
            *branch = Value::Object(merged);
        }
    }
}

fn constrain_properties(doc: &mut Value) {
    let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) else { return };
    for (name, schema) in schemas.iter_mut() {
        let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else { continue };
        for (prop, value) in props.iter_mut() {
            if let Some(mut exact) = property_schema(name, prop) {
                keep_description(value, &mut exact);
                *value = exact;
            }
        }
    }
}

fn constrain_parameters(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, ops) in paths.iter_mut() {
        for op in ops.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            for param in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
                let Some(name) = param.get("name").and_then(Value::as_str).map(str::to_owned) else {
                    continue;
                };
                if let Some(exact) = parameter_schema(path, &name) {
                    param["schema"] = exact;
                }
            }
        }
    }
}

/// Rules of single operations that their Rust types do not carry.
fn operation_rules(doc: &mut Value) {
    // Export shares the query's filter type but refuses `limit` and `envelope` (it streams
    // every match, as envelopes).
    if let Some(Value::Array(params)) = doc.pointer_mut("/paths/~1v1~1export/get/parameters") {
        params.retain(|p| !matches!(p.get("name").and_then(Value::as_str), Some("limit" | "envelope")));
    }
}

/// `format: uint64` and friends (utoipa's `non_strict_integers`) get their maximum.
fn bound_unsigned_integers(v: &mut Value) {
    match v {
        Value::Object(map) => {
            // utoipa spells them `u-int64`; OpenAPI tools know `uint64`.
            let known = match map.get("format").and_then(Value::as_str) {
                Some("uint8" | "u-int8") => Some(("uint8", json!(u8::MAX))),
                Some("uint16" | "u-int16") => Some(("uint16", json!(u16::MAX))),
                Some("uint32" | "u-int32") => Some(("uint32", json!(u32::MAX))),
                Some("uint64" | "u-int64") => Some(("uint64", json!(u64::MAX))),
                _ => None,
            };
            if let Some((name, max)) = known {
                map.insert("format".into(), json!(name));
                map.entry("maximum").or_insert(max);
                map.entry("minimum").or_insert(json!(0));
            }
            map.values_mut().for_each(bound_unsigned_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_unsigned_integers),
        _ => {}
    }
}

fn keep_description(old: &Value, new: &mut Value) {
    if let (Some(d), Some(obj)) = (old.get("description"), new.as_object_mut()) {
        obj.entry("description").or_insert_with(|| d.clone());
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Statuses that layers in front of every handler can answer, and the token on TCP.
fn add_layer_responses(doc: &mut Value) {
    let error = json!({"$ref": "#/components/schemas/ErrorBody"});
    let answer = |description: &str| json!({"description": description, "content": {"application/json": {"schema": error.clone()}}});
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, ops) in paths.iter_mut() {
        let exempt_from_rate = matches!(path.as_str(), "/v1/health" | "/v1/ready");
        for op in ops.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            let has_body = op.get("requestBody").is_some();
            let has_params = op.get("parameters").and_then(Value::as_array).is_some_and(|p| !p.is_empty());
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { continue };
            let mut add = |status: &str, description: &str| {
                responses.entry(status).or_insert_with(|| answer(description));
            };
            add("401", "TCP listener only: missing or wrong `Authorization: Bearer <token>`");
            add("403", "TCP listener only: a Host or Origin that is not a loopback name");
            add("414", "The request target is longer than 8 KiB");
            add("431", "More than 64 header fields or 16 KiB of headers");
            add("500", "An internal error (logged with the request id)");
            add(
                "503",
                "The node is busy (admin.max_concurrent_requests) or the request took longer than admin.request_timeout_secs",
            );
            if !exempt_from_rate {
                add("429", "Over the API's rate limit (admin.requests_per_sec); retry after a moment");
            }
            // The head guard answers these on every operation, before any route is known.
            let malformed = "a malformed HTTP request (request line, header or body framing)";
            let late_head = "the request head did not arrive within admin.header_timeout_secs";
            if has_body {
                add("400", &format!("Bad JSON, a duplicate key, or a missing, unknown or invalid field (the message names it); or {malformed}"));
                add(
                    "408",
                    &format!("The body did not arrive within admin.body_timeout_secs, or {late_head}"),
                );
                add("413", "Body (or its declared Content-Length) larger than admin.max_body_bytes");
                add("415", "Content-Type is not the one this operation takes");
            } else if has_params {
                add("400", &format!("An invalid parameter (the message names it), or {malformed}"));
            }
            add("400", &capitalise(malformed));
            add("408", &capitalise(late_head));
            op["security"] = json!([{"bearer_tcp": []}]);
        }
    }
}

/// Links between operations, so a client (and schemathesis's stateful phase) can follow them.
fn add_links(doc: &mut Value) {
    let op = |path: &str, method: &str| format!("#/paths/{}/{method}", path.replace('/', "~1"));
    let next_page = |path: &str| json!({"operationRef": op(path, "get"), "parameters": {"cursor": "$response.body#/next_cursor"}});
    let links: Vec<(&str, &str, &str, &str, Value)> = vec![
        (
            "/v1/records",
            "post",
            "201",
            "GetRecord",
            json!({"operationRef": op("/v1/records/{id}", "get"), "parameters": {"id": "$response.body#/id"}}),
        ),
        (
            "/v1/bans",
            "post",
            "201",
            "Unban",
            json!({"operationRef": op("/v1/bans/{target}", "delete"), "parameters": {"target": "$response.body#/target"}}),
        ),
        ("/v1/records", "get", "200", "NextPage", next_page("/v1/records")),
        ("/v1/feeds", "get", "200", "NextPage", next_page("/v1/feeds")),
        ("/v1/anomalies", "get", "200", "NextPage", next_page("/v1/anomalies")),
        ("/v1/equivocations", "get", "200", "NextPage", next_page("/v1/equivocations")),
        ("/v1/guard/ledger", "get", "200", "NextPage", next_page("/v1/guard/ledger")),
    ];
    for (path, method, status, name, link) in &links {
        let pointer = format!("/paths/{}/{method}/responses/{status}", path.replace('/', "~1"));
        if let Some(Value::Object(response)) = doc.pointer_mut(&pointer) {
            let entry = response.entry("links").or_insert_with(|| Value::Object(Map::new()));
            if let Some(map) = entry.as_object_mut() {
                map.insert((*name).to_string(), link.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(pattern: &str) -> regex::Regex {
        regex::Regex::new(pattern).unwrap()
    }

    /// Strings near the edges of the formats: lengths around the limits, case, separators.
    fn samples() -> Vec<String> {
        let mut out = vec![String::new(), "0".into(), "00".into(), "0g".into(), "AB".into(), "ab".into()];
        for n in [1, 2, 3, 62, 63, 64, 65, 66, 128, 510, 511, 512, 513, 514] {
            out.push("a".repeat(n));
            out.push("A".repeat(n));
            out.push(format!("{}z", "0".repeat(n.saturating_sub(1))));
        }
        let mut seed = 7u64;
        for _ in 0..2000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (seed >> 33) as usize % 70;
            let alphabet = b"0123456789abcdefABCDEF:g ";
            out.push(
                (0..len)
                    .map(|i| alphabet[((seed >> (i % 50)) as usize + i * 7) % alphabet.len()] as char)
                    .collect(),
            );
        }
        out
    }

    #[test]
    fn hex_ids_match_the_id_parsers() {
        let pattern = re(HEX64);
        for s in samples() {
            let parsed = s.parse::<palisade_types::RecordId>().is_ok();
            assert_eq!(pattern.is_match(&s), parsed, "{s:?}");
            assert_eq!(parsed, s.parse::<palisade_types::AuthorKey>().is_ok(), "{s:?}");
            assert_eq!(parsed, s.parse::<palisade_types::Fingerprint>().is_ok(), "{s:?}");
        }
    }

    #[test]
    fn index_cursors_match_the_cursor_decoder() {
        let pattern = re(INDEX_CURSOR);
        for s in samples() {
            assert_eq!(pattern.is_match(&s), palisade_store::Cursor::decode(&s).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn fixed_size_digests_match_the_digest_rules() {
        // The lookahead branch (other algorithms) is ECMA/Python regex only; the fixed-size
        // branches are plain and checked here against the rules records follow.
        for (algorithm, sizes) in palisade_types::Digest::FIXED_SIZES {
            for len in [0, 1, 19, 20, 21, 32, 33, 48, 64, 65] {
                let text = format!("{algorithm}:{}", "ab".repeat(len));
                let rule = crate::extract::parse_digest("d", &text).is_ok();
                assert_eq!(rule, sizes.contains(&len), "{text}");
            }
        }
        let doc = digest_pattern();
        for (algorithm, _) in palisade_types::Digest::FIXED_SIZES {
            assert!(
                doc.contains(&format!("{}:(?:", regex_escape(algorithm))),
                "{algorithm} missing from {doc}"
            );
        }
    }

    #[test]
    fn the_document_has_no_unsatisfiable_or_unbounded_parts() {
        let doc: Value = serde_json::from_str(&crate::document_json()).unwrap();
        let text = doc.to_string();
        assert!(!text.contains("\"allOf\""), "a tagged enum was left as allOf");
        assert!(!text.contains("u-int"), "utoipa's format names were left");
        fn walk(v: &Value, path: &str) {
            match v {
                Value::Object(m) => {
                    if m.get("format").and_then(Value::as_str).is_some_and(|f| f.starts_with("uint")) {
                        assert!(m.contains_key("maximum"), "{path}: unsigned integer without a maximum");
                    }
                    for (k, x) in m {
                        walk(x, &format!("{path}/{k}"));
                    }
                }
                Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| walk(x, &format!("{path}/{i}"))),
                _ => {}
            }
        }
        walk(&doc, "");
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                assert_eq!(op["security"], json!([{"bearer_tcp": []}]), "{method} {path}");
                for status in ["401", "403", "500", "503"] {
                    assert!(op["responses"].get(status).is_some(), "{method} {path} lacks {status}");
                }
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["name"] == "limit" {
                        assert_eq!(p["schema"]["minimum"], 1);
                        assert_eq!(p["schema"]["maximum"], palisade_store::QUERY_LIMIT_MAX);
                    }
                }
            }
        }
        let export: Vec<&str> = doc["paths"]["/v1/export"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(!export.contains(&"limit") && !export.contains(&"envelope"), "{export:?}");
    }
}
