#!/usr/bin/env bash
# Brings up compose.yaml (three nodes sharing one address-only bootstrap list), checks that
# every node connects to both others and that a record submitted on node 0 reaches nodes 1
# and 2, then takes it down with its volumes (also on failure).
#
#   contrib/container/compose-check.sh        # needs the image from build.sh
#
# COMPOSE picks the tool ("podman-compose" by default, or "docker compose"). PODMAN_RUN_ARGS
# goes to podman-compose's `podman run` (this repository's test VM needs
# "--runtime runc --health-cmd none --ulimit nproc=4096:4096": hybrid cgroups that crun
# refuses, no systemd for health-check timers, a hard process limit below podman's default).
set -euo pipefail
cd "$(dirname "$0")"
read -r -a compose <<< "${COMPOSE:-podman-compose}"
project=palisade-compose-check
args=(-f compose.yaml -p "$project")
if [[ "${compose[0]}" == "podman-compose" && -n "${PODMAN_RUN_ARGS:-}" ]]; then
  args=(--podman-run-args "$PODMAN_RUN_ARGS" "${args[@]}")
fi
down() { "${compose[@]}" "${args[@]}" down -v >/dev/null 2>&1 || true; }
trap down EXIT
down
"${compose[@]}" "${args[@]}" up -d >/dev/null
node() { # index, palisade args...
  local i=$1; shift
  "${compose[@]}" "${args[@]}" exec -T "palisade-$i" /usr/local/bin/palisade "$@"
}
for i in 0 1 2; do
  for _ in $(seq 1 60); do node "$i" status >/dev/null 2>&1 && break; sleep 1; done
  node "$i" status >/dev/null || { echo "node $i did not come up"; exit 1; }
done
for i in 0 1 2; do
  n=0
  for _ in $(seq 1 60); do
    n=$(node "$i" --json peers list | grep -c '"peer_id"' || true)
    [[ "$n" -ge 2 ]] && break
    sleep 1
  done
  [[ "$n" -ge 2 ]] || { echo "node $i is connected to $n peers, not 2"; node "$i" peers list; exit 1; }
  echo "node $i is connected to $n peers"
done
id=$(node 0 --json attest submit --subject pkg:oci/compose-demo@1 \
  --digest "sha256:$(printf 'cd%.0s' $(seq 1 32))" --verdict pass --scanner trivy \
  --scanner-version 0.56.1 --score 9 | sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' | head -1)
[[ -n "$id" ]] || { echo "the submission on node 0 failed"; exit 1; }
for i in 1 2; do
  for _ in $(seq 1 60); do node "$i" records get "$id" >/dev/null 2>&1 && break; sleep 1; done
  node "$i" records get "$id" >/dev/null || { echo "record $id did not reach node $i"; exit 1; }
  echo "record $id submitted on node 0 is on node $i"
done
echo "compose check passed"
