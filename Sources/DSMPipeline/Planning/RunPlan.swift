import DSMCore
import SensorIngest
import Foundation

/// Everything the tile tasks of a run need, fixed before the first tile starts and written to the work
/// folder (`plan.json`): the grid and its tiles, the resolved parameters, and what the whole-scene first
/// pass measured (the relative pointing of each pair). Tiles read it and nothing else, so they are
/// independent of each other and of the process that runs them; `--resume` reloads it.
public struct RunPlan: Sendable, Codable {
    /// 3 since the match tiles of several pairs hold a fourth band per pair (`matchBandsPerPair`); 4 since
    /// the fusion of several pairs judges lone heights (`DSMFusion.LoneHeights`), so that one DSM is not fused
    /// by both rules. An interrupted run of an earlier format is not resumed (`WorkFolder.holdsResumablePlan`).
    public static let formatVersion = 4
    public var formatVersion = RunPlan.formatVersion
    /// Absolute paths of the input images, in the order given.
    public var images: [String]
    public var parameters: ResolvedParameters
    public var tiles: TilePlan
    /// Heights searched by matching (the scene's coarse heights widened by the Z uncertainty).
    public var heights: [Double]
    /// Per selected pair: B/H (from the RPC geometry).
    public var baseToHeight: [Double]
    /// Per image: incidence of the line of sight at the image centre, degrees.
    public var incidences: [Double]
    /// Per image: its role in the acquisition (forward, nadir, backward), from the geometry.
    public var roles: [String]? = nil
    /// Per selected pair: the region of its reference image (pair[0]) that sees the run's area.
    public var pairRegions: [PixelWindow]
    /// Per selected pair: the relative pointing correction (rows of the rectified frame) and its samples.
    public var pointing: [PairPointing]
    /// The images' relative orientation (a bias per image applied to its RPC before anything else), nil
    /// when it could not be estimated (then `orientationNote` says why).
    public var orientation: OrientationAdjustment? = nil
    public var orientationNote: String? = nil
    public var workload: TileWorkload
    public var memoryBudget: MemoryBudget
    /// Ground sampling distance of the first image, metres.
    public var gsd: Double
    /// Size in image pixels of the epipolar sub-tiles matched inside a ground tile.
    public var epipolarTileSize = 512
    /// Image pixels matched around a ground tile's footprint (context for the matcher at its borders).
    public var matchMargin = 32
    /// Image pixels by which neighbouring epipolar sub-tiles of a ground tile overlap (each keeps only the
    /// points of its own pixels); nil in plans written before it (no overlap). Cut edge to edge, the
    /// sub-tiles left a seam inside every ground tile (1024² synthetic pair, one ground tile against the
    /// same tile matched uncut: 2.6 cm mean height difference within 4 cells of the cut, 0.25 cm elsewhere);
    /// an 8-px overlap removes it (0.03 vs 0.09 cm; 16 px: 0.04 vs 0.13) for +5 % matching CPU (32 px: +17 %).
    public var epipolarOverlap: Int? = 8
    /// Cells read around a tile for fusion and filtering: the filters' reach (outlier test 2 cells,
    /// denoising 1 + its radius) plus the largest hole filled, capped at 64 cells — a hole reaching a
    /// tile's edge is then filled exactly as in an untiled run unless it is both under the 100 m² limit
    /// and stretched over more than 64 cells (and so for the islands removed, smaller than the holes).
    public var filterMargin: Int
    /// Cells read around a tile by the fuse step: `filterMargin`, and with several pairs the reach of the
    /// fusion's witnesses (`DSMFusion.witnessRadius`), on which the fused heights within `filterMargin` depend.
    public var fuseMargin: Int { filterMargin + (keepsLeftOutHeights ? DSMFusion.witnessRadius : 0) }
    /// Cells read around a tile for the true orthos' occlusion test.
    public var orthoMargin = 32
    /// Largest hole filled, cells (100 m²).
    public var maxHoleCells: Int
    /// Islands of heights smaller than this many cells (50 m²) are removed from the delivered DSM
    /// (`DSMFilter.removeIslands`); nil in plans written before it (none removed).
    public var maxIslandCells: Int? = nil
    public var orthoImages: Bool
    public var orthoMosaic: Bool
    public var pointCloud: Bool
    /// Water masking, coregistration and vertical datum of the assembled DSM (nil in plans written before them).
    public var finishing: FinishingOptions? = nil
    /// The inputs with their SHA-256 and acquisition, hashed once when the run is planned (nil in older plans).
    public var inputs: [Provenance.Input]? = nil

    public var grid: GridDefinition { tiles.grid }
    /// The delivered DSM's edge-preserving denoising (parameters.json).
    public var denoising: DSMFilter.Denoising {
        parameters.denoising ?? .forScene(resolution: parameters.resolution, gsd: gsd, baseToHeight: baseToHeight.max() ?? 1)
    }
    public var heightRange: ClosedRange<Double> { heights[0]...heights[1] }
    /// Metres of height per pixel of disparity of pair `k` (GSD ÷ B/H): a match's σ in pixels × this is its
    /// height's σ (`MatchTask`), and the fusion's limits in pixels are compared in metres with it (`FuseTask`).
    public func metresPerPixel(pair k: Int) -> Float { Float(gsd / max(baseToHeight[k], 0.01)) }
    public var pairs: [[Int]] { parameters.pairs }
    /// With several pairs, the match tiles keep the heights of the matches the uncertainty threshold left
    /// out, as witnesses for the fusion (`DSMFusion.fuse`'s `leftOut`; README "DSM quality", item 22).
    public var keepsLeftOutHeights: Bool { pairs.count > 1 }
    /// Bands per pair in a match tile: height, score, height uncertainty, and the left-out height when kept.
    public var matchBandsPerPair: Int { keepsLeftOutHeights ? 4 : 3 }
}

public struct PairPointing: Sendable, Codable, Equatable {
    public var pair: [Int]
    /// Row shift applied to the second image's rectified grid, pixels.
    public var correctionPx: Double
    public var samples: [PointingSample]
    /// The median 1 − ZNCC of the pair's matches in sample windows (`MatchingNoise`), and how many matches it
    /// is taken from; nil when too few matched (or in plans written before it).
    public var matchingCost: Double? = nil
    public var matchingCostSamples: Int? = nil
    /// The regularisation and large-jump ratio the pair is matched with: the settings adapted to its matching
    /// cost (`AdaptiveRegularisation`); nil in plans written before it (the settings then apply as they are).
    public var regularisation: Double? = nil
    public var jumpPenaltyRatio: Double? = nil
}

/// Vertical offsets of the pairs (triplets), from the whole scene's matched tiles.
public struct PairOffsets: Sendable, Codable, Equatable {
    public var reference: Int
    /// Metres removed from each pair's heights (nil: too few common cells).
    public var offsets: [Float?]
    public var commonCells: [Int]
}

/// The role of each view of a pair or triplet, from the geometry rather than the input order: in a triplet
/// the view closest to the vertical is the nadir one; forward and backward follow the acquisition times
/// when every image has one (forward first), otherwise the satellite's azimuth seen from the ground
/// (Pléiades and SPOT image on descending daytime passes: a forward view looks from the north, so the
/// satellite's azimuth lies within 90° of north).
public enum ViewRoles {
    public static func roles(incidences: [Double], azimuths: [Double], times: [String?]) -> [String] {
        let n = incidences.count
        var roles = [String](repeating: "", count: n)
        var rest = Array(0..<n)
        if n == 3, let nadir = rest.min(by: { incidences[$0] < incidences[$1] }) {
            roles[nadir] = "nadir"
            rest.removeAll { $0 == nadir }
        }
        if rest.allSatisfy({ times[$0] != nil }), Set(rest.map { times[$0]! }).count == rest.count {
            let ordered = rest.sorted { times[$0]! < times[$1]! }
            for (i, k) in ordered.enumerated() { roles[k] = i == 0 ? "forward" : i == ordered.count - 1 ? "backward" : "nadir" }
        } else {
            for k in rest {
                let a = azimuths[k].truncatingRemainder(dividingBy: 360), north = a < 90 || a > 270 || (a < 0 && a > -90)
                roles[k] = north ? "forward" : "backward"
            }
            // Two views on the same side (e.g. an ascending pass): tell them apart by the input order.
            if rest.count == 2, roles[rest[0]] == roles[rest[1]] { roles[rest[0]] = "forward"; roles[rest[1]] = "backward" }
        }
        return roles
    }
}
