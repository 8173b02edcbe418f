import Dispatch
import DSMCore
import Foundation
import GDALKit
import SensorIngest

/// The last step of a run: the products assembled from the finished tiles without ever holding a whole
/// raster — each layer written tile by tile into a tiled GeoTIFF, turned into a Cloud Optimized GeoTIFF
/// by GDAL (which builds the overviews); hillshades by GDAL on the assembled DSM, coloured strip by
/// strip; the quick-look read from the hillshade's overviews; the point cloud streamed.
struct ProductAssembly: Sendable {
    let plan: RunPlan
    let images: [SensorImage]
    let work: WorkFolder
    let staging: String
    let wkt: String
    let progress: @Sendable (String, Double) -> Void
    /// Lon/lat bounds of the run's area (to pick reference DEM and water-layer tiles).
    var area: (minLon: Double, minLat: Double, maxLon: Double, maxLat: Double)? = nil
    /// Set by the finishing steps: heights and georeferencing of the delivered products.
    var adjustment = HeightAdjustment()

    var grid: GridDefinition { plan.grid }
    var finishing: FinishingOptions { plan.finishing ?? FinishingOptions() }
    var geoTransform: [Double] {
        var gt = grid.geoTransform
        gt[0] += adjustment.shift.x; gt[3] += adjustment.shift.y
        return gt
    }
    func assembled(_ name: String) -> String { (work.assemblyPath as NSString).appendingPathComponent(name) }
    func staged(_ name: String) -> String { (staging as NSString).appendingPathComponent(name) }

    static let heightMetadata: [(String, String)] = [("VERTICAL_REFERENCE", VerticalDatum.ellipsoid.metadataValue), ("UNITS", "metre"), ("PRODUCER", "dsmopt")]
    /// Height layers are assembled above the ellipsoid with a 3D CRS saying so (the finishing steps
    /// rewrite them in the output datum).
    func heightWriter(_ name: String) throws -> WindowedRasterWriter {
        try WindowedRasterWriter(path: assembled(name), width: grid.width, height: grid.height, bands: 1, type: .float32,
                                 geoTransform: geoTransform, projectionWKT: try SpatialReference.heightWKT(epsg: grid.epsg, datum: .ellipsoid),
                                 noData: .nan, metadata: Self.heightMetadata, bandDescriptions: ["height"], options: GeoProducts.scratchCompression)
    }

    func writer(_ name: String, bands: Int, type: RasterDataType, noData: Double?, metadata: [(String, String)] = [],
                descriptions: [String] = [], rgb: Bool = false, validityMask: Bool = false) throws -> WindowedRasterWriter {
        try WindowedRasterWriter(path: assembled(name), width: grid.width, height: grid.height, bands: bands, type: type,
                                 geoTransform: geoTransform, projectionWKT: wkt, noData: noData, metadata: metadata,
                                 bandDescriptions: descriptions, colorInterpretationRGB: rgb, options: GeoProducts.scratchCompression,
                                 validityMask: validityMask)
    }

    func publish(_ name: String, _ content: GeoProducts.COGContent, level: Int = GeoProducts.cogDeflateLevel) throws {
        try GeoProducts.toCOG(source: assembled(name), destination: staged(name), content: content, level: level)
    }

    mutating func run(manifest: inout Manifest) throws {
        try FileManager.default.createDirectory(atPath: work.assemblyPath, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        try writeDSMLayers(manifest: &manifest)
        if !finishing.isEmpty {
            let me = self, report = progress
            let finisher = DSMFinishing(options: finishing, grid: grid, wkt: wkt, assembled: { me.assembled($0) }, staged: { me.staged($0) },
                                        scratch: work.path("finishing"), area: area) { report($0, 0.925) }
            let outcome = try finisher.run()
            adjustment = outcome.adjustment
            manifest.coregistration = outcome.coregistration
            manifest.waterMask = outcome.water
            manifest.products += outcome.products
            manifest.grid.originX += adjustment.shift.x
            manifest.grid.originY += adjustment.shift.y
            try? FileManager.default.removeItem(atPath: work.path("finishing"))
        }
        manifest.verticalDatum = finishing.verticalDatum
        manifest.verticalReference = finishing.verticalDatum.description
        var layers: [(String, GeoProducts.COGContent)] = [("correlation_score.tif", .continuous), ("dsm_raw.tif", .continuous),
                                                          ("dsm.tif", .continuous), ("dsm_filled_mask.tif", .categorical),
                                                          ("pair_contributions.tif", .categorical), ("dsm_uncertainty.tif", .continuous)]
        if manifest.coregistration != nil { layers.append(("dsm_uncoregistered.tif", .continuous)) }
        if manifest.waterMask != nil { layers.append(("water_mask.tif", .categorical)) }
        let published = self
        try parallel(layers.map { name, content in { try published.publish(name, content) } })
        let range = try colourRange()
        progress("hillshades", 0.93)
        try writeHillshades(colourRange: range, manifest: &manifest)
        if plan.orthoImages || plan.orthoMosaic {
            progress("true ortho-images", 0.96)
            try writeOrthos(manifest: &manifest)
        }
        if plan.pointCloud {
            progress("LAS point cloud", 0.98)
            try writePointCloud(manifest: &manifest)
        }
    }

    /// A1, A2, A3 layers, assembled from the tiles (published after the finishing steps).
    func writeDSMLayers(manifest: inout Manifest) throws {
        let crs = manifest.crs
        let score = try writer("correlation_score.tif", bands: 1, type: .float32, noData: .nan,
                               metadata: [("UNITS", "ZNCC (0-1)")], descriptions: ["correlation score"])
        let raw = try heightWriter("dsm_raw.tif")
        let dsm = try heightWriter("dsm.tif")
        let filled = try writer("dsm_filled_mask.tif", bands: 1, type: .byte, noData: nil, descriptions: ["1 = filled by interpolation"])
        let legend = plan.pairs.enumerated().map { "bit \($0.offset) = pair \($0.element)" }.joined(separator: ", ")
        let contributions = try writer("pair_contributions.tif", bands: 1, type: .byte, noData: nil, metadata: [("BITS", legend)],
                                       descriptions: ["contributing pairs (bit mask)"])
        let uncertainty = try writer("dsm_uncertainty.tif", bands: 1, type: .float32, noData: .nan,
                                     metadata: [("UNITS", "metre")], descriptions: ["height uncertainty (1 sigma)"])
        for t in plan.tiles.tiles {
            let r = try work.read(.fuse, t)
            let c = t.cells
            try uncertainty.write(band: 1, x: c.x, y: c.y, width: c.width, height: c.height, values: r.bands[5])
            try raw.write(band: 1, x: c.x, y: c.y, width: c.width, height: c.height, values: r.bands[0])
            try score.write(band: 1, x: c.x, y: c.y, width: c.width, height: c.height,
                            values: r.bands[1].map { $0.isNaN ? .nan : max(0, min(1, $0)) })
            try dsm.write(band: 1, x: c.x, y: c.y, width: c.width, height: c.height, values: r.bands[2])
            try filled.write(band: 1, x: c.x, y: c.y, width: c.width, height: c.height, values: r.bands[3])
            try contributions.write(band: 1, x: c.x, y: c.y, width: c.width, height: c.height, values: r.bands[4])
        }
        for w in [score, raw, dsm, filled, contributions, uncertainty] { try w.close() }
        let units = finishing.verticalDatum.unitsText
        manifest.products.append(.init(code: "A1", file: "correlation_score.tif",
                                       description: "DSM quality: mean correlation score (ZNCC) of the matches in each DSM cell, nodata where empty",
                                       units: "0-1", crs: crs))
        manifest.products.append(.init(code: "A2", file: "dsm_raw.tif",
                                       description: "DSM before filtering (fused pairs), nodata where no match"
                                           + (plan.pairs.count > 1 ? ", and where the pairs that see a cell contradict each other (fewer than two of their heights within \(String(format: "%g", DSMFusion.agreementTolerance)) m of each other, or one pair's height more than that from another pair's match left out by the uncertainty threshold), and where one pair alone gives a height with a disparity σ above \(String(format: "%g", DSMFusion.loneSigmaPx)) px while another pair matched within \(DSMFusion.witnessRadius) cells" : ""),
                                       units: units, crs: crs))
        func squareMetres(_ cells: Int) -> Int { Int((Double(cells) * plan.grid.resolution * plan.grid.resolution).rounded()) }
        manifest.products.append(.init(code: "A3", file: "dsm.tif",
                                       description: "delivered DSM: outliers removed\(plan.maxIslandCells.map { ", islands under \(squareMetres($0)) m² removed" } ?? ""), holes up to \(squareMetres(plan.maxHoleCells)) m² filled where their rim lies within \(String(format: "%.2g", plan.denoising.range)) m (RMS) of a plane — across a taller step they stay open (see dsm_filled_mask.tif), denoised (3×3 median, then an edge-preserving mean: Gaussian σ \(String(format: "%.2g", plan.denoising.sigma)) cells about the local slope, neighbours more than \(String(format: "%.2g", plan.denoising.range)) m off left out)"
                                           + (finishing.maskWater ? ", water masked" : "") + (finishing.coregister ? ", coregistered on the reference DEM" : ""),
                                       units: units, crs: crs))
        manifest.products.append(.init(code: "A2", file: "dsm_uncertainty.tif",
                                       description: "height uncertainty of the matched heights (dsm_raw.tif), 1 σ in metres: per match 2·√((1 − ZNCC)/(N·curvature)) px × GSD ÷ B/H, per cell the median of its matches, fused over pairs with their disagreement; dsm.tif's denoising lowers the noise further (not modelled); nodata only where dsm.tif is filled or empty (matches without a concave correlation peak to measure are left out of the DSM; README \"DSM quality\", items 7 and 20)",
                                       units: "m", crs: crs))
        manifest.products.append(.init(code: "A3", file: "dsm_filled_mask.tif", description: "1 where dsm.tif was filled by interpolation, 0 elsewhere",
                                       units: "flag", crs: crs))
        manifest.products.append(.init(code: "A2", file: "pair_contributions.tif",
                                       description: "which stereo pairs contributed to each cell of dsm_raw.tif (\(legend))", units: "bit mask", crs: crs))
    }

    /// The 2–98 % height range of the delivered DSM (5 cm bins), used to colour the hillshades; nil when empty.
    func colourRange() throws -> (Float, Float)? {
        let ds = try RasterDataset(path: assembled("dsm.tif"))
        let lo = Float(plan.heights[0] - 600), bin: Float = 0.05
        var hist = [Int](repeating: 0, count: Int((Float(plan.heights[1] + 600) - lo) / bin) + 1)
        var valid = 0
        var y = 0
        while y < grid.height {
            let h = min(256, grid.height - y)
            for v in try ds.read(column: 0, row: y, width: grid.width, height: h) where v.isFinite {
                hist[max(0, min(hist.count - 1, Int((v - lo) / bin)))] += 1
                valid += 1
            }
            y += h
        }
        guard valid > 0 else { return nil }
        func quantile(_ q: Double) -> Float {
            let target = Int(Double(valid) * q)
            var acc = 0
            for (b, n) in hist.enumerated() {
                acc += n
                if acc > target { return lo + (Float(b) + 0.5) * bin }
            }
            return lo + Float(hist.count) * bin
        }
        let a = quantile(0.02)
        return (a, max(quantile(0.98), a + 1))
    }

    /// Elevation colour ramp (green → yellow → brown → white) of a height normalised to [0, 1].
    static let rampStops: [(Float, SIMD3<Float>)] = [(0, SIMD3(40, 110, 60)), (0.35, SIMD3(170, 190, 90)),
                                                     (0.65, SIMD3(180, 130, 70)), (0.85, SIMD3(140, 100, 80)), (1, SIMD3(245, 245, 245))]
    static func ramp(_ t: Float) -> SIMD3<Float> {
        let stops = rampStops
        let x = max(0, min(1, t))
        for k in 1..<stops.count where x <= stops[k].0 {
            let (a, ca) = stops[k - 1], (b, cb) = stops[k]
            let f = (x - a) / (b - a)
            return ca + (cb - ca) * f
        }
        return stops.last!.1
    }

    /// Runs independent jobs (each opens its own GDAL datasets) on the machine's cores; the first error
    /// is rethrown.
    /// Under a small memory budget (< 1 GiB) they run one after the other: a COG conversion or gdaldem
    /// pass holds GDAL buffers of its own besides the shared block cache.
    func parallel(_ jobs: [@Sendable () throws -> Void]) throws {
        guard plan.memoryBudget.bytes >= 1 << 30 else {
            for job in jobs { try job() }
            return
        }
        let errors = ErrorBox()
        DispatchQueue.concurrentPerform(iterations: jobs.count) { k in
            do { try jobs[k]() } catch { errors.set(error) }
        }
        if let e = errors.error { throw e }
    }

    func writeHillshades(colourRange: (Float, Float)?, manifest: inout Manifest) throws {
        guard let range = colourRange else { return }
        let shades = [
            ("hillshade.tif", "B2", ["-compute_edges", "-az", "315", "-alt", "45"], "hillshade, one light source (azimuth 315°, altitude 45°), coloured by elevation"),
            ("hillshade_multidirectional.tif", "B4", ["-compute_edges", "-multidirectional"], "multidirectional hillshade, coloured by elevation"),
        ]
        try parallel(shades.map { name, _, args, _ in { try self.writeHillshade(name, args, range) } })
        for (name, code, _, text) in shades {
            manifest.products.append(.init(code: code, file: name, description: text, units: "RGB", crs: manifest.crs))
            if code == "B2" {
                // Quick-look: at most 512 pixels on the longer side, read from the COG's overviews.
                let f = max(1, Int((Double(max(grid.width, grid.height)) / 512).rounded(.up)))
                let pw = max(1, grid.width / f), ph = max(1, grid.height / f)
                try GeoProducts.translate(source: staged(name), destination: staged("preview.png"),
                                          arguments: ["-of", "PNG", "-outsize", "\(pw)", "\(ph)", "-b", "1", "-b", "2", "-b", "3", "-b", "4"])
                try? FileManager.default.removeItem(atPath: staged("preview.png.aux.xml"))
                manifest.products.append(.init(code: "-", file: "preview.png", description: "small coloured hillshade quick-look", units: "RGB"))
            }
        }
    }

    func writeHillshade(_ name: String, _ args: [String], _ range: (Float, Float)) throws {
        let (lo, hi) = range
        do {
            let shadePath = assembled("shade_" + name)
            try GeoProducts.demProcessing("hillshade", source: assembled("dsm.tif"), destination: shadePath,
                                          arguments: args + ["-co", "TILED=YES", "-co", "BIGTIFF=IF_SAFER"] + GeoProducts.scratchCompressionArguments)
            // RGBA: the alpha band says where the DSM has no height (0), instead of a nodata colour.
            let out = try writer(name, bands: 4, type: .byte, noData: nil, metadata: [("ELEVATION_COLOUR_RANGE_M", "\(lo) \(hi)")], rgb: true)
            let dsm = try RasterDataset(path: assembled("dsm.tif")), shade = try RasterDataset(path: shadePath)
            // Windows of 256 rows × at most 2048 columns, on the 256-cell block grid of the files: the
            // buffers (6 floats per cell, 12 MiB) do not grow with the scene's width — full-width strips
            // took ~100 MiB per hillshade at 17,000 cells, two hillshades at once.
            for y in stride(from: 0, to: grid.height, by: 256) {
                let h = min(256, grid.height - y)
                for x in stride(from: 0, to: grid.width, by: 2048) {
                    let w = min(2048, grid.width - x)
                    let z = try dsm.read(column: x, row: y, width: w, height: h)
                    let s = try shade.read(column: x, row: y, width: w, height: h)
                    var r = [Float](repeating: 0, count: z.count), g = r, b = r, a = r
                    for i in 0..<z.count where !z[i].isNaN {
                        let c = Self.ramp((z[i] - lo) / (hi - lo)) * (0.25 + 0.75 * s[i] / 255)
                        r[i] = c.x.rounded(); g[i] = c.y.rounded(); b[i] = c.z.rounded(); a[i] = 255
                    }
                    try out.write(band: 1, x: x, y: y, width: w, height: h, values: r)
                    try out.write(band: 2, x: x, y: y, width: w, height: h, values: g)
                    try out.write(band: 3, x: x, y: y, width: w, height: h, values: b)
                    try out.write(band: 4, x: x, y: y, width: w, height: h, values: a)
                }
            }
            try out.close()
            try publish(name, .continuous)
        }
    }

    /// `ortho_<view index>_<role>.tif`: unique whatever the inputs are called (two uploads may both be
    /// `upload.tif`), and telling which view it is.
    func orthoName(_ k: Int) -> String {
        let role = plan.roles.map { $0[k] } ?? "view"
        return "ortho_\(k + 1)_\(role).tif"
    }

    func writeOrthos(manifest: inout Manifest) throws {
        let n = images.count
        var writers: [WindowedRasterWriter?] = []
        for k in 0..<n {
            // Visible cells hold digital numbers ≥ 1 (TrueOrtho clamps them), so 0 marks hidden or outside cells
            // exactly; the file says so with a validity mask (GDAL's per-dataset mask), not a nodata value
            // that would also blank a real DN.
            writers.append(plan.orthoImages
                ? try writer(orthoName(k), bands: 1, type: .uint16, noData: nil, descriptions: ["true ortho (mask: hidden or outside)"], validityMask: true) : nil)
        }
        let mosaic = plan.orthoMosaic
            ? try writer("ortho_mosaic.tif", bands: 2, type: .uint16, noData: nil,
                         descriptions: ["ortho-mosaic", "source image (1-based index)"], validityMask: true) : nil
        for t in plan.tiles.tiles {
            let r = try work.read(.ortho, t)
            let c = t.cells
            for k in 0..<n {
                try writers[k]?.write(band: 1, x: c.x, y: c.y, width: c.width, height: c.height, values: r.bands[k])
                try writers[k]?.writeMask(x: c.x, y: c.y, width: c.width, height: c.height, valid: r.bands[k].map { $0 > 0 })
            }
            try mosaic?.write(band: 1, x: c.x, y: c.y, width: c.width, height: c.height, values: r.bands[n])
            try mosaic?.write(band: 2, x: c.x, y: c.y, width: c.width, height: c.height, values: r.bands[n + 1])
            try mosaic?.writeMask(x: c.x, y: c.y, width: c.width, height: c.height, valid: r.bands[n + 1].map { $0 > 0 })
        }
        for w in writers { try w?.close() }
        try mosaic?.close()
        var names = (0..<n).filter { writers[$0] != nil }.map(orthoName)
        if mosaic != nil { names.append("ortho_mosaic.tif") }
        // The mosaic's second band is its source index: overviews by nearest neighbour for both bands.
        try parallel(names.map { name in {
            try self.publish(name, name == "ortho_mosaic.tif" ? .categorical : .continuous, level: GeoProducts.orthoDeflateLevel)
        } })
        for k in 0..<n where writers[k] != nil {
            let role = plan.roles.map { " (\($0[k]) view)" } ?? ""
            manifest.products.append(.init(code: "C\(k + 1)", file: orthoName(k),
                                           description: "true ortho-image of \(URL(fileURLWithPath: images[k].path).lastPathComponent)\(role) on the DSM; parts hidden from this view are nodata",
                                           units: "image digital numbers", crs: manifest.crs))
        }
        if mosaic != nil {
            manifest.products.append(.init(code: "C4", file: "ortho_mosaic.tif",
                                           description: "ortho-mosaic taking each cell from the most nadir view that sees it (band 2: source image)",
                                           units: "image digital numbers", crs: manifest.crs))
        }
    }

    func writePointCloud(manifest: inout Manifest) throws {
        let las = try LASWriter(path: staged("pointcloud.las"), wkt: try SpatialReference.heightWKT(epsg: grid.epsg, datum: adjustment.datum),
                                origin: (grid.originX + adjustment.shift.x, grid.originY + adjustment.shift.y - Double(grid.height) * grid.resolution,
                                         plan.heights[0] - 100))
        let geoid = try adjustment.geoid(wkt: wkt)
        for t in plan.tiles.tiles {
            let r = try work.read(.fuse, t)
            var g = grid.subgrid(t.cells)
            // Delivered heights (vertical datum, coregistration) and georeferencing.
            let offsets = adjustment.offsets(grid: g, y: 0, rows: g.height, undulations: try geoid?.undulations(grid: g, y: 0, rows: g.height))
            g.originX += adjustment.shift.x; g.originY += adjustment.shift.y
            var x: [Double] = [], y: [Double] = [], z: [Double] = [], s: [Float] = []
            for j in 0..<g.height {
                for i in 0..<g.width {
                    let c = j * g.width + i
                    let h = r.bands[2][c] + (offsets?[c] ?? 0)
                    guard !h.isNaN else { continue }
                    let p = g.centre(i, j)
                    x.append(p.x); y.append(p.y); z.append(Double(h)); s.append(r.bands[1][c].isNaN ? -1 : r.bands[1][c])
                }
            }
            try las.append(x: x, y: y, z: z, score: s)
        }
        try las.finish()
        manifest.products.append(.init(code: "D1", file: "pointcloud.las",
                                       description: "the DSM as a LAS 1.4 point cloud (point format 6) with the correlation score as an extra-bytes attribute 'score' (-1 where filled)",
                                       units: "m", crs: manifest.crs))
    }
}

private final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var error: Error?
    func set(_ e: Error) { lock.lock(); if error == nil { error = e }; lock.unlock() }
}
