#!/usr/bin/env bash
# Scale-out benchmark: one synthetic stereo job through the service on PostgreSQL (an API without workers and
# W `dsmopt worker` processes sharing one data folder), for each W given; each worker pinned to one core
# (taskset, round robin over the machine's cores) so that W workers stand for W one-core machines. Prints a
# Markdown table: W, job wall time (started → finished), speed-up against the first W, job CPU, and the
# per-tile CPU of each stage (the stage's tasks' CPU over the tiles, from the store), plus the coordinator's own steps.
#   Benchmarks/scale-out.sh [--size N] [--tile-cells C] [W ...]      (default: --size 2048, W = 1 2 3)
# Needs a release build (swift build -c release --product dsmopt), PostgreSQL's server binaries (or
# DSMOPT_BENCH_POSTGRES=postgres://… of a server where it may create databases), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/.build/release/dsmopt
work=${DSMOPT_BENCH_DIR:-/tmp/dsmopt-scale-bench}
size=2048 tileCells=""
while [[ "${1:-}" == --* ]]; do
    case $1 in
        --size) size=$2; shift 2 ;;
        --tile-cells) tileCells=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
counts=("$@"); ((${#counts[@]})) || counts=(1 2 3)
mkdir -p "$work"
url=${DSMOPT_BENCH_POSTGRES:-}
if [[ -z $url ]]; then
    pg="$work/pg"; rm -rf "$pg"; mkdir -p "$pg"
    trap 'scripts/pg-cluster.sh stop "$pg" >/dev/null 2>&1 || true' EXIT
    url=$(scripts/pg-cluster.sh start "$pg")
fi
[[ -f "$work/synth_$size/view_1.tif" ]] || "$bin" synth --out "$work/synth_$size" --size "$size" --views 2 >/dev/null 2>&1
# One file per view for the upload: the RPC (a sidecar .RPB / _RPC.TXT in the synthetic set) in GeoTIFF tags.
for v in 1 2; do
    [[ -f "$work/synth_$size/upload_$v.tif" ]] || gdal_translate -q -co TILED=YES "$work/synth_$size/view_$v.tif" "$work/synth_$size/upload_$v.tif"
done
ncores=$(nproc)
echo "| workers (1 core each) | tiles (tasks: fuse/match/ortho) | job wall s | speed-up | job CPU s | match CPU-s/tile | fuse CPU-s/tile | ortho CPU-s/tile | plan + offsets + assembly CPU s |"
echo "|---|---|---|---|---|---|---|---|---|"
first=""
for w in "${counts[@]}"; do
    db="scale_$(date +%s)_$w"
    psql "$url" -qc "CREATE DATABASE $db" >/dev/null
    store="${url%/*}/$db?sslmode=disable"
    data="$work/data_$w"; rm -rf "$data"; mkdir -p "$data"
    extra=""; [[ -n $tileCells ]] && extra=", \"tileCells\": $tileCells"
    echo "{\"store\": \"$store\"$extra}" > "$data/dsmopt.json"
    "$bin" serve --data "$data" --port 0 --workers 0 2> "$data/serve.log" & api=$!
    pids=()
    for ((k = 0; k < w; k++)); do
        taskset -c $((k % ncores)) "$bin" worker --data "$data" --slots 1 2> "$data/worker_$k.log" & pids+=($!)
    done
    for _ in $(seq 100); do [[ -s "$data/server.port" ]] && break; sleep 0.2; done
    base="http://127.0.0.1:$(cat "$data/server.port")"
    token=$("$bin" admin --data "$data" create-user bench | tail -1 | awk '{print $NF}')
    up() { curl -sf -H "Authorization: Bearer $token" --data-binary "@$1" "$base/uploads?name=$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
    u1=$(up "$work/synth_$size/upload_1.tif" a.tif); u2=$(up "$work/synth_$size/upload_2.tif" b.tif)
    job=$(curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"images\": [{\"upload\": \"$u1\"}, {\"upload\": \"$u2\"}], \"parameters\": {\"resolution\": 0.5}}" \
        "$base/processes/dsm-opt/execution" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobID"])')
    while :; do
        status=$(curl -sf -H "Authorization: Bearer $token" "$base/jobs/$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
        [[ $status == successful || $status == failed ]] && break
        sleep 1
    done
    read -r wall cpu < <(psql "$store" -Atc "SELECT finished_at - started_at, cpu_seconds FROM jobs WHERE id = '$job'" | tr '|' ' ')
    # Tasks are blocks of tiles (TileStage.taskBlock): per-tile CPU = the stage's CPU over the scene's tiles.
    tiles=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tiling"]["tiles"])' "$data/jobs/$job/attempt-1/out/manifest.json")
    stage() { psql "$store" -Atc "SELECT COALESCE(round((sum(cpu_seconds) / $tiles)::numeric, 2), 0) FROM tasks WHERE job_id = '$job' AND stage = '$1'"; }
    tasks=$(psql "$store" -Atc "SELECT string_agg(n::text, '/' ORDER BY s) FROM (SELECT stage AS s, count(*) AS n FROM tasks WHERE job_id = '$job' GROUP BY stage) x")
    own=$(psql "$store" -Atc "SELECT round(($cpu - sum(cpu_seconds))::numeric, 1) FROM tasks WHERE job_id = '$job'")
    [[ -z $first ]] && first=$wall
    speedup=$(python3 -c "print('%.2f' % ($first / $wall))")
    printf '| %d | %d (%s) | %.1f | %s | %.1f | %s | %s | %s | %s |\n' "$w" "$tiles" "$tasks" "$wall" "$speedup" "$cpu" "$(stage match)" "$(stage fuse)" "$(stage ortho)" "$own"
    [[ $status == successful ]] || echo "job $job $status: see $data" >&2
    kill "${pids[@]}" "$api" 2>/dev/null; wait "${pids[@]}" "$api" 2>/dev/null || true
done
