#!/usr/bin/env bash
# Validates STAC JSON files offline: stac-validator with the schemas of Tests/STAC/schemas mapped onto their URLs.
# Usage: Tests/STAC/validate.sh [--item-collection] FILE...   (exit 0 when every file is valid)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
validator="${DSMOPT_STAC_VALIDATOR:-$here/../../.build/portal-venv/bin/stac-validator}"
[[ -x "$validator" ]] || { echo "validate: $validator not found (scripts/setup.sh --test installs it)" >&2; exit 2; }
d="$here/schemas"; s="https://schemas.stacspec.org/v1.0.0"
map=()
for f in item-spec/json-schema/{item,basics,datetime,instrument,licensing,provider}.json collection-spec/json-schema/collection.json catalog-spec/json-schema/catalog.json; do
    map+=(-s "$s/$f" "$d/v1.0.0/$f")
done
for f in Feature Geometry FeatureCollection; do map+=(-s "https://geojson.org/schema/$f.json" "$d/geojson/$f.json"); done
map+=(-s https://stac-extensions.github.io/projection/v1.1.0/schema.json "$d/projection/v1.1.0.json")
map+=(-s https://stac-extensions.github.io/view/v1.0.0/schema.json "$d/view/v1.0.0.json")
mode=()
if [[ "${1:-}" == "--item-collection" ]]; then mode=(--item-collection); shift; fi
status=0
for file in "$@"; do
    out=$("$validator" validate --no-assets-urls "${mode[@]}" "${map[@]}" "$file" 2>/dev/null) || status=1
    echo "$out"
done
exit $status
