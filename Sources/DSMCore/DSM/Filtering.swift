import Foundation

public enum DSMFusion {
    /// Fuses the DSMs of several pairs cell by cell: one value is kept as is; two values are averaged
    /// when they agree within `tolerance` metres (otherwise the better-correlated one wins); three or more
    /// take the median and average the values within `tolerance` of it, so one failing pair cannot pull
    /// the result. Averages are weighted by `weights` (use (B/H)²: height noise scales with 1/(B/H)).
    /// `contributors` holds, per cell, a bit per pair that contributed (bit k = pair k).
    public static func fuse(heights: [GridRaster], scores: [GridRaster], weights: [Float]? = nil, tolerance: Float = 2)
        -> (height: GridRaster, score: GridRaster, contributors: [UInt8]) {
        precondition(!heights.isEmpty && heights.count == scores.count && heights.count <= 8)
        let wt = weights ?? [Float](repeating: 1, count: heights.count)
        let g = heights[0].grid
        var h = GridRaster(grid: g), s = GridRaster(grid: g)
        var bits = [UInt8](repeating: 0, count: g.count)
        var vals: [(Float, Float, Int)] = []
        for c in 0..<g.count {
            vals.removeAll(keepingCapacity: true)
            for k in heights.indices where !heights[k].values[c].isNaN {
                vals.append((heights[k].values[c], scores[k].values[c].isNaN ? 0 : scores[k].values[c], k))
            }
            switch vals.count {
            case 0: continue
            case 1:
                h.values[c] = vals[0].0; s.values[c] = vals[0].1; bits[c] = 1 << vals[0].2
            case 2:
                if abs(vals[0].0 - vals[1].0) <= tolerance {
                    let w0 = wt[vals[0].2], w1 = wt[vals[1].2]
                    h.values[c] = (w0 * vals[0].0 + w1 * vals[1].0) / (w0 + w1); s.values[c] = (vals[0].1 + vals[1].1) / 2
                    bits[c] = (1 << vals[0].2) | (1 << vals[1].2)
                } else {
                    let best = vals[0].1 >= vals[1].1 ? vals[0] : vals[1]
                    h.values[c] = best.0; s.values[c] = best.1; bits[c] = 1 << best.2
                }
            default:
                let sorted = vals.sorted { $0.0 < $1.0 }
                let med = sorted.count % 2 == 1 ? sorted[sorted.count / 2].0 : (sorted[sorted.count / 2 - 1].0 + sorted[sorted.count / 2].0) / 2
                var sh: Float = 0, ss: Float = 0, n: Float = 0, sw: Float = 0
                for v in vals where abs(v.0 - med) <= tolerance {
                    sh += wt[v.2] * v.0; sw += wt[v.2]; ss += v.1; n += 1; bits[c] |= 1 << v.2
                }
                if n > 0 { h.values[c] = sh / sw; s.values[c] = ss / n } else { h.values[c] = med }
            }
        }
        return (h, s, bits)
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
        var nb: [Float] = []
        for j in 0..<g.height {
            for i in 0..<g.width {
                let c = j * g.width + i
                let v = raster.values[c]
                guard !v.isNaN else { continue }
                nb.removeAll(keepingCapacity: true)
                for y in max(0, j - r)...min(g.height - 1, j + r) {
                    for x in max(0, i - r)...min(g.width - 1, i + r) where !(x == i && y == j) {
                        let w = raster.values[y * g.width + x]
                        if !w.isNaN { nb.append(w) }
                    }
                }
                guard nb.count >= minimumNeighbours else { out.values[c] = .nan; continue }
                nb.sort()
                let med = nb[nb.count / 2]
                var dev = nb.map { abs($0 - med) }
                dev.sort()
                let mad = dev[dev.count / 2]
                if abs(v - med) > threshold + slopeAllowance * mad { out.values[c] = .nan }
            }
        }
        return out
    }

    /// Fills holes (4-connected empty regions not touching the grid border) of at most `maximumArea`
    /// cells by iterative averaging from their rims (a discrete Laplace interpolation). Returns the
    /// filled raster and the mask of the filled cells.
    public static func fillSmallHoles(_ raster: GridRaster, maximumArea: Int) -> (GridRaster, [Bool]) {
        let g = raster.grid, w = g.width, h = g.height
        var out = raster
        var filled = [Bool](repeating: false, count: g.count)
        var label = [Int32](repeating: -1, count: g.count)
        var queue: [Int] = []
        var region: [Int] = []
        var next: Int32 = 0
        for start in 0..<g.count where raster.values[start].isNaN && label[start] < 0 {
            region.removeAll(keepingCapacity: true)
            queue = [start]; label[start] = next
            var touchesBorder = false
            while let c = queue.popLast() {
                region.append(c)
                let x = c % w, y = c / w
                if x == 0 || y == 0 || x == w - 1 || y == h - 1 { touchesBorder = true }
                for (dx, dy) in [(1, 0), (-1, 0), (0, 1), (0, -1)] {
                    let nx = x + dx, ny = y + dy
                    guard nx >= 0, ny >= 0, nx < w, ny < h else { continue }
                    let n = ny * w + nx
                    if raster.values[n].isNaN && label[n] < 0 { label[n] = next; queue.append(n) }
                }
            }
            next += 1
            guard !touchesBorder, region.count <= maximumArea else { continue }
            // Initial guess: mean of the rim, then Gauss–Seidel relaxation.
            var rim: Float = 0, rn: Float = 0
            for c in region {
                let x = c % w, y = c / w
                for (dx, dy) in [(1, 0), (-1, 0), (0, 1), (0, -1)] {
                    let nx = x + dx, ny = y + dy
                    guard nx >= 0, ny >= 0, nx < w, ny < h else { continue }
                    let v = raster.values[ny * w + nx]
                    if !v.isNaN { rim += v; rn += 1 }
                }
            }
            guard rn > 0 else { continue }
            for c in region { out.values[c] = rim / rn; filled[c] = true }
            for _ in 0..<min(200, 4 * Int(Double(region.count).squareRoot()) + 10) {
                for c in region {
                    let x = c % w, y = c / w
                    var s: Float = 0, n: Float = 0
                    for (dx, dy) in [(1, 0), (-1, 0), (0, 1), (0, -1)] {
                        let nx = x + dx, ny = y + dy
                        guard nx >= 0, ny >= 0, nx < w, ny < h else { continue }
                        let v = out.values[ny * w + nx]
                        if !v.isNaN { s += v; n += 1 }
                    }
                    if n > 0 { out.values[c] = s / n }
                }
            }
        }
        return (out, filled)
    }
}

extension DSMFilter {
    /// Light denoising of valid cells: a 3×3 median (removes isolated spikes, keeps steps) followed by a
    /// 3×3 mean (averages the per-cell matching noise). Empty cells stay empty.
    public static func denoise(_ raster: GridRaster) -> GridRaster {
        let g = raster.grid, w = g.width, h = g.height
        var median = raster
        var nb: [Float] = []
        for j in 0..<h {
            for i in 0..<w where !raster.values[j * w + i].isNaN {
                nb.removeAll(keepingCapacity: true)
                for y in max(0, j - 1)...min(h - 1, j + 1) {
                    for x in max(0, i - 1)...min(w - 1, i + 1) {
                        let v = raster.values[y * w + x]
                        if !v.isNaN { nb.append(v) }
                    }
                }
                nb.sort()
                median.values[j * w + i] = nb.count % 2 == 1 ? nb[nb.count / 2] : (nb[nb.count / 2 - 1] + nb[nb.count / 2]) / 2
            }
        }
        var out = median
        for j in 0..<h {
            for i in 0..<w where !median.values[j * w + i].isNaN {
                var s: Float = 0, n: Float = 0
                for y in max(0, j - 1)...min(h - 1, j + 1) {
                    for x in max(0, i - 1)...min(w - 1, i + 1) {
                        let v = median.values[y * w + x]
                        if !v.isNaN { s += v; n += 1 }
                    }
                }
                out.values[j * w + i] = s / n
            }
        }
        return out
    }
}
