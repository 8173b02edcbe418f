#!/usr/bin/env bash
# DSM quality against a known truth (issue 10): `dsmopt synth` scenes of 1024² at 0.5 m with 40 buildings
# and 15 DN of image noise at B/H 0.08, 0.25, 0.34 and 0.5, and the plain scene (no buildings, no noise), each
# run with `dsmopt run --resolution 0.5 --no-orthos --no-mosaic`, then compared with the truth by zone
# (Benchmarks/synthetic_zones.py: all, away from walls, roofs, within 2 m of walls) on the delivered DSM
# (dsm.tif) and on the matched heights before filtering (dsm_raw.tif); then the Cramér–Rao bound of the
# height NMAD for the support the run averages over (Benchmarks/synthetic_bound.py).
#   Benchmarks/synthetic-quality.sh            (about a minute of CPU per scene here)
# Needs a release build (swift build -c release --product dsmopt) and Debian's python3-gdal, numpy and scipy.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DSMOPT_BIN:-.build/release/dsmopt}
work=${DSMOPT_BENCH_DIR:-/tmp/dsmopt-quality-bench}
zones=Benchmarks/synthetic_zones.py
mkdir -p "$work"

scene() {  # name, synth options...
    local name=$1; shift
    [[ -f $work/$name/scene.json ]] || "$bin" synth --out "$work/$name" --size 1024 "$@" > /dev/null
    local out="$work/run_$name"
    rm -rf "$out"
    "$bin" run "$work/$name/view_1.tif" "$work/$name/view_2.tif" --resolution 0.5 --no-orthos --no-mosaic --out "$out" 2> "$out.log"
    echo "## $name (synth --size 1024 $*): $(grep '^run:' "$out.log" | sed -E 's/.*\((.*)\)/\1/')"
    echo "dsm.tif"
    /usr/bin/python3 "$zones" "$out/dsm.tif" "$work/$name" --filled "$out/dsm_filled_mask.tif"
    echo "dsm_raw.tif"
    /usr/bin/python3 "$zones" "$out/dsm_raw.tif" "$work/$name"
    /usr/bin/python3 Benchmarks/synthetic_bound.py "$work/$name" "$out"
    echo
}

scene buildings-bh0.08 --buildings 40 --noise 15 --base-to-height 0.08
scene buildings-bh0.25 --buildings 40 --noise 15 --base-to-height 0.25
scene buildings-bh0.34 --buildings 40 --noise 15 --base-to-height 0.34
scene buildings-bh0.5 --buildings 40 --noise 15 --base-to-height 0.5
scene plain-bh0.25
