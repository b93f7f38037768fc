#!/usr/bin/env bash
# Fuzzes the HTTP API with schemathesis against the OpenAPI spec weft serves, on a
# throw-away data directory: no 5xx, responses (including every rejection) match the
# spec's declared status codes, content types and schemas. Runs as an admin, so every
# operation's handler is exercised (auth itself is covered by the API tests).
#   MAX_EXAMPLES=N   examples per operation (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-18282}"
MAX_EXAMPLES="${MAX_EXAMPLES:-50}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weft-target}"
venv="${WEFT_FUZZ_VENV:-$HOME/.cache/weft-fuzz-venv}"
if [[ ! -x "$venv/bin/schemathesis" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'schemathesis>=4,<5'
fi
cargo build --quiet -p weft-cli
weft="$CARGO_TARGET_DIR/debug/weft"
data="$(mktemp -d)"
# Fuzz behind the auth layer too: an admin key lets every operation reach its handler.
key="$("$weft" apikey create --role admin --data-dir "$data" 2>/dev/null)"
WEFT_LOG=warn "$weft" up --data-dir "$data" --listen "127.0.0.1:$PORT" --flows examples/flows >"$data/weft.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
base="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done
curl -sf "$base/health" >/dev/null || { cat "$data/weft.log" >&2; exit 1; }

status=0
"$venv/bin/schemathesis" run "$base/v1/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" \
    --no-color || status=$?
if grep -q "panicked" "$data/weft.log"; then
    echo "weft logged a panic during fuzzing:" >&2
    grep -B2 -A10 "panicked" "$data/weft.log" >&2
    status=1
fi
kill -0 $pid 2>/dev/null || { echo "weft exited during fuzzing" >&2; status=1; }
exit $status
