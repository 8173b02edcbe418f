import DSMCore
import Foundation

/// Between the match and fuse stages, for 2 pairs or more: the vertical offset of each pair's heights
/// relative to the pair with the largest B/H (relative RPC errors along the epipolar lines become height
/// biases ∝ 1/(B/H)), the median of their differences over every common cell of the scene. Tiles are
/// read one at a time into a histogram (1 cm bins), so memory does not grow with the scene.
enum OffsetPass {
    static let binWidth: Float = 0.01
    static let halfRange: Float = 200

    static func run(plan: RunPlan, work: WorkFolder, minimumCommon: Int = 100) throws -> PairOffsets {
        let bhs = plan.baseToHeight
        let reference = bhs.indices.max { bhs[$0] < bhs[$1] }!
        let n = plan.pairs.count, per = plan.matchBandsPerPair
        let bins = Int(2 * halfRange / binWidth) + 1
        var hist = [[Int]](repeating: [Int](repeating: 0, count: bins), count: n)
        var counts = [Int](repeating: 0, count: n)
        for t in plan.tiles.tiles {
            let r = try work.read(.match, t)
            let ref = r.bands[per * reference]
            for k in 0..<n where k != reference {
                let h = r.bands[per * k]
                for c in 0..<h.count {
                    let d = h[c] - ref[c]
                    guard d.isFinite else { continue }
                    let b = Int(((max(-halfRange, min(halfRange, d)) + halfRange) / binWidth).rounded())
                    hist[k][b] += 1
                    counts[k] += 1
                }
            }
        }
        let offsets: [Float?] = (0..<n).map { k in
            if k == reference { return 0 }
            guard counts[k] >= minimumCommon else { return nil }
            var acc = 0
            for (b, c) in hist[k].enumerated() {
                acc += c
                if 2 * acc >= counts[k] { return Float(b) * binWidth - halfRange }
            }
            return nil
        }
        return PairOffsets(reference: reference, offsets: offsets, commonCells: counts)
    }
}

/// Stage 2 of a ground tile: fusion of the pairs (after their vertical offsets), outlier removal,
/// small-island removal, small-hole filling and denoising, computed over the tile plus `fuseMargin`
/// cells read from the neighbouring tiles' match results, so that the result does not depend on the
/// tiling. Writes the raw fused DSM, the score, the DSM, the filled mask and the pair contributions for
/// the tile's cells.
struct FuseTask: Sendable {
    let plan: RunPlan
    let offsets: PairOffsets?
    let work: WorkFolder

    func run(_ tile: GroundTile) throws {
        let grid = plan.grid
        let ext = tile.cells.expanded(by: plan.fuseMargin, within: grid)
        let g = grid.subgrid(ext)
        let n = plan.pairs.count, per = plan.matchBandsPerPair
        let bands = try work.read(.match, plan: plan.tiles, window: ext, bands: Array(0..<(per * n)))
        var heights: [GridRaster] = [], scores: [GridRaster] = [], sigmas: [GridRaster] = [], leftOut: [GridRaster] = []
        for k in 0..<n {
            // A pair's heights after its vertical offset; its left-out matches' heights too.
            func height(_ band: Int) -> GridRaster {
                var h = GridRaster(grid: g, values: bands[per * k + band])
                if let o = offsets?.offsets[k], o != 0 { h.values = h.values.map { $0 - o } }
                return h
            }
            heights.append(height(0))
            scores.append(GridRaster(grid: g, values: bands[per * k + 1]))
            sigmas.append(GridRaster(grid: g, values: bands[per * k + 2]))
            if plan.keepsLeftOutHeights { leftOut.append(height(3)) }
        }
        let weights = plan.baseToHeight.map { Float($0 * $0) }
        let lone = plan.keepsLeftOutHeights
            ? DSMFusion.LoneHeights(heights: heights, leftOut: leftOut,
                                    metresPerPixel: plan.pairs.indices.map { plan.metresPerPixel(pair: $0) }) : nil
        let fused = DSMFusion.fuse(heights: heights, scores: scores, weights: weights, sigmas: sigmas,
                                   leftOut: plan.keepsLeftOutHeights ? leftOut : nil, lone: lone)
        var cleaned = DSMFilter.removeOutliers(fused.height)
        // An island touching the window's edge is kept, as one touching the grid's edge is in a
        // whole-scene run; with filterMargin ≥ min(maxIslandCells, 64) this depends on the tiling only
        // for an island under maxIslandCells stretched over more than 64 cells.
        if let islands = plan.maxIslandCells {
            cleaned = DSMFilter.removeIslands(cleaned, maximumArea: islands, step: plan.denoising.range).raster
        }
        // A hole touching the window's edge is left open, as one touching the grid's edge is in a
        // whole-scene run: with filterMargin ≥ maxHoleCells, such a hole reaching the tile is larger than
        // maxHoleCells anyway, so filling does not depend on the tiling.
        // A hole whose rim departs from a plane by more than the denoising's range (it holds a step: an
        // occlusion beside a wall or a cliff) stays open: interpolated across the step it was off by metres
        // (README "DSM quality", item 18).
        let (holesFilled, filled) = DSMFilter.fillSmallHoles(cleaned, maximumArea: plan.maxHoleCells,
                                                             maximumRimDeparture: plan.denoising.range)
        let dsm = DSMFilter.denoise(holesFilled, plan.denoising)
        func core(_ v: [Float]) -> [Float] { ext.crop(v, to: tile.cells) }
        // The uncertainty of the matched heights (dsm_raw), given where dsm.tif holds a matched height
        // (the denoising lowers it further, not modelled); filled and removed cells have none.
        let uncertainty = zip(fused.sigma!.values, dsm.values).enumerated().map { c, v in filled[c] || v.1.isNaN ? Float.nan : v.0 }
        try work.write(.fuse, tile, bands: [core(fused.height.values), core(fused.score.values), core(dsm.values),
                                             core(filled.map { $0 ? 1 : 0 }), core(fused.contributors.map(Float.init)), core(uncertainty)])
    }
}
