import DSMCore
import Foundation
import GDALKit
import SensorIngest

/// Stage 1 of a ground tile, for every selected pair: the image window that sees the tile (from the RPC
/// and the height range, plus a matching margin), epipolar resampling in sub-tiles, dense matching,
/// triangulation and rasterisation on the tile's cells of the matches whose σ is measured and within the
/// uncertainty threshold. Writes `RunPlan.matchBandsPerPair` bands per pair: height, score, height
/// uncertainty (the disparity's σ × GSD ÷ B/H, metres) and, with several pairs, the height of the matches
/// the threshold left out (`DSMFusion.fuse`'s `leftOut`: they still contradict another pair's height).
struct MatchTask: Sendable {
    let plan: RunPlan
    let images: [SensorImage]
    let work: WorkFolder

    func run(_ tile: GroundTile) throws {
        let grid = plan.grid
        let tileGrid = grid.subgrid(tile.cells)
        // Points are kept within two cells of the tile: the rasteriser's splat reaches one cell.
        let keep = tile.cells.expanded(by: 2, within: grid)
        let keepGrid = grid.subgrid(keep)
        let toGeo = try CoordinateTransform(fromEPSG: grid.epsg, toEPSG: 4326)
        let toGrid = try CoordinateTransform(fromEPSG: 4326, toEPSG: grid.epsg)
        var cx: [Double] = [], cy: [Double] = []
        for fy in [0.0, 0.5, 1.0] {
            for fx in [0.0, 0.5, 1.0] {
                cx.append(keepGrid.originX + fx * Double(keepGrid.width) * grid.resolution)
                cy.append(keepGrid.originY - fy * Double(keepGrid.height) * grid.resolution)
            }
        }
        toGeo.transform(x: &cx, y: &cy)
        let matching = plan.parameters.matching
        var matcher = DenseMatcher(parameters: matching)
        matcher.threads = plan.workload.matcherThreads
        matcher.stripRows = plan.workload.stripRows
        // NaN (no σ) fails the comparison too.
        let maximumSigma = Float(matching.uncertaintyThreshold)
        var bands: [[Float]] = []
        for (k, pair) in plan.pairs.enumerated() {
            let a = images[pair[0]], b = images[pair[1]]
            matcher.parameters.regularisation = plan.pointing[k].regularisation ?? matching.regularisation
            matcher.parameters.jumpPenaltyRatio = plan.pointing[k].jumpPenaltyRatio ?? matching.jumpPenaltyRatio
            let metresPerPixel = plan.metresPerPixel(pair: k)
            var cs: [Double] = [], rs: [Double] = []
            for (lon, lat) in zip(cx, cy) {
                for h in [plan.heights[0], plan.heights[1]] {
                    let p = a.model.project(longitude: lon, latitude: lat, height: h)
                    cs.append(p.column); rs.append(p.row)
                }
            }
            var points = ProjectedPoints(), leftOut = ProjectedPoints()
            func projected(_ pts: [GroundPoint]) -> ProjectedPoints {
                var p = ProjectedPoints()
                p.x = pts.map(\.longitude); p.y = pts.map(\.latitude)
                p.z = pts.map { Float($0.height) }; p.score = pts.map(\.score)
                p.sigma = pts.map { $0.disparityUncertainty * metresPerPixel }
                toGrid.transform(x: &p.x, y: &p.y)
                return p.within(keepGrid)
            }
            if let window = Self.window(columns: cs, rows: rs, margin: plan.matchMargin, within: plan.pairRegions[k]) {
                let rect = PairRectification(first: a, second: b)
                for w in PairRectification.tiles(window, size: plan.epipolarTileSize) where w.width >= 24 && w.height >= 24 {
                    // Each epipolar sub-tile is matched with `epipolarOverlap` pixels of its neighbours and keeps
                    // only the points of its own pixels: no seam along the cuts (RunPlan.epipolarOverlap).
                    let ext = Self.expand(w, by: plan.epipolarOverlap ?? 0, within: window)
                    let t = try rect.rectify(ext, heights: plan.heightRange, pointingCorrection: plan.pointing[k].correctionPx)
                    var m = try matcher.match(left: t.left, right: t.right, minDisparity: t.geometry.disparityRange.lowerBound,
                                              maxDisparity: t.geometry.disparityRange.upperBound)
                    if ext != w { Self.keepOnly(w, of: window, in: &m, leftToGrid: t.geometry.left) }
                    let lw = EpipolarResampler.sourceWindow(toGrid: t.geometry.left, width: t.geometry.width, height: t.geometry.height,
                                                            imageWidth: Int.max / 4, imageHeight: Int.max / 4)!
                    let rw = EpipolarResampler.sourceWindow(toGrid: t.geometry.right, width: t.geometry.rightWidth, height: t.geometry.height,
                                                            imageWidth: Int.max / 4, imageHeight: Int.max / 4)!
                    let g1 = try LineOfSightGrid(model: a.model, x0: Double(lw.x), y0: Double(lw.y), x1: Double(lw.x + lw.width),
                                                 y1: Double(lw.y + lw.height), heights: plan.heightRange)
                    let g2 = try LineOfSightGrid(model: b.model, x0: Double(rw.x), y0: Double(rw.y), x1: Double(rw.x + rw.width),
                                                 y1: Double(rw.y + rw.height), heights: plan.heightRange)
                    // Matches whose correlation peak gave no σ (the refinement's parabola flat or opening upwards:
                    // the disparity stays on the search step), or a σ above the uncertainty threshold, are left
                    // out: their cells are better filled or left open (README "DSM quality", items 20 and 21).
                    // With several pairs their heights are kept apart, as witnesses only (item 22).
                    let pts = Triangulation.points(tile: t.geometry, disparity: m, first: g1, second: g2)
                    points.append(projected(pts.filter { $0.disparityUncertainty <= maximumSigma }))
                    if plan.keepsLeftOutHeights { leftOut.append(projected(pts.filter { !($0.disparityUncertainty <= maximumSigma) })) }
                }
            }
            let r = Rasterizer.rasterize(points, grid: tileGrid)
            bands.append(r.height.values)
            bands.append(r.score.values)
            bands.append(r.sigma.values)
            if plan.keepsLeftOutHeights { bands.append(Rasterizer.rasterize(leftOut, grid: tileGrid, slopes: nil).height.values) }
        }
        try work.write(.match, tile, bands: bands)
    }

    /// A sub-tile grown by `margin` pixels on the sides inside `window`.
    static func expand(_ w: PixelWindow, by margin: Int, within window: PixelWindow) -> PixelWindow {
        let x0 = max(window.x, w.x - margin), y0 = max(window.y, w.y - margin)
        let x1 = min(window.x + window.width, w.x + w.width + margin), y1 = min(window.y + window.height, w.y + w.height + margin)
        return PixelWindow(x: x0, y: y0, width: x1 - x0, height: y1 - y0)
    }

    /// Clears the disparities of epipolar pixels whose reference-image position lies outside the sub-tile
    /// `core` (on its sides inside `window`; beyond the window's own edges nothing is cleared).
    static func keepOnly(_ core: PixelWindow, of window: PixelWindow, in m: inout DisparityMap, leftToGrid: Affine2D) {
        let x0 = core.x == window.x ? -Double.infinity : Double(core.x)
        let y0 = core.y == window.y ? -Double.infinity : Double(core.y)
        let x1 = core.x + core.width == window.x + window.width ? Double.infinity : Double(core.x + core.width)
        let y1 = core.y + core.height == window.y + window.height ? Double.infinity : Double(core.y + core.height)
        let inv = leftToGrid.inverse
        for v in 0..<m.height {
            for u in 0..<m.width where !m.disparity[v * m.width + u].isNaN {
                // Pixel (u, v) of the grid samples the image at the centre-based position inv(u, v).
                let p = inv.apply(Double(u), Double(v))
                if p.x < x0 || p.x >= x1 || p.y < y0 || p.y >= y1 {
                    let i = v * m.width + u
                    m.disparity[i] = .nan; m.score[i] = .nan; m.uncertainty[i] = .nan; m.status[i] = MatchStatus.outside.rawValue
                }
            }
        }
    }

    /// The bounding window of projected points grown by `margin` pixels, clipped to `region`.
    static func window(columns cs: [Double], rows rs: [Double], margin: Int, within region: PixelWindow) -> PixelWindow? {
        guard let c0 = cs.min(), let c1 = cs.max(), let r0 = rs.min(), let r1 = rs.max(), c0.isFinite, r0.isFinite, c1.isFinite, r1.isFinite else {
            return nil
        }
        let x0 = max(region.x, Int(c0.rounded(.down)) - margin), y0 = max(region.y, Int(r0.rounded(.down)) - margin)
        let x1 = min(region.x + region.width, Int(c1.rounded(.up)) + margin + 1)
        let y1 = min(region.y + region.height, Int(r1.rounded(.up)) + margin + 1)
        guard x1 - x0 >= 24, y1 - y0 >= 24 else { return nil }
        return PixelWindow(x: x0, y: y0, width: x1 - x0, height: y1 - y0)
    }
}

extension ProjectedPoints {
    /// The points that fall inside a grid's extent.
    func within(_ g: GridDefinition) -> ProjectedPoints {
        let x0 = g.originX, x1 = g.originX + Double(g.width) * g.resolution
        let y1 = g.originY, y0 = g.originY - Double(g.height) * g.resolution
        var out = ProjectedPoints()
        for k in 0..<count where x[k] >= x0 && x[k] < x1 && y[k] > y0 && y[k] <= y1 {
            out.x.append(x[k]); out.y.append(y[k]); out.z.append(z[k]); out.score.append(score[k])
            if sigma.count == count { out.sigma.append(sigma[k]) }
        }
        return out
    }
}
