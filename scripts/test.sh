#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: brings up what the tests need
# (tmux for the terminal UI's end-to-end test, Chromium and its WebDriver for the wall
# display's browser tests, two memcached servers for the cache tier, PostgreSQL and
# MariaDB for the store's engine tests, nats-server for the JetStream tests, which start
# their own servers and clusters on private ports), fuzzes the master's API,
# runs the benchmark's smoke version, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v memcached >/dev/null 2>&1 || need_apt+=(memcached)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus) # promtool lints every /metrics
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
[ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx-light) # nchan, the benchmark's peer design
[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || need_apt+=(libnginx-mod-nchan)
command -v nats-server >/dev/null 2>&1 || need_apt+=(nats-server)
if ((${#need_apt[@]})); then
    echo "installing ${need_apt[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v nats-server >/dev/null 2>&1 || ! nats-server --version >/dev/null 2>&1; then
    echo "nats-server is missing and could not be installed: the JetStream tests need it" \
        "(apt-get install nats-server, or a release from https://github.com/nats-io/nats-server)" >&2
    exit 1
fi

# The OpenAPI documents are checked by a real validator in the tests.
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
    echo "installing openapi-spec-validator" >&2
    python3 -m pip install --quiet "openapi-spec-validator==0.9.0" >&2
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

# PostgreSQL and MariaDB on loopback for the store's tests on every engine. They are
# started when stopped and left running; the tests create and drop their own databases.
wait_for() { # what, deadline in seconds, command...
    local what=$1 deadline=$(($(date +%s) + $2)); shift 2
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) < deadline)) || { echo "$what did not come up" >&2; exit 1; }
        sleep 0.2
    done
}
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
fi
wait_for PostgreSQL 60 pg_isready -q -h 127.0.0.1 -p 5432
if ! mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 ping >/dev/null 2>&1; then
    install -d -o mysql -g mysql /run/mysqld
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
fi
wait_for MariaDB 60 mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 ping
# A freshly installed server wants a password over TCP: give the tests a user of their own.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
    runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'lotsync-test'"
    export LOTSYNC_TEST_POSTGRES=postgres://postgres:lotsync-test@127.0.0.1:5432
fi
if ! mariadb --protocol=tcp -h 127.0.0.1 -u root -e 'SELECT 1' >/dev/null 2>&1; then
    mariadb -u root -e "CREATE USER IF NOT EXISTS 'lotsync'@'%' IDENTIFIED BY 'lotsync-test';
        GRANT ALL PRIVILEGES ON *.* TO 'lotsync'@'%'"
    export LOTSYNC_TEST_MARIADB=mysql://lotsync:lotsync-test@127.0.0.1:3306
fi

# The master's HTTP API fuzzed against its own OpenAPI document (schemathesis).
bash scripts/fuzz-api.sh

# A short run of the benchmark: proves every scenario produces figures (the targets
# are judged by the full run, see BENCHMARKS.md).
cargo run --locked -p lotsync-tests --bin lotsync-bench -- --quick --out target/bench-quick

# Unit, integration, end-to-end and documentation tests of every crate.
cargo test --workspace --locked
