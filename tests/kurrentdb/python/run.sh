#!/usr/bin/env bash
# KurrentDB compatibility with KurrentDB's official Python client
# (kurrentdbclient) and the eventsourcing library's KurrentDB module
# (eventsourcing-kurrentdb), both unchanged, from PyPI at the versions pinned
# in requirements.txt. Called by tests/kurrentdb/run.sh with the environment
# it documents (KDB_TARGETS, KDB_URL_<target>, KDB_CA, KDB_ADMIN_PASSWORD,
# KDB_STRATA, KDB_NATIVE_<target>, KDB_WORK).
#
# Creates (or reuses) a virtualenv under target/, rebuilt only when
# requirements.txt changes, then runs the checks once per target: one line
# per check (`ok <target> <check>` / `FAIL <target> <check>: <why>`) and a
# summary. Exits non-zero if any check fails.
#
# The connection strings are used as run.sh gives them: the client accepts
# kurrentdb://HOST:PORT?tls=false, and for TLS
# kurrentdb://admin:PASSWORD@HOST:PORT?tls=true&tlsCaFile=CA (it reads the CA
# file itself; the `connect` check also passes the CA as root_certificates).
#
# Environment: KDB_PY_VENV overrides the virtualenv's location; KDB_ONLY
# runs only the named checks; KDB_VERBOSE=1 prints tracebacks of failures;
# CARGO_TARGET_DIR is honoured.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$ROOT/tests/kurrentdb/python"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${KDB_PY_VENV:-$TARGET_DIR/kurrentdb-python-venv}"
REQUIREMENTS="$HERE/requirements.txt"

say() { printf 'tests/kurrentdb/python: %s\n' "$*"; }

: "${KDB_TARGETS:?KDB_TARGETS is not set (run tests/kurrentdb/run.sh)}"

# 1. The virtualenv, rebuilt only when the pinned requirements change.
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQUIREMENTS" "$VENV/.strata-requirements"; then
    say "creating virtualenv $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    timeout 600 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$VENV/.strata-requirements"
fi
PY="$VENV/bin/python"

# 2. The checks, every target in turn; bounded as a whole as well (each
#    check is bounded by the harness, each gRPC call by its deadline).
started=$SECONDS
status=0
cd "$HERE"
PYTHONDONTWRITEBYTECODE=1 GRPC_VERBOSITY=ERROR timeout --kill-after=10 420 "$PY" -u "$HERE/kdb_checks.py" $KDB_TARGETS || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    say "the checks did not finish within 420 s"
fi
say "took $((SECONDS - started)) s"
exit "$status"
