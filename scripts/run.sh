#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build dsmopt (release) and run it on the
# bundled synthetic tri-stereo fixture. Extra arguments replace the default command, e.g.
#   scripts/run.sh inspect ../shared/data/pleiades/reunion-pair/img_01.tif ../shared/data/pleiades/reunion-pair/img_02.tif
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build -c release --product dsmopt
if (($#)); then
    exec .build/release/dsmopt "$@"
fi
exec .build/release/dsmopt inspect Fixtures/synthetic-triplet/view_1.tif Fixtures/synthetic-triplet/view_2.tif Fixtures/synthetic-triplet/view_3.tif
