#!/usr/bin/env bash
# Fuzzes the master's HTTP API with schemathesis against its own /openapi.json.
#
# Starts `mock-master` (debug build; set PROFILE=release for a release build) on a free
# loopback port with known tokens, runs schemathesis with the admin token and the
# checks below, stops the master, and exits non-zero if schemathesis found a failure
# (a 5xx on any input is a bug; so is a status, content type or body the document does
# not describe).
#
# Environment: MAX_EXAMPLES (default 30 per operation), FUZZ_SEED (default 1, so a
# failure replays), TIME_LIMIT seconds for the whole run (default 600), PROFILE.
# Run from anywhere:  scripts/fuzz-api.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${MAX_EXAMPLES:-30}
FUZZ_SEED=${FUZZ_SEED:-1}
TIME_LIMIT=${TIME_LIMIT:-600}
PROFILE=${PROFILE:-debug}
ADMIN_TOKEN=fuzz-admin-token
BIDDER_TOKEN=fuzz-bidder-token

if ! command -v st >/dev/null 2>&1 || [[ "$(st --version 2>/dev/null)" != *"$SCHEMATHESIS_VERSION"* ]]; then
    echo "installing schemathesis $SCHEMATHESIS_VERSION" >&2
    python3 -m pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION" >&2
fi

if [[ "$PROFILE" == release ]]; then
    cargo build --locked --release -p mock-master --bin mock-master >&2
else
    cargo build --locked -p mock-master --bin mock-master >&2
fi
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/$PROFILE/mock-master"

work=$(mktemp -d)
master_pid=
cleanup() {
    if [[ -n "$master_pid" ]] && kill -0 "$master_pid" 2>/dev/null; then
        kill "$master_pid" 2>/dev/null || true
        wait "$master_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Port 0: the master picks a free port and prints it on its first line.
"$bin" --in-memory --listen 127.0.0.1:0 \
    --admin-token "$ADMIN_TOKEN" --terminal-token fuzz-terminal-token \
    --bidder "fuzz:$BIDDER_TOKEN" --fetch-wait-ms 200 --chaos \
    >"$work/stdout" 2>"$work/master.log" &
master_pid=$!
url=
for _ in $(seq 1 200); do
    if read -r first <"$work/stdout" 2>/dev/null && [[ "$first" == "listening on "* ]]; then
        url=${first#listening on }
        break
    fi
    kill -0 "$master_pid" 2>/dev/null || { cat "$work/master.log" >&2; exit 1; }
    sleep 0.05
done
[[ -n "$url" ]] || { echo "the master did not start" >&2; exit 1; }
echo "fuzzing $url (seed $FUZZ_SEED, $MAX_EXAMPLES examples per operation)" >&2

# The notice stream never ends by design (mock-master/tests/sse.rs covers it), so it is
# left out. Three passes, each operation with the token of its role: the admin for the
# lots and reads, a bidder for bids, and the admin for fault injection last (so the
# faults it switches on cannot disturb the other passes).
status=0
fuzz() {
    local token=$1
    shift
    (cd "$work" && timeout --signal=INT "$TIME_LIMIT" st run "$url/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --max-examples "$MAX_EXAMPLES" \
        --seed "$FUZZ_SEED" \
        --request-timeout 10 \
        --workers 1 \
        --no-color "$@") || status=1
}
fuzz "$ADMIN_TOKEN" --exclude-operation-id notices --exclude-operation-id placeBid \
    --exclude-path-regex '^/v1/chaos'
fuzz "$BIDDER_TOKEN" --include-operation-id placeBid
fuzz "$ADMIN_TOKEN" --include-path-regex '^/v1/chaos'

if grep -q "panicked" "$work/master.log"; then
    echo "the master panicked:" >&2
    grep -A5 "panicked" "$work/master.log" >&2
    status=1
fi
if ! kill -0 "$master_pid" 2>/dev/null; then
    echo "the master died during the run" >&2
    status=1
fi
exit "$status"
