import Dispatch
import DSMCore
import Foundation
import GDALKit

/// Writes a synthetic stereo product with known truth: 2 or 3 views of a `SyntheticScene` as UInt16
/// GeoTIFFs with their RPC (view 1 in GeoTIFF RPC tags, view 2 in an .RPB sidecar, view 3 in an _RPC.TXT
/// sidecar, so every reader is exercised), the true DSM (`truth_dsm.tif`, EPSG:4326, ellipsoidal
/// heights) and `scene.json` describing the geometry.
public struct SyntheticProduct: Sendable {
    public var centre = GeoPoint(longitude: 5.52, latitude: 43.27, height: 300)
    public var size = 256
    public var gsd = 0.5
    public var baseToHeight = 0.25
    public var views = 2
    public var relief = 30.0
    public var seed: UInt64 = 1
    /// Gaussian image noise, σ in digital numbers (the texture spans about 500–3500 DN; Pléiades' 12-bit
    /// panchromatic images have an SNR of roughly 100 at typical radiance, i.e. σ ≈ 10–20 DN). 0: none.
    public var noise = 0.0
    /// Buildings (boxes with vertical walls, flat weakly textured roofs) added to the scene.
    public var buildings = 0
    /// Adds a lake (flat water, no texture), its outline `lake.geojson` and a 4-band multispectral image
    /// `ms.tif` of view 1's acquisition (4 × the GSD; blue, green, red, near infrared) where water is dark
    /// in the near infrared.
    public var lake = false

    public init() {}

    public struct Description: Codable, Sendable {
        public var views: [String]
        public var incidenceDeg: [Double]
        public var azimuthDeg: [Double]
        public var baseToHeight: Double
        public var gsd: Double
        /// Image noise σ, digital numbers.
        public var noise: Double? = nil
        /// The buildings (local east/north metres about the scene centre `centre`, roof heights in metres).
        public var buildings: [SyntheticScene.Building]? = nil
        public var centre: [Double]? = nil
        public var truthDSM: String
        public var heightRange: [Double]
        /// With a lake: its level (m above the ellipsoid), centre and radius (m), outline and the MS image.
        public var lakeLevel: Double?
        public var lakeCentre: [Double]?
        public var lakeRadius: Double?
        public var lakeOutline: String?
        public var multispectral: String?
    }

    /// Viewing angles: forward and backward along north–south with tan(incidence) = B/H / 2, plus a
    /// near-nadir view for a triplet.
    public var geometry: [(incidence: Double, azimuth: Double)] {
        let inc = atan(baseToHeight / 2) * 180 / .pi
        return views == 3 ? [(inc, 0), (0.5, 90), (inc, 180)] : [(inc, 0), (inc, 180)]
    }

    @discardableResult
    public func write(to folder: String) throws -> Description {
        precondition((2...3).contains(views), "2 or 3 views")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let extent = Double(size) * gsd
        var built = SyntheticScene.hills(centre: centre, extent: extent, relief: relief, seed: seed)
        if lake {
            let e = 0.18 * extent, n = -0.12 * extent
            built.lake = .init(east: e, north: n, radius: 0.12 * extent, level: built.height(east: e, north: n) - 1.5)
        }
        if buildings > 0 { built.addBuildings(count: buildings, extent: extent) }
        let scene = built
        let options: [[(String, String)]] = [[("COMPRESS", "DEFLATE"), ("PREDICTOR", "2")],
                                             [("COMPRESS", "DEFLATE"), ("PREDICTOR", "2"), ("PROFILE", "BASELINE"), ("RPB", "YES")],
                                             [("COMPRESS", "DEFLATE"), ("PREDICTOR", "2"), ("PROFILE", "BASELINE"), ("RPCTXT", "YES")]]
        var names: [String] = []
        var low = Float.infinity, high = -Float.infinity
        for (k, g) in geometry.enumerated() {
            let model = RPCModel.affineView(centre: centre, width: size, height: size, gsd: gsd,
                                            incidenceDeg: g.incidence, azimuthDeg: g.azimuth, heightScale: 500)
            let name = "view_\(k + 1).tif"
            let writer = try WindowedRasterWriter(path: (folder as NSString).appendingPathComponent(name), width: size, height: size,
                                                  bands: 1, type: .uint16, geoTransform: nil, projectionWKT: nil, noData: nil,
                                                  domains: ["RPC": RPCDictionaryReader.items(of: model)],
                                                  options: options[k] + [("ZLEVEL", "6")])
            let noise = self.noise, seed = self.seed
            try Self.strips(rows: size) { rows in
                var v = try scene.render(model: model, width: size, rows: rows)
                if noise > 0 {
                    // Per pixel, from a generator seeded by (seed, view, row): the same at any strip size.
                    for r in rows {
                        var g = SplitMix64(seed &* 0x9E37_79B9 &+ UInt64(k) &* 0x1_0000_0001 &+ UInt64(r))
                        for c in 0..<size {
                            let u1 = max(g.unit(), 1e-12), u2 = g.unit()
                            v[(r - rows.lowerBound) * size + c] += Float(noise * (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
                        }
                    }
                }
                return v.map { max(0, $0.rounded()) }
            } write: { rows, values in
                try writer.write(band: 1, x: 0, y: rows.lowerBound, width: size, height: rows.count, values: values)
            }
            try writer.close()
            names.append(name)
        }
        // Truth on a lon/lat grid covering 1.5× the image footprint, at GSD spacing.
        let n = Int(Double(size) * 1.5)
        let radii = WGS84.radiiOfCurvature(latitude: centre.latitude)
        let dLon = gsd / radii.east * 180 / .pi, dLat = gsd / radii.north * 180 / .pi
        let lon0 = centre.longitude - Double(n) / 2 * dLon, lat0 = centre.latitude + Double(n) / 2 * dLat
        let truth = try WindowedRasterWriter(path: (folder as NSString).appendingPathComponent("truth_dsm.tif"), width: n, height: n,
                                             bands: 1, type: .float32, geoTransform: [lon0, dLon, 0, lat0, 0, -dLat],
                                             projectionWKT: try SpatialReference.wkt(epsg: 4326), noData: nil,
                                             metadata: [("VERTICAL_REFERENCE", "WGS84 ellipsoid"), ("UNITS", "metre")],
                                             options: [("PREDICTOR", "3"), ("ZLEVEL", "6")])
        try Self.strips(rows: n) { rows in
            var v = [Float](repeating: 0, count: n * rows.count)
            for r in rows {
                for c in 0..<n {
                    v[(r - rows.lowerBound) * n + c] = Float(scene.height(longitude: lon0 + (Double(c) + 0.5) * dLon,
                                                                          latitude: lat0 - (Double(r) + 0.5) * dLat))
                }
            }
            return v
        } write: { rows, values in
            for x in values { low = min(low, x); high = max(high, x) }
            try truth.write(band: 1, x: 0, y: rows.lowerBound, width: n, height: rows.count, values: values)
        }
        try truth.close()
        var d = Description(views: names, incidenceDeg: geometry.map(\.incidence), azimuthDeg: geometry.map(\.azimuth),
                            baseToHeight: baseToHeight, gsd: gsd, noise: noise, truthDSM: "truth_dsm.tif",
                            heightRange: [Double(low), Double(high)])
        if !scene.buildings.isEmpty { d.buildings = scene.buildings; d.centre = [centre.longitude, centre.latitude, centre.height] }
        if let l = scene.lake {
            let c = scene.frame.geodetic(SIMD3(l.east, l.north, 0))
            d.lakeLevel = l.level; d.lakeCentre = [c.longitude, c.latitude]; d.lakeRadius = l.radius
            // The outline: a 72-gon inside the circle's edge by less than 1 cm.
            let ring = (0...72).map { k -> [Double] in
                let a = Double(k % 72) / 72 * 2 * .pi
                let p = scene.frame.geodetic(SIMD3(l.east + l.radius * cos(a), l.north + l.radius * sin(a), 0))
                return [p.longitude, p.latitude]
            }
            let geojson: [String: Any] = ["type": "FeatureCollection", "features": [["type": "Feature", "properties": ["name": "lake"],
                                                                                    "geometry": ["type": "Polygon", "coordinates": [ring]]]]]
            try JSONSerialization.data(withJSONObject: geojson).write(to: URL(fileURLWithPath: (folder as NSString).appendingPathComponent("lake.geojson")))
            d.lakeOutline = "lake.geojson"
            // Multispectral image of view 1's acquisition.
            let g = geometry[0], msSize = max(16, size / 4)
            let model = RPCModel.affineView(centre: centre, width: msSize, height: msSize, gsd: gsd * Double(size) / Double(msSize),
                                            incidenceDeg: g.incidence, azimuthDeg: g.azimuth, heightScale: 500)
            var bands: [[Float]] = []
            for b in 0..<4 { bands.append(try scene.render(model: model, width: msSize, rows: 0..<msSize, gain: 3000, offset: 0, band: b).map { $0.rounded() }) }
            try RasterWriter.write(path: (folder as NSString).appendingPathComponent("ms.tif"), width: msSize, height: msSize, bands: bands, type: .uint16,
                                   metadata: ["RPC": RPCDictionaryReader.items(of: model), "": [("BANDS", "blue green red nir")]])
            d.multispectral = "ms.tif"
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(d).write(to: URL(fileURLWithPath: (folder as NSString).appendingPathComponent("scene.json")))
        return d
    }

    /// Renders an image in strips of 256 rows on every core and writes them in order: memory holds a
    /// few strips, never the image.
    static func strips(rows: Int, render: @escaping @Sendable (Range<Int>) throws -> [Float],
                       write: (Range<Int>, [Float]) throws -> Void) throws {
        let step = 256
        let batch = max(1, ProcessInfo.processInfo.activeProcessorCount) * 2
        var start = 0
        while start < rows {
            let ranges = stride(from: start, to: min(rows, start + batch * step), by: step).map { $0..<min(rows, $0 + step) }
            let results = StripBox(count: ranges.count)
            DispatchQueue.concurrentPerform(iterations: ranges.count) { k in
                results.set(k, Result { try render(ranges[k]) })
            }
            for (k, r) in ranges.enumerated() { try write(r, try results.get(k)) }
            start = ranges.last!.upperBound
        }
    }
}

private final class StripBox: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Result<[Float], Error>?]
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ k: Int, _ r: Result<[Float], Error>) { lock.lock(); values[k] = r; lock.unlock() }
    func get(_ k: Int) throws -> [Float] { lock.lock(); defer { lock.unlock() }; return try values[k]!.get() }
}
