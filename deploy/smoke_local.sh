#!/usr/bin/env bash
# Replays deploy/Dockerfile without a Docker engine, then runs the result the way the image
# would: wheels -> venv without pip -> `charge-adapter serve` with the image's environment
# (on loopback and high ports), the HEALTHCHECK command, /readyz, /metrics, then SIGTERM and
# the time the drain took. Everything lives in a temporary directory removed at exit.
#
#   bash deploy/smoke_local.sh            # needs python3.11 and PyPI (for the wheels)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid"; fi
  rm -rf "$work"
}
trap cleanup EXIT

python="${PYTHON:-python3.11}"
tzdata_version="$(sed -n 's/^ARG TZDATA_VERSION=//p' "$repo/deploy/Dockerfile")"
mllp_port="${SMOKE_MLLP_PORT:-12575}"
http_port="${SMOKE_HTTP_PORT:-18080}"

echo "== build stage: the allow-listed context, wheels, venv without pip" >&2
mkdir -p "$work/ctx"
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/adapter" "$repo/mappings" "$work/ctx/"
find "$work/ctx" -name __pycache__ -prune -exec rm -rf {} +
(
  cd "$work/ctx"
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
  "$python" -m pip wheel -q --wheel-dir "$work/wheels" . "tzdata==$tzdata_version"
  "$python" -m venv --without-pip "$work/venv"
  "$python" -m pip --python "$work/venv/bin/python" install -q --no-index \
    --find-links "$work/wheels" charge-adapter "tzdata==$tzdata_version"
)
"$work/venv/bin/charge-adapter" --help > /dev/null

echo "== runtime: serve with the image's environment" >&2
mkdir -p "$work/data"
(
  cd "$work"
  export PATH="$work/venv/bin:$PATH" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    ADAPTER_HOST=127.0.0.1 ADAPTER_MLLP_PORT="$mllp_port" ADAPTER_HTTP_PORT="$http_port" \
    ADAPTER_MAPPINGS_DIR="$work/ctx/mappings" ADAPTER_LOG_FORMAT=json \
    ADAPTER_DATABASE_URL="sqlite:///$work/data/adapter.db"
  exec charge-adapter serve
) > "$work/serve.log" 2>&1 &
server_pid=$!

healthy=""
for _ in $(seq 1 60); do
  # the image's HEALTHCHECK: `charge-adapter health`, with the image's environment
  if ADAPTER_HTTP_PORT="$http_port" ADAPTER_MAPPINGS_DIR="$work/ctx/mappings" \
    "$work/venv/bin/charge-adapter" health 2>/dev/null; then
    healthy=1
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.5
done
if [[ -z "$healthy" ]]; then
  echo "FAIL: /healthz never answered; log:" >&2
  tail -30 "$work/serve.log" >&2
  exit 1
fi
echo "ok: HEALTHCHECK command exits 0" >&2

get() { "$work/venv/bin/python" -c "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=4).status)" "$1"; }
for _ in $(seq 1 20); do get "http://127.0.0.1:$http_port/readyz" 2>/dev/null && break; sleep 0.5; done
echo "ok: /readyz $(get "http://127.0.0.1:$http_port/readyz")" >&2
echo "ok: /metrics $(get "http://127.0.0.1:$http_port/metrics")" >&2

echo "== SIGTERM" >&2
start=$(date +%s%N)
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "exit status $status after ${elapsed_ms} ms (must be 0 and < 25000 ms for the pod's budget)" >&2
[[ "$status" -eq 0 && "$elapsed_ms" -lt 25000 ]]
