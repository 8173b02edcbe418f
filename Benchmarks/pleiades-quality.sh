#!/usr/bin/env bash
# DSM quality on the real Pléiades data (issue 10's targets), one command:
#   - the whole La Réunion pair at 0.5 m against S2P's DSM (with the best horizontal shift, --align) and
#     against CARS's DSM — CARS covers the whole scene, S2P only its centre (721 × 739 of our 1051 × 1065
#     cells), so blunders near the scene's edges show against CARS only; CARS is a peer, not the truth;
#   - its high-frequency noise (dsm_roughness.py) and the run's CPU seconds, wall time and peak RSS;
#   - the Marseille triplet's test ROI (150 150 700 700 of img_02) against S2P's DSM;
#   - Middlebury Cones (the matcher alone, default parameters; bad-1.0 counts invalid pixels as bad).
#   Benchmarks/pleiades-quality.sh          (about a minute here)
# Needs a release build (swift build -c release --product dsmopt), the shared data (DSMOPT_TEST_DATA, default
# ../shared/data beside the project) and Debian's python3-gdal and numpy for ../shared/tools.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DSMOPT_BIN:-.build/release/dsmopt}
data=${DSMOPT_TEST_DATA:-$(cd .. && pwd)/shared/data}
tools=${DSMOPT_TOOLS:-$(cd "$data/.." && pwd)/tools}
work=${DSMOPT_BENCH_DIR:-/tmp/dsmopt-pleiades-bench}
py=/usr/bin/python3
[[ -x $bin ]] || { echo "pleiades-quality: no $bin (swift build -c release --product dsmopt)" >&2; exit 1; }
[[ -d $data/pleiades ]] || { echo "pleiades-quality: shared data not found at $data" >&2; exit 1; }
mkdir -p "$work"

# Prints the named fields of a dsm_compare.py report on one line.
fields() {  # report, field...
    local report=$1; shift
    for f in "$@"; do printf '%s %s  ' "$f" "$(awk -v k="$f:" '$1 == k { print $2 }' "$report")"; done
    echo
}

reunion=$data/pleiades/reunion-pair
out=$work/reunion
rm -rf "$out"
/usr/bin/time -f "%U %S %e %M" -o "$work/reunion.time" \
    "$bin" run "$reunion/img_01.tif" "$reunion/img_02.tif" --resolution 0.5 --no-orthos --no-mosaic --out "$out" \
    > "$work/reunion.log" 2>&1
$py "$tools/dsm_compare.py" "$out/dsm.tif" "$reunion/reference_dsm_s2p.tif" --align > "$work/reunion_s2p.txt"
$py "$tools/dsm_compare.py" "$out/dsm.tif" "$reunion/reference_dsm_cars.tif" > "$work/reunion_cars.txt"
echo "## La Réunion, whole pair, 0.5 m ($(awk '{ printf "%.1f CPU-s, %.1f s wall, %d MiB peak", $1 + $2, $3, $4 / 1024 }' "$work/reunion.time"))"
echo -n "vs S2P:  "; fields "$work/reunion_s2p.txt" nmad_aligned_m rmse_debiased_m within_1m over_5m over_20m max_abs_m completeness
echo -n "vs CARS: "; fields "$work/reunion_cars.txt" nmad_m rmse_debiased_m within_1m over_5m over_20m max_abs_m completeness
echo "noise:   $($py "$tools/dsm_roughness.py" "$out/dsm.tif" | awk '{ print $2, $3 }')"

marseille=$data/pleiades/marseille-triplet
out=$work/marseille
rm -rf "$out"
"$bin" run "$marseille/img_02.tif" "$marseille/img_01.tif" "$marseille/img_03.tif" --roi 150 150 700 700 \
    --resolution 0.5 --no-orthos --no-mosaic --out "$out" > "$work/marseille.log" 2>&1
$py "$tools/dsm_compare.py" "$out/dsm.tif" "$marseille/reference_dsm_s2p.tif" > "$work/marseille_s2p.txt"
echo "## Marseille triplet, ROI 150 150 700 700 of img_02, 0.5 m"
echo -n "vs S2P:  "; fields "$work/marseille_s2p.txt" nmad_m rmse_debiased_m within_1m over_5m over_20m completeness

cones=$data/middlebury-cones
"$bin" match --left "$cones/Cones_LEFT.tif" --right "$cones/Cones_RIGHT.tif" --min-disparity 0 --max-disparity 64 \
    --out "$work/cones.tif" > /dev/null 2>&1
echo "## Middlebury Cones (matcher, default parameters)"
$py "$tools/disp_eval.py" "$work/cones.tif" "$cones/Cones_LEFT_GT.tif" "$cones/Occlusion_LEFT.png" | tr '\n' ' '
echo
