import DSMCore
import Foundation
import GDALKit

/// Where the water mask came from and what it did (in the manifest).
public struct WaterMaskOutcome: Sendable, Codable, Equatable {
    /// "mask given with the job (GeoJSON)", "mask given with the job (raster)", "server water layer (…)".
    public var source: String
    public var fill: WaterFill
    public var waterCells: Int
    /// Per water body (largest first, at most 50): cells and the flat level given (fill = flat).
    public var bodies: [Body]
    public struct Body: Sendable, Codable, Equatable {
        public var cells: Int
        public var levelM: Double?
        public var shoreCells: Int
    }
}

/// The height change applied to every height product after assembly: coregistration's vertical shift and
/// the geoid (EGM96 output), and the horizontal shift of the georeferencing.
public struct HeightAdjustment: Sendable {
    public var dz: Double = 0
    public var datum = VerticalDatum.ellipsoid
    /// Added to the grid's origin (CRS units).
    public var shift: (x: Double, y: Double) = (0, 0)

    public var isIdentity: Bool { dz == 0 && datum == .ellipsoid && shift == (0, 0) }

    /// Values to add to the heights of `rows` rows of a grid starting at row `y` (geoid and dz).
    func offsets(grid: GridDefinition, wkt: String, y: Int, rows: Int) throws -> [Float]? {
        guard datum == .egm96 || dz != 0 else { return nil }
        var out = [Float](repeating: Float(dz), count: grid.width * rows)
        if datum == .egm96 {
            var gt = grid.geoTransform
            gt[3] -= Double(y) * grid.resolution
            let n = try DEMCoregistration.undulations(geoTransform: gt, width: grid.width, height: rows, wkt: wkt)
            for i in out.indices { out[i] -= n[i] }
        }
        return out
    }
}

/// The finishing steps on the assembled DSM layers (files in the assembly folder, on the run's grid):
/// water masking, then coregistration on a reference DEM (water excluded from stable terrain), then
/// the heights rewritten in the output vertical datum with coregistration's vertical shift, and every
/// layer's georeferencing moved by its horizontal shift (the cells are kept, as demcompare's
/// `gdal_translate -a_ullr`: no resampling). Strip by strip, except the labelling of water bodies.
struct DSMFinishing {
    let options: FinishingOptions
    let grid: GridDefinition
    let wkt: String
    let assembled: (String) -> String
    let staged: (String) -> String
    let scratch: String
    /// Lon/lat bounds of the run's area (to pick reference tiles).
    let area: (minLon: Double, minLat: Double, maxLon: Double, maxLat: Double)?
    let progress: (String) -> Void

    struct Outcome {
        var adjustment = HeightAdjustment()
        var coregistration: CoregistrationOutcome?
        var water: WaterMaskOutcome?
        var products: [Manifest.Product] = []
    }

    static let heightLayers = ["dsm.tif", "dsm_raw.tif"]
    static let otherLayers = ["correlation_score.tif", "dsm_filled_mask.tif", "pair_contributions.tif"]

    func run() throws -> Outcome {
        var out = Outcome()
        out.adjustment.datum = options.verticalDatum
        if options.maskWater {
            progress("masking water")
            out.water = try maskWater()
            out.products.append(.init(code: "A3", file: "water_mask.tif",
                                      description: "water cells (1) masked in dsm.tif (\(options.waterFill == .flat ? "one flat level per water body" : "nodata")); source: \(out.water!.source)",
                                      units: "flag", crs: "EPSG:\(grid.epsg)"))
        }
        if options.coregister, let ref = options.referenceDEM {
            progress("coregistering the DSM on the reference DEM")
            let path = try DEMCoregistration.referencePath(ref, scratch: scratch, area: area)
            let c = try DEMCoregistration.estimate(dsm: assembled("dsm.tif"), reference: path, referenceDatum: options.referenceDatum,
                                                   referenceName: URL(fileURLWithPath: ref).lastPathComponent,
                                                   trusted: options.referenceTrusted,
                                                   excluded: options.maskWater ? assembled("water_mask.tif") : nil, scratch: scratch,
                                                   differenceMap: staged("coregistration_difference.png"))
            out.coregistration = c
            out.adjustment.dz = c.dz
            out.adjustment.shift = (c.shiftInDSMUnits[0], c.shiftInDSMUnits[1])
            out.products.append(.init(code: "A3", file: "dsm_uncoregistered.tif", description: "the DSM before coregistration (dsm.tif is coregistered)",
                                      units: options.verticalDatum.unitsText, crs: "EPSG:\(grid.epsg)"))
            out.products.append(.init(code: "-", file: "coregistration_difference.png",
                                      description: String(format: "DSM − reference after coregistration on the reference's grid (blue below, red above, ±%.1f m; grey: unknown)", max(1, 3 * c.after.nmad)),
                                      units: "RGB"))
        }
        if !out.adjustment.isIdentity {
            progress("writing the heights (\(options.verticalDatum.rawValue)\(out.coregistration != nil ? ", coregistered" : ""))")
            try rewrite(out.adjustment, keepUncoregistered: out.coregistration != nil)
        }
        return out
    }

    /// Rewrites the height layers with the adjustment, and moves every layer's georeferencing.
    func rewrite(_ a: HeightAdjustment, keepUncoregistered: Bool) throws {
        var gt = grid.geoTransform
        gt[0] += a.shift.x; gt[3] += a.shift.y
        let heightWKT = try SpatialReference.heightWKT(epsg: grid.epsg, datum: a.datum)
        var geoidOnly = a
        geoidOnly.dz = 0
        for layer in Self.heightLayers {
            let src = assembled("pre_" + layer)
            try FileManager.default.moveItem(atPath: assembled(layer), toPath: src)
            let input = try RasterDataset(path: src)
            let meta = input.metadata().map { ($0.key, $0.value) }.filter { $0.0 != "VERTICAL_REFERENCE" } + [("VERTICAL_REFERENCE", a.datum.description)]
            func writer(_ name: String, _ geo: [Double]) throws -> WindowedRasterWriter {
                try WindowedRasterWriter(path: assembled(name), width: grid.width, height: grid.height, bands: 1, type: .float32,
                                         geoTransform: geo, projectionWKT: heightWKT, noData: .nan, metadata: meta, bandDescriptions: ["height"])
            }
            let out = try writer(layer, gt)
            let original = keepUncoregistered && layer == "dsm.tif" ? try writer("dsm_uncoregistered.tif", grid.geoTransform) : nil
            var y = 0
            while y < grid.height {
                let h = min(256, grid.height - y)
                let z = try input.read(column: 0, row: y, width: grid.width, height: h)
                let full = try a.offsets(grid: grid, wkt: wkt, y: y, rows: h)
                try out.write(band: 1, x: 0, y: y, width: grid.width, height: h, values: full.map { o in zip(z, o).map { $0 + $1 } } ?? z)
                if let original {
                    let geoid = try geoidOnly.offsets(grid: grid, wkt: wkt, y: y, rows: h)
                    try original.write(band: 1, x: 0, y: y, width: grid.width, height: h, values: geoid.map { o in zip(z, o).map { $0 + $1 } } ?? z)
                }
                y += h
            }
            try out.close()
            try original?.close()
            try? FileManager.default.removeItem(atPath: src)
        }
        if a.shift != (0, 0) {
            for layer in Self.otherLayers + (options.maskWater ? ["water_mask.tif"] : []) {
                try GeoProducts.setGeoreference(path: assembled(layer), geoTransform: gt)
            }
        }
    }

    // MARK: water

    /// Builds `water_mask.tif` on the grid and applies it to `dsm.tif`.
    func maskWater() throws -> WaterMaskOutcome {
        let maskPath = assembled("water_mask.tif")
        let source: String
        if let given = options.waterMask {
            source = try rasterizeMask(given, trusted: false, into: maskPath, what: "mask given with the job")
        } else if let layer = options.waterLayer {
            let path = try DEMCoregistration.referencePathForLayer(layer, scratch: scratch, area: area)
            source = try rasterizeMask(path, trusted: true, into: maskPath, what: "server water layer \(URL(fileURLWithPath: layer).lastPathComponent)")
        } else {
            throw FinishingError.waterMask("no water mask was given and the server has no water layer configured")
        }
        var water = try RasterDataset(path: maskPath).read().map { $0 > 0 }
        let count = water.lazy.filter { $0 }.count
        if count == 0 && options.waterMask != nil {
            throw FinishingError.waterMask("it has no water over the DSM's area (no overlap)")
        }
        // Water bodies (8-connected) and, for a flat fill, their shore level.
        let (labels, sizes) = Self.label(&water, width: grid.width, height: grid.height)
        let dsmPath = assembled("dsm.tif"), src = assembled("pre_water_dsm.tif")
        try FileManager.default.moveItem(atPath: dsmPath, toPath: src)
        let input = try RasterDataset(path: src)
        var z = try input.read()
        var levels = [Float?](repeating: nil, count: sizes.count)
        var shoreCounts = [Int](repeating: 0, count: sizes.count)
        if options.waterFill == .flat && !sizes.isEmpty {
            var shores = [[Float]](repeating: [], count: sizes.count)
            let w = grid.width, h = grid.height, reach = 2
            for j in 0..<h {
                for i in 0..<w where labels[j * w + i] == 0 && z[j * w + i].isFinite {
                    // A land cell within `reach` cells of a water body is on its shore.
                    var found: Int32 = 0
                    search: for dj in -reach...reach {
                        let jj = j + dj
                        guard jj >= 0, jj < h else { continue }
                        for di in -reach...reach {
                            let ii = i + di
                            guard ii >= 0, ii < w else { continue }
                            let l = labels[jj * w + ii]
                            if l > 0 { found = l; break search }
                        }
                    }
                    if found > 0 { shores[Int(found) - 1].append(z[j * w + i]) }
                }
            }
            for k in shores.indices where !shores[k].isEmpty {
                var s = shores[k]
                s.sort()
                levels[k] = s[min(s.count - 1, Int(Double(s.count) * 0.1))]
                shoreCounts[k] = s.count
            }
        }
        for c in z.indices where labels[c] > 0 {
            z[c] = options.waterFill == .flat ? (levels[Int(labels[c]) - 1] ?? .nan) : .nan
        }
        let meta = input.metadata().map { ($0.key, $0.value) }
        let out = try WindowedRasterWriter(path: dsmPath, width: grid.width, height: grid.height, bands: 1, type: .float32,
                                           geoTransform: grid.geoTransform, projectionWKT: input.projectionWKT, noData: .nan, metadata: meta, bandDescriptions: ["height"])
        try out.write(band: 1, x: 0, y: 0, width: grid.width, height: grid.height, values: z)
        try out.close()
        try? FileManager.default.removeItem(atPath: src)
        let order = sizes.indices.sorted { sizes[$0] > sizes[$1] }.prefix(50)
        return WaterMaskOutcome(source: source, fill: options.waterFill, waterCells: count,
                                bodies: order.map { .init(cells: sizes[$0], levelM: levels[$0].map(Double.init), shoreCells: shoreCounts[$0]) })
    }

    /// Writes the grid's water mask (Byte, 1 = water) from a raster (values ≥ the threshold are water) or
    /// vector polygons; returns a description of the source.
    func rasterizeMask(_ path: String, trusted: Bool, into maskPath: String, what: String) throws -> String {
        let name = URL(fileURLWithPath: path).lastPathComponent
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        if let raster = try? RasterDataset(path: path, drivers: trusted ? nil : DEMCoregistration.uploadDrivers), raster.bandCount > 0 {
            guard !raster.projectionWKT.isEmpty, raster.geoTransform != nil else {
                throw FinishingError.waterMask("\(name) has no georeferencing")
            }
            let warped = (scratch as NSString).appendingPathComponent("water_on_grid.tif")
            let g = grid
            let te = [g.originX, g.originY - Double(g.height) * g.resolution, g.originX + Double(g.width) * g.resolution, g.originY]
                .map { String(format: "%.12g", $0) }
            try GeoProducts.warp(source: path, destination: warped,
                                 arguments: ["-of", "GTiff", "-overwrite", "-t_srs", wkt, "-te"] + te + ["-ts", "\(g.width)", "\(g.height)", "-r", "near",
                                             "-ot", "Float32", "-dstnodata", "nan", "-wo", "NUM_THREADS=1"])
            let v = try RasterDataset(path: warped).read()
            guard v.contains(where: \.isFinite) else {
                throw FinishingError.waterMask("\(name) does not overlap the DSM's area")
            }
            let t = Float(options.waterLayerThreshold)
            try RasterWriter.write(path: maskPath, width: g.width, height: g.height, bands: [v.map { $0.isFinite && $0 >= t ? 1 : 0 }], type: .byte,
                                   options: [("COMPRESS", "DEFLATE"), ("TILED", "YES")], geoTransform: g.geoTransform, projectionWKT: wkt)
            try? FileManager.default.removeItem(atPath: warped)
            return "\(what) (raster \(name), water where ≥ \(ParameterSpec.number(options.waterLayerThreshold)))"
        }
        try RasterWriter.write(path: maskPath, width: grid.width, height: grid.height, bands: [[Float](repeating: 0, count: grid.count)], type: .byte,
                               options: [("COMPRESS", "DEFLATE"), ("TILED", "YES")], geoTransform: grid.geoTransform, projectionWKT: wkt)
        do {
            try GeoProducts.rasterize(vector: path, into: maskPath, drivers: trusted ? nil : ["GeoJSON"])
        } catch {
            throw FinishingError.waterMask("\(name) is neither a georeferenced raster nor valid GeoJSON polygons")
        }
        return "\(what) (polygons \(name))"
    }

    /// 8-connected labelling of water cells: labels (0 = land, k = body k) and the size of each body.
    static func label(_ water: inout [Bool], width w: Int, height h: Int) -> ([Int32], [Int]) {
        var labels = [Int32](repeating: 0, count: w * h)
        var sizes: [Int] = []
        var stack: [Int] = []
        for start in 0..<(w * h) where water[start] && labels[start] == 0 {
            sizes.append(0)
            let id = Int32(sizes.count)
            labels[start] = id
            stack.append(start)
            while let c = stack.popLast() {
                sizes[sizes.count - 1] += 1
                let i = c % w, j = c / w
                for dj in -1...1 {
                    for di in -1...1 where di != 0 || dj != 0 {
                        let ii = i + di, jj = j + dj
                        guard ii >= 0, jj >= 0, ii < w, jj < h else { continue }
                        let n = jj * w + ii
                        if water[n] && labels[n] == 0 { labels[n] = id; stack.append(n) }
                    }
                }
            }
        }
        return (labels, sizes)
    }
}

extension DEMCoregistration {
    /// A water layer as is (file), or a folder of raster tiles as one VRT mosaic.
    static func referencePathForLayer(_ path: String, scratch: String, area: (minLon: Double, minLat: Double, maxLon: Double, maxLat: Double)?) throws -> String {
        do { return try referencePath(path, scratch: scratch + "/water-layer", area: area) } catch let e as FinishingError {
            throw FinishingError.waterMask(e.description.replacingOccurrences(of: "reference DEM: ", with: "server water layer: "))
        }
    }
}
