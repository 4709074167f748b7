#!/usr/bin/env bash
# KurrentDB compatibility with KurrentDB's official Rust client (the
# `kurrentdb` crate from crates.io, pinned in Cargo.toml/Cargo.lock),
# unchanged. Called by tests/kurrentdb/run.sh with the environment it
# documents (KDB_TARGETS, KDB_URL_<target>, KDB_CA, KDB_ADMIN_PASSWORD,
# KDB_STRATA, KDB_NATIVE_<target>, KDB_WORK).
#
# Builds the checks (a standalone package, not a workspace member: the crate
# uses tonic/prost 0.13, the workspace 0.14) in debug — the build, not the
# run, is what costs — into its own target directory so the workspace's
# build is never invalidated, then runs them once for all targets: one line
# per check (`ok <target> <check>` / `FAIL <target> <check>: <why>`) and a
# summary. Exits non-zero if any check fails.
#
# The connection strings are used as run.sh gives them: the crate accepts
# kurrentdb://HOST:PORT?tls=false, and for TLS
# kurrentdb://admin:PASSWORD@HOST:PORT?tls=true&tlsCaFile=CA (it loads the CA
# file itself, and then trusts only it).
#
# Environment: KDB_ONLY runs only the named checks (space separated);
# CARGO_TARGET_DIR is honoured.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$ROOT/tests/kurrentdb/rust"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/kurrentdb-rust"

say() { printf 'tests/kurrentdb/rust: %s\n' "$*"; }

: "${KDB_TARGETS:?KDB_TARGETS is not set (run tests/kurrentdb/run.sh)}"

started=$SECONDS
(cd "$HERE" && CARGO_TARGET_DIR="$TARGET_DIR" timeout 1800 cargo build --locked --quiet)
say "built in $((SECONDS - started)) s"

# Every call and wait inside is bounded; the whole run is as well.
started=$SECONDS
status=0
timeout --kill-after=10 600 "$TARGET_DIR/debug/strata-kurrentdb-rust-check" $KDB_TARGETS || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    say "the checks did not finish within 600 s"
fi
say "checks took $((SECONDS - started)) s"
exit "$status"
