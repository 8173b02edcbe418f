#!/usr/bin/env bash
# A private PostgreSQL cluster on loopback for the tests (and for trying the PostgreSQL store by hand).
#   scripts/pg-cluster.sh start DIR [PORT]   → prints postgres://dsmopt@127.0.0.1:PORT/dsmopt
#   scripts/pg-cluster.sh restart DIR | stop DIR
# Installs PostgreSQL from Debian's packages when missing. PostgreSQL refuses to run as root: as root the
# cluster runs as the `postgres` user (created by the package), owning DIR.
set -euo pipefail
cmd="${1:?start|stop}"; dir="${2:?cluster folder}"; port="${3:-$((20000 + RANDOM % 20000))}"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z "$bin" ]]; then
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    echo "pg-cluster: installing postgresql" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=300 postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
as_owner() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
    mkdir -p "$dir"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U dsmopt --auth=trust -E UTF8 >/dev/null
    # Besides loopback, the tests' network namespaces (separate "hosts", 198.18.0.0/16, the RFC 2544
    # benchmarking range, see Tests/ServiceTests/NetworkHosts.swift) may connect; every other address is refused.
    echo "host all all 198.18.0.0/16 trust" | as_owner tee -a "$dir/data/pg_hba.conf" >/dev/null
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses='*' -c fsync=off -c max_connections=200" start >/dev/null 2>&1 || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U dsmopt dsmopt
    echo "postgres://dsmopt@127.0.0.1:$port/dsmopt?sslmode=disable"
    ;;
restart)
    # The server must not inherit our output: a caller reading it to the end would wait for the server.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w restart >/dev/null 2>&1 || { tail -20 "$dir/server.log" >&2; exit 1; }
    ;;
stop)
    [[ -d "$dir/data" ]] && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    ;;
*) echo "usage: $0 start|restart|stop DIR [PORT]" >&2; exit 2 ;;
esac
