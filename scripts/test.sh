#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: brings up what the tests need
# (tmux for the terminal UI's end-to-end test, two memcached servers for the cache
# tier), then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
command -v memcached >/dev/null 2>&1 || need_apt+=(memcached)
if ((${#need_apt[@]})); then
    echo "installing ${need_apt[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Two memcached servers on loopback for the cache tier's tests.
export LOTSYNC_MEMCACHED=127.0.0.1:21211,127.0.0.1:21212
started=()
stop_started() { for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop_started EXIT
for port in 21211 21212; do
    if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        memcached -u root -l 127.0.0.1 -p "$port" -m 64 -U 0 &
        started+=($!)
    fi
done
for port in 21211 21212; do
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
    done
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || { echo "memcached on port $port did not start" >&2; exit 1; }
done

# Unit, integration, end-to-end and documentation tests of every crate.
cargo test --workspace --locked
