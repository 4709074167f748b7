#!/usr/bin/env bash
# Cross-language test: a Python client generated from the proto talks to the
# real `strata` binary.
#
# Creates (or reuses) a virtualenv under target/ with the pinned packages of
# requirements.txt, generates Python stubs from proto/strata/v1/streams.proto
# into a temporary directory, builds the binary, starts it on a free loopback
# port over a temporary data directory, runs strata_client_test.py, stops the
# server with SIGTERM and checks it exits 0; then starts a second server with
# TLS (a CA and certificate made with openssl) and authentication and runs
# strata_security_test.py against it. Exits non-zero on any failure.
#
# Environment: STRATA_PY_VENV overrides the virtualenv's location;
# CARGO_TARGET_DIR is honoured.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/tests/python"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${STRATA_PY_VENV:-$TARGET_DIR/python-venv}"
REQUIREMENTS="$HERE/requirements.txt"

say() { printf 'tests/python: %s\n' "$*"; }

# 1. The virtualenv, rebuilt only when the pinned requirements change.
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQUIREMENTS" "$VENV/.strata-requirements"; then
    say "creating virtualenv $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$VENV/.strata-requirements"
fi
PY="$VENV/bin/python"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/strata-python.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# 2. Stubs, straight from the contract.
mkdir -p "$WORK/gen"
"$PY" -m grpc_tools.protoc -I "$ROOT/proto" \
    --python_out="$WORK/gen" --grpc_python_out="$WORK/gen" \
    "$ROOT/proto/strata/v1/streams.proto" "$ROOT/proto/strata/v1/operations.proto" \
    "$ROOT/proto/strata/v1/persistent.proto" "$ROOT/proto/strata/v1/users.proto"

# 3. The binary (a no-op when it is up to date).
(cd "$ROOT" && cargo build -p strata-server --locked --quiet)
BIN="$TARGET_DIR/debug/strata"

# 4. The server, on free loopback ports.
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT="$(free_port)"
METRICS_PORT="$(free_port)"
"$BIN" --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" \
    --metrics-listen "127.0.0.1:$METRICS_PORT" --log warn \
    >"$WORK/strata.log" 2>&1 &
SERVER_PID=$!
say "strata (pid $SERVER_PID) on 127.0.0.1:$PORT"

# 5. The test. It waits for the server itself.
status=0
PYTHONPATH="$WORK/gen" "$PY" "$HERE/strata_client_test.py" "127.0.0.1:$PORT" || status=$?

# 6. A clean stop on SIGTERM.
if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    for _ in $(seq 1 200); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        say "strata did not exit within 20 s of SIGTERM"
        status=1
    else
        server_status=0
        wait "$SERVER_PID" || server_status=$?
        if [ "$server_status" -ne 0 ]; then
            say "strata exited with status $server_status after SIGTERM"
            status=1
        fi
        SERVER_PID=""
    fi
else
    say "strata is not running any more"
    status=1
fi

if [ "$status" -ne 0 ]; then
    say "FAILED; server log:"
    cat "$WORK/strata.log" >&2
    exit "$status"
fi

# 7. A second server with TLS (a CA and a certificate for 127.0.0.1 made
#    here) and authentication, for the security checks.
CERTS="$WORK/certs"
"$ROOT/tests/make-certs.sh" "$CERTS"
ADMIN_PASSWORD="python-admin-$RANDOM$RANDOM"
PORT="$(free_port)"
METRICS_PORT="$(free_port)"
STRATA_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$BIN" --data-dir "$WORK/data-tls" \
    --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" --log warn \
    --tls-cert "$CERTS/server.crt" --tls-key "$CERTS/server.key" \
    >"$WORK/strata-tls.log" 2>&1 &
SERVER_PID=$!
say "strata with TLS (pid $SERVER_PID) on 127.0.0.1:$PORT"
PYTHONPATH="$WORK/gen" "$PY" "$HERE/strata_security_test.py" "127.0.0.1:$PORT" \
    "$CERTS/ca.crt" "$ADMIN_PASSWORD" || status=$?
kill -TERM "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" || { say "the TLS server exited with status $?"; status=1; }
SERVER_PID=""
if [ "$status" -ne 0 ]; then
    say "FAILED; TLS server log:"
    cat "$WORK/strata-tls.log" >&2
    exit "$status"
fi
say "ok"
