#!/usr/bin/env bash
# Makes a test CA and a server certificate for localhost and 127.0.0.1 with
# openssl, in the directory given: ca.crt (and ca.key), server.crt and
# server.key, valid two days. Used by the cross-language tests' runners.
set -euo pipefail
dir="$1"
mkdir -p "$dir"
command -v openssl >/dev/null || apt-get install -y -q openssl >/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=strata test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/san.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/server.crt" 2>/dev/null
