import DSMCore
import Foundation
import GDALKit
import SensorIngest

/// The product list of a run (manifest.json).
public struct Manifest: Sendable, Codable {
    public struct Product: Sendable, Codable, Equatable {
        public var code: String
        public var file: String
        public var description: String
        public var units: String
        public var crs: String?
        public init(code: String, file: String, description: String, units: String, crs: String? = nil) {
            self.code = code; self.file = file; self.description = description; self.units = units; self.crs = crs
        }
    }
    public var products: [Product] = []
    public var crs: String
    public var crsWKT: String
    public var grid: GridDefinition
    public var verticalReference = "heights in metres above the WGS84 ellipsoid"
    public var verticalDatum = VerticalDatum.ellipsoid
    /// Coregistration on a reference DEM, when asked.
    public var coregistration: CoregistrationOutcome?
    /// Water masking, when asked.
    public var waterMask: WaterMaskOutcome?
    /// Software, inputs (SHA-256, acquisition), times and CPU seconds of the run.
    public var provenance: Provenance?
    public var parameters: ResolvedParameters
    /// Per pair: B/H and the vertical offset removed to align it on the widest pair before fusion.
    public var pairOffsets: [PairOffset] = []
    /// Per pair: the relative pointing correction measured once for the scene (sample windows and result),
    /// after the relative orientation (so near zero when that worked).
    public var pointing: [PairPointing] = []
    /// The images' relative orientation: the bias applied to each image's RPC and the tie points'
    /// residuals before and after (nil with `orientationNote` saying why when it could not be estimated).
    public var orientation: OrientationAdjustment?
    public var orientationNote: String?
    /// How the run was cut and scheduled.
    public var tiling: Tiling?

    public struct Tiling: Sendable, Codable {
        /// The nominal tile size (`--tile-size`, or about 1024 image pixels); the grid is cut into `rows` ×
        /// `columns` equal tiles nearest it.
        public var tileSizeCells: Int
        public var tiles: Int
        public var rows: Int
        public var columns: Int
        public var concurrentTiles: Int
        public var matcherThreadsPerTile: Int
        public var stripRows: Int
        public var memoryBudgetBytes: Int
        public var estimatedBytesPerTile: Int
    }

    init(parameters: ResolvedParameters, grid: GridDefinition, crsWKT: String) {
        self.parameters = parameters
        self.grid = grid
        self.crs = "EPSG:\(grid.epsg)"
        self.crsWKT = crsWKT
    }
}

public struct PairOffset: Sendable, Codable {
    public var pair: [Int]
    public var verticalOffsetM: Double?
    public var baseToHeight: Double
}

