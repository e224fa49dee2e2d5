#!/usr/bin/env bash
# Renders and validates the deployment files, as the test command does:
# the compose file with Compose itself (`docker compose config`, or
# Debian's docker-compose), the Kustomize tree with `kubectl kustomize`,
# and every rendered Kubernetes object against the API's JSON schemas
# (kubernetes-validate, from PyPI; CRDs by their required fields).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/deploy
mkdir -p "$OUT"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# A fresh machine may have no package lists yet.
apt_install() {
    as_root apt-get install -y -qq "$@" >/dev/null 2>&1 \
        || { as_root apt-get update -qq && as_root apt-get install -y -qq "$@" >/dev/null; }
}

# Tools, installed where missing.
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
else
    command -v docker-compose >/dev/null || apt_install docker-compose
    COMPOSE=(docker-compose)
fi
command -v kubectl >/dev/null || apt_install kubernetes-client
VENV=target/validate-venv
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "kubernetes-validate==1.34.*" "pyyaml>=6"
fi

# Compose reads ../.env; render with the documented defaults when there is none.
made_env=""
if [ ! -e .env ]; then cp .env.example .env; made_env=1; fi
trap '[ -n "$made_env" ] && rm -f .env' EXIT
"${COMPOSE[@]}" -f deploy/compose.yaml -p wordup config > "$OUT/compose.yaml"
echo "compose: $(grep -c '^  [a-z-]*:$' "$OUT/compose.yaml") services rendered" >&2

kubectl kustomize deploy/k8s > "$OUT/k8s.yaml" 2> >(grep -v "commonLabels' is deprecated" >&2)
"$VENV/bin/python" scripts/validate_k8s.py "$OUT/k8s.yaml"
