#!/usr/bin/env bash
# Scene-scale benchmark of `dsmopt run`: synthetic pairs of growing size (dsmopt synth), each run whole
# at 0.5 m with the default memory budget; prints a Markdown table of wall time, CPU seconds, CPU seconds
# per input Mpx (pixels of both views), peak RSS (the run's own getrusage) and NMAD against the truth.
# With --cores, the largest size is also run pinned to one core (taskset) for the 2-core speed-up.
#   Benchmarks/scene-scale.sh [--cores] [SIZE ...]      (default sizes: 1024 2048 4096)
# Needs a release build (swift build -c release --product dsmopt) and Debian's python3-gdal.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/release/dsmopt
work=${DSMOPT_BENCH_DIR:-/tmp/dsmopt-scene-bench}
cores=0
if [[ "${1:-}" == "--cores" ]]; then cores=1; shift; fi
sizes=("$@"); ((${#sizes[@]})) || sizes=(1024 2048 4096)
mkdir -p "$work"
compare=../shared/tools/dsm_compare.py

run_one() {  # size label prefix-command...
    local n=$1 label=$2; shift 2
    local out="$work/run_${n}_$label"
    rm -rf "$out"
    "$@" "$bin" run "$work/synth_$n/view_1.tif" "$work/synth_$n/view_2.tif" --resolution 0.5 --out "$out" 2> "$out.log"
    local line; line=$(grep '^run:' "$out.log")
    local wall cpu peak
    wall=$(sed -E 's/.*\(([0-9.]+) s, cpu.*/\1/' <<<"$line")
    cpu=$(sed -E 's/.*cpu ([0-9.]+) s.*/\1/' <<<"$line")
    peak=$(sed -E 's/.*peak RSS ([0-9]+) MiB.*/\1/' <<<"$line")
    # "-" where the comparison fails (at 16384² it needs more memory than 24 GiB).
    local nmad="-"
    [[ -f $compare ]] && nmad=$(/usr/bin/python3 "$compare" "$out/dsm.tif" "$work/synth_$n/truth_dsm.tif" --json 2>/dev/null \
        | /usr/bin/python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["nmad_m"])' 2>/dev/null || echo "-")
    local mpx; mpx=$(/usr/bin/python3 -c "print(2*$n*$n/1e6)")
    printf '| %s² | %s | %.1f | %.1f | %.2f | %.1f | %s | %s |\n' "$n" "$label" "$wall" "$cpu" \
        "$(/usr/bin/python3 -c "print($cpu/$mpx)")" "$mpx" "$peak" "$nmad"
    rm -rf "$out"
}

echo "| scene (each view) | cores | wall s | CPU s | CPU s per input Mpx | input Mpx | peak RSS MiB | NMAD vs truth m |"
echo "|---|---|---|---|---|---|---|---|"
for n in "${sizes[@]}"; do
    [[ -f "$work/synth_$n/view_2.tif" ]] || "$bin" synth --out "$work/synth_$n" --size "$n" --views 2 >/dev/null
    run_one "$n" "all"
done
if ((cores)); then
    n=${sizes[-1]}
    run_one "$n" "1" taskset -c 0
fi
