#!/usr/bin/env bash
# schemathesis against a live node: the served OpenAPI document is the contract.
#
# Usage: .ci/schemathesis.sh <palisade binary> [max examples per operation]
#
# The node runs in a network namespace of its own (only loopback), so the dials schemathesis
# makes reach nothing beyond it; schemathesis talks to its admin API over the TCP listener
# with the bearer token, with every check, positive and negative data, the stateful phase
# and a fixed seed. Zero failures is the bar. Hooks for what a schema cannot state are in
# .ci/schemathesis/hooks.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
examples=${2:-25}
version=4.32.5
venv=${SCHEMATHESIS_VENV:-target/schemathesis-venv}

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv "$venv" 2>/dev/null || {
    echo "error: python3 -m venv failed: apt-get install python3-venv" >&2; exit 1; }
  "$venv/bin/pip" install -q "schemathesis==$version"
fi

ns="palisade-st-$$"
dir=$(mktemp -d)
cleanup() {
  [ -n "${node_pid:-}" ] && kill -TERM "$node_pid" 2>/dev/null || true
  ip netns delete "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
run() { ip netns exec "$ns" "$@"; }

# A default trust policy of two authors, so verdicts without `authors` have one.
cat >"$dir/palisade.toml" <<TOML
[network]
listen = ["/ip4/127.0.0.1/tcp/7401"]
[metrics]
listen = "127.0.0.1:9741"
[admin]
listen = "127.0.0.1:9742"
# schemathesis sends thousands of requests in minutes: the API's own rate limit is not
# under test here (its tests are in crates/palisade-api).
requests_per_sec = 100000
burst_requests = 100000
[admin.trust.default]
authors = ["$(printf 'a%.0s' $(seq 64))", "$(printf 'b%.0s' $(seq 64))"]
threshold = 1
TOML
# Not through `run`: a backgrounded shell function is a subshell, and SIGTERM must reach the node.
ip netns exec "$ns" "$bin" --data-dir "$dir" run >"$dir/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 150); do
  run curl -sf http://127.0.0.1:9741/ready >/dev/null 2>&1 && break
  sleep 0.2
done
run curl -sf http://127.0.0.1:9741/ready >/dev/null || { cat "$dir/node.log" >&2; echo "error: the node never got ready" >&2; exit 1; }
token=$(cat "$dir/admin.token")

export PALISADE_API_URL=http://127.0.0.1:9742 PALISADE_API_TOKEN=$token PALISADE_DEFAULT_POLICY_AUTHORS=2
export SCHEMATHESIS_HOOKS=hooks PYTHONPATH=.ci/schemathesis
status=0
# /v1/events is a stream that never ends (its tests are in crates/palisade-api/tests).
run env PALISADE_API_URL="$PALISADE_API_URL" PALISADE_API_TOKEN="$token" PALISADE_DEFAULT_POLICY_AUTHORS=2 \
  SCHEMATHESIS_HOOKS=hooks PYTHONPATH=.ci/schemathesis \
  "$venv/bin/schemathesis" --config-file .ci/schemathesis/schemathesis.toml run \
  "$PALISADE_API_URL/v1/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks all --mode all --phases examples,coverage,fuzzing,stateful \
  --exclude-path /v1/events \
  --seed 1 --max-examples "$examples" --generation-codec ascii \
  --request-timeout 30 --no-color || status=$?

kill -TERM "$node_pid"
wait "$node_pid" || { echo "error: the node did not exit cleanly after the run" >&2; grep -v palisade_api::access "$dir/node.log" | tail -30 >&2; exit 1; }
node_pid=
if grep -q '"level":"ERROR"\|ERROR' "$dir/node.log"; then
  grep 'ERROR' "$dir/node.log" | head -20 >&2
  echo "error: the node logged errors during the run" >&2
  status=1
fi
exit "$status"
