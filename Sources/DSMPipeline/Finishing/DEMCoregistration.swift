import DSMCore
import Foundation
import GDALKit

/// What coregistration found and did (in the manifest, and printed by `dsmopt coregister`).
public struct CoregistrationOutcome: Sendable, Codable, Equatable {
    /// The reference's file name (or folder name), its vertical datum, and where its heights came from.
    public var reference: String
    public var referenceVerticalDatum: VerticalDatum
    public var method = "Nuth & Kääb (2011): iterative fit of the elevation differences against slope and aspect on stable terrain, then the median vertical bias"
    /// Shift applied to the DSM: metres east, north and up.
    public var dx: Double
    public var dy: Double
    public var dz: Double
    /// The same horizontal shift in reference pixels: columns (east) and rows (down).
    public var dxPixels: Double
    public var dyPixels: Double
    /// Reference cell size, metres (east–west, north–south).
    public var referencePixelSizeM: [Double]
    /// Cell size of the grid the fit ran on, metres (the reference's, or a multiple when the area is large).
    public var workingCellSizeM: [Double]
    public var iterations: Int
    /// Per iteration: shift in reference pixels after it (columns, rows) and the NMAD before it.
    public var history: [[Double]]
    /// Differences DSM − reference on stable terrain (slope 3–70°, within 3 NMAD, water excluded), metres.
    public var before: NuthKaab.Statistics
    public var after: NuthKaab.Statistics
    /// The shift in the DSM's own CRS units (added to its geotransform origin).
    public var shiftInDSMUnits: [Double]
    /// With a tilt: metres added per metre east and north of the DSM's centre (dz is the change at the
    /// centre), i.e. a plane; and the centre, in the DSM's CRS units, with the metres per unit there.
    public var tilt: Tilt?
    public struct Tilt: Sendable, Codable, Equatable {
        public var east: Double
        public var north: Double
        public var centre: [Double]
        public var metresPerUnit: [Double]
        /// Height change at a point of the DSM's CRS (without dz).
        public func change(x: Double, y: Double) -> Double {
            east * (x - centre[0]) * metresPerUnit[0] + north * (y - centre[1]) * metresPerUnit[1]
        }
    }
}

/// Nuth & Kääb coregistration of a DSM (GeoTIFF) onto a reference DEM of any CRS and resolution: the DSM
/// is resampled (averaged when finer) onto the reference's grid over their common area, the reference's
/// heights converted to the DSM's vertical datum with PROJ's geoid grid, the shift fitted there
/// (`NuthKaab`), and returned in metres, in reference pixels and in the DSM's CRS units.
public enum DEMCoregistration {
    /// Heights a DEM or DSM may hold, metres: a value outside is an undeclared no-data value (−9999, −32768,
    /// 3.4e38) or a corrupt cell, and is read as no height. The Dead Sea's shore (−430 m) and Everest (8,849 m),
    /// with the geoid's ±110 m, lie well inside. NaN and infinities are outside.
    public static let plausibleHeights: ClosedRange<Float> = -1000...9000

    /// A pixel index from a fractional one, clamped to 0...limit before its conversion: a hostile
    /// geotransform (a pixel of 1e-300 units) gives indices beyond Int's range. NaN gives 0.
    static func pixelIndex(_ v: Double, limit: Int) -> Int { v.isNaN ? 0 : Int(min(Double(limit), max(0, v))) }
    /// Raster formats a reference given with a job may be (no VRT or network format on a user's behalf).
    public static let uploadDrivers = ["GTiff", "SRTMHGT", "JP2OpenJPEG", "AAIGrid", "USGSDEM"]
    /// Largest working grid, cells: a finer reference over a large area is averaged down to it.
    static let maximumCells = 4_000_000

    /// A reference file as is, or a folder of DEM tiles as one VRT mosaic (built in `scratch`) of the tiles
    /// near `area` (lon/lat bounds) — SRTM (`N21E055.hgt`) and Copernicus (`…_S21_00_E055_00_…`) tile names
    /// are recognised, other files are always included.
    public static func referencePath(_ path: String, scratch: String, area: (minLon: Double, minLat: Double, maxLon: Double, maxLat: Double)?) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FinishingError.reference("\(URL(fileURLWithPath: path).lastPathComponent): no such file or folder")
        }
        guard isDir.boolValue else { return path }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        let rasters = names.filter { n in [".hgt", ".tif", ".tiff", ".dt2", ".dt1"].contains { n.lowercased().hasSuffix($0) } }.sorted()
        let chosen = rasters.filter { n in
            guard let area, let sw = tileCorner(n) else { return true }
            return sw.lat <= area.maxLat + 1 && sw.lat + 1 >= area.minLat - 1 && sw.lon <= area.maxLon + 1 && sw.lon + 1 >= area.minLon - 1
        }
        guard !chosen.isEmpty else { throw FinishingError.reference("the reference folder has no DEM tile over the DSM's area") }
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let vrt = (scratch as NSString).appendingPathComponent("reference.vrt")
        try GeoProducts.buildVRT(sources: chosen.map { (path as NSString).appendingPathComponent($0) }, destination: vrt)
        return vrt
    }

    /// A reference DEM opened (a user's file: with `uploadDrivers` only) and checked: a CRS and a north-up
    /// geotransform.
    static func openReference(_ path: String, trusted: Bool) throws -> (RasterDataset, geoTransform: [Double]) {
        let ref: RasterDataset
        do { ref = try RasterDataset(path: path, drivers: trusted ? nil : uploadDrivers) } catch {
            throw FinishingError.reference("not a readable DEM raster (\(trusted ? "GDAL formats" : uploadDrivers.joined(separator: ", ")))")
        }
        guard !ref.projectionWKT.isEmpty else { throw FinishingError.reference("it has no coordinate reference system") }
        guard let g = ref.geoTransform, g[2] == 0, g[4] == 0, g[1] > 0, g[5] < 0 else {
            throw FinishingError.reference("it has no north-up georeferencing")
        }
        return (ref, g)
    }

    /// South-west corner of a tile from its name: `N21E055`, `S21_00_E055_00`.
    static func tileCorner(_ name: String) -> (lat: Double, lon: Double)? {
        let u = name.uppercased()
        guard let r = u.range(of: #"([NS])(\d{2})(?:_\d{2})?_?([EW])(\d{3})"#, options: .regularExpression) else { return nil }
        let s = String(u[r]).replacingOccurrences(of: "_00", with: "").replacingOccurrences(of: "_", with: "")
        let chars = Array(s)
        guard chars.count >= 7, let lat = Double(String(chars[1...2])), let lon = Double(String(chars[4...6])) else { return nil }
        return ((chars[0] == "S" ? -lat : lat), (chars[3] == "W" ? -lon : lon))
    }

    /// Estimates the shift of `dsm` onto `reference`.
    /// - Parameters:
    ///   - excluded: a raster on the DSM's grid whose non-zero cells are never stable terrain (water), optional.
    ///   - trusted: false for a file a user sent (only `uploadDrivers` may open it).
    ///   - differenceMap: a PNG of DSM − reference after coregistration to write, optional.
    public static func estimate(dsm dsmPath: String, dsmDatum: VerticalDatum = .ellipsoid, reference refPath: String,
                                referenceDatum: VerticalDatum, referenceName: String? = nil, trusted: Bool = true,
                                excluded: String? = nil, tilt: Bool = false, scratch: String, differenceMap: String? = nil) throws -> CoregistrationOutcome {
        let dsm = try RasterDataset(path: dsmPath)
        guard let dgt = dsm.geoTransform, !dsm.projectionWKT.isEmpty else {
            throw FinishingError.reference("the DSM has no georeferencing")
        }
        let (ref, rgt) = try openReference(refPath, trusted: trusted)
        let refWKT = ref.projectionWKT
        // The DSM's footprint in the reference's CRS (its edges sampled, so curved outlines are covered).
        let toRef = try CoordinateTransform(fromWKT: dsm.projectionWKT, toWKT: refWKT)
        var xs: [Double] = [], ys: [Double] = []
        for k in 0...20 {
            let t = Double(k) / 20
            for (u, v) in [(t, 0.0), (t, 1.0), (0.0, t), (1.0, t)] {
                xs.append(dgt[0] + u * Double(dsm.width) * dgt[1]); ys.append(dgt[3] + v * Double(dsm.height) * dgt[5])
            }
        }
        let ok = toRef.transform(x: &xs, y: &ys)
        let pts = zip(zip(xs, ys), ok).filter { $0.1 }.map { $0.0 }
        guard pts.count > 4 else { throw FinishingError.reference("the DSM's area cannot be expressed in the reference's coordinate system") }
        let minX = pts.map(\.0).min()!, maxX = pts.map(\.0).max()!, minY = pts.map(\.1).min()!, maxY = pts.map(\.1).max()!
        // Reference pixel window over the DSM, with a margin of 2 pixels, clipped to the reference.
        let c0 = pixelIndex(((minX - rgt[0]) / rgt[1]).rounded(.down) - 2, limit: ref.width)
        let c1 = pixelIndex(((maxX - rgt[0]) / rgt[1]).rounded(.up) + 2, limit: ref.width)
        let r0 = pixelIndex(((maxY - rgt[3]) / rgt[5]).rounded(.down) - 2, limit: ref.height)
        let r1 = pixelIndex(((minY - rgt[3]) / rgt[5]).rounded(.up) + 2, limit: ref.height)
        guard c1 - c0 >= 8, r1 - r0 >= 8 else {
            throw FinishingError.reference("it does not cover the DSM's area (\(String(format: "%.6g %.6g – %.6g %.6g", minX, minY, maxX, maxY)) in its CRS)")
        }
        let w0 = c1 - c0, h0 = r1 - r0
        let f = max(1, Int((Double(w0 * h0) / Double(maximumCells)).squareRoot().rounded(.up)))
        let w = max(8, w0 / f), h = max(8, h0 / f)
        let cw = Double(w0) / Double(w), ch = Double(h0) / Double(h)   // working cell in reference pixels
        var refHeights = try ref.read(column: c0, row: r0, width: w0, height: h0, bufferWidth: w, bufferHeight: h, resampling: .average)
        if let nd = ref.noDataValue() { for i in refHeights.indices where refHeights[i] == Float(nd) { refHeights[i] = .nan } }
        for i in refHeights.indices where !Self.plausibleHeights.contains(refHeights[i]) { refHeights[i] = .nan }
        guard refHeights.contains(where: \.isFinite) else { throw FinishingError.reference("it is nodata over the DSM's area") }
        let wx0 = rgt[0] + Double(c0) * rgt[1], wy0 = rgt[3] + Double(r0) * rgt[5]
        let wgt = [wx0, rgt[1] * cw, 0, wy0, 0, rgt[5] * ch]

        // The DSM on the working grid: averaged when its cells are finer, interpolated otherwise.
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let onRef = (scratch as NSString).appendingPathComponent("dsm_on_reference.tif")
        let te = [wgt[0], wgt[3] + Double(h) * wgt[5], wgt[0] + Double(w) * wgt[1], wgt[3]].map { String(format: "%.12g", $0) }
        let dsmCellM = abs(dgt[1]) * (SpatialReference.metresPerUnit(wkt: dsm.projectionWKT) ?? 111_000)
        let pixel = metricCellSize(geoTransform: wgt, wkt: refWKT, centreY: wgt[3] + Double(h) / 2 * wgt[5])
        let method = dsmCellM < 0.75 * min(pixel.0, pixel.1) ? "average" : "bilinear"
        try GeoProducts.warp(source: dsmPath, destination: onRef,
                             arguments: ["-of", "GTiff", "-overwrite", "-t_srs", refWKT, "-te"] + te + ["-ts", "\(w)", "\(h)", "-r", method,
                                         "-ot", "Float32", "-dstnodata", "nan", "-wo", "NUM_THREADS=1"])
        // An undeclared no-data value of the DSM, spread by the warp's interpolation, is no height either.
        let secondary = try RasterDataset(path: onRef).read().map { Self.plausibleHeights.contains($0) ? $0 : .nan }
        var excludedCells: [Bool]?
        if let excluded {
            let ex = (scratch as NSString).appendingPathComponent("excluded_on_reference.tif")
            try GeoProducts.warp(source: excluded, destination: ex,
                                 arguments: ["-of", "GTiff", "-overwrite", "-t_srs", refWKT, "-te"] + te + ["-ts", "\(w)", "\(h)", "-r", "max", "-ot", "Float32"])
            excludedCells = try RasterDataset(path: ex).read().map { $0 > 0 }
        }
        // The reference in the DSM's vertical datum.
        if referenceDatum != dsmDatum {
            let n = try GeoidGrid(wkt: refWKT).undulations(geoTransform: wgt, width: w, height: h)
            let sign: Float = referenceDatum == .egm96 ? 1 : -1
            for i in refHeights.indices where refHeights[i].isFinite { refHeights[i] += sign * n[i] }
        }
        let result: NuthKaab.Result
        var settings = NuthKaab.Settings()
        settings.tilt = tilt
        do {
            result = try NuthKaab.estimate(reference: refHeights, secondary: secondary, width: w, height: h,
                                           pixelWidth: pixel.0, pixelHeight: pixel.1, excluded: excludedCells, settings: settings)
        } catch let e as NuthKaab.Failure {
            throw FinishingError.reference(e.description)
        }
        // Working-grid shift → reference pixels, metres, and the DSM's CRS units (at the DSM's centre).
        let sx = result.columns * wgt[1], sy = result.rows * wgt[5]
        let cx = dgt[0] + Double(dsm.width) / 2 * dgt[1], cy = dgt[3] + Double(dsm.height) / 2 * dgt[5]
        let back = try CoordinateTransform(fromWKT: refWKT, toWKT: dsm.projectionWKT)
        guard let c = toRef.transform(cx, cy), let moved = back.transform(c.x + sx, c.y + sy), let same = back.transform(c.x, c.y) else {
            throw FinishingError.reference("the shift cannot be expressed in the DSM's coordinate system")
        }
        let refPixel = metricCellSize(geoTransform: rgt, wkt: refWKT, centreY: wgt[3] + Double(h) / 2 * wgt[5])
        // A tilt is fitted about the working grid's centre: express it about the DSM's centre.
        var dz = result.dz
        var planeTilt: CoregistrationOutcome.Tilt?
        if let t = result.tilt {
            let col = (c.x - wgt[0]) / wgt[1] - 0.5, row = (c.y - wgt[3]) / wgt[5] - 0.5
            let e0 = (col - Double(w - 1) / 2) * pixel.0, n0 = -(row - Double(h - 1) / 2) * pixel.1
            dz += t.east * e0 + t.north * n0
            let dsmPixel = metricCellSize(geoTransform: dgt, wkt: dsm.projectionWKT, centreY: cy)
            planeTilt = .init(east: t.east, north: t.north, centre: [cx, cy], metresPerUnit: [dsmPixel.0 / abs(dgt[1]), dsmPixel.1 / abs(dgt[5])])
        }
        if let differenceMap {
            try writeDifferenceMap(reference: refHeights, secondary: secondary, width: w, height: h, pixel: pixel, result: result, to: differenceMap)
        }
        return CoregistrationOutcome(
            reference: referenceName ?? URL(fileURLWithPath: refPath).lastPathComponent, referenceVerticalDatum: referenceDatum,
            dx: result.columns * pixel.0, dy: -result.rows * pixel.1, dz: dz,
            dxPixels: result.columns * cw, dyPixels: result.rows * ch, referencePixelSizeM: [refPixel.0, refPixel.1],
            workingCellSizeM: [pixel.0, pixel.1], iterations: result.iterations,
            history: result.history.map { [$0.columns * cw, $0.rows * ch, $0.nmad] },
            before: result.before, after: result.after,
            shiftInDSMUnits: [moved.x - same.x, moved.y - same.y], tilt: planeTilt)
    }

    /// Cell size in metres of a grid (a geographic one at the latitude `centreY`).
    static func metricCellSize(geoTransform g: [Double], wkt: String, centreY: Double) -> (Double, Double) {
        if let m = SpatialReference.metresPerUnit(wkt: wkt) { return (abs(g[1]) * m, abs(g[5]) * m) }
        let (a, fl) = SpatialReference.ellipsoid(wkt: wkt)
        let e2 = fl * (2 - fl), phi = centreY * .pi / 180, s = sin(phi)
        let n = a / (1 - e2 * s * s).squareRoot(), m = a * (1 - e2) / pow(1 - e2 * s * s, 1.5)
        return (abs(g[1]) * .pi / 180 * n * cos(phi), abs(g[5]) * .pi / 180 * m)
    }

    /// DSM − reference after coregistration, coloured blue (DSM below) – white – red (above) over ±3 NMAD
    /// (at least ±1 m), grey where either is unknown.
    static func writeDifferenceMap(reference: [Float], secondary: [Float], width w: Int, height h: Int, pixel: (Double, Double),
                                   result: NuthKaab.Result, to path: String) throws {
        let span = Float(max(1, 3 * result.after.nmad))
        let dh = NuthKaab.residuals(reference: reference, secondary: secondary, width: w, height: h, pixelWidth: pixel.0, pixelHeight: pixel.1, result: result)
        var r = [Float](repeating: 128, count: w * h), g = r, b = r
        for k in dh.indices where dh[k].isFinite {
            let t = max(-1, min(1, dh[k] / span))
            let c = t >= 0 ? SIMD3<Float>(255, 255 * (1 - t), 255 * (1 - t)) : SIMD3<Float>(255 * (1 + t), 255 * (1 + t), 255)
            r[k] = c.x.rounded(); g[k] = c.y.rounded(); b[k] = c.z.rounded()
        }
        let tmp = path + ".tmp.tif"
        try RasterWriter.write(path: tmp, width: w, height: h, bands: [r, g, b], type: .byte)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try GeoProducts.translate(source: tmp, destination: path, arguments: ["-of", "PNG"])
        try? FileManager.default.removeItem(atPath: path + ".aux.xml")
    }
}

extension DEMCoregistration {
    /// Writes the coregistered DSM: the same cells with the shift added to the georeferencing and dz to
    /// the heights (Float32, nodata NaN), strip by strip.
    public static func apply(_ c: CoregistrationOutcome, dsm path: String, to output: String) throws {
        let dsm = try RasterDataset(path: path)
        guard var gt = dsm.geoTransform else { throw FinishingError.reference("the DSM has no georeferencing") }
        gt[0] += c.shiftInDSMUnits[0]; gt[3] += c.shiftInDSMUnits[1]
        let nd = dsm.noDataValue().map(Float.init)
        let out = try WindowedRasterWriter(path: output, width: dsm.width, height: dsm.height, bands: 1, type: .float32, geoTransform: gt,
                                           projectionWKT: dsm.projectionWKT, noData: .nan,
                                           metadata: [("COREGISTRATION", String(format: "dx=%.3f m dy=%.3f m dz=%.3f m onto %@", c.dx, c.dy, c.dz, c.reference)
                                                       + (c.tilt.map { String(format: " tilt %.4f m/km east %.4f m/km north", $0.east * 1000, $0.north * 1000) } ?? ""))],
                                           bandDescriptions: ["height"])
        var y = 0
        let g0 = dsm.geoTransform!
        while y < dsm.height {
            let h = min(256, dsm.height - y)
            var z = try dsm.read(column: 0, row: y, width: dsm.width, height: h).map { v -> Float in
                v.isFinite && v != nd ? v + Float(c.dz) : .nan
            }
            if let t = c.tilt {
                for k in z.indices where z[k].isFinite {
                    let i = k % dsm.width, j = y + k / dsm.width
                    z[k] += Float(t.change(x: g0[0] + (Double(i) + 0.5) * g0[1], y: g0[3] + (Double(j) + 0.5) * g0[5]))
                }
            }
            try out.write(band: 1, x: 0, y: y, width: dsm.width, height: h, values: z)
            y += h
        }
        try out.close()
    }
}

/// EGM96 undulations on grids of one CRS: PROJ's grid through one geoid model and one transformation to
/// longitude/latitude, reused strip after strip. Not thread-safe: one per task.
public final class GeoidGrid {
    let geoid: GeoidModel
    let toGeo: CoordinateTransform

    public init(wkt: String) throws {
        do { geoid = try GeoidModel() } catch { throw FinishingError.geoid("\(error)") }
        toGeo = try CoordinateTransform(fromWKT: wkt, toWKT: try SpatialReference.wkt(epsg: 4326))
    }

    /// Undulations (m) at the cell centres of a grid: computed by PROJ on nodes every 16 cells and
    /// interpolated (the geoid varies by millimetres over such a distance).
    public func undulations(geoTransform g: [Double], width w: Int, height h: Int) throws -> [Float] {
        let step = 16
        let nw = (w + step - 1) / step + 1, nh = (h + step - 1) / step + 1
        var xs: [Double] = [], ys: [Double] = []
        for j in 0..<nh {
            for i in 0..<nw {
                xs.append(g[0] + (Double(i * step) + 0.5) * g[1]); ys.append(g[3] + (Double(j * step) + 0.5) * g[5])
            }
        }
        guard toGeo.transform(x: &xs, y: &ys).allSatisfy({ $0 }) else {
            throw FinishingError.geoid("the DSM's area cannot be expressed in longitude/latitude")
        }
        let nodes: [Double]
        do { nodes = try geoid.undulation(longitudes: xs, latitudes: ys) } catch { throw FinishingError.geoid("\(error)") }
        var out = [Float](repeating: 0, count: w * h)
        for j in 0..<h {
            let fy = Double(j) / Double(step), j0 = min(nh - 2, Int(fy)), ty = fy - Double(j0)
            for i in 0..<w {
                let fx = Double(i) / Double(step), i0 = min(nw - 2, Int(fx)), tx = fx - Double(i0)
                let a = nodes[j0 * nw + i0], b = nodes[j0 * nw + i0 + 1], c = nodes[(j0 + 1) * nw + i0], d = nodes[(j0 + 1) * nw + i0 + 1]
                out[j * w + i] = Float((a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty)
            }
        }
        return out
    }

    /// Undulations of `rows` rows of a run's grid from row `y`.
    func undulations(grid: GridDefinition, y: Int, rows: Int) throws -> [Float] {
        var gt = grid.geoTransform
        gt[3] -= Double(y) * grid.resolution
        return try undulations(geoTransform: gt, width: grid.width, height: rows)
    }
}
