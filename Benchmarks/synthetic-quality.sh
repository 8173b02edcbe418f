#!/usr/bin/env bash
# DSM quality against a known truth (issue 10): `dsmopt synth` scenes of 1024² at 0.5 m with 40 buildings
# and 15 DN of image noise at B/H 0.08, 0.25, 0.34 and 0.5, a triplet of the same kind (its wide pair at
# B/H 0.5, the pairs through nadir at 0.25), and the plain scene (no buildings, no noise), each
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
    "$bin" run "$work/$name"/view_*.tif --resolution 0.5 --no-orthos --no-mosaic --out "$out" 2> "$out.log"
    echo "## $name (synth --size 1024 $*): $(grep '^run:' "$out.log" | sed -E 's/.*\((.*)\)/\1/')"
    # A triplet: the pairs' vertical offsets to the widest pair, removed before fusion (zero with exact RPCs).
    grep -o 'vertical offsets removed.*' "$out.log" || true
    echo "dsm.tif"
    /usr/bin/python3 "$zones" "$out/dsm.tif" "$work/$name" --filled "$out/dsm_filled_mask.tif"
    echo "dsm_raw.tif"
    /usr/bin/python3 "$zones" "$out/dsm_raw.tif" "$work/$name"
    if [[ -f $work/$name/view_3.tif ]]; then
        echo "(no bound for a triplet: synthetic_bound.py models one pair)"
    else
        /usr/bin/python3 Benchmarks/synthetic_bound.py "$work/$name" "$out"
    fi
    echo
}

scene buildings-bh0.08 --buildings 40 --noise 15 --base-to-height 0.08
scene buildings-bh0.25 --buildings 40 --noise 15 --base-to-height 0.25
scene buildings-bh0.34 --buildings 40 --noise 15 --base-to-height 0.34
scene buildings-bh0.5 --buildings 40 --noise 15 --base-to-height 0.5
scene triplet-bh0.5 --views 3 --buildings 40 --noise 15 --base-to-height 0.5
scene plain-bh0.25
