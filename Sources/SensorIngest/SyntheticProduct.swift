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

    public init() {}

    public struct Description: Codable, Sendable {
        public var views: [String]
        public var incidenceDeg: [Double]
        public var azimuthDeg: [Double]
        public var baseToHeight: Double
        public var gsd: Double
        public var truthDSM: String
        public var heightRange: [Double]
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
        let scene = SyntheticScene.hills(centre: centre, extent: extent, relief: relief, seed: seed)
        let options: [[(String, String)]] = [[("COMPRESS", "DEFLATE"), ("PREDICTOR", "2")],
                                             [("COMPRESS", "DEFLATE"), ("PREDICTOR", "2"), ("PROFILE", "BASELINE"), ("RPB", "YES")],
                                             [("COMPRESS", "DEFLATE"), ("PREDICTOR", "2"), ("PROFILE", "BASELINE"), ("RPCTXT", "YES")]]
        var names: [String] = []
        for (k, g) in geometry.enumerated() {
            let model = RPCModel.affineView(centre: centre, width: size, height: size, gsd: gsd,
                                            incidenceDeg: g.incidence, azimuthDeg: g.azimuth, heightScale: 500)
            let pixels = try scene.render(model: model, width: size, height: size)
            let name = "view_\(k + 1).tif"
            try RasterWriter.write(path: (folder as NSString).appendingPathComponent(name), width: size, height: size,
                                   bands: [pixels.map { $0.rounded() }], type: .uint16,
                                   metadata: ["RPC": RPCDictionaryReader.items(of: model)], options: options[k])
            names.append(name)
        }
        // Truth on a lon/lat grid covering 1.5× the image footprint, at GSD spacing.
        let n = Int(Double(size) * 1.5)
        let radii = WGS84.radiiOfCurvature(latitude: centre.latitude)
        let dLon = gsd / radii.east * 180 / .pi, dLat = gsd / radii.north * 180 / .pi
        let lon0 = centre.longitude - Double(n) / 2 * dLon, lat0 = centre.latitude + Double(n) / 2 * dLat
        var truth = [Float](repeating: 0, count: n * n)
        for r in 0..<n {
            for c in 0..<n {
                truth[r * n + c] = Float(scene.height(longitude: lon0 + (Double(c) + 0.5) * dLon,
                                                      latitude: lat0 - (Double(r) + 0.5) * dLat))
            }
        }
        try RasterWriter.write(path: (folder as NSString).appendingPathComponent("truth_dsm.tif"), width: n, height: n,
                               bands: [truth], type: .float32,
                               metadata: ["": [("VERTICAL_REFERENCE", "WGS84 ellipsoid"), ("UNITS", "metre")]],
                               options: [("COMPRESS", "DEFLATE"), ("PREDICTOR", "3")], geoTransform: [lon0, dLon, 0, lat0, 0, -dLat],
                               projectionWKT: try SpatialReference.wkt(epsg: 4326))
        let d = Description(views: names, incidenceDeg: geometry.map(\.incidence), azimuthDeg: geometry.map(\.azimuth),
                            baseToHeight: baseToHeight, gsd: gsd, truthDSM: "truth_dsm.tif",
                            heightRange: [Double(truth.min()!), Double(truth.max()!)])
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(d).write(to: URL(fileURLWithPath: (folder as NSString).appendingPathComponent("scene.json")))
        return d
    }
}
