#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build dsmopt (release) and start the job
# service on its embedded SQLite store in ./dsmopt-data (port 8080, or $DSMOPT_PORT). On the first start an
# admin user is created; its token is written to dsmopt-data/admin.token.
# Any arguments run another dsmopt command instead, e.g. the DSM pipeline on the bundled fixture:
#   scripts/run.sh run Fixtures/synthetic-triplet/view_1.tif Fixtures/synthetic-triplet/view_2.tif \
#       Fixtures/synthetic-triplet/view_3.tif --resolution 0.5 --out out/synthetic-triplet
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build -c release --product dsmopt
# The commit this binary was just built from, recorded in every manifest made under it (a later checkout
# of another commit does not change what a running daemon reports).
if [[ -z ${DSMOPT_COMMIT:-} ]] && commit=$(git rev-parse HEAD 2> /dev/null); then
    export DSMOPT_COMMIT=$commit
fi
if (($#)); then
    exec .build/release/dsmopt "$@"
fi
data="${DSMOPT_DATA:-dsmopt-data}"
if [[ ! -f "$data/admin.token" ]]; then
    mkdir -p "$data"
    .build/release/dsmopt admin --data "$data" create-user admin --role admin > "$data/admin.token"
    chmod 600 "$data/admin.token"
    echo "run: created user 'admin'; its token is in $data/admin.token" >&2
fi
exec .build/release/dsmopt serve --data "$data" --port "${DSMOPT_PORT:-8080}"
