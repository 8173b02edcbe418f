#!/usr/bin/env bash
# The README's REST session, runnable as written against the daemon `scripts/run.sh` started: creates a
# researcher with the admin token, uploads the La Réunion pair, inspects it, submits a small job, follows it to
# the end, reads its results and downloads the DSM. Needs curl and python3 (for JSON); no jq.
#   scripts/api-session.sh                       # http://127.0.0.1:8080, token in dsmopt-data/admin.token
# Environment: DSMOPT_URL (default http://127.0.0.1:${DSMOPT_PORT:-8080}), DSMOPT_ADMIN_TOKEN_FILE (default
# ${DSMOPT_DATA:-dsmopt-data}/admin.token), DSMOPT_TEST_DATA (default ../shared/data), OUT (default a temp folder).
set -euo pipefail
cd "$(dirname "$0")/.."
S="${DSMOPT_URL:-http://127.0.0.1:${DSMOPT_PORT:-8080}}"
ADMIN=$(cat "${DSMOPT_ADMIN_TOKEN_FILE:-${DSMOPT_DATA:-dsmopt-data}/admin.token}")
DATA="${DSMOPT_TEST_DATA:-$(cd .. && pwd)/shared/data}/pleiades/reunion-pair"
OUT="${OUT:-$(mktemp -d /tmp/dsmopt-session.XXXXXX)}"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }
say() { echo "session: $*" >&2; }

# 1. A researcher (the admin creates it; its token is shown once).
U=$(curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' "$S/admin/users" \
      -d "{\"name\": \"researcher-$RANDOM$RANDOM\", \"role\": \"researcher\"}")
A="Authorization: Bearer $(echo "$U" | json "d['token']")"
say "user $(echo "$U" | json "d['user']['name']") created"

# 2. Upload the pair (raw bytes, not a form), see what was read, inspect the pair before spending quota.
I1=$(curl -sf -H "$A" --data-binary @"$DATA/img_01.tif" "$S/uploads?name=img_01.tif" | json "d['id']")
I2=$(curl -sf -H "$A" --data-binary @"$DATA/img_02.tif" "$S/uploads?name=img_02.tif" | json "d['id']")
say "uploaded $I1 $I2; image 1 acquired $(curl -sf -H "$A" "$S/uploads/$I1" | json "d['image']['acquisitionTime']")"
curl -sf -H "$A" -H 'Content-Type: application/json' "$S/processes/dsm-opt/inspection" \
     -d '{"images": [{"upload": "'"$I1"'"}, {"upload": "'"$I2"'"}]}' \
  | json "'pair B/H %.2f, %s' % (d['pairs'][0]['baseToHeight'], d['pairs'][0]['status'])" | sed 's/^/session: /' >&2

# 3. Submit; the job's address is the Location header of the 201 (absolute, like every link the API gives).
LOC=$(curl -sf -D - -o /dev/null -H "$A" -H 'Content-Type: application/json' "$S/processes/dsm-opt/execution" -d '{
  "name": "reunion", "images": [{"upload": "'"$I1"'"}, {"upload": "'"$I2"'"}], "preset": "default",
  "parameters": {"roi": [350, 350, 300, 300], "resolution": 1.0}}' | tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
[[ -n "$LOC" ]] || { say "no Location header in the answer"; exit 1; }
say "job $LOC"

# 4. Follow it (status, progress, stage) until it ends.
for _ in $(seq 1 600); do
    J=$(curl -sf -H "$A" "$LOC")
    STATUS=$(echo "$J" | json "d['status']")
    [[ "$STATUS" == successful || "$STATUS" == failed || "$STATUS" == dismissed ]] && break
    sleep 1
done
say "$(echo "$J" | json "'%s, %d %%, %s CPU-s, purge %s' % (d['status'], d['progress'], d['cpuSeconds'], d.get('purgeDate'))")"
[[ "$STATUS" == successful ]] || { echo "$J" >&2; exit 1; }

# 5. Results: the results document (each output's name -> a link; orthos: one per image), the manifest
#    (each product's DSM-OPT code and size), one product downloaded (Range and HEAD work too), all of them in
#    one zip, with the token and through a download link, the quota used.
curl -sf -H "$A" "$LOC/results" | json "'\n'.join(k + ' ' + ' '.join(l['href'] for l in (v if isinstance(v, list) else [v])) for k, v in sorted(d.items()))" | sed 's/^/session: /' >&2
curl -sf -H "$A" "$LOC/results/manifest.json" | json "'\n'.join('%s %s %d bytes' % (p['code'], p['file'], p['bytes']) for p in d['products'])" | sed 's/^/session: /' >&2
curl -sf -H "$A" -o "$OUT/dsm.tif" "$LOC/results/dsm.tif"
say "dsm.tif: $(stat -c %s "$OUT/dsm.tif") bytes in $OUT"
# Every result in one zip (-C -: a broken download resumes where it stopped).
curl -sf -H "$A" -C - -o "$OUT/results.zip" "$LOC/results.zip"
say "results.zip: $(python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(len(z.namelist()), "files")' "$OUT/results.zip"), $(stat -c %s "$OUT/results.zip") bytes"
# A download link: the same zip signed for an hour, fetched without the token (a browser, a mail, GDAL).
LINK=$(curl -sf -X POST -H "$A" -H 'Content-Type: application/json' -d '{"expiresIn": 3600}' "$LOC/download-links" | json "d['archive']")
curl -sf -o "$OUT/linked.zip" "$LINK"
cmp -s "$OUT/linked.zip" "$OUT/results.zip" || { echo "the download link's zip differs from the token's" >&2; exit 1; }
say "download link (no token, the same zip): ${LINK%%\?*}?user=…&expires=…&signature=…"
curl -sf -H "$A" "$S/me" | json "'usage: %s' % d['usage']" | sed 's/^/session: /' >&2
echo "$OUT/dsm.tif"
