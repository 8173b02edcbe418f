#!/usr/bin/env python3
"""A DSM of a `dsmopt synth --buildings N` scene against its truth, by zone (issue 10's edge sharpness).

Usage: synthetic_zones.py DSM SCENE_FOLDER [--filled MASK]

The DSM is resampled onto the truth's grid (bilinear, as ../shared/tools/dsm_compare.py does) and its median
difference removed. Zones come from the footprints in scene.json (local east/north metres, linearised at the
scene centre): a cell's distance to the nearest wall is its distance to the nearest footprint outline.
  all             every truth cell within the DSM's footprint
  away            > 2 m from any wall (ground and roof interiors)
  roofs           > 2 m inside a footprint
  near walls      within 2 m of a wall, on either side
For each: cells, completeness (share with a height), NMAD, RMSE, share off by > 1 m and > 2 m; with --filled
(dsm_filled_mask.tif) also the share of the zone's heights that were filled rather than matched.
Needs python3 with GDAL and numpy only.
"""
import json, os, sys
import numpy as np
from osgeo import gdal

gdal.UseExceptions()
args = [a for a in sys.argv[1:]]
if len(args) < 2:
    sys.exit(__doc__)
filled_path = None
if "--filled" in args:
    i = args.index("--filled"); filled_path = args[i + 1]; del args[i:i + 2]
dsm_path, folder = args[0], args[1]
scene = json.load(open(os.path.join(folder, "scene.json")))
truth_ds = gdal.Open(os.path.join(folder, scene.get("truthDSM", "truth_dsm.tif")))
tg = truth_ds.GetGeoTransform()
W, H = truth_ds.RasterXSize, truth_ds.RasterYSize
truth = truth_ds.GetRasterBand(1).ReadAsArray().astype(np.float64)
nd = truth_ds.GetRasterBand(1).GetNoDataValue()
if nd is not None:
    truth[truth == nd] = np.nan

def onto_truth(path, alg):
    w = gdal.Warp("", path, format="MEM", dstSRS=truth_ds.GetProjection(),
                  outputBounds=(tg[0], tg[3] + tg[5] * H, tg[0] + tg[1] * W, tg[3]), width=W, height=H,
                  resampleAlg=alg, dstNodata=float("nan"), outputType=gdal.GDT_Float64)
    return w.GetRasterBand(1).ReadAsArray()

dsm = onto_truth(dsm_path, "bilinear")
filled = onto_truth(filled_path, "near") if filled_path else None

# Local east/north metres of the truth's cell centres (WGS84 radii of curvature at the scene centre).
lon0, lat0 = (scene["centre"][0], scene["centre"][1]) if scene.get("buildings") else (0.0, 0.0)
a, e2 = 6378137.0, 0.00669437999014
s = np.sin(np.radians(lat0)); w = np.sqrt(1 - e2 * s * s)
r_north, r_east = a * (1 - e2) / w ** 3, a / w * np.cos(np.radians(lat0))
east = np.radians(tg[0] + tg[1] * (np.arange(W) + 0.5) - lon0) * r_east
north = np.radians(tg[3] + tg[5] * (np.arange(H) + 0.5) - lat0) * r_north
E, N = np.meshgrid(east, north)

inside_depth = np.full((H, W), -np.inf)   # > 0: metres inside a footprint (to its outline)
outside_dist = np.full((H, W), np.inf)    # metres to the nearest footprint from outside
for b in scene.get("buildings", []):
    de, dn = np.abs(E - b["east"]) - b["halfEast"], np.abs(N - b["north"]) - b["halfNorth"]
    inside = (de <= 0) & (dn <= 0)
    inside_depth = np.where(inside, np.maximum(inside_depth, np.minimum(-de, -dn)), inside_depth)
    outside_dist = np.minimum(outside_dist, np.where(inside, np.inf, np.hypot(np.maximum(de, 0), np.maximum(dn, 0))))
in_building = inside_depth > 0
wall_dist = np.where(in_building, inside_depth, outside_dist)

# Scored: the truth's cells within the DSM's footprint (between its first and last height along each row
# and each column), so that completeness counts the holes inside the covered area, not the truth beyond it.
have = np.isfinite(dsm)
def spans(m):
    out = np.zeros_like(m)
    for i, row in enumerate(m):
        idx = np.flatnonzero(row)
        if idx.size:
            out[i, idx[0]:idx[-1] + 1] = True
    return out
covered = spans(have) & spans(have.T).T
truth[~covered] = np.nan
err = dsm - truth
common = np.isfinite(err)
if not common.any():
    sys.exit("no cell in common with the truth")
err -= np.median(err[common])
zones = [("all", np.isfinite(truth))]
if scene.get("buildings"):
    zones += [("away (> 2 m from walls)", np.isfinite(truth) & (wall_dist > 2)),
              ("roofs (> 2 m inside)", np.isfinite(truth) & in_building & (inside_depth > 2)),
              ("near walls (<= 2 m)", np.isfinite(truth) & (wall_dist <= 2))]
print(f"{'zone':26s} {'cells':>9s} {'complete':>8s} {'NMAD m':>7s} {'RMSE m':>7s} {'>1 m':>6s} {'>2 m':>6s}" + (f" {'filled':>6s}" if filled is not None else ""))
for name, z in zones:
    n = int(z.sum())
    if n == 0:
        continue
    v = err[z & common]
    nmad = 1.4826 * np.median(np.abs(v - np.median(v))) if v.size else float("nan")
    rmse = np.sqrt(np.mean(v ** 2)) if v.size else float("nan")
    line = (f"{name:26s} {n:9d} {v.size / n:8.3f} {nmad:7.3f} {rmse:7.2f} {np.mean(np.abs(v) > 1) * 100:5.1f}% "
            f"{np.mean(np.abs(v) > 2) * 100:5.1f}%")
    if filled is not None:
        f = filled[z & common]
        line += f" {np.mean(f == 1) * 100:5.1f}%"
    print(line)
