"""schemathesis hooks for the Palisade admin API (loaded by .ci/schemathesis.sh).

The OpenAPI document (docs/admin-api.openapi.json) is exact for every rule a schema can state.
What a schema cannot state lives here, each rule with the handler that enforces it:

- formats whose valid strings a pattern can only approximate: libp2p peer ids, ban targets and
  multiaddrs (strategies that generate real ones);
- rules across fields (documented in the operations' descriptions): a verdict's `threshold`
  is at most its number of trusted authors, a query's `since_ms` is not after `until_ms`, an
  attestation's digests have distinct algorithms and its `finding_counts` cover its listed
  findings, an anomaly's window does not start after it ends, nor end after now, times of a
  statement relative to the node's clock;
- a limit's value depends on its key: the value sent is the key's current one (any other
  valid value is covered by the Rust tests of `GuardConfig::with_setting`).

Positive cases are mapped onto these rules; negative cases are left alone.
"""

import json
import os
import time
import urllib.request

import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    pad = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * pad + out


def peer_id(key: bytes) -> str:
    # identity multihash of the protobuf-encoded Ed25519 public key: "12D3KooW…"
    return b58encode(bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]) + key)


PEER_IDS = st.binary(min_size=32, max_size=32).map(peer_id)
IPV4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
IPV6 = st.ip_addresses(v=6).map(str)
BAN_TARGETS = st.one_of(
    PEER_IDS,
    PEER_IDS.map(lambda p: "peer:" + p),
    IPV4,
    IPV4.map(lambda a: "ip:" + a),
    IPV6.map(lambda a: "ip:" + a),
)
# Dials stay on loopback (the CI node runs in a network namespace of its own anyway).
MULTIADDRS = st.tuples(st.integers(1, 65535), st.booleans(), PEER_IDS).map(
    lambda t: f"/ip4/127.0.0.1/tcp/{t[0]}" + (f"/p2p/{t[2]}" if t[1] else "")
)

import re  # noqa: E402

SIMPLE_MULTIADDR = re.compile(r"^/ip4/(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})/tcp/(\d{1,5})$")

schemathesis.openapi.format("peer-id", PEER_IDS)
schemathesis.openapi.format("ban-target", BAN_TARGETS)
schemathesis.openapi.format("multiaddr", MULTIADDRS)


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return (json.dumps(value) + "\n").encode()


def b58decode(s: str):
    n = 0
    for c in s:
        i = B58.find(c)
        if i < 0:
            return None
        n = n * 58 + i
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * (len(s) - len(s.lstrip("1"))) + raw


def valid_peer_id(s: str) -> bool:
    raw = b58decode(s)
    if raw is None:
        return False
    ed25519 = len(raw) == 38 and raw[:6] == bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
    sha256 = len(raw) == 34 and raw[:2] == bytes([0x12, 0x20])
    return ed25519 or sha256


def valid_ip(s: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def valid_target(s: str) -> bool:
    for prefix, check in (("peer:", valid_peer_id), ("ip:", valid_ip)):
        if s.startswith(prefix):
            return check(s[len(prefix):])
    return valid_peer_id(s) or valid_ip(s)


def substitute(value: str) -> str:
    """A valid peer id derived from an invalid string (the same string gives the same id)."""
    import hashlib

    return peer_id(hashlib.sha256(value.encode()).digest())


def positive(case) -> bool:
    return case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE


def current_limits() -> dict:
    base = os.environ["PALISADE_API_URL"]
    req = urllib.request.Request(
        base + "/v1/limits", headers={"Authorization": "Bearer " + os.environ["PALISADE_API_TOKEN"]}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["limits"]


LIMITS = None
DEFAULT_POLICY_AUTHORS = int(os.environ.get("PALISADE_DEFAULT_POLICY_AUTHORS", "0"))
NOW_MS = lambda: int(time.time() * 1000)  # noqa: E731
CLOCK_SKEW_MS = 5 * 60 * 1000


def fix_attestation(b: dict) -> None:
    digests = b.get("subject", {}).get("digests", [])
    seen, kept = set(), []
    for d in digests:
        alg = d.split(":", 1)[0]
        if alg not in seen:
            seen.add(alg)
            kept.append(d)
    if kept:
        b["subject"]["digests"] = kept
    if b.get("findings") and not isinstance(b.get("finding_counts"), dict):
        b["finding_counts"] = {k: 0 for k in ("critical", "high", "medium", "low", "none")}
    counts = b.get("finding_counts")
    if isinstance(counts, dict):
        for f in b.get("findings", []):
            sev = f.get("severity")
            if sev in counts:
                listed = sum(1 for g in b["findings"] if g.get("severity") == sev)
                counts[sev] = max(counts[sev], listed)
    if b.get("expires_at_ms") is not None and b["expires_at_ms"] <= NOW_MS():
        b["expires_at_ms"] = NOW_MS() + 86_400_000


def fix_anomaly(b: dict) -> None:
    end = min(b.get("window_end_ms", 0), NOW_MS())
    b["window_end_ms"] = end
    b["window_start_ms"] = min(b.get("window_start_ms", 0), end)


@schemathesis.hook
def map_case(ctx, case):
    if not positive(case):
        return case
    path, method = case.operation.path, case.operation.method.upper()
    # Formats a pattern can only approximate: a string that matches the pattern but does not
    # decode is replaced with one that does.
    # Values a link filled in (the stateful phase) came from the API itself: keep them.
    stateful = case.meta is not None and str(case.meta.phase.name) == "stateful"
    params = {} if stateful else (case.path_parameters or {})
    if "peer_id" in params and not valid_peer_id(str(params["peer_id"])):
        params["peer_id"] = substitute(str(params["peer_id"]))
    if "target" in params and not valid_target(str(params["target"])):
        params["target"] = substitute(str(params["target"]))
    if isinstance(case.body, dict) and isinstance(case.body.get("target"), str) and path == "/v1/bans":
        if not valid_target(case.body["target"]):
            case.body["target"] = substitute(case.body["target"])
    if isinstance(case.body, dict) and path == "/v1/peers/dial" and isinstance(case.body.get("addr"), str):
        m = SIMPLE_MULTIADDR.match(case.body["addr"])
        if not m or any(int(g) > 255 for g in m.groups()[:4]) or not 0 < int(m.group(5)) < 65536:
            case.body["addr"] = "/ip4/127.0.0.1/tcp/%d" % (1 + hash(case.body["addr"]) % 65535)
    # A cursor is valid only for the query that produced it: random ones are refused (400)
    # by design; the stateful phase follows `next_cursor` through the links, and those (the
    # cursors this API handed out, recorded by `after_call`) are kept.
    if case.query and "cursor" in case.query and path != "/v1/guard/ledger":
        issued = ISSUED_CURSORS.get((path, str(case.query["cursor"])))
        if issued is None:
            del case.query["cursor"]
        else:
            # The cursor continues the query that produced it: same filters.
            for key in [k for k in case.query if k not in PAGING]:
                del case.query[key]
            case.query.update(issued)
    if method == "POST" and path == "/v1/records" and isinstance(case.body, dict):
        kind = case.body.get("kind")
        if kind == "attestation":
            fix_attestation(case.body)
        elif kind == "anomaly":
            fix_anomaly(case.body)
    elif method == "PUT" and path == "/v1/limits/{key}":
        global LIMITS
        if LIMITS is None:
            LIMITS = current_limits()
        key = case.path_parameters["key"].removeprefix("limits.")
        case.body = {"value": LIMITS[key]}
    elif path in ("/v1/records", "/v1/export") and case.query:
        q = case.query
        if "since_ms" in q and "until_ms" in q and q["since_ms"] > q["until_ms"]:
            q["since_ms"], q["until_ms"] = q["until_ms"], q["since_ms"]
    elif path == "/v1/subjects/{digest}/verdict" and case.query is not None:
        q = case.query
        n = len(q["authors"].split(",")) if q.get("authors") else DEFAULT_POLICY_AUTHORS
        if "threshold" in q and n:
            q["threshold"] = min(int(q["threshold"]), n)
        elif "threshold" in q:
            del q["threshold"]
    return case


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    """An NDJSON import body is text on the wire: every text is a valid body (each line gets
    its own verdict in the 200 report), so a "schema-violating" import body does not exist."""
    return not (failure.code == "ST201" and case.operation.path == "/v1/import")


# (path, cursor) -> the filters of the query that returned it.
ISSUED_CURSORS: dict = {}
# Query parameters that do not change which records a query matches.
PAGING = ("cursor", "limit", "envelope")


@schemathesis.hook
def after_call(ctx, case, response):
    try:
        cursor = response.json().get("next_cursor")
    except Exception:  # not JSON, or not an object
        return
    if isinstance(cursor, str):
        filters = {k: v for k, v in (case.query or {}).items() if k not in PAGING}
        ISSUED_CURSORS[(case.operation.path, cursor)] = filters
