import Foundation

public enum DSMFusion {
    /// Two pairs' heights of a cell agree when they lie within this many metres of each other.
    public static let agreementTolerance: Float = 2

    /// Fuses the DSMs of several pairs cell by cell: one value is kept as is; two values are averaged
    /// when they agree within `tolerance` metres; three or more take the median and average the values
    /// within `tolerance` of it, so one failing pair cannot pull the result. A cell that two or more pairs
    /// see but where fewer than two of their heights agree — two values apart by more than `tolerance`,
    /// or three or more with fewer than two within `tolerance` of their median — is left empty (no
    /// contributor): the pairs contradict each other, and neither the better correlation nor the median
    /// picks the right one reliably. On the whole Marseille triplet those cells (0.4 % of the compared
    /// ones) had kept heights off by an NMAD of 2.8 m against S2P's DSM, 28 % of them within 1 m, 14 % off
    /// by more than 5 m; on a synthetic triplet with buildings about half within 1 m (along walls and roof
    /// edges, where a pair sees the occluded side) — Benchmarks/DSM-QUALITY.md, item 19.
    /// `leftOut` (per pair, optional): the heights of the matches a pair left out of its DSM (their σ above
    /// the uncertainty threshold, or none). They never make a height, but a cell that one pair alone gives a
    /// height is left empty when another pair's left-out height lies more than `tolerance` from it: before
    /// the threshold those were two pairs that disagree. On the whole Marseille triplet the cells this
    /// empties were off by an NMAD of 2.5 m against S2P's DSM, 33 % within 1 m (item 22).
    /// `lone` (optional): a cell that one pair alone gives a height is also left empty when another pair
    /// matched within `witnessRadius` cells of it (`LoneHeights.witnessed`: the cell lies inside that pair's
    /// coverage, and the pair found nothing there, kept or left out) unless the height's σ is at most
    /// `LoneHeights.maximumSigma` of its pair (`loneSigmaPx` of disparity): a height no second pair confirms
    /// where another one looked. On the whole Marseille triplet the cells this empties had been off by an
    /// NMAD of 2.1 m against S2P's DSM, 38 % within 1 m (item 23).
    /// Averages are weighted by `weights` (use (B/H)²: height noise scales with 1/(B/H)).
    /// `contributors` holds, per cell, a bit per pair that contributed (bit k = pair k).
    /// With per-pair height uncertainties (`sigmas`, metres), also the fused cell's: one value keeps its σ;
    /// values averaged give the σ of their weighted mean, √(Σwᵢ²σᵢ²)/Σwᵢ, combined in quadrature with their
    /// disagreement (the weighted standard deviation of the averaged heights).
    public static func fuse(heights: [GridRaster], scores: [GridRaster], weights: [Float]? = nil,
                            tolerance: Float = agreementTolerance, sigmas: [GridRaster]? = nil,
                            leftOut: [GridRaster]? = nil, lone: LoneHeights? = nil)
        -> (height: GridRaster, score: GridRaster, contributors: [UInt8], sigma: GridRaster?) {
        precondition(!heights.isEmpty && heights.count == scores.count && heights.count <= 8)
        precondition(leftOut.map { $0.count == heights.count } ?? true)
        precondition(lone.map { $0.witnessed.count == heights.count && $0.maximumSigma.count == heights.count } ?? true)
        let wt = weights ?? [Float](repeating: 1, count: heights.count)
        let g = heights[0].grid
        var h = GridRaster(grid: g), s = GridRaster(grid: g), u = GridRaster(grid: g)
        var bits = [UInt8](repeating: 0, count: g.count)
        func sigma(_ k: Int, _ c: Int) -> Float { sigmas?[k].values[c] ?? .nan }
        // σ of the weighted mean of the contributing pairs `ks`, with their spread about it.
        func combined(_ ks: [Int], _ c: Int, mean: Float) -> Float {
            var sw: Float = 0, v: Float = 0, spread: Float = 0
            for k in ks {
                let sk = sigma(k, c)
                guard !sk.isNaN else { return .nan }
                sw += wt[k]; v += wt[k] * wt[k] * sk * sk
                let d = heights[k].values[c] - mean
                spread += wt[k] * d * d
            }
            return (v / (sw * sw) + spread / sw).squareRoot()
        }
        var vals: [(Float, Float, Int)] = []
        for c in 0..<g.count {
            vals.removeAll(keepingCapacity: true)
            for k in heights.indices where !heights[k].values[c].isNaN {
                vals.append((heights[k].values[c], scores[k].values[c].isNaN ? 0 : scores[k].values[c], k))
            }
            switch vals.count {
            case 0: continue
            case 1:
                // One pair's height, contradicted by another pair's left-out match: left empty.
                if let leftOut, leftOut.indices.contains(where: { $0 != vals[0].2 && abs(leftOut[$0].values[c] - vals[0].0) > tolerance }) {
                    continue
                }
                // One pair's height where another pair matched nearby but not here, not precise enough to
                // stand alone: left empty.
                if let lone, lone.witnessed.indices.contains(where: { $0 != vals[0].2 && lone.witnessed[$0][c] }),
                   !(sigma(vals[0].2, c) <= lone.maximumSigma[vals[0].2]) {
                    continue
                }
                h.values[c] = vals[0].0; s.values[c] = vals[0].1; bits[c] = 1 << vals[0].2
                u.values[c] = sigma(vals[0].2, c)
            case 2:
                // Two pairs that disagree: left empty.
                guard abs(vals[0].0 - vals[1].0) <= tolerance else { continue }
                let w0 = wt[vals[0].2], w1 = wt[vals[1].2]
                h.values[c] = (w0 * vals[0].0 + w1 * vals[1].0) / (w0 + w1); s.values[c] = (vals[0].1 + vals[1].1) / 2
                bits[c] = (1 << vals[0].2) | (1 << vals[1].2)
                u.values[c] = combined([vals[0].2, vals[1].2], c, mean: h.values[c])
            default:
                let sorted = vals.sorted { $0.0 < $1.0 }
                let med = sorted.count % 2 == 1 ? sorted[sorted.count / 2].0 : (sorted[sorted.count / 2 - 1].0 + sorted[sorted.count / 2].0) / 2
                var sh: Float = 0, ss: Float = 0, sw: Float = 0
                var inliers: [Int] = []
                for v in vals where abs(v.0 - med) <= tolerance {
                    sh += wt[v.2] * v.0; sw += wt[v.2]; ss += v.1
                    inliers.append(v.2)
                }
                // Fewer than two pairs agree about the median: left empty.
                guard inliers.count >= 2 else { continue }
                for k in inliers { bits[c] |= 1 << k }
                h.values[c] = sh / sw; s.values[c] = ss / Float(inliers.count)
                u.values[c] = combined(inliers, c, mean: h.values[c])
            }
        }
        return (h, s, bits, sigmas == nil ? nil : u)
    }
}

extension DSMFusion {
    /// A pair witnesses the cells within this many cells of a match of its own (kept or left out).
    public static let witnessRadius = 8
    /// A lone height (`LoneHeights`) is kept when its disparity σ is at most this many pixels.
    public static let loneSigmaPx: Float = 0.2

    /// What `fuse` needs to judge a height one pair alone gives: per pair, the cells it witnessed, and the
    /// largest σ (metres) of a height of its own that stands alone where another pair witnessed.
    public struct LoneHeights: Sendable {
        public let witnessed: [[Bool]]
        public let maximumSigma: [Float]

        /// From each pair's heights and left-out heights on one grid, and each pair's metres of height per
        /// pixel of disparity (GSD ÷ B/H).
        public init(heights: [GridRaster], leftOut: [GridRaster], metresPerPixel: [Float]) {
            precondition(heights.count == leftOut.count && heights.count == metresPerPixel.count)
            let g = heights[0].grid
            witnessed = heights.indices.map { k in
                let matched = zip(heights[k].values, leftOut[k].values).map { !$0.isNaN || !$1.isNaN }
                return DSMFusion.near(matched, width: g.width, height: g.height, radius: DSMFusion.witnessRadius)
            }
            maximumSigma = metresPerPixel.map { DSMFusion.loneSigmaPx * $0 }
        }
    }

    /// Per cell, whether `mask` holds a true cell within `radius` cells (a (2r+1)² box): the matcher's box
    /// means of the mask (edge-replicating, which near a border repeats cells already inside the box).
    public static func near(_ mask: [Bool], width: Int, height: Int, radius r: Int) -> [Bool] {
        precondition(mask.count == width * height && r >= 0)
        return boxMeans(mask.map { $0 ? 1 : 0 }, width: width, height: height, radius: r).map { $0 > 0 }
    }
}

public enum DSMFilter {
    /// Removes cells that differ from the median of their (2r+1)² valid neighbours by more than
    /// `threshold` metres plus `slopeAllowance` × the neighbourhood's spread (median absolute deviation),
    /// and isolated cells with fewer than `minimumNeighbours` valid neighbours.
    public static func removeOutliers(_ raster: GridRaster, radius r: Int = 2, threshold: Float = 3,
                                      slopeAllowance: Float = 3, minimumNeighbours: Int = 4) -> GridRaster {
        let g = raster.grid
        var out = raster
        let side = 2 * r + 1
        // The neighbours and their deviations in two small buffers, sorted by insertion (at most 24 values
        // for radius 2: cheaper than the standard library's sort and no allocation per cell).
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * side * side) { buffer in
            let nb = buffer.baseAddress!, dev = nb + side * side
            @inline(__always) func sortInPlace(_ a: UnsafeMutablePointer<Float>, _ n: Int) {
                guard n > 1 else { return }
                for i in 1..<n {
                    let v = a[i]
                    var j = i - 1
                    while j >= 0, a[j] > v { a[j + 1] = a[j]; j -= 1 }
                    a[j + 1] = v
                }
            }
            raster.values.withUnsafeBufferPointer { V in
                for j in 0..<g.height {
                    for i in 0..<g.width {
                        let c = j * g.width + i
                        let v = V[c]
                        guard !v.isNaN else { continue }
                        var count = 0
                        for y in max(0, j - r)...min(g.height - 1, j + r) {
                            for x in max(0, i - r)...min(g.width - 1, i + r) where !(x == i && y == j) {
                                let w = V[y * g.width + x]
                                if !w.isNaN { nb[count] = w; count += 1 }
                            }
                        }
                        guard count >= minimumNeighbours else { out.values[c] = .nan; continue }
                        // Within the threshold of the median, decided without sorting (most cells): the median
                        // nb[count / 2] of the sorted values lies in [v − t, v + t] exactly when at most count / 2
                        // values are below v − t and at most count − count / 2 − 1 above v + t.
                        let low = v - threshold, high = v + threshold
                        var below = 0, above = 0
                        for q in 0..<count { below += nb[q] < low ? 1 : 0; above += nb[q] > high ? 1 : 0 }
                        if below <= count / 2 && above <= count - count / 2 - 1 { continue }
                        sortInPlace(nb, count)
                        let med = nb[count / 2]
                        // Within the threshold of the median: kept whatever the spread (the MAD only widens it).
                        if abs(v - med) <= threshold { continue }
                        for q in 0..<count { dev[q] = abs(nb[q] - med) }
                        sortInPlace(dev, count)
                        let mad = dev[count / 2]
                        if abs(v - med) > threshold + slopeAllowance * mad { out.values[c] = .nan }
                    }
                }
            }
        }
        return out
    }

    /// Removes islands: 4-connected regions of heights (neighbours within `step` metres of each other)
    /// smaller than `maximumArea` cells that do not touch the grid's border. The matcher's speckle filter
    /// removes such islands of consistent wrong matches in image pixels (100); this is its last line of
    /// defence on the ground, in cells: a region cut off from its surroundings by holes or by steps taller
    /// than `step` (one pixel of disparity in metres). A run removes those under 50 m²; measured, the cells
    /// they hold are mostly wrong by metres (see `DSMPipelineRunner`'s plan), though a lone shed cut off
    /// by its occlusions would go too. Returns the raster and how many cells went.
    public static func removeIslands(_ raster: GridRaster, maximumArea: Int, step: Float) -> (raster: GridRaster, removed: Int) {
        let g = raster.grid, w = g.width, h = g.height
        var out = raster
        var removed = 0
        raster.values.withUnsafeBufferPointer { V in
            ConnectedRegions.forEach(width: w, height: h, member: { !V[$0].isNaN }, linked: { abs(V[$0] - V[$1]) <= step }) { region in
                guard region.count < maximumArea, !ConnectedRegions.touchesBorder(region, width: w, height: h) else { return }
                for c in region { out.values[c] = .nan }
                removed += region.count
            }
        }
        return (out, removed)
    }

    /// Fills holes (4-connected empty regions not touching the grid border) of at most `maximumArea`
    /// cells by iterative averaging from their rims (a discrete Laplace interpolation). A hole whose rim (its
    /// valid 8-neighbours) departs from the rim's least-squares plane by more than `maximumRimDeparture`
    /// metres (root mean square, `rimDeparture`) stays open: its rim holds a step — an occlusion at the foot
    /// of a wall or a cliff, a failure along a roof's edge — which the interpolation would bridge with a ramp
    /// that is neither side. The plane tilts to take up part of a step: a step of height H across a small
    /// hole departs by about 0.2–0.3 H. Measured 2026-11-25 with the denoising's range as the limit (Benchmarks/
    /// DSM-QUALITY.md, item 18): on the whole La Réunion pair the holes left open had been filled with heights
    /// off by an NMAD of 2.6 m against S2P's DSM (0.9 m for those still filled); on `dsmopt synth --buildings
    /// 40 --noise 15` at B/H 0.25, 7.8 m against the truth (2.0 m). Returns the filled raster and the mask of
    /// the filled cells.
    public static func fillSmallHoles(_ raster: GridRaster, maximumArea: Int, maximumRimDeparture: Float = .infinity) -> (GridRaster, [Bool]) {
        let g = raster.grid, w = g.width, h = g.height
        var out = raster
        var filled = [Bool](repeating: false, count: g.count)
        ConnectedRegions.forEach(width: w, height: h, member: { raster.values[$0].isNaN }) { region in
            guard region.count <= maximumArea, !ConnectedRegions.touchesBorder(region, width: w, height: h) else { return }
            if maximumRimDeparture.isFinite, let d = rimDeparture(region, raster.values, width: w, height: h), d > maximumRimDeparture {
                return
            }
            // Initial guess: mean of the rim, then Gauss–Seidel relaxation.
            var rim: Float = 0, rn: Float = 0
            for c in region {
                ConnectedRegions.forEachNeighbour(of: c, width: w, height: h) { n in
                    let v = raster.values[n]
                    if !v.isNaN { rim += v; rn += 1 }
                }
            }
            guard rn > 0 else { return }
            for c in region { out.values[c] = rim / rn; filled[c] = true }
            for _ in 0..<min(200, 4 * Int(Double(region.count).squareRoot()) + 10) {
                for c in region {
                    var s: Float = 0, n: Float = 0
                    ConnectedRegions.forEachNeighbour(of: c, width: w, height: h) { q in
                        let v = out.values[q]
                        if !v.isNaN { s += v; n += 1 }
                    }
                    if n > 0 { out.values[c] = s / n }
                }
            }
        }
        return (out, filled)
    }

    /// The root-mean-square departure of a hole's rim (its valid 8-neighbours) from their least-squares plane,
    /// with n − 3 degrees of freedom; nil where the rim has fewer than 4 cells or does not span a plane.
    public static func rimDeparture(_ region: [Int], _ values: [Float], width w: Int, height h: Int) -> Float? {
        guard let first = region.first else { return nil }
        // Offsets from the hole's first cell and heights relative to the first rim cell found keep the sums small.
        let x0 = first % w, y0 = first / w
        var z0: Float?
        var seen = Set<Int>()
        var m = PlaneMoments()
        for c in region {
            ConnectedRegions.forEachNeighbour(of: c, width: w, height: h, diagonal: true) { n in
                let v = values[n]
                guard !v.isNaN, seen.insert(n).inserted else { return }
                if z0 == nil { z0 = v }
                m.add(1, dx: n % w - x0, dy: n / w - y0, z: v - z0!)
            }
        }
        return m.residualRMS
    }
}

extension DSMFilter {
    /// How the delivered DSM is denoised: a 3×3 median (removes isolated spikes, keeps steps), then an
    /// edge-preserving mean — a bilateral filter on the surface's departure from its local plane: each
    /// neighbour within `radius` cells, with Gaussian weight (σ = `sigma` cells), is first carried along the
    /// centre's slope (see below) and kept only if it then lies within `range` metres of the
    /// centre. Slopes are not flattened, and steps taller than `range` (walls, cliffs) stay sharp. The
    /// result is the Gaussian-weighted least-squares plane through the kept neighbours, at the centre: their
    /// weighted mean where all are kept (the kernel is symmetric), and where some are left out (beside a
    /// step or a hole, by the grid's edge) a value that does not depend on the centre's slope, which the
    /// kept neighbours' off-centre mean did (by the slope's error times their centroid's offset).
    public struct Denoising: Sendable, Codable, Equatable {
        public var radius: Int
        public var sigma: Float
        public var range: Float

        public init(radius: Int, sigma: Float, range: Float) {
            self.radius = radius; self.sigma = sigma; self.range = range
        }

        /// The setting for a DSM of `resolution` m from images of `gsd` m with the widest pair at `baseToHeight`:
        /// σ of two image pixels (the matcher's noise is correlated over about its window), at least 0.75 cell,
        /// radius ⌈2σ⌉, and a range of one pixel of disparity in metres (GSD ÷ B/H), between 1 and 4 m.
        /// Measured on the La Réunion pair (0.5 m, GSD 0.5 m, B/H 0.26 → σ 2 cells, range 1.9 m), against S2P:
        /// aligned NMAD 0.323 → 0.304 m, high-frequency noise 0.056 → 0.027 m against the 3×3 median and 3×3 mean.
        /// The radius was ⌈1.5σ⌉ until 2026-11-24, a kernel cut off where its weights are still a third of the
        /// centre's: ⌈2σ⌉ / ⌈2.5σ⌉ measured against it — Marseille triplet (ROI of the test suite) vs S2P NMAD
        /// 0.4611 → 0.4579 / 0.4568 m; whole La Réunion pair aligned NMAD 0.2905 m all three, RMSE 0.5115 →
        /// 0.5113 / 0.5112 m, noise 0.029 → 0.027 / 0.027 m; Marseille's weak pair (img_02 + img_01) 0.5443 →
        /// 0.5448 / 0.5454 m; `dsmopt synth` with 40 buildings and 15 DN at B/H 0.08 / 0.25 / 0.34: 0.145 /
        /// 0.085 / 0.064 → 0.136 / 0.082 / 0.062 m at ⌈2σ⌉, within 2 m of walls unchanged (2.60 → 2.58 m at
        /// 0.25). ⌈2σ⌉ takes most of the gain for half of ⌈2.5σ⌉'s extra cost (kernel cells 49 → 81 / 121 at σ 2).
        ///
        /// Weak geometry: height noise grows as 1/(B/H), so below B/H 0.25 σ grows as 0.25 ÷ B/H — the mean
        /// over σ² cells brings the extra noise back to what it is at B/H 0.25, traded for resolution (×3.1
        /// at B/H 0.08, ×2.2 at 0.114). Measured 2026-11-24 with the exponent of (0.25 ÷ B/H) at 0.5 / 0.75 /
        /// 1 / 1.25 / 1.5: Marseille's weak pair (img_02 + img_01, B/H 0.114, ROI of the test suite) against
        /// S2P's triplet DSM NMAD 0.561 / 0.548 / 0.544 / 0.551 / 0.566 m; `dsmopt synth --size 1024
        /// --buildings 40 --noise 15 --base-to-height 0.08` against its truth 0.195 / 0.168 / 0.145 / 0.126 /
        /// 0.109 m (the synthetic terrain is smoother than a city; the real pair sets the exponent). A larger
        /// window (7) or regularisation (0.05) did not lower the NMAD at B/H 0.08, nor did the wide sub-pixel
        /// window everywhere on the real pair (0.552 m with the exponent 1).
        public static func forScene(resolution: Double, gsd: Double, baseToHeight: Double) -> Denoising {
            let sigma = max(0.75, 2 * gsd / max(resolution, 1e-6)) * weakGeometryFactor(baseToHeight)
            let range = min(4, max(1, gsd / max(baseToHeight, 0.01)))
            return Denoising(radius: Int((2 * sigma).rounded(.up)), sigma: Float(sigma), range: Float(range))
        }

        /// B/H below which a pair counts as weak geometry (stated in parameters.json).
        public static let weakBaseToHeight = 0.12

        /// How much wider the smoothing is for a pair at `baseToHeight`: 0.25 ÷ B/H, at least 1.
        public static func weakGeometryFactor(_ baseToHeight: Double) -> Double {
            max(1, 0.25 / max(baseToHeight, 0.01))
        }
    }

    /// Denoises valid cells (empty cells stay empty): 3×3 median, then the edge-preserving mean of `setting`.
    public static func denoise(_ raster: GridRaster, _ setting: Denoising) -> GridRaster {
        edgePreservingMean(median3x3(raster), setting, slopesFrom: raster)
    }

    /// The median of each valid cell's valid 3×3 neighbourhood. A full neighbourhood (nine valid cells, most
    /// of a DSM) takes its fifth value from a 19-exchange selection network, the others are sorted: the same
    /// values as sorting every neighbourhood, which was a fifth of the fuse step's CPU (4096² synthetic pair).
    public static func median3x3(_ raster: GridRaster) -> GridRaster {
        let g = raster.grid, w = g.width, h = g.height
        var median = raster
        var nb: [Float] = []
        raster.values.withUnsafeBufferPointer { v in
        median.values.withUnsafeMutableBufferPointer { out in
            for j in 0..<h {
                for i in 0..<w where !v[j * w + i].isNaN {
                    let a = j * w + i
                    if i > 0, j > 0, i < w - 1, j < h - 1 {
                        let p = (v[a - w - 1], v[a - w], v[a - w + 1], v[a - 1], v[a], v[a + 1], v[a + w - 1], v[a + w], v[a + w + 1])
                        if !(p.0.isNaN || p.1.isNaN || p.2.isNaN || p.3.isNaN || p.5.isNaN || p.6.isNaN || p.7.isNaN || p.8.isNaN) {
                            out[a] = medianOfNine(p)
                            continue
                        }
                    }
                    nb.removeAll(keepingCapacity: true)
                    for y in max(0, j - 1)...min(h - 1, j + 1) {
                        for x in max(0, i - 1)...min(w - 1, i + 1) {
                            let u = v[y * w + x]
                            if !u.isNaN { nb.append(u) }
                        }
                    }
                    nb.sort()
                    out[a] = nb.count % 2 == 1 ? nb[nb.count / 2] : (nb[nb.count / 2 - 1] + nb[nb.count / 2]) / 2
                }
            }
        }}
        return median
    }

    /// The fifth smallest of nine values (none NaN): a selection network of 19 compare-exchanges (Paeth's).
    @inline(__always) static func medianOfNine(_ p: (Float, Float, Float, Float, Float, Float, Float, Float, Float)) -> Float {
        var (p0, p1, p2, p3, p4, p5, p6, p7, p8) = p
        @inline(__always) func order(_ a: inout Float, _ b: inout Float) { let lo = min(a, b); b = max(a, b); a = lo }
        order(&p1, &p2); order(&p4, &p5); order(&p7, &p8)
        order(&p0, &p1); order(&p3, &p4); order(&p6, &p7)
        order(&p1, &p2); order(&p4, &p5); order(&p7, &p8)
        order(&p0, &p3); order(&p5, &p8); order(&p4, &p7)
        order(&p3, &p6); order(&p1, &p4); order(&p2, &p5)
        order(&p4, &p7); order(&p4, &p2); order(&p6, &p4)
        order(&p4, &p2)
        return p4
    }

    /// The bilateral mean about the local plane described in `Denoising` (the weighted plane fit where
    /// neighbours are left out); the slopes for the gating are taken from `slopesFrom` (by default the
    /// raster itself: pass the surface before a median, which shifts the cells beside a wall on a slope).
    /// Measured 2026-11-25 against the kept neighbours' mean carried along the centre's slope (the minmod
    /// below, of one-sided differences of noisy heights): whole La Réunion pair against S2P RMSE 0.5073 →
    /// 0.5035 m, > 5 m 421 → 414 cells (against CARS 0.522 → 0.514 m, 1,023 → 1,007), noise 0.027 →
    /// 0.025 m; Marseille triplet (test ROI) NMAD 0.4579 → 0.4560 m, its weak pair 0.5448 → 0.5380 m; CPU
    /// +1–2 % (the plane's moments only where a neighbour is left out). Test `denoisingBesideAWallFitsThePlane`.
    public static func edgePreservingMean(_ raster: GridRaster, _ s: Denoising, slopesFrom: GridRaster? = nil) -> GridRaster {
        let g = raster.grid, w = g.width, h = g.height, r = s.radius
        var out = raster
        // The Gaussian kernel, its rows padded to whole 8-lane chunks (zero weights past the row): weight of
        // offset (dx, dy) at kernel8[lanes · (dy + r) + dx + r].
        let span = 2 * r + 1, chunks = (span + 7) / 8, lanes = 8 * chunks
        var kernel8 = [Float](repeating: 0, count: lanes * span)
        for dy in -r...r {
            for dx in -r...r { kernel8[lanes * (dy + r) + dx + r] = exp(-Float(dx * dx + dy * dy) / (2 * s.sigma * s.sigma)) }
        }
        let offsets8 = (0..<chunks).map { c in SIMD8<Float>((0..<8).map { Float(8 * c + $0 - r) }) }
        let slopes = localSlopes(slopesFrom ?? raster)
        raster.values.withUnsafeBufferPointer { v in
            for j in 0..<h {
                for i in 0..<w {
                    let c = v[j * w + i]
                    guard !c.isNaN else { continue }
                    let gx = slopes.east[j * w + i], gy = slopes.south[j * w + i]
                    if i >= r, i - r + lanes <= w, j >= r, j + r < h {
                        // Inside the grid: each kernel row 8 cells at a time (lanes past the row weigh 0, and a
                        // NaN neighbour fails the range test, so it drops out as in the path below).
                        var s8 = SIMD8<Float>(repeating: 0), w8 = SIMD8<Float>(repeating: 0), n8 = SIMD8<Float>(repeating: 0)
                        kernel8.withUnsafeBufferPointer { K in offsets8.withUnsafeBufferPointer { O in
                            for dy in -r...r {
                                let row = v.baseAddress! + (j + dy) * w + i - r, krow = K.baseAddress! + lanes * (dy + r)
                                for q in 0..<chunks {
                                    let n = UnsafeRawPointer(row + 8 * q).loadUnaligned(as: SIMD8<Float>.self)
                                    let carried = n - gx * O[q] - gy * Float(dy)
                                    let k = UnsafeRawPointer(krow + 8 * q).loadUnaligned(as: SIMD8<Float>.self)
                                    let keep = (carried - c).replacing(with: -(carried - c), where: carried .< c) .<= s.range
                                    s8 += (k * carried).replacing(with: 0, where: .!keep)
                                    w8 += k.replacing(with: 0, where: .!keep)
                                    n8 += SIMD8<Float>(repeating: 1).replacing(with: 0, where: .!(keep .& (k .> 0)))
                                }
                            }
                        }}
                        // Every neighbour kept: the symmetric kernel's mean is already the plane's value at the centre.
                        if n8.sum() == Float(span * span) {
                            out.values[j * w + i] = s8.sum() / w8.sum()
                            continue
                        }
                        // Else the plane's moments, 8 cells at a time as above.
                        var a = (SIMD8<Float>(repeating: 0), SIMD8<Float>(repeating: 0), SIMD8<Float>(repeating: 0),
                                 SIMD8<Float>(repeating: 0), SIMD8<Float>(repeating: 0), SIMD8<Float>(repeating: 0),
                                 SIMD8<Float>(repeating: 0), SIMD8<Float>(repeating: 0), SIMD8<Float>(repeating: 0))
                        kernel8.withUnsafeBufferPointer { K in offsets8.withUnsafeBufferPointer { O in
                            for dy in -r...r {
                                let row = v.baseAddress! + (j + dy) * w + i - r, krow = K.baseAddress! + lanes * (dy + r)
                                let fy = Float(dy)
                                for q in 0..<chunks {
                                    let n = UnsafeRawPointer(row + 8 * q).loadUnaligned(as: SIMD8<Float>.self)
                                    var z = n - gx * O[q] - gy * fy - c
                                    let k = UnsafeRawPointer(krow + 8 * q).loadUnaligned(as: SIMD8<Float>.self)
                                    // A NaN neighbour fails the test; its z is zeroed so that 0 × NaN does not spread.
                                    let keep = z.replacing(with: -z, where: z .< 0) .<= s.range
                                    let kk = k.replacing(with: 0, where: .!keep)
                                    z.replace(with: 0, where: .!keep)
                                    let kx = kk * O[q], ky = kk * fy
                                    a.0 += kk; a.1 += kx; a.2 += ky; a.3 += kx * O[q]; a.4 += kx * fy; a.5 += ky * fy
                                    a.6 += kk * z; a.7 += kx * z; a.8 += ky * z
                                }
                            }
                        }}
                        let m = PlaneMoments(s0: Double(a.0.sum()), sx: Double(a.1.sum()), sy: Double(a.2.sum()),
                                             sxx: Double(a.3.sum()), sxy: Double(a.4.sum()), syy: Double(a.5.sum()),
                                             sz: Double(a.6.sum()), sxz: Double(a.7.sum()), syz: Double(a.8.sum()))
                        out.values[j * w + i] = c + m.valueAtCentre
                        continue
                    }
                    // By the grid's edge: the weighted plane fit, cell by cell.
                    var m = PlaneMoments()
                    for y in max(0, j - r)...min(h - 1, j + r) {
                        for x in max(0, i - r)...min(w - 1, i + r) {
                            let n = v[y * w + x]
                            let carried = n - gx * Float(x - i) - gy * Float(y - j)
                            guard !n.isNaN, abs(carried - c) <= s.range else { continue }
                            m.add(kernel8[lanes * (y - j + r) + x - i + r], dx: x - i, dy: y - j, z: carried - c)
                        }
                    }
                    out.values[j * w + i] = c + m.valueAtCentre
                }
            }
        }
        return out
    }

    /// Weighted sums for the least-squares plane z = z₀ + bx·dx + by·dy through a cell's neighbours (offsets
    /// dx, dy in cells, heights z relative to the centre's; the denoising) or through a hole's rim
    /// (`rimDeparture`, relative to its first cell).
    struct PlaneMoments {
        var s0 = 0.0, sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0, syy = 0.0, sz = 0.0, sxz = 0.0, syz = 0.0, szz = 0.0

        mutating func add(_ weight: Float, dx: Int, dy: Int, z: Float) {
            let a = Double(weight), x = Double(dx), y = Double(dy), z = Double(z)
            s0 += a; sx += a * x; sy += a * y; sxx += a * x * x; sxy += a * x * y; syy += a * y * y
            sz += a * z; sxz += a * x * z; syz += a * y * z; szz += a * z * z
        }

        /// With unit weights: the root-mean-square residual of the fitted plane, with s0 − 3 degrees of freedom
        /// (`rimDeparture`); nil under 4 points or where the offsets span no plane (the determinant of their
        /// centred sums under 10⁻⁹ of the product of its diagonal, or of 1).
        var residualRMS: Float? {
            guard s0 >= 4 else { return nil }
            let cxx = sxx - sx * sx / s0, cxy = sxy - sx * sy / s0, cyy = syy - sy * sy / s0
            let cxz = sxz - sx * sz / s0, cyz = syz - sy * sz / s0, czz = szz - sz * sz / s0
            let det = cxx * cyy - cxy * cxy
            guard det > 1e-9 * max(cxx * cyy, 1) else { return nil }
            let bx = (cxz * cyy - cyz * cxy) / det, by = (cyz * cxx - cxz * cxy) / det
            return Float((max(0, czz - bx * cxz - by * cyz) / (s0 - 3)).squareRoot())
        }

        /// The fitted plane's z₀ (Cramer's rule on the 3 × 3 normal equations); the weighted mean where the
        /// offsets span no plane (the determinant of their weighted covariance under 10⁻³ cell⁴).
        var valueAtCentre: Float {
            guard s0 > 0 else { return .nan }
            let minor = sxx * syy - sxy * sxy
            let det = s0 * minor - sx * (sx * syy - sxy * sy) + sy * (sx * sxy - sxx * sy)
            guard det > 1e-3 * s0 * s0 * s0 else { return Float(sz / s0) }
            return Float((sz * minor - sx * (sxz * syy - sxy * syz) + sy * (sxz * sxy - sxx * syz)) / det)
        }
    }

    /// Each valid cell's slope, in metres per cell along the grid's columns (east) and rows (south): per
    /// axis, the one-sided differences averaged over the cell's line and its two neighbouring lines, then
    /// the smaller of the two when they agree in sign, else flat (minmod), so that a wall beside the cell
    /// does not tilt it. NaN cells (and their slopes) are 0.
    public static func localSlopes(_ raster: GridRaster) -> (east: [Float], south: [Float]) {
        localSlopes(raster.values, width: raster.grid.width, height: raster.grid.height)
    }

    /// `localSlopes` of a row-major `width` × `height` array (NaN where empty), with one-sided differences
    /// over `step` cells (per cell: divided by `step`).
    public static func localSlopes(_ values: [Float], width w: Int, height h: Int, step: Int = 1) -> (east: [Float], south: [Float]) {
        var east = [Float](repeating: 0, count: w * h), south = east
        values.withUnsafeBufferPointer { sv in
            func at(_ x: Int, _ y: Int) -> Float { x >= 0 && y >= 0 && x < w && y < h ? sv[y * w + x] : .nan }
            for j in 0..<h {
                for i in 0..<w where !sv[j * w + i].isNaN {
                    func side(_ dx: Int, _ dy: Int) -> Float {
                        var s: Float = 0, n: Float = 0
                        for t in -1...1 {
                            let (x0, y0) = dx != 0 ? (i, j + t) : (i + t, j)
                            let d = at(x0 + dx * step, y0 + dy * step) - at(x0, y0)
                            if !d.isNaN { s += d; n += 1 }
                        }
                        return n > 0 ? s / (n * Float(step)) : .nan
                    }
                    func minmod(_ a: Float, _ b: Float) -> Float {
                        if a.isNaN { return b.isNaN ? 0 : b }
                        if b.isNaN { return a }
                        return a * b <= 0 ? 0 : (abs(a) < abs(b) ? a : b)
                    }
                    east[j * w + i] = minmod(-side(-1, 0), side(1, 0))
                    south[j * w + i] = minmod(-side(0, -1), side(0, 1))
                }
            }
        }
        return (east, south)
    }
}
