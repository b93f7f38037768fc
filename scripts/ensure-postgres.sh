# Makes sure a PostgreSQL server is reachable for the test suites and exports
# WEFT_TEST_DATABASE_URL naming it. Meant to be sourced (by .ci/run):
#
#   source scripts/ensure-postgres.sh
#   ensure_postgres            # returns non-zero when no server could be had
#
# 1. WEFT_TEST_DATABASE_URL already set and answering: used as it is.
# 2. A server answering on $PG_HOST:$PG_PORT (default 127.0.0.1:5432): used, as
#    postgres://postgres@HOST:PORT/postgres.
# 3. Otherwise PostgreSQL is installed with apt-get if its binaries are missing, and a
#    throw-away cluster (trust auth, fsync off) is started under a temporary directory on a
#    free port. It is stopped and deleted when the sourcing shell exits (an EXIT trap), or
#    by calling stop_throwaway_postgres.
#
# Variables (not WEFT_*: weft rejects unknown WEFT_ variables):
#   PG_HOST, PG_PORT   where to look for a running server (default 127.0.0.1, 5432)
#
# Run directly (`scripts/ensure-postgres.sh`) it does the same, prints the URL, and (for a
# throw-away cluster) stops it again: a self-test of the fallback path.

_pg_log() { printf 'ensure-postgres: %s\n' "$*" >&2; }

# Directory of the PostgreSQL server binaries (initdb, pg_ctl), or nothing.
_pg_bindir() {
    local dir
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        # Resolved: /usr/local/bin may hold only links to a few of them.
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    # Debian and Ubuntu keep them off PATH, one directory per major version.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

_pg_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || {
            _pg_log "PostgreSQL is not installed and neither root nor sudo is available to install it"
            return 1
        }
        sudo=(sudo)
    fi
    _pg_log "installing PostgreSQL with apt-get"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends postgresql postgresql-client >&2
}

# A TCP port on 127.0.0.1 nobody listens on.
_pg_free_port() {
    local port
    for port in $(seq 55432 55532); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

_PG_THROWAWAY_DIR=""
_PG_THROWAWAY_BIN=""
_PG_RUN_AS=()

stop_throwaway_postgres() {
    [[ -n "$_PG_THROWAWAY_DIR" ]] || return 0
    _pg_log "stopping the throw-away PostgreSQL in $_PG_THROWAWAY_DIR"
    "${_PG_RUN_AS[@]}" "$_PG_THROWAWAY_BIN/pg_ctl" -D "$_PG_THROWAWAY_DIR/data" -m fast -w stop \
        >/dev/null 2>&1 || true
    rm -rf "$_PG_THROWAWAY_DIR"
    _PG_THROWAWAY_DIR=""
}

_pg_start_throwaway() {
    local bin port dir
    bin="$(_pg_bindir)" || {
        _pg_install || return 1
        bin="$(_pg_bindir)" || {
            _pg_log "PostgreSQL was installed but initdb/pg_ctl cannot be found"
            return 1
        }
    }
    port="$(_pg_free_port)" || {
        _pg_log "no free port in 55432-55532"
        return 1
    }
    dir="$(mktemp -d "${TMPDIR:-/tmp}/weft-pg.XXXXXX")"
    # initdb refuses to run as root: run the server as the postgres user when we are root.
    _PG_RUN_AS=()
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres || return 1
        chown postgres "$dir"
        _PG_RUN_AS=(runuser -u postgres --)
    fi
    _PG_THROWAWAY_DIR="$dir"
    _PG_THROWAWAY_BIN="$bin"
    trap stop_throwaway_postgres EXIT
    _pg_log "starting a throw-away PostgreSQL ($bin) on 127.0.0.1:$port in $dir"
    "${_PG_RUN_AS[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
        --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        return 1
    }
    "${_PG_RUN_AS[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >/dev/null || {
        cat "$dir/server.log" >&2
        return 1
    }
    export WEFT_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

ensure_postgres() {
    local host="${PG_HOST:-127.0.0.1}" port="${PG_PORT:-5432}"
    if [[ -n "${WEFT_TEST_DATABASE_URL:-}" ]] && pg_isready -q -d "$WEFT_TEST_DATABASE_URL" 2>/dev/null; then
        _pg_log "using WEFT_TEST_DATABASE_URL (already set and answering)"
        return 0
    fi
    if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$host" -p "$port"; then
        export WEFT_TEST_DATABASE_URL="postgres://postgres@$host:$port/postgres"
        _pg_log "using the PostgreSQL on $host:$port"
        return 0
    fi
    _pg_log "no PostgreSQL answers on $host:$port"
    _pg_start_throwaway || return 1
    "$_PG_THROWAWAY_BIN/pg_isready" -q -d "$WEFT_TEST_DATABASE_URL" || {
        _pg_log "the throw-away PostgreSQL does not answer"
        return 1
    }
    _pg_log "WEFT_TEST_DATABASE_URL=$WEFT_TEST_DATABASE_URL"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    ensure_postgres
    echo "$WEFT_TEST_DATABASE_URL"
    psql="$(command -v psql || echo "${_PG_THROWAWAY_BIN:-/usr/bin}/psql")"
    "$psql" "$WEFT_TEST_DATABASE_URL" -Atc 'SELECT version()'
fi
