#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build dsmopt (release) and run the DSM
# pipeline on the bundled synthetic tri-stereo fixture (products in out/synthetic-triplet). Extra
# arguments replace the default command, e.g.
#   scripts/run.sh run ../shared/data/pleiades/reunion-pair/img_01.tif ../shared/data/pleiades/reunion-pair/img_02.tif --out out/reunion
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build -c release --product dsmopt
if (($#)); then
    exec .build/release/dsmopt "$@"
fi
.build/release/dsmopt run Fixtures/synthetic-triplet/view_1.tif Fixtures/synthetic-triplet/view_2.tif \
    Fixtures/synthetic-triplet/view_3.tif --resolution 0.5 --point-cloud --out out/synthetic-triplet
echo "products: $(ls out/synthetic-triplet | tr '\n' ' ')"
