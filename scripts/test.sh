#!/usr/bin/env bash
# Installs what is missing and runs the whole test suite.
# Test data: $DSMOPT_TEST_DATA, default ../shared/data beside the project; tests fail if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh --test
export DSMOPT_TEST_DATA="${DSMOPT_TEST_DATA:-$(cd .. && pwd)/shared/data}"
if [[ ! -d "$DSMOPT_TEST_DATA/pleiades" ]]; then
    echo "test: test data not found at $DSMOPT_TEST_DATA (set DSMOPT_TEST_DATA)" >&2
    exit 1
fi
# A private PostgreSQL cluster on loopback for the PostgreSQL store's tests (installed if missing, stopped
# at the end), unless DSMOPT_TEST_POSTGRES already names a server.
if [[ -z "${DSMOPT_TEST_POSTGRES:-}" ]]; then
    pgdir=$(mktemp -d /tmp/dsmopt-pg.XXXXXX)
    trap 'scripts/pg-cluster.sh stop "$pgdir"; rm -rf "$pgdir"' EXIT
    DSMOPT_TEST_POSTGRES=$(scripts/pg-cluster.sh start "$pgdir")
    export DSMOPT_TEST_POSTGRES DSMOPT_TEST_POSTGRES_DIR="$pgdir"
fi
# Release mode: the matcher's kernels are ~100× slower unoptimised (tests use no @testable import).
swift build -c release --build-tests --disable-xctest
# One build (above); the tests run on it. All tests use Swift Testing (it prints the closing "Test run with N tests" line).
# --no-parallel: one test at a time, each pipeline with its own threads as in production (one `dsmopt run`
# per process). With every test at once, dozens of pipelines shared GDAL 3.6's block cache in one process
# and the test process died twice in libtiff or the allocator (2026-11-21 CI: heap corruption;
# 2026-11-22: a null dereference in libtiff's field lookup, i.e. one TIFF handle used by two threads).
swift test -c release --disable-xctest --skip-build --no-parallel
