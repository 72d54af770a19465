#!/usr/bin/env bash
# Run the HTTP caching test suite (npm package http-cache-tests, the suite behind
# cache-tests.fyi) against cproxy as a forward proxy, on loopback only.
#
#   bench/cache_conformance/run.sh            # whole suite, summary at the end
#   bench/cache_conformance/run.sh TEST-ID    # one test, with the exchanges dumped
#
# Needs node and npm; installs the suite into a temporary directory, never into the repo.
set -euo pipefail
for need in node npm; do
    if ! command -v "$need" >/dev/null; then
        echo "missing program: $need. Install with: apt-get install nodejs npm" >&2
        exit 2
    fi
done
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
origin_port="${ORIGIN_PORT:-18500}"
proxy_port="${PROXY_PORT:-18501}"
cleanup() {
    [ -n "${origin_pid:-}" ] && kill "$origin_pid" 2>/dev/null || true
    [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cp "$here/run.mjs" "$here/server.mjs" "$work/"
(cd "$work" && npm install --silent --no-audit --no-fund http-cache-tests@0.4.5 >/dev/null)
printf 'Port = %s\nAdminPort = 0\nAccessLog = %s/access.log\nLogLevel = warning\n' \
    "$proxy_port" "$work" > "$work/cproxy.conf"

node "$work/server.mjs" "$origin_port" > "$work/origin.log" 2>&1 &
origin_pid=$!
(cd "$root" && exec python3 -m cproxy -c "$work/cproxy.conf") > "$work/cproxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 50); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $proxy_port), 0.2)" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
(cd "$work" && node run.mjs "http://127.0.0.1:$origin_port" "$proxy_port" "${1:-}")
