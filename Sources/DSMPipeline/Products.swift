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
    public var parameters: ResolvedParameters
    /// Per pair: B/H and the vertical offset removed to align it on the widest pair before fusion.
    public var pairOffsets: [PairOffset] = []

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

/// Writes the products of a run as Cloud Optimized GeoTIFFs on the DSM grid.
struct ProductWriter {
    let folder: String
    let grid: GridDefinition
    let wkt: String

    init(folder: String, grid: GridDefinition) throws {
        self.folder = folder
        self.grid = grid
        wkt = try SpatialReference.wkt(epsg: grid.epsg)
    }

    func path(_ name: String) -> String { (folder as NSString).appendingPathComponent(name) }

    func cog(_ name: String, _ bands: [[Float]], _ type: RasterDataType, noData: Double?, metadata: [(String, String)] = [],
             descriptions: [String] = [], rgb: Bool = false) throws {
        try GeoProducts.writeCOG(path: path(name), width: grid.width, height: grid.height, bands: bands, type: type,
                                 geoTransform: grid.geoTransform, projectionWKT: wkt, noData: noData,
                                 metadata: metadata, bandDescriptions: descriptions, colorInterpretationRGB: rgb)
    }

    func writeJSON<T: Encodable>(_ value: T, name: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try enc.encode(value).write(to: URL(fileURLWithPath: path(name)))
    }

    var heightMetadata: [(String, String)] {
        [("VERTICAL_REFERENCE", "WGS84 ellipsoid"), ("UNITS", "metre"), ("PRODUCER", "dsmopt")]
    }

    func writeDSMProducts(raw: GridRaster, score: GridRaster, dsm: GridRaster, filled: [Bool], contributors: [UInt8],
                          pairs: [[Int]], manifest: inout Manifest) throws {
        let crs = manifest.crs
        try cog("correlation_score.tif", [score.values.map { $0.isNaN ? .nan : max(0, min(1, $0)) }], .float32, noData: .nan,
                metadata: [("UNITS", "ZNCC (0-1)")], descriptions: ["correlation score"])
        manifest.products.append(.init(code: "A1", file: "correlation_score.tif",
                                       description: "DSM quality: mean correlation score (ZNCC) of the matches in each DSM cell, nodata where empty",
                                       units: "0-1", crs: crs))
        try cog("dsm_raw.tif", [raw.values], .float32, noData: .nan, metadata: heightMetadata, descriptions: ["height"])
        manifest.products.append(.init(code: "A2", file: "dsm_raw.tif",
                                       description: "DSM before filtering (fused pairs), nodata where no match", units: "m above WGS84 ellipsoid", crs: crs))
        try cog("dsm.tif", [dsm.values], .float32, noData: .nan, metadata: heightMetadata, descriptions: ["height"])
        manifest.products.append(.init(code: "A3", file: "dsm.tif",
                                       description: "delivered DSM: outliers removed, small holes filled (see dsm_filled_mask.tif), denoised (3×3 median then 3×3 mean)",
                                       units: "m above WGS84 ellipsoid", crs: crs))
        try cog("dsm_filled_mask.tif", [filled.map { $0 ? 1 : 0 }], .byte, noData: nil, descriptions: ["1 = filled by interpolation"])
        manifest.products.append(.init(code: "A3", file: "dsm_filled_mask.tif", description: "1 where dsm.tif was filled by interpolation, 0 elsewhere",
                                       units: "flag", crs: crs))
        let legend = pairs.enumerated().map { "bit \($0.offset) = pair \($0.element)" }.joined(separator: ", ")
        try cog("pair_contributions.tif", [contributors.map(Float.init)], .byte, noData: nil, metadata: [("BITS", legend)],
                descriptions: ["contributing pairs (bit mask)"])
        manifest.products.append(.init(code: "A2", file: "pair_contributions.tif",
                                       description: "which stereo pairs contributed to each cell of dsm_raw.tif (\(legend))", units: "bit mask", crs: crs))
    }

    /// Elevation colour ramp (green → yellow → brown → white) of a height normalised to [0, 1].
    static func ramp(_ t: Float) -> SIMD3<Float> {
        let stops: [(Float, SIMD3<Float>)] = [(0, SIMD3(40, 110, 60)), (0.35, SIMD3(170, 190, 90)),
                                              (0.65, SIMD3(180, 130, 70)), (0.85, SIMD3(140, 100, 80)), (1, SIMD3(245, 245, 245))]
        let x = max(0, min(1, t))
        for k in 1..<stops.count where x <= stops[k].0 {
            let (a, ca) = stops[k - 1], (b, cb) = stops[k]
            let f = (x - a) / (b - a)
            return ca + (cb - ca) * f
        }
        return stops.last!.1
    }

    func writeHillshades(dsm: GridRaster, manifest: inout Manifest) throws {
        let work = path(".work")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let src = (work as NSString).appendingPathComponent("dsm.tif")
        try RasterWriter.write(path: src, width: grid.width, height: grid.height, bands: [dsm.values], type: .float32,
                               noData: .nan, geoTransform: grid.geoTransform, projectionWKT: wkt)
        let valid = dsm.values.filter { !$0.isNaN }.sorted()
        guard !valid.isEmpty else { return }
        let lo = valid[valid.count / 50], hi = max(valid[valid.count * 49 / 50], lo + 1)
        var preview: [[Float]] = []
        for (name, code, args, text) in [
            ("hillshade.tif", "B2", ["-compute_edges", "-az", "315", "-alt", "45"], "hillshade, one light source (azimuth 315°, altitude 45°), coloured by elevation"),
            ("hillshade_multidirectional.tif", "B4", ["-compute_edges", "-multidirectional"], "multidirectional hillshade, coloured by elevation"),
        ] {
            let shaded = (work as NSString).appendingPathComponent(name)
            try GeoProducts.demProcessing("hillshade", source: src, destination: shaded, arguments: args)
            let shade = try RasterDataset(path: shaded).read()
            var r = [Float](repeating: 0, count: grid.count), g = r, b = r
            for i in 0..<grid.count where !dsm.values[i].isNaN {
                let c = Self.ramp((dsm.values[i] - lo) / (hi - lo)) * (0.25 + 0.75 * shade[i] / 255)
                r[i] = max(1, c.x.rounded()); g[i] = max(1, c.y.rounded()); b[i] = max(1, c.z.rounded())
            }
            try cog(name, [r, g, b], .byte, noData: 0, metadata: [("ELEVATION_COLOUR_RANGE_M", "\(lo) \(hi)")], rgb: true)
            manifest.products.append(.init(code: code, file: name, description: text, units: "RGB", crs: manifest.crs))
            if code == "B2" { preview = [r, g, b] }
        }
        // Quick-look: at most 512 pixels on the longer side.
        let f = max(1, Int((Double(max(grid.width, grid.height)) / 512).rounded(.up)))
        let pw = grid.width / f, ph = grid.height / f
        if pw > 0, ph > 0 {
            let small = preview.map { band in (0..<(pw * ph)).map { k in band[(k / pw) * f * grid.width + (k % pw) * f] } }
            try GeoProducts.writePNG(path: path("preview.png"), width: pw, height: ph, rgb: small)
            manifest.products.append(.init(code: "-", file: "preview.png", description: "small coloured hillshade quick-look", units: "RGB"))
        }
    }

    func writeOrthos(dsm: GridRaster, images: [SensorImage], incidences: [Double], individual: Bool, mosaic: Bool,
                     manifest: inout Manifest) throws {
        let toGeo = try CoordinateTransform(fromEPSG: grid.epsg, toEPSG: 4326)
        var lon = [Double](repeating: 0, count: grid.count), lat = lon
        for j in 0..<grid.height { for i in 0..<grid.width { let c = grid.centre(i, j); lon[j * grid.width + i] = c.x; lat[j * grid.width + i] = c.y } }
        toGeo.transform(x: &lon, y: &lat)
        var orthos: [[Float]] = []
        let names = ["forward", "backward", "nadir"]
        for (k, img) in images.enumerated() {
            let o = try TrueOrtho.render(image: img, dsm: dsm, longitudes: lon, latitudes: lat, resolution: grid.resolution)
            orthos.append(o)
            if individual {
                let stem = URL(fileURLWithPath: img.path).deletingPathExtension().lastPathComponent
                let name = "ortho_\(stem).tif"
                try cog(name, [o], .uint16, noData: 0, descriptions: ["true ortho, 0 where hidden or outside"])
                let role = images.count == 3 ? " (\(k == 0 ? names[0] : k == 1 ? names[2] : names[1]) view)" : ""
                manifest.products.append(.init(code: "C\(k + 1)", file: name,
                                               description: "true ortho-image of \(URL(fileURLWithPath: img.path).lastPathComponent)\(role) on the DSM; parts hidden from this view are nodata",
                                               units: "image digital numbers", crs: manifest.crs))
            }
        }
        if mosaic {
            // Best-seen image per cell: the visible view with the smallest incidence.
            let order = incidences.indices.sorted { incidences[$0] < incidences[$1] }
            var m = [Float](repeating: 0, count: grid.count), source = [Float](repeating: 0, count: grid.count)
            for c in 0..<grid.count {
                for k in order where orthos[k][c] > 0 { m[c] = orthos[k][c]; source[c] = Float(k + 1); break }
            }
            try cog("ortho_mosaic.tif", [m, source], .uint16, noData: 0,
                    descriptions: ["ortho-mosaic", "source image (1-based index), 0 where no view sees the cell"])
            manifest.products.append(.init(code: "C4", file: "ortho_mosaic.tif",
                                           description: "ortho-mosaic taking each cell from the most nadir view that sees it (band 2: source image)",
                                           units: "image digital numbers", crs: manifest.crs))
        }
    }

    func writePointCloud(dsm: GridRaster, score: GridRaster, manifest: inout Manifest) throws {
        var x: [Double] = [], y: [Double] = [], z: [Double] = [], s: [Float] = []
        for j in 0..<grid.height {
            for i in 0..<grid.width {
                let c = j * grid.width + i
                guard !dsm.values[c].isNaN else { continue }
                let p = grid.centre(i, j)
                x.append(p.x); y.append(p.y); z.append(Double(dsm.values[c])); s.append(score.values[c].isNaN ? -1 : score.values[c])
            }
        }
        try LASWriter.write(path: path("pointcloud.las"), x: x, y: y, z: z, score: s, wkt: wkt)
        manifest.products.append(.init(code: "D1", file: "pointcloud.las",
                                       description: "the DSM as a LAS 1.4 point cloud (point format 6) with the correlation score as an extra-bytes attribute 'score' (-1 where filled)",
                                       units: "m", crs: manifest.crs))
    }
}
