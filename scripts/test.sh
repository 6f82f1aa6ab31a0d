#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: brings up what the tests need
# (tmux for the terminal UI's end-to-end test), then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
if ((${#need_apt[@]})); then
    echo "installing ${need_apt[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Unit, integration, end-to-end and documentation tests of every crate.
cargo test --workspace --locked
