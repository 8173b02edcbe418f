import DSMCore
import Foundation
import GDALKit

/// The STAC item (1.0.0, projection and view extensions) that describes a result folder (`item.json`), so
/// that products downloaded by hand stay self-describing; the job service's catalogue serves the same item
/// with its links and absolute asset addresses.
public enum STACItem {
    public static let stacVersion = "1.0.0"
    public static let extensions = [
        "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
        "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    ]
    /// Media type of a cloud-optimised GeoTIFF.
    public static let cogType = "image/tiff; application=geotiff; profile=cloud-optimized"

    /// Media type of a product file.
    public static func mediaType(_ file: String) -> String {
        let f = file.lowercased()
        if f.hasSuffix(".tif") || f.hasSuffix(".tiff") { return cogType }
        if f.hasSuffix(".png") { return "image/png" }
        if f.hasSuffix(".json") { return "application/json" }
        if f.hasSuffix(".las") { return "application/vnd.las" }
        return "application/octet-stream"
    }

    /// STAC roles of a product: the main rasters are `data`, renderings `overview` (the quick-look a
    /// `thumbnail`), quality layers and descriptions `metadata`.
    public static func roles(code: String, file: String) -> [String] {
        switch file {
        case "preview.png": return ["thumbnail", "overview"]
        case "manifest.json", "parameters.json", "item.json": return ["metadata"]
        default: break
        }
        if file.hasPrefix("hillshade") || file.hasSuffix(".png") { return ["overview", "visual"] }
        if file == "dsm.tif" || file == "difference.tif" { return ["data"] }
        if file.hasPrefix("ortho") || file == "pointcloud.las" || file == "dsm_raw.tif" || file == "dsm_uncoregistered.tif" { return ["data"] }
        return ["metadata", "quality"]
    }

    /// The polygon (lon/lat, counter-clockwise, closed) and bounding box of a grid, its edges sampled so that
    /// a projected rectangle's curved outline is followed.
    public static func footprint(grid g: GridDefinition) throws -> (polygon: [[Double]], bbox: [Double]) {
        try footprint(geoTransform: g.geoTransform, width: g.width, height: g.height, wkt: SpatialReference.wkt(epsg: g.epsg))
    }

    public static func footprint(geoTransform gt: [Double], width: Int, height: Int, wkt: String) throws -> (polygon: [[Double]], bbox: [Double]) {
        let toGeo = try CoordinateTransform(fromWKT: wkt, toWKT: try SpatialReference.wkt(epsg: 4326))
        var xs: [Double] = [], ys: [Double] = []
        let n = 8
        // Counter-clockwise seen from above: down the west edge, along the south, up the east, back along the north.
        let corners: [(Double, Double)] = [(0, 0), (0, 1), (1, 1), (1, 0)]
        for k in 0..<4 {
            let (u0, v0) = corners[k], (u1, v1) = corners[(k + 1) % 4]
            for s in 0..<n {
                let t = Double(s) / Double(n)
                let u = u0 + (u1 - u0) * t, v = v0 + (v1 - v0) * t
                xs.append(gt[0] + u * Double(width) * gt[1] + v * Double(height) * gt[2])
                ys.append(gt[3] + u * Double(width) * gt[4] + v * Double(height) * gt[5])
            }
        }
        guard toGeo.transform(x: &xs, y: &ys).allSatisfy({ $0 }) else {
            throw PipelineError.workFolder("item.json", "the DSM's outline cannot be expressed in longitude/latitude")
        }
        func r(_ v: Double) -> Double { (v * 1e7).rounded() / 1e7 }
        var ring = zip(xs, ys).map { [r($0.0), r($0.1)] }
        ring.append(ring[0])
        return (ring, [r(xs.min()!), r(ys.min()!), r(xs.max()!), r(ys.max()!)])
    }

    /// Parses the acquisition times of the inputs (ISO 8601, with or without fractional seconds).
    public static func date(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s)
    }

    public static func iso(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }

    /// STAC's time fields from the acquisition times: one stereo pass (inputs within a day) has a
    /// `datetime` (their middle) and its `start_datetime`/`end_datetime`; inputs of several dates have only
    /// the range (`datetime` null). With no acquisition time known, `fallback` (the processing time) stands.
    public static func timeFields(acquisitions: [Date], fallback: Date) -> [String: Any] {
        guard let a = acquisitions.min(), let b = acquisitions.max() else { return ["datetime": iso(fallback)] }
        if a == b { return ["datetime": iso(a)] }
        let range: [String: Any] = ["start_datetime": iso(a), "end_datetime": iso(b)]
        if b.timeIntervalSince(a) <= 86_400 {
            return range.merging(["datetime": iso(a.addingTimeInterval(b.timeIntervalSince(a) / 2))]) { $1 }
        }
        return range.merging(["datetime": NSNull()]) { $1 }
    }

    /// The item of a DSM run's result folder (assets with relative addresses).
    public static func item(id: String, manifest m: Manifest) throws -> [String: Any] {
        let (ring, bbox) = try footprint(grid: m.grid)
        let inputs = (m.provenance?.inputs ?? []).filter { $0.role.hasPrefix("image") }
        let finished = m.provenance?.finished.flatMap(date) ?? Date()
        var props = timeFields(acquisitions: inputs.compactMap { $0.acquisitionTime.flatMap(date) }, fallback: finished)
        props["created"] = iso(finished)
        props["gsd"] = m.grid.resolution
        props["proj:epsg"] = m.grid.epsg
        props["proj:shape"] = [m.grid.height, m.grid.width]
        props["proj:transform"] = [m.grid.resolution, 0, m.grid.originX, 0, -m.grid.resolution, m.grid.originY]
        props["proj:bbox"] = [m.grid.originX, m.grid.originY - Double(m.grid.height) * m.grid.resolution,
                              m.grid.originX + Double(m.grid.width) * m.grid.resolution, m.grid.originY]
        if let nadir = inputs.filter({ $0.incidenceDeg != nil }).min(by: { $0.incidenceDeg! < $1.incidenceDeg! }) {
            // The most nadir view (the orthos' mosaic reference); every view is listed under dsmopt:images.
            props["view:incidence_angle"] = nadir.incidenceDeg!
            if let az = nadir.azimuthDeg { props["view:azimuth"] = (az.truncatingRemainder(dividingBy: 360) + 360).truncatingRemainder(dividingBy: 360) }
        }
        let platforms = Array(Set(inputs.compactMap(\.platform))).sorted()
        if platforms.count == 1 { props["platform"] = platforms[0].lowercased() }
        if platforms.allSatisfy({ $0.uppercased().hasPrefix("PHR") }) && !platforms.isEmpty { props["constellation"] = "pleiades" }
        props["dsmopt:images"] = inputs.map { i -> [String: Any] in
            var d: [String: Any] = ["file": i.file]
            if let v = i.acquisitionTime { d["datetime"] = v }
            if let v = i.platform { d["platform"] = v }
            if let v = i.incidenceDeg { d["incidence_angle"] = v }
            if let v = i.azimuthDeg { d["azimuth"] = v }
            if let v = i.gsd { d["gsd"] = v }
            return d
        }
        props["dsmopt:pairs"] = m.pairOffsets.map { p -> [String: Any] in
            var d: [String: Any] = ["images": p.pair.map { $0 + 1 }, "base_to_height": p.baseToHeight]
            if let o = p.verticalOffsetM { d["vertical_offset_m"] = o }
            return d
        }
        props["dsmopt:parameters"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(m.parameters))
        props["dsmopt:vertical_reference"] = m.verticalReference
        if let s = m.provenance?.software { props["dsmopt:software"] = "\(s.name) \(s.version)" + (s.commit.map { " (\($0.prefix(12)))" } ?? "") }
        return feature(id: id, ring: ring, bbox: bbox, properties: props, products: m.products.map { ($0.code, $0.file, $0.description) })
    }

    /// A GeoJSON Feature with STAC's fields; assets keyed by file name without extension, `./file` hrefs,
    /// plus the manifest and this item.
    public static func feature(id: String, ring: [[Double]], bbox: [Double], properties: [String: Any],
                               products: [(code: String, file: String, description: String)]) -> [String: Any] {
        var assets: [String: Any] = [:]
        var all = products
        for extra in ["manifest.json", "item.json"] where !all.contains(where: { $0.file == extra }) {
            all.append(("-", extra, extra == "item.json" ? "this STAC item" : "product list, grid, parameters, provenance and quality figures of the run"))
        }
        for p in all {
            let key = (p.file as NSString).deletingPathExtension
            var a: [String: Any] = ["href": "./\(p.file)", "type": mediaType(p.file), "roles": roles(code: p.code, file: p.file)]
            a["title"] = p.code == "-" ? p.file : "\(p.code) \(p.file)"
            a["description"] = p.description
            assets[key] = a
        }
        return [
            // An extension is declared when the item uses its fields (the view extension requires one).
            "type": "Feature", "stac_version": stacVersion, "id": id,
            "stac_extensions": extensions.filter { e in properties.keys.contains { $0.hasPrefix(e.contains("/view/") ? "view:" : "proj:") } },
            "geometry": ["type": "Polygon", "coordinates": [ring]], "bbox": bbox,
            "properties": properties, "links": [[String: Any]](), "assets": assets,
        ]
    }

    public static func write(_ item: [String: Any], to path: String) throws {
        let data = try JSONSerialization.data(withJSONObject: item, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
