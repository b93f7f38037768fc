#!/usr/bin/env bash
# Scale-out throughput of I/O-bound work: `weft serve` processes sharing one PostgreSQL.
#
# The flow has one `http` node calling a local endpoint that waits 10 ms (a small asyncio
# HTTP/1.1 keep-alive server in python3). For each N in $WORKERS (default "1 4"):
#   1. fresh schema weft_scale_<random> (created by `weft migrate`, dropped at exit)
#   2. one `weft serve --role gateway,orchestrator` (no workers) applies the flow, and
#      RUNS_PER_WORKER x N runs (default 3000 x N) are queued with POST /v1/runs/batch
#      (1,000 per request) BEFORE any worker exists
#   3. N `weft serve --role worker` processes start (queue concurrency CONCURRENCY,
#      default 16, each); the clock runs until every run has state 'succeeded'
#      (counted with psql, so the gateway is not polled)
# Prints one JSON line per N and a final line with the ratios (N=max over N=1).
# `runs_per_s` is runs / seconds between the first and the last run's finished_at (from the
# database); `steady_runs_per_s` counts the middle 80% of completions only (10th to 90th
# percentile of finished_at), leaving out the workers' staggered start-up and the tail;
# the target is judged on the steady ratio. `wall_s` is from launching the workers to the
# last completion. Ceiling: CONCURRENCY / DELAY_MS per worker (1,600 runs/s at 16 and
# 10 ms). Everything (postgres, the endpoint, all weft processes) shares this machine's
# cores: see load averages.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/scale-out-bench.sh
#   BIN=/tmp/weft-a WORKERS="1 4" scripts/scale-out-bench.sh     # a given binary, no build
set -euo pipefail
cd "$(dirname "$0")/.."
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
WORKERS="${WORKERS:-1 4}"
RUNS_PER_WORKER="${RUNS_PER_WORKER:-3000}"
CONCURRENCY="${CONCURRENCY:-16}"
DELAY_MS="${DELAY_MS:-10}"
TIMEOUT="${TIMEOUT:-300}"   # seconds per measurement
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weft-target}"

for tool in psql curl python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
# shellcheck source=scripts/weft-bin.sh
source scripts/weft-bin.sh
# Debian's psql is a perl wrapper costing ~65 ms of CPU per call: call the client itself,
# so the polling below takes as little as possible from the processes measured.
psql_bin=$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n1)
psql_bin=${psql_bin:-psql}
work="$(mktemp -d)"
pids=()
schemas=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for s in "${schemas[@]}"; do psql -q "$DATABASE_URL" -c "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$1/ready" >/dev/null && return 0; sleep 0.1; done; echo "port $1 not ready" >&2; return 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# The 10 ms endpoint: asyncio, HTTP/1.1 keep-alive, 200 {"ok":true} after DELAY_MS.
cat >"$work/slow.py" <<'PY'
import asyncio, sys
port, delay = int(sys.argv[1]), int(sys.argv[2]) / 1000
BODY = b'{"ok":true}'
RESP = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(BODY)) + BODY
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":", 1)[1])
            if n:
                await reader.readexactly(n)
            await asyncio.sleep(delay)
            writer.write(RESP)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
asyncio.run(main())
PY
slow_port=$(free_port)
python3 "$work/slow.py" "$slow_port" "$DELAY_MS" 2>"$work/slow.log" &
pids+=($!)
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$slow_port/" >/dev/null && break; sleep 0.1; done

echo "load average before: $(loadavg)"
declare -A tput steady
for n in $WORKERS; do
    schema="weft_scale_$(od -An -N4 -tx4 /dev/urandom | tr -d " ")"
    schemas+=("$schema")
    export WEFT_DATABASE_URL="$DATABASE_URL" WEFT_POSTGRES__SCHEMA="$schema" WEFT_LOG=warn
    export WEFT_DEFAULT_CONCURRENCY="$CONCURRENCY" WEFT_QUEUES__DEFAULT="$CONCURRENCY"
    export WEFT_LIMITS__BATCH="1000/s"
    "$weft" migrate >/dev/null 2>&1
    gw_port=$(free_port)
    "$weft" serve --role gateway,orchestrator --node-id "gw-$n" --listen "127.0.0.1:$gw_port" \
        >"$work/gw-$n.log" 2>&1 &
    gw=$!
    pids+=($gw)
    wait_ready "$gw_port"
    base="http://127.0.0.1:$gw_port"
    curl -sf -X POST "$base/v1/flows" -H 'content-type: application/yaml' \
        --data-binary $'name: io\nnodes:\n  call: {type: http, params: {url: "http://127.0.0.1:'"$slow_port"$'/"}}\n' >/dev/null
    total=$((RUNS_PER_WORKER * n))
    python3 - "$base" "$total" <<'PY'
import json, sys, urllib.request
base, total = sys.argv[1], int(sys.argv[2])
while total > 0:
    k = min(1000, total)
    body = json.dumps({"runs": [{"flow": "io"} for _ in range(k)]}).encode()
    req = urllib.request.Request(base + "/v1/runs/batch", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        items = json.load(r).get("runs") or []
    bad = [i for i in items if "error" in i and i["error"]]
    assert len(items) == k and not bad, f"batch failed: {len(items)} items, {bad[:1]}"
    total -= k
PY
    q() { "$psql_bin" -qtA "$DATABASE_URL" -c "$1"; }
    queued=$(q "SELECT count(*) FROM $schema.runs")
    [ "$queued" -eq "$total" ] || { echo "queued $queued of $total" >&2; exit 1; }
    # Fresh partitions have no statistics yet; without them the claims' plans depend on
    # the row count autovacuum happened to see. The same footing for every N.
    q "ANALYZE $schema.runs; ANALYZE $schema.tasks" >/dev/null

    wpids=()
    start=$(date +%s.%N)
    for i in $(seq 1 "$n"); do
        "$weft" serve --role worker --node-id "w$n-$i" --listen "127.0.0.1:$(free_port)" \
            >"$work/w$n-$i.log" 2>&1 &
        wpids+=($!)
        pids+=($!)
    done
    deadline=$(( $(date +%s) + TIMEOUT ))
    while :; do
        done_n=$(q "SELECT count(*) FROM $schema.runs WHERE state = 'succeeded'")
        [ "$done_n" -ge "$total" ] && break
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "timeout: $done_n of $total succeeded; states: $(q "SELECT string_agg(state||'='||c, ',') FROM (SELECT state, count(*) c FROM $schema.runs GROUP BY state) s")" >&2
            exit 1
        fi
        sleep 0.25
    done
    end=$(date +%s.%N)
    load_end=$(loadavg)
    span_ms=$(q "SELECT max(finished_at) - min(finished_at) FROM $schema.runs")
    # Steady state: the middle 80% of completions, which leaves out the workers' staggered
    # start (each process connects and claims on its own) and the last claims' tail.
    steady_ms=$(q "SELECT percentile_disc(0.9) WITHIN GROUP (ORDER BY finished_at) - percentile_disc(0.1) WITHIN GROUP (ORDER BY finished_at) FROM $schema.runs")
    json=$(python3 -c '
import json, sys
n, total, span_ms, steady_ms, start, end, c, delay, load = sys.argv[1:]
span = int(span_ms) / 1000; wall = float(end) - float(start); steady = int(steady_ms) / 1000
print(json.dumps({"workers": int(n), "concurrency": int(c), "delay_ms": int(delay), "runs": int(total),
    "span_s": round(span, 3), "runs_per_s": round(int(total) / span, 1),
    "steady_runs_per_s": round(0.8 * int(total) / steady, 1),
    "wall_s": round(wall, 3), "wall_runs_per_s": round(int(total) / wall, 1),
    "ceiling_runs_per_s": int(n) * int(c) * 1000 // int(delay), "load_avg_after": load}))
' "$n" "$total" "$span_ms" "$steady_ms" "$start" "$end" "$CONCURRENCY" "$DELAY_MS" "$load_end")
    echo "$json"
    tput[$n]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["runs_per_s"])' "$json")
    steady[$n]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["steady_runs_per_s"])' "$json")
    for p in "${wpids[@]}" "$gw"; do kill "$p" 2>/dev/null || true; done
    for p in "${wpids[@]}" "$gw"; do wait "$p" 2>/dev/null || true; done
done
ns=($WORKERS)
lo=${ns[0]}; hi=${ns[-1]}
if [ "$lo" != "$hi" ]; then
    python3 -c 'import json,sys; lo,hi,a,b,sa,sb=map(float, sys.argv[1:]); print(json.dumps({"ratio": f"{int(hi)}/{int(lo)}", "throughput_ratio": round(b/a, 2), "steady_ratio": round(sb/sa, 2), "target": 3.5, "meets_target": sb/sa >= 3.5}))' \
        "$lo" "$hi" "${tput[$lo]}" "${tput[$hi]}" "${steady[$lo]}" "${steady[$hi]}"
fi
echo "load average after: $(loadavg)"
