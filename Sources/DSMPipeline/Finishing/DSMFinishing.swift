import DSMCore
import Foundation
import GDALKit
import SensorIngest

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
    /// A plane added to the heights (coregistration with a tilt), in the grid's coordinates before the shift.
    public var tilt: CoregistrationOutcome.Tilt?

    public var isIdentity: Bool { dz == 0 && datum == .ellipsoid && shift == (0, 0) && tilt == nil }

    /// The geoid for this adjustment's datum (nil for ellipsoidal heights), to pass to `offsets`.
    func geoid(wkt: String) throws -> GeoidGrid? { datum == .egm96 ? try GeoidGrid(wkt: wkt) : nil }

    /// Values to add to the heights of `rows` rows of a grid from row `y`: dz and the tilt, minus the
    /// geoid's undulations `n` of those rows (EGM96); nil when there is nothing to add.
    func offsets(grid: GridDefinition, y: Int, rows: Int, undulations n: [Float]?) -> [Float]? {
        guard n != nil || dz != 0 || tilt != nil else { return nil }
        var out = [Float](repeating: Float(dz), count: grid.width * rows)
        if let tilt {
            for k in out.indices {
                let c = grid.centre(k % grid.width, y + k / grid.width)
                out[k] += Float(tilt.change(x: c.x, y: c.y))
            }
        }
        if let n { for i in out.indices { out[i] -= n[i] } }
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
    static let otherLayers = ["correlation_score.tif", "dsm_filled_mask.tif", "pair_contributions.tif", "dsm_uncertainty.tif"]

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
                                                   excluded: options.maskWater ? assembled("water_mask.tif") : nil, tilt: options.coregisterTilt, scratch: scratch,
                                                   differenceMap: staged("coregistration_difference.png"))
            out.coregistration = c
            out.adjustment.dz = c.dz
            out.adjustment.shift = (c.shiftInDSMUnits[0], c.shiftInDSMUnits[1])
            out.adjustment.tilt = c.tilt
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

    /// Rewrites the height layers with the adjustment (one pass over the rows, the geoid computed once per
    /// strip for every layer), and moves every layer's georeferencing.
    func rewrite(_ a: HeightAdjustment, keepUncoregistered: Bool) throws {
        var gt = grid.geoTransform
        gt[0] += a.shift.x; gt[3] += a.shift.y
        let heightWKT = try SpatialReference.heightWKT(epsg: grid.epsg, datum: a.datum)
        let geoid = try a.geoid(wkt: wkt)
        var inputs: [RasterDataset] = [], outputs: [WindowedRasterWriter] = []
        var original: WindowedRasterWriter?
        for layer in Self.heightLayers {
            let src = assembled("pre_" + layer)
            try FileManager.default.moveItem(atPath: assembled(layer), toPath: src)
            let input = try RasterDataset(path: src)
            let meta = input.metadata().map { ($0.key, $0.value) }.filter { $0.0 != "VERTICAL_REFERENCE" } + [("VERTICAL_REFERENCE", a.datum.metadataValue)]
            func writer(_ name: String, _ geo: [Double]) throws -> WindowedRasterWriter {
                try WindowedRasterWriter(path: assembled(name), width: grid.width, height: grid.height, bands: 1, type: .float32,
                                         geoTransform: geo, projectionWKT: heightWKT, noData: .nan, metadata: meta, bandDescriptions: ["height"],
                                         options: GeoProducts.scratchCompression)
            }
            inputs.append(input)
            outputs.append(try writer(layer, gt))
            if keepUncoregistered && layer == "dsm.tif" { original = try writer("dsm_uncoregistered.tif", grid.geoTransform) }
        }
        func add(_ z: [Float], _ o: [Float]?) -> [Float] { o.map { zip(z, $0).map { $0 + $1 } } ?? z }
        var y = 0
        while y < grid.height {
            let h = min(256, grid.height - y)
            let n = try geoid?.undulations(grid: grid, y: y, rows: h)
            let full = a.offsets(grid: grid, y: y, rows: h, undulations: n)
            for (k, input) in inputs.enumerated() {
                let z = try input.read(column: 0, row: y, width: grid.width, height: h)
                try outputs[k].write(band: 1, x: 0, y: y, width: grid.width, height: h, values: add(z, full))
                // Before coregistration: the datum only.
                if Self.heightLayers[k] == "dsm.tif", let original { try original.write(band: 1, x: 0, y: y, width: grid.width, height: h, values: add(z, n.map { $0.map { -$0 } })) }
            }
            y += h
        }
        for w in outputs { try w.close() }
        try original?.close()
        for layer in Self.heightLayers { try? FileManager.default.removeItem(atPath: assembled("pre_" + layer)) }
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
        } else if let ms = options.multispectral {
            source = try ndwiMask(ms, into: maskPath)
        } else if let layer = options.waterLayer {
            let path = try DEMCoregistration.referencePathForLayer(layer, scratch: scratch, area: area)
            source = try rasterizeMask(path, trusted: true, into: maskPath, what: "server water layer \(URL(fileURLWithPath: layer).lastPathComponent)")
        } else {
            throw FinishingError.waterMask("no water mask was given and the server has no water layer configured")
        }
        let water = try RasterDataset(path: maskPath).read().map { $0 > 0 }
        let count = water.lazy.filter { $0 }.count
        if count == 0 && options.waterMask != nil {
            throw FinishingError.waterMask("it has no water over the DSM's area (no overlap)")
        }
        // Water bodies (8-connected) and, for a flat fill, their shore level.
        let (labels, sizes) = Self.label(water, width: grid.width, height: grid.height)
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
            // The level: the median of the shore's heights within 3 NMAD of their median. Not a low
            // percentile: next to untextured water the DSM is noisy (NMAD 0.45 m on the synthetic lake) and
            // low percentiles follow the noise (10 %: 0.43 m, 25 %: 0.33 m below the true level; the median
            // 0.10 m). Vegetation or buildings right on a shore raise it.
            for k in shores.indices where !shores[k].isEmpty {
                var s = shores[k]
                let m = NuthKaab.median(&s)
                var dev = s.map { abs($0 - m) }
                let nmad = 1.4826 * NuthKaab.median(&dev)
                var kept = s.filter { abs($0 - m) <= max(3 * nmad, 0.01) }
                levels[k] = NuthKaab.median(&kept)
                shoreCounts[k] = kept.count
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

    /// Water where the NDWI of a multispectral image (with RPC) is at or above the threshold: each DSM cell
    /// projected into the image at its height (the DSM's median where it has none, e.g. on water).
    func ndwiMask(_ path: String, into maskPath: String) throws -> String {
        let name = URL(fileURLWithPath: path).lastPathComponent
        let image: SensorImage
        do { image = try SensorImage.open(path) } catch {
            throw FinishingError.waterMask("\(name): not a multispectral image with an RPC model (\(error))")
        }
        guard image.bands >= 4 else { throw FinishingError.waterMask("\(name) has \(image.bands) band(s); NDWI needs blue, green, red and near infrared") }
        let raster = try RasterDataset(path: path, drivers: SensorImage.inputDrivers)
        let dsm = try RasterDataset(path: assembled("dsm.tif"))
        let toGeo = try CoordinateTransform(fromEPSG: grid.epsg, toEPSG: 4326)
        var all = try dsm.read()
        var valid = all.filter(\.isFinite)
        let fallback = valid.isEmpty ? 0 : NuthKaab.median(&valid)
        // The image window the grid sees (corners at the extreme heights, with a margin).
        var cs: [Double] = [], rs: [Double] = []
        let xs = [grid.originX, grid.originX + Double(grid.width) * grid.resolution], ys = [grid.originY, grid.originY - Double(grid.height) * grid.resolution]
        var cx = [xs[0], xs[1], xs[0], xs[1]], cy = [ys[0], ys[0], ys[1], ys[1]]
        toGeo.transform(x: &cx, y: &cy)
        for k in 0..<4 {
            for h in [fallback - 500, fallback + 500] {
                let p = image.model.project(longitude: cx[k], latitude: cy[k], height: Double(h))
                cs.append(p.column); rs.append(p.row)
            }
        }
        let c0 = max(0, Int(cs.min()!) - 2), r0 = max(0, Int(rs.min()!) - 2)
        let c1 = min(image.width, Int(cs.max()!.rounded(.up)) + 3), r1 = min(image.height, Int(rs.max()!.rounded(.up)) + 3)
        guard c1 - c0 >= 2, r1 - r0 >= 2 else { throw FinishingError.waterMask("\(name) does not overlap the DSM's area") }
        let w = c1 - c0, h = r1 - r0
        let green = try raster.read(band: 2, column: c0, row: r0, width: w, height: h)
        let nir = try raster.read(band: 4, column: c0, row: r0, width: w, height: h)
        func sample(_ b: [Float], _ c: Double, _ r: Double) -> Float? {
            // The models' image coordinates put pixel centres at integers.
            let x = c - Double(c0), y = r - Double(r0)
            let i = Int(x.rounded(.down)), j = Int(y.rounded(.down))
            guard i >= 0, j >= 0, i + 1 < w, j + 1 < h else { return nil }
            let fx = Float(x - Double(i)), fy = Float(y - Double(j))
            let k = j * w + i
            return (b[k] * (1 - fx) + b[k + 1] * fx) * (1 - fy) + (b[k + w] * (1 - fx) + b[k + w + 1] * fx) * fy
        }
        var mask = [Float](repeating: 0, count: grid.count)
        var seen = 0
        for j in 0..<grid.height {
            var lon = (0..<grid.width).map { grid.centre($0, j).x }, lat = [Double](repeating: grid.centre(0, j).y, count: grid.width)
            toGeo.transform(x: &lon, y: &lat)
            for i in 0..<grid.width {
                let z = all[j * grid.width + i]
                let p = image.model.project(longitude: lon[i], latitude: lat[i], height: Double(z.isFinite ? z : fallback))
                guard let g = sample(green, p.column, p.row), let n = sample(nir, p.column, p.row), g + n > 0 else { continue }
                seen += 1
                if Double((g - n) / (g + n)) >= options.ndwiThreshold { mask[j * grid.width + i] = 1 }
            }
        }
        all = []
        guard seen > 0 else { throw FinishingError.waterMask("\(name) does not overlap the DSM's area") }
        try RasterWriter.write(path: maskPath, width: grid.width, height: grid.height, bands: [mask], type: .byte,
                               options: [("COMPRESS", "DEFLATE"), ("TILED", "YES")], geoTransform: grid.geoTransform, projectionWKT: wkt)
        return "NDWI of the multispectral image \(name) (water where NDWI ≥ \(ParameterSpec.number(options.ndwiThreshold)))"
    }

    /// 8-connected labelling of water cells: labels (0 = land, k = body k) and the size of each body.
    static func label(_ water: [Bool], width w: Int, height h: Int) -> ([Int32], [Int]) {
        var labels = [Int32](repeating: 0, count: w * h)
        var sizes: [Int] = []
        ConnectedRegions.forEach(width: w, height: h, diagonal: true, member: { water[$0] }) { region in
            sizes.append(region.count)
            for c in region { labels[c] = Int32(sizes.count) }
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

/// Checks of the files given with a job, before it is queued (the job service runs them in
/// `dsmopt check-inputs`): each error names the field.
public enum FinishingInputCheck {
    public typealias Area = (minLon: Double, minLat: Double, maxLon: Double, maxLat: Double)

    /// A reference DEM: readable (a user's file: with the upload drivers only), a CRS, covering the area,
    /// not all nodata there. A folder of tiles is read as its VRT mosaic.
    public static func reference(_ path: String, area: Area, trusted: Bool = false) throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("dsmopt-reference-check-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let file = trusted ? try DEMCoregistration.referencePath(path, scratch: scratch, area: area) : path
        let (ref, g) = try DEMCoregistration.openReference(file, trusted: trusted)
        let window = try pixelWindow(of: area, wkt: ref.projectionWKT, geoTransform: g, width: ref.width, height: ref.height)
        guard let w = window else { throw FinishingError.reference("it does not cover the job's area") }
        let f = max(1, Int((Double(w.2 * w.3) / 1e6).squareRoot().rounded(.up)))
        let v = try ref.read(column: w.0, row: w.1, width: w.2, height: w.3, bufferWidth: max(1, w.2 / f), bufferHeight: max(1, w.3 / f), resampling: .nearest)
        let nd = ref.noDataValue().map(Float.init)
        guard v.contains(where: { $0 != nd && DEMCoregistration.plausibleHeights.contains($0) }) else {
            throw FinishingError.reference("it is nodata over the job's area")
        }
    }

    /// A water mask a user sent: a georeferenced raster or GeoJSON polygons overlapping the area.
    public static func waterMask(_ path: String, area: Area) throws {
        if let r = try? RasterDataset(path: path, drivers: DEMCoregistration.uploadDrivers) {
            guard !r.projectionWKT.isEmpty, let g = r.geoTransform else { throw FinishingError.waterMask("the raster has no georeferencing") }
            guard try pixelWindow(of: area, wkt: r.projectionWKT, geoTransform: g, width: r.width, height: r.height) != nil else {
                throw FinishingError.waterMask("it does not overlap the job's area (no overlap)")
            }
            return
        }
        let e: (bounds: [Double], wkt: String, features: Int)
        do { e = try VectorFile.extent(path: path, drivers: ["GeoJSON"]) } catch {
            throw FinishingError.waterMask("neither a georeferenced raster nor valid GeoJSON polygons")
        }
        var lon = [e.bounds[0], e.bounds[2]], lat = [e.bounds[1], e.bounds[3]]
        if !e.wkt.isEmpty, !SpatialReference.isGeographic(wkt: e.wkt) {
            let t = try CoordinateTransform(fromWKT: e.wkt, toWKT: try SpatialReference.wkt(epsg: 4326))
            t.transform(x: &lon, y: &lat)
        }
        guard lon.max()! >= area.minLon, lon.min()! <= area.maxLon, lat.max()! >= area.minLat, lat.min()! <= area.maxLat else {
            throw FinishingError.waterMask("its polygons do not overlap the job's area (no overlap)")
        }
    }

    /// The raster's pixel window over a lon/lat area (clipped), nil when they do not meet.
    static func pixelWindow(of a: Area, wkt: String, geoTransform g: [Double], width: Int, height: Int) throws -> (Int, Int, Int, Int)? {
        let t = try CoordinateTransform(fromWKT: try SpatialReference.wkt(epsg: 4326), toWKT: wkt)
        var xs: [Double] = [], ys: [Double] = []
        for k in 0...10 {
            let f = Double(k) / 10
            for (lon, lat) in [(a.minLon + f * (a.maxLon - a.minLon), a.minLat), (a.minLon + f * (a.maxLon - a.minLon), a.maxLat),
                               (a.minLon, a.minLat + f * (a.maxLat - a.minLat)), (a.maxLon, a.minLat + f * (a.maxLat - a.minLat))] {
                xs.append(lon); ys.append(lat)
            }
        }
        t.transform(x: &xs, y: &ys)
        guard xs.allSatisfy(\.isFinite), ys.allSatisfy(\.isFinite), let x0 = xs.min(), let x1 = xs.max(), let y0 = ys.min(), let y1 = ys.max() else { return nil }
        let c0 = DEMCoregistration.pixelIndex(((x0 - g[0]) / g[1]).rounded(.down), limit: width)
        let c1 = DEMCoregistration.pixelIndex(((x1 - g[0]) / g[1]).rounded(.up), limit: width)
        let r0 = DEMCoregistration.pixelIndex(((y1 - g[3]) / g[5]).rounded(.down), limit: height)
        let r1 = DEMCoregistration.pixelIndex(((y0 - g[3]) / g[5]).rounded(.up), limit: height)
        guard c1 > c0, r1 > r0 else { return nil }
        return (c0, r0, c1 - c0, r1 - r0)
    }
}
