#!/usr/bin/env bash
# KurrentDB compatibility, proven with KurrentDB's official clients, unchanged:
# each client's checks run against the real `strata` binary twice, once over
# plain text (`tls=false`, no authentication) and once over TLS (a CA and a
# certificate for 127.0.0.1 made here with openssl) with Basic
# authentication as `admin`.
#
# For every client directory listed in CLIENTS (default: all of them) this
# starts two fresh servers, then runs `<client>/run.sh`, which installs its
# pinned client from the registry if needed and runs its checks once per
# server. A client's run.sh gets, in its environment:
#   KDB_TARGETS   "plain tls": the names of the two targets
#   KDB_URL_plain a connection string, kurrentdb://127.0.0.1:P?tls=false
#   KDB_URL_tls   kurrentdb://admin:PASSWORD@127.0.0.1:P?tls=true&tlsCaFile=CA
#   KDB_CA        the CA certificate (PEM) of the TLS server
#   KDB_ADMIN_PASSWORD  the TLS server's admin password
#   KDB_STRATA    the `strata` binary (for checks that need the native side)
#   KDB_NATIVE_plain, KDB_NATIVE_tls  the servers as strata.v1 URLs
#   KDB_WORK      a scratch directory for the client (removed afterwards)
# and exits non-zero if any check fails.
#
# Environment: CLIENTS (e.g. "python node"); CARGO_TARGET_DIR is honoured.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/tests/kurrentdb"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CLIENTS="${CLIENTS:-python node rust}"

say() { printf 'tests/kurrentdb: %s\n' "$*"; }

(cd "$ROOT" && cargo build -p strata-server --locked --quiet)
BIN="$TARGET_DIR/debug/strata"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/strata-kurrentdb.XXXXXX")"
PIDS=()
stop_servers() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    stop_servers
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something accepts connections on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 1 200); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    say "nothing listens on port $1"
    return 1
}

CERTS="$WORK/certs"
"$ROOT/tests/make-certs.sh" "$CERTS"

ADMIN_PASSWORD="kdb-admin-$RANDOM$RANDOM"

# Starts the two servers for one client over fresh data directories.
start_servers() {
    local name="$1"
    PLAIN_PORT="$(free_port)"
    "$BIN" --data-dir "$WORK/$name/data-plain" --listen "127.0.0.1:$PLAIN_PORT" \
        --metrics-listen "127.0.0.1:0" --log warn \
        >"$WORK/$name/strata-plain.log" 2>&1 &
    PIDS+=($!)
    TLS_PORT="$(free_port)"
    STRATA_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$BIN" --data-dir "$WORK/$name/data-tls" \
        --listen "127.0.0.1:$TLS_PORT" --metrics-listen "127.0.0.1:0" --log warn \
        --tls-cert "$CERTS/server.crt" --tls-key "$CERTS/server.key" \
        >"$WORK/$name/strata-tls.log" 2>&1 &
    PIDS+=($!)
    wait_port "$PLAIN_PORT"
    wait_port "$TLS_PORT"
}

status=0
for client in $CLIENTS; do
    mkdir -p "$WORK/$client/scratch"
    start_servers "$client"
    say "$client: plain on 127.0.0.1:$PLAIN_PORT, TLS on 127.0.0.1:$TLS_PORT"
    client_status=0
    KDB_TARGETS="plain tls" \
        KDB_URL_plain="kurrentdb://127.0.0.1:$PLAIN_PORT?tls=false" \
        KDB_URL_tls="kurrentdb://admin:$ADMIN_PASSWORD@127.0.0.1:$TLS_PORT?tls=true&tlsCaFile=$CERTS/ca.crt" \
        KDB_NATIVE_plain="http://127.0.0.1:$PLAIN_PORT" \
        KDB_NATIVE_tls="https://127.0.0.1:$TLS_PORT" \
        KDB_CA="$CERTS/ca.crt" KDB_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
        KDB_STRATA="$BIN" KDB_WORK="$WORK/$client/scratch" \
        "$HERE/$client/run.sh" || client_status=$?
    stop_servers
    if [ "$client_status" -ne 0 ]; then
        say "$client: FAILED (status $client_status); server logs:"
        cat "$WORK/$client/strata-plain.log" "$WORK/$client/strata-tls.log" >&2
        status=1
    else
        say "$client: ok"
    fi
done
exit "$status"
