import DSMCore
import Foundation
import GDALKit

/// Two synthetic DSMs of the same hillside at two dates, with a known change between them: a lava flow (an
/// elliptical lobe, thickness a dome profile) added at the second date, B's georeferencing off by a known
/// shift, and independent height noise on both. `dsmopt synth-change` writes them with `truth.json`.
public struct SyntheticChange: Sendable, Codable {
    public var epsg = 32740
    public var cellSize = 1.0
    public var size = 1200
    /// B's georeferencing error: B at (x, y) shows the ground at (x − dx, y − dy), and dz higher.
    public var dx = 1.6
    public var dy = -0.9
    public var dz = 0.4
    /// The flow: centre (metres from A's top-left corner, east and south), semi-axes, orientation, peak thickness.
    public var flowCentre = [600.0, 650.0]
    public var flowAxes = [220.0, 90.0]
    public var flowAzimuthDeg = 30.0
    public var flowThickness = 6.0
    /// Height noise (1 σ, metres) of each DSM.
    public var noise = 0.25
    public var seed: UInt64 = 7

    public init() {}

    /// Origin of A's grid (top-left, UTM 40S over La Réunion's east coast).
    static let origin = (x: 366_000.0, y: 7_654_000.0)

    /// Ground heights before the flow, at a map position.
    func terrain(_ x: Double, _ y: Double) -> Double {
        let u = x - Self.origin.x, v = Self.origin.y - y
        return 300 + 40 * sin(2 * .pi * u / 700) * cos(2 * .pi * v / 500) + 15 * sin(2 * .pi * (u + v) / 230)
            + 3 * sin(2 * .pi * u / 61) * cos(2 * .pi * v / 47) + 0.08 * u
    }

    /// Thickness of the flow at a map position.
    public func flow(_ x: Double, _ y: Double) -> Double {
        let u = x - Self.origin.x - flowCentre[0], v = Self.origin.y - y - flowCentre[1]
        let a = flowAzimuthDeg * .pi / 180
        let p = u * cos(a) + v * sin(a), q = -u * sin(a) + v * cos(a)
        let r2 = (p * p) / (flowAxes[0] * flowAxes[0]) + (q * q) / (flowAxes[1] * flowAxes[1])
        return r2 < 1 ? flowThickness * (1 - r2).squareRoot() : 0
    }

    public struct Truth: Sendable, Codable {
        /// The flow's volume summed over A's cells, m³ (the analytic one is (2/3)·π·a·b·thickness).
        public var volumeM3: Double
        public var analyticVolumeM3: Double
        /// The shift that brings B onto A: −(B's georeferencing error).
        public var shift: [Double]
        /// The flow's bounding box in lon/lat (an AOI that holds it, with a 30 m margin).
        public var flowBoundingBox: [Double]
    }

    /// Writes `dsm_a.tif`, `dsm_b.tif` and `truth.json` into `folder`.
    @discardableResult
    public func write(to folder: String) throws -> Truth {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let wkt = try SpatialReference.wkt(epsg: epsg)
        var rng = SplitMix64(seed: seed)
        func gauss() -> Double {
            let u1 = max(1e-12, rng.unit()), u2 = rng.unit()
            return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
        }
        let n = size
        var za = [Float](repeating: 0, count: n * n)
        var volume = 0.0
        for j in 0..<n {
            for i in 0..<n {
                let x = Self.origin.x + (Double(i) + 0.5) * cellSize, y = Self.origin.y - (Double(j) + 0.5) * cellSize
                za[j * n + i] = Float(terrain(x, y) + noise * gauss())
                volume += flow(x, y) * cellSize * cellSize
            }
        }
        try RasterWriter.write(path: folder + "/dsm_a.tif", width: n, height: n, bands: [za], type: .float32, options: [("COMPRESS", "DEFLATE"), ("TILED", "YES")],
                               noData: .nan, geoTransform: [Self.origin.x, cellSize, 0, Self.origin.y, 0, -cellSize], projectionWKT: wkt)
        // B: another grid (offset by a fraction of a cell, a little smaller), labelled with the shifted positions.
        let bo = (x: Self.origin.x + 0.3 * cellSize + 20, y: Self.origin.y - 0.2 * cellSize - 15), nb = n - 40
        var zb = [Float](repeating: 0, count: nb * nb)
        for j in 0..<nb {
            for i in 0..<nb {
                let x = bo.x + (Double(i) + 0.5) * cellSize - dx, y = bo.y - (Double(j) + 0.5) * cellSize - dy
                zb[j * nb + i] = Float(terrain(x, y) + flow(x, y) + dz + noise * gauss())
            }
        }
        try RasterWriter.write(path: folder + "/dsm_b.tif", width: nb, height: nb, bands: [zb], type: .float32, options: [("COMPRESS", "DEFLATE"), ("TILED", "YES")],
                               noData: .nan, geoTransform: [bo.x, cellSize, 0, bo.y, 0, -cellSize], projectionWKT: wkt)
        // The flow's extent with a margin, in lon/lat.
        let reach = max(flowAxes[0], flowAxes[1]) + 30
        let toGeo = try CoordinateTransform(fromEPSG: epsg, toEPSG: 4326)
        var xs = [-reach, reach, reach, -reach].map { Self.origin.x + flowCentre[0] + $0 }
        var ys = [-reach, -reach, reach, reach].map { Self.origin.y - flowCentre[1] + $0 }
        _ = toGeo.transform(x: &xs, y: &ys)
        let truth = Truth(volumeM3: volume, analyticVolumeM3: 2.0 / 3 * .pi * flowAxes[0] * flowAxes[1] * flowThickness,
                          shift: [-dx, -dy, -dz], flowBoundingBox: [xs.min()!, ys.min()!, xs.max()!, ys.max()!])
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(truth).write(to: URL(fileURLWithPath: folder + "/truth.json"))
        return truth
    }
}
