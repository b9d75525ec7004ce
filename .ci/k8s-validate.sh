#!/usr/bin/env bash
# The Kubernetes manifests in contrib/k8s against the Kubernetes API schemas (strict: unknown
# fields are errors), and the node configuration their ConfigMap carries through the node's
# own `config check`.
#
# Usage: .ci/k8s-validate.sh <palisade binary>
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
version=1.37.0
kube=1.30.0
venv=${K8S_VALIDATE_VENV:-target/k8s-validate-venv}

if ! "$venv/bin/pip" show kubernetes-validate 2>/dev/null | grep -q "^Version: $version$"; then
  python3 -m venv "$venv" 2>/dev/null || {
    echo "error: python3 -m venv failed: apt-get install python3-venv" >&2; exit 1; }
  "$venv/bin/pip" install -q "kubernetes-validate==$version"
fi
# kustomization.yaml is kustomize's, not an API object.
manifests=(contrib/k8s/configmap.yaml contrib/k8s/service.yaml contrib/k8s/statefulset.yaml contrib/k8s/pdb.yaml)
"$venv/bin/kubernetes-validate" -k "$kube" --strict "${manifests[@]}"
# Every manifest is listed in the kustomization, and nothing else is.
listed=$(sed -n 's/^  - //p' contrib/k8s/kustomization.yaml | sort)
present=$(printf '%s\n' "${manifests[@]##*/}" | sort)
[ "$listed" = "$present" ] || { echo "error: kustomization.yaml lists: $listed; manifests: $present" >&2; exit 1; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$venv/bin/python" - contrib/k8s/configmap.yaml "$dir/palisade.toml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
open(sys.argv[2], "w").write(doc["data"]["palisade.toml"])
PY
PALISADE_DATA_DIR="$dir/data" "$bin" --config "$dir/palisade.toml" config check >/dev/null
echo "contrib/k8s: manifests valid for Kubernetes $kube; the ConfigMap's palisade.toml passes config check"
