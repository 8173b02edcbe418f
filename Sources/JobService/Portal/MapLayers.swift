import Foundation
import GDALKit

/// The products a job's result map shows, and how each is drawn on Web Mercator tiles rendered from the
/// COGs (`GET /jobs/{id}/tiles/{layer}/{z}/{x}/{y}.png`): the coloured hillshades as they are, heights and
/// the correlation score through a colour ramp, orthos as grey levels stretched between percentiles.
struct MapLayer: Encodable, Sendable {
    enum Kind: String, Encodable, Sendable { case rgb, heights, score, image, difference }
    /// Layer name = product file name without `.tif`.
    var name: String
    var file: String
    var kind: Kind
    var title: String
    var units: String

    /// The map layers of a job's products (masks and bit fields have no map layer: download them).
    static func layers(products: [[String: Any]]) -> [MapLayer] {
        var out: [MapLayer] = []
        for p in products {
            guard let file = p["file"] as? String, file.hasSuffix(".tif") else { continue }
            let name = String(file.dropLast(4)), units = p["units"] as? String ?? ""
            let code = p["code"] as? String ?? ""
            let kind: Kind
            if name.hasPrefix("hillshade") { kind = .rgb }
            else if name == "dsm" || name == "dsm_raw" || name == "dsm_uncoregistered" { kind = .heights }
            else if name == "correlation_score" { kind = .score }
            else if name.hasPrefix("ortho_") { kind = .image }
            else if name == "difference" { kind = .difference }
            else { continue }
            let title: String
            switch name {
            case "hillshade": title = "\(code) hillshade (one light)"
            case "hillshade_multidirectional": title = "\(code) hillshade (multidirectional)"
            case "dsm": title = "\(code) DSM"
            case "dsm_raw": title = "\(code) DSM before filtering"
            case "dsm_uncoregistered": title = "DSM before coregistration"
            case "correlation_score": title = "\(code) correlation score"
            case "ortho_mosaic": title = "\(code) ortho-mosaic"
            case "difference": title = "height change B − A"
            default: title = "\(code) \(name.replacingOccurrences(of: "_", with: " "))"
            }
            out.append(MapLayer(name: name, file: file, kind: kind, title: title, units: units))
        }
        return out
    }

    /// Colour stops (position 0…1, RGB) of the ramps.
    static let heightRamp: [(Double, [Double])] = [
        (0, [49, 54, 149]), (0.2, [69, 117, 180]), (0.4, [171, 217, 233]), (0.55, [255, 255, 191]),
        (0.7, [253, 174, 97]), (0.85, [215, 48, 39]), (1, [165, 0, 38]),
    ]
    static let scoreRamp: [(Double, [Double])] = [
        (0, [68, 1, 84]), (0.25, [59, 82, 139]), (0.5, [33, 145, 140]), (0.75, [94, 201, 98]), (1, [253, 231, 37]),
    ]
    static let greyRamp: [(Double, [Double])] = [(0, [0, 0, 0]), (1, [255, 255, 255])]
    /// Blue (lower) – white – red (higher), as difference.png.
    static let differenceRamp: [(Double, [Double])] = [(0, [0, 0, 255]), (0.5, [255, 255, 255]), (1, [255, 0, 0])]

    var ramp: [(Double, [Double])] {
        switch kind {
        case .heights: return Self.heightRamp
        case .score: return Self.scoreRamp
        case .difference: return Self.differenceRamp
        case .image, .rgb: return Self.greyRamp
        }
    }

    static func colour(_ t: Double, _ ramp: [(Double, [Double])]) -> [Double] {
        let t = min(1, max(0, t))
        for k in 1..<ramp.count where t <= ramp[k].0 {
            let (a, ca) = ramp[k - 1], (b, cb) = ramp[k]
            let f = b > a ? (t - a) / (b - a) : 0
            return (0..<3).map { ca[$0] + (cb[$0] - ca[$0]) * f }
        }
        return ramp.last!.1
    }
}

/// What the legend of a layer shows: the range its colours span and the ramp.
struct MapLegend: Codable, Sendable {
    var layer: String
    var kind: String
    var title: String
    var units: String
    var minimum: Double
    var maximum: Double
    /// CSS colours at evenly spaced positions from minimum to maximum.
    var colours: [String]
}

/// Renders map tiles and legends of job products; GDAL work runs off the server's threads, at most
/// `limit` at a time (a map view asks for a dozen tiles at once).
final class MapRenderer: @unchecked Sendable {
    private let lock = NSLock()
    private var legends: [String: MapLegend] = [:]
    private let slots: DispatchSemaphore

    init(limit: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)) { slots = DispatchSemaphore(value: limit) }

    private func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            DispatchQueue.global().async { [slots] in
                slots.wait()
                defer { slots.signal() }
                c.resume(with: Result { try work() })
            }
        }
    }

    /// The colour range of a layer (2nd–98th percentile of its values for heights and images; ±98th
    /// percentile of |value| for a difference; 0–1 for the score), computed once per product file.
    func legend(_ layer: MapLayer, path: String) async throws -> MapLegend {
        let key = path
        if let l = lock.withLock({ legends[key] }) { return l }
        let l: MapLegend = try await offload {
            var lo = 0.0, hi = 1.0
            if layer.kind == .difference {
                // Symmetric about zero: ±(98th percentile of |B − A|).
                var v = try MapTiles.sample(path).map { abs($0) }
                if !v.isEmpty {
                    v.sort()
                    hi = max(0.01, Double(v[Int(Double(v.count - 1) * 0.98)])); lo = -hi
                }
            } else if layer.kind == .heights || layer.kind == .image {
                var v = try MapTiles.sample(path)
                if !v.isEmpty {
                    v.sort()
                    lo = Double(v[Int(Double(v.count - 1) * 0.02)]); hi = Double(v[Int(Double(v.count - 1) * 0.98)])
                    if hi <= lo { hi = lo + 1 }
                }
            }
            let colours = (0...8).map { k -> String in
                let c = MapLayer.colour(Double(k) / 8, layer.ramp).map { Int($0.rounded()) }
                return String(format: "#%02x%02x%02x", c[0], c[1], c[2])
            }
            return MapLegend(layer: layer.name, kind: layer.kind.rawValue, title: layer.title, units: layer.units, minimum: lo, maximum: hi, colours: colours)
        }
        lock.withLock { legends[key] = l }
        return l
    }

    /// PNG of tile z/x/y of a layer; nil when the tile holds no data.
    func tile(_ layer: MapLayer, path: String, z: Int, x: Int, y: Int) async throws -> Data? {
        let legend = layer.kind == .rgb ? nil : try await legend(layer, path: path)
        return try await offload {
            let bands: [Int]
            if layer.kind == .rgb { bands = [1, 2, 3] } else { bands = [1] }
            guard let t = try MapTiles.warp(source: path, z: z, x: x, y: y, bands: bands) else { return nil }
            let n = t.size * t.size
            var rgba = [UInt8](repeating: 0, count: n * 4)
            let ramp = layer.ramp
            let lo = legend?.minimum ?? 0, span = max(1e-9, (legend?.maximum ?? 1) - lo)
            for k in 0..<n where t.valid[k] {
                if layer.kind == .rgb {
                    for c in 0..<3 { rgba[k * 4 + c] = UInt8(max(0, min(255, t.bands[c][k].rounded()))) }
                } else {
                    let v = Double(t.bands[0][k])
                    guard v.isFinite else { continue }
                    let c = MapLayer.colour((v - lo) / span, ramp)
                    for i in 0..<3 { rgba[k * 4 + i] = UInt8(max(0, min(255, c[i].rounded()))) }
                }
                rgba[k * 4 + 3] = 255
            }
            return try MapTiles.png(rgba: rgba, width: t.size, height: t.size)
        }
    }

    /// Height (and score, when there is one) under a longitude/latitude.
    func probe(results: String, longitude: Double, latitude: Double) async throws -> [String: Double] {
        try await offload {
            var out: [String: Double] = [:]
            let dsm = (results as NSString).appendingPathComponent("dsm.tif")
            let difference = (results as NSString).appendingPathComponent("difference.tif")
            if FileManager.default.fileExists(atPath: difference), let d = try MapTiles.value(at: longitude, latitude, in: difference) {
                out["difference"] = (d.value * 1000).rounded() / 1000
                out["x"] = (d.x * 100).rounded() / 100; out["y"] = (d.y * 100).rounded() / 100
            }
            if FileManager.default.fileExists(atPath: dsm), let h = try MapTiles.value(at: longitude, latitude, in: dsm) {
                out["height"] = (h.value * 1000).rounded() / 1000
                out["x"] = (h.x * 100).rounded() / 100; out["y"] = (h.y * 100).rounded() / 100
            }
            let score = (results as NSString).appendingPathComponent("correlation_score.tif")
            if FileManager.default.fileExists(atPath: score), let s = try MapTiles.value(at: longitude, latitude, in: score) {
                out["score"] = (s.value * 1000).rounded() / 1000
            }
            return out
        }
    }
}
