#!/usr/bin/env bash
# KurrentDB's official Node.js client (@kurrent/kurrentdb-client, the version
# pinned in package-lock.json, unchanged) against Strata. Called by
# tests/kurrentdb/run.sh with the environment it documents (KDB_TARGETS,
# KDB_URL_<target>, KDB_CA, KDB_ADMIN_PASSWORD, KDB_STRATA, KDB_NATIVE_<target>,
# KDB_WORK). Installs the pinned packages with `npm ci` under
# ${CARGO_TARGET_DIR:-target}/kurrentdb-node (again only when the lockfile
# changed), then runs checks.mjs once per target. Exits non-zero if any check
# fails.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
INSTALL="${CARGO_TARGET_DIR:-$ROOT/target}/kurrentdb-node"

say() { printf 'tests/kurrentdb/node: %s\n' "$*"; }

command -v node >/dev/null || { say "node is not installed"; exit 1; }
command -v npm >/dev/null || { say "npm is not installed"; exit 1; }

mkdir -p "$INSTALL"
if ! cmp -s "$HERE/package-lock.json" "$INSTALL/package-lock.json" \
    || ! cmp -s "$HERE/package.json" "$INSTALL/package.json" \
    || [ ! -d "$INSTALL/node_modules/@kurrent/kurrentdb-client" ]; then
    say "installing the pinned client (npm ci) into $INSTALL"
    rm -f "$INSTALL/package-lock.json"
    cp "$HERE/package.json" "$INSTALL/package.json"
    # The lockfile is copied last: it marks a finished install.
    cp "$HERE/package-lock.json" "$INSTALL/package-lock.json.new"
    mv "$INSTALL/package-lock.json.new" "$INSTALL/package-lock.json"
    if ! (cd "$INSTALL" && timeout 300 npm ci --no-audit --no-fund --loglevel=error); then
        rm -f "$INSTALL/package-lock.json"
        say "npm ci failed"
        exit 1
    fi
fi
# The checks import the client, so they run from beside node_modules.
cp "$HERE"/*.mjs "$INSTALL/"

VERSION="$(node -p 'require(process.argv[1]).version' "$INSTALL/node_modules/@kurrent/kurrentdb-client/package.json")"
say "@kurrent/kurrentdb-client $VERSION on node $(node --version)"

status=0
for target in ${KDB_TARGETS:-plain tls}; do
    started=$SECONDS
    KDB_TARGET="$target" timeout -k 5 170 node "$INSTALL/checks.mjs" || status=1
    say "$target: $((SECONDS - started)) s"
done
exit "$status"
