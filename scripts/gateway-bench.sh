#!/usr/bin/env bash
# Measures the gateway on loopback against a release `weft up` on the embedded store:
#   1. GET /v1/runs/{id} at a fixed 5,000 requests/s (hey, 50 workers x 100/s) -> latency
#   2. GET /v1/runs/{id} as fast as it goes (wrk, 2 threads, 64 connections) -> requests/s
#   3. POST /v1/runs at a fixed 2,000 requests/s (hey, 20 workers x 100/s) -> latency
#   4. POST /v1/runs/batch with 1,000 runs, 20 times in a row -> per-request time
# Everything runs on this machine (load generator and server share its cores), each
# step for DURATION seconds (default 10). Installs hey and wrk from Debian if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
PORT="${PORT:-18181}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weft-target}"

for tool in hey wrk curl python3; do
    command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool"; }
done
# shellcheck source=scripts/weft-bin.sh
source scripts/weft-bin.sh
data="$(mktemp -d)"
WEFT_LOG=warn "$weft" up --data-dir "$data" --listen "127.0.0.1:$PORT" >"$data/weft.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
base="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done

curl -sf -X POST "$base/v1/flows" -H 'content-type: application/yaml' \
    --data-binary $'name: bench\nnodes:\n  a: {type: noop}\n' >/dev/null
id=$(curl -sf -X POST "$base/v1/runs" -H 'content-type: application/json' -d '{"flow":"bench"}' |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')

summary() { grep -E "Requests/sec|Average|Slowest|  (50|90|99)%|\[[0-9]+\]" | sed 's/^/    /'; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== GET /v1/runs/{id} at 5000/s for ${DURATION}s (hey -c 50 -q 100)"
hey -z "${DURATION}s" -c 50 -q 100 "$base/v1/runs/$id" | summary
echo "== GET /v1/runs/{id} unthrottled for ${DURATION}s (wrk -t2 -c64)"
wrk -t2 -c64 -d"${DURATION}s" --latency "$base/v1/runs/$id" | grep -E "Requests/sec|  (50|99)%" | sed 's/^/    /'
echo "== POST /v1/runs at 2000/s for ${DURATION}s (hey -c 20 -q 100)"
hey -z "${DURATION}s" -c 20 -q 100 -m POST -T application/json -d '{"flow":"bench"}' "$base/v1/runs" | summary
if curl -s -o /dev/null -w '%{http_code}' -X POST "$base/v1/runs/batch" -H 'content-type: application/json' -d '{"runs":[]}' | grep -qv 404; then
    echo "== POST /v1/runs/batch with 1000 runs, 20 requests"
    python3 - "$base" <<'PY'
import json, sys, time, urllib.request
base = sys.argv[1]
body = json.dumps({"runs": [{"flow": "bench"} for _ in range(1000)]}).encode()
times = []
for _ in range(20):
    req = urllib.request.Request(base + "/v1/runs/batch", data=body, headers={"content-type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        out = json.load(r)
    times.append((time.perf_counter() - t) * 1000)
    items = out.get("results") or out.get("runs") or out.get("items") or []
    assert len(items) == 1000, f"expected 1000 results, got {len(items)}"
times.sort()
print(f"    p50 {times[10]:.1f} ms, max {times[-1]:.1f} ms (20 requests of 1000 runs)")
PY
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
