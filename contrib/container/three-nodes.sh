#!/usr/bin/env bash
# Three Palisade containers on one podman network, nodes 1 and 2 bootstrapping from node 0,
# each with its own volume; then checks that nodes 1 and 2 are connected (to node 0 at least;
# they find each other later through Kademlia) and that a record submitted on node 0 reaches
# node 2. Tear down with `three-nodes.sh down`.
#
# Needs the image from build.sh. ENGINE=docker works too. RUN_OPTS adds engine options (this
# repository's test VM needs `--runtime runc --ulimit nofile=16384:16384 --ulimit nproc=4096:4096
# --health-cmd none`: hybrid cgroups, low hard limits, no systemd for health timers).
set -euo pipefail
engine="${ENGINE:-podman}"
image="${IMAGE:-palisade:latest}"
read -r -a run_opts <<< "${RUN_OPTS:-}"
net=palisade-net
if [[ "${1:-}" == "down" ]]; then
  for i in 0 1 2; do "$engine" rm -f "palisade-$i" >/dev/null 2>&1 || true; "$engine" volume rm -f "palisade-$i" >/dev/null 2>&1 || true; done
  "$engine" network rm "$net" >/dev/null 2>&1 || true
  exit 0
fi
"$engine" network exists "$net" 2>/dev/null || "$engine" network create "$net" >/dev/null
start() { # name, extra run args
  local name=$1; shift
  "$engine" run -d --name "$name" --network "$net" "${run_opts[@]}" -v "$name:/data" "$image" \
    run --listen /ip4/0.0.0.0/tcp/7400 --metrics-listen 0.0.0.0:9740 "$@" >/dev/null
}
ready() { # name: waits until `palisade status` answers
  for _ in $(seq 1 60); do
    "$engine" exec "$1" /usr/local/bin/palisade status >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "$1 did not come up"; "$engine" logs "$1" | tail -5; return 1
}
start palisade-0
ready palisade-0
peer0=$("$engine" exec palisade-0 /usr/local/bin/palisade --json status | sed -n 's/.*"peer_id": *"\([^"]*\)".*/\1/p' | head -1)
ip0=$("$engine" inspect palisade-0 --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')
for i in 1 2; do
  start "palisade-$i" --bootstrap "/ip4/$ip0/tcp/7400/p2p/$peer0"
done
ready palisade-1
ready palisade-2
for i in 1 2; do
  for _ in $(seq 1 60); do
    n=$("$engine" exec "palisade-$i" /usr/local/bin/palisade --json peers list | grep -o '"peer_id"' | wc -l)
    [[ "$n" -ge 1 ]] && break
    sleep 1
  done
  [[ "$n" -ge 1 ]] || { echo "node $i has no peer"; exit 1; }
  echo "node $i is connected to $n peers"
done
id=$("$engine" exec palisade-0 /usr/local/bin/palisade --json attest submit --subject pkg:oci/demo@1 \
  --digest "sha256:$(printf 'ab%.0s' $(seq 1 32))" --verdict pass --scanner trivy --scanner-version 0.56.1 \
  --score 9 | sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' | head -1)
for _ in $(seq 1 60); do
  if "$engine" exec palisade-2 /usr/local/bin/palisade records get "$id" >/dev/null 2>&1; then
    echo "record $id submitted on node 0 is on node 2"
    exit 0
  fi
  sleep 1
done
echo "record $id did not reach node 2"; exit 1
