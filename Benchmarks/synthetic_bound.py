#!/usr/bin/env python3
"""The Cramér–Rao bound of a `dsmopt synth` scene's height noise, for the support a run averages over.

Usage: synthetic_bound.py SCENE_FOLDER RUN_FOLDER [--refinement-sigma PX] [--wide-sigma PX] [--wide-share S]

How close a DSM's NMAD against the truth is to what the images allow. A disparity estimated by weighted
least squares over weights w from two views with independent image noise σ_n (DN) has at best
    σ_d² = 2 σ_n² Σ w² g² ÷ (Σ w g²)²
where g is the texture's derivative along the parallax direction (px); heights have σ_h = σ_d · GSD ÷ (B/H).
Here w is the run's support: the sub-pixel refinement's Gaussian window (σ 2 px, radius ⌈2σ⌉ — the
matcher's `subpixelSigma` and `RefinementWindow`), or the wider one it refines flat correlation peaks with
(σ 4 px, `wideRefinementSigma`), convolved with the DSM's
denoising kernel (σ and radius in cells from the run's parameters.json, cells converted to image pixels by
resolution ÷ GSD). A run's matches mix the two: "as matched" takes the wide window at the share of pixels
given by --wide-share (default 0.5: the matcher's `wideRefinementCurvature` takes about half of a synthetic
scene's matches) with the flattest correlation peaks, the peak's curvature estimated from view_1 as
Σw g² ÷ Σw (I − Ī)² over the narrow window — an approximation of the matcher's choice, which measures the
curvature on the resampled images and also tests that the surface is a plane.
The bound is computed per pixel of view_1.tif (g² from the noisy image, its noise's share σ_n² ÷ 2 of the
central difference removed), a 50-px border left out, and reported as the NMAD of the zero-mean Gaussian
mixture with those σ_h — comparable with synthetic_zones.py's NMAD "away from walls" (roofs' low texture
included: a few per cent of the pixels). Printed for the matched heights (the window alone: dsm_raw.tif)
and the delivered DSM (with the denoising: dsm.tif). Scenes without image noise have no bound.
Assumes the synthetic views' geometry (north-up, parallel projection; scene.json's incidence, azimuth,
GSD, B/H and noise) and a texture that does not change between the views. Needs python3 with GDAL,
numpy and scipy.
"""
import json, math, os, sys
import numpy as np
from osgeo import gdal
from scipy import ndimage as ndi
from scipy.special import erf

gdal.UseExceptions()
args = list(sys.argv[1:])
options = {"--refinement-sigma": 2.0, "--wide-sigma": 4.0, "--wide-share": 0.5}
for option in options:
    if option in args:
        i = args.index(option); options[option] = float(args[i + 1]); del args[i:i + 2]
if len(args) != 2:
    sys.exit(__doc__)
scene_dir, run_dir = args
scene = json.load(open(os.path.join(scene_dir, "scene.json")))
params = json.load(open(os.path.join(run_dir, "parameters.json")))
noise, gsd, bh = float(scene.get("noise", 0)), float(scene["gsd"]), float(scene["baseToHeight"])
if noise <= 0:
    print("bound: no image noise in this scene (its error is the estimator's own)")
    sys.exit(0)

# Parallax direction in view_1's pixels: a raised point moves by tan(incidence) towards each view's
# azimuth (east, north); columns go east, rows south.
inc, az = (np.radians(scene["incidenceDeg"]), np.radians(scene["azimuthDeg"]))
shift = [(math.tan(i) * math.sin(a), math.tan(i) * math.cos(a)) for i, a in zip(inc, az)]
pe, pn = shift[0][0] - shift[1][0], shift[0][1] - shift[1][1]
norm = math.hypot(pe, pn)
u, v = pe / norm, -pn / norm

image = gdal.Open(os.path.join(scene_dir, scene["views"][0])).ReadAsArray().astype(np.float64)
g = u * np.gradient(image, axis=1) + v * np.gradient(image, axis=0)
g2 = np.maximum(g * g - noise * noise / 2, 0)


def gaussian(sigma, radius):
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return np.exp(-(x * x + y * y) / (2 * sigma * sigma))


def refinement_window(sigma):  # the matcher's RefinementWindow: radius ⌈2σ⌉
    return gaussian(sigma, math.ceil(2 * sigma))


def inner(a):  # the pixels scored: a 50-px border left out
    return a[50:-50, 50:-50].ravel()


def local_sd(weights):
    w = weights / weights.sum()
    num, den = ndi.convolve(g2, w * w, mode="nearest"), ndi.convolve(g2, w, mode="nearest")
    return inner(np.sqrt(2 * noise * noise * num / np.maximum(den * den, 1e-30)))


def mixture_nmad(sd):
    sh = np.sort(sd * gsd / bh)
    # NMAD of the mixture: 1.4826 × the t with mean P(|e| ≤ t) = 1/2 (bisection).
    lo, hi = 0.0, float(sh[-1]) * 10
    for _ in range(60):
        t = (lo + hi) / 2
        if np.mean(erf(t / (sh * math.sqrt(2)))) < 0.5: lo = t
        else: hi = t
    return 1.4826 * (lo + hi) / 2


dn = params["denoising"]
scale = float(params["resolution"]) / gsd
denoising = gaussian(dn["sigma"] * scale, int(round(dn["radius"] * scale)))
print(f"bound (noise {noise:g} DN, B/H {bh:g}, GSD {gsd:g} m; texture derivative RMS {math.sqrt(g2.mean()):.1f} DN/px)")
narrow = refinement_window(options["--refinement-sigma"])
wn = narrow / narrow.sum()
mean = ndi.convolve(image, wn, mode="nearest")
variance = ndi.convolve(image * image, wn, mode="nearest") - mean * mean
curvature = ndi.convolve(g * g, wn, mode="nearest") / np.maximum(variance, 1e-9)
flatness = inner(curvature)
wide_here = flatness < np.quantile(flatness, options["--wide-share"])
sds = {}
for label, sigma in [("refinement", options["--refinement-sigma"]), ("wide", options["--wide-sigma"])]:
    window = refinement_window(sigma)
    support = ndi.convolve(np.pad(window, denoising.shape[0] // 2), denoising, mode="constant")
    for name, w in [("dsm_raw.tif", window), ("dsm.tif", support)]:
        sds[label, name] = sd = local_sd(w)
        print(f"  {label + ' window σ ' + format(sigma, 'g') + ' px, ' + name:38s} N_eff "
              f"{w.sum() ** 2 / (w * w).sum():4.0f} px  σ_d {np.median(sd):.4f} px  height NMAD ≥ {mixture_nmad(sd):.3f} m")
for name in ["dsm_raw.tif", "dsm.tif"]:
    sd = np.where(wide_here, sds["wide", name], sds["refinement", name])
    print(f"  {'as matched (' + format(wide_here.mean(), '.0%') + ' wide), ' + name:38s}"
          f"{'':24s}height NMAD ≥ {mixture_nmad(sd):.3f} m")
