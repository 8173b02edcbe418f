import DSMCore
import Foundation
import GDALKit

/// Why two DSMs cannot be differenced.
public enum DifferenceError: Error, CustomStringConvertible, Equatable {
    /// A DSM or a mask that cannot be used (named).
    case input(String)
    /// The DSMs (or the area of interest and the DSMs) have no area in common.
    case noOverlap(String)
    /// B could not be coregistered on A.
    case coregistration(String)

    public var description: String {
        switch self {
        case .input(let m): return m
        case .noOverlap(let m): return m
        case .coregistration(let m): return "B cannot be coregistered on A: \(m)"
        }
    }
}

/// What `dsmopt diff` and the `dsm-difference` process are asked.
public struct DifferenceOptions: Sendable {
    /// The earlier DSM (its grid is the difference's grid) and the later one.
    public var a: String
    public var b: String
    public var output: String
    /// Where volumes are summed (lon/lat); nil: the whole common area.
    public var aoi: AreaOfInterest?
    /// Stable terrain only (GeoJSON polygons or a raster, non-zero = stable): coregistration and the error
    /// statistics use nothing else.
    public var stableMask: String?
    /// What changed (GeoJSON polygons or a raster, non-zero = changed): never used as stable terrain.
    public var changedMask: String?
    /// False for files a user sent: opened with a few raster drivers (and GeoJSON for masks) only.
    public var trusted = true
    /// Names shown in messages and the manifest (default: the file names).
    public var nameA: String?
    public var nameB: String?

    public init(a: String, b: String, output: String) { self.a = a; self.b = b; self.output = output }
}

/// What a difference run found (in its `manifest.json`).
public struct DifferenceManifest: Sendable, Codable {
    public struct Input: Sendable, Codable {
        public var role: String
        public var file: String
        public var bytes: Int64
        public var sha256: String
        /// Acquisition time of the DSM (from the STAC item beside it), when known.
        public var datetime: String?
    }
    public struct StableTerrain: Sendable, Codable {
        /// What stable terrain was: the mask given, or every cell outside the changed mask and the AOI.
        public var definition: String
        public var cells: Int
        public var areaM2: Double
        /// B − A on stable terrain after coregistration, metres.
        public var median: Double
        public var nmad: Double
        /// Distance over which the errors stay correlated (autocorrelation above 1/e), metres, and the
        /// autocorrelation measured at each lag (metres, ρ).
        public var correlationLengthM: Double
        public var autocorrelation: [[Double]]
        /// Area found to have changed (and left out of the stable terrain) after a first coregistration, m².
        public var automaticChangeAreaM2: Double
    }
    public struct Volumes: Sendable, Codable {
        /// "the area of interest" or "the whole common area".
        public var region: String
        public var regionAreaM2: Double
        /// Share of the region where both DSMs have a height (volumes are summed there only).
        public var coverage: Double
        /// Σ (B − A) × cell area over every cell of the region with both heights, m³.
        public var netM3: Double
        public var netUncertaintyM3: Double
        /// Sums over the cells that changed (the changes found: 7×7 mean of B − A beyond `thresholdM`, 5 NMAD
        /// of that mean; else single cells beyond 2 NMAD): gain (B above A) and loss
        /// (B below A, positive), m³.
        public var gainM3: Double
        public var gainUncertaintyM3: Double
        public var lossM3: Double
        public var lossUncertaintyM3: Double
        public var changedAreaM2: Double
        public var gainAreaM2: Double
        public var lossAreaM2: Double
        public var thresholdM: Double
    }
    public var products: [Manifest.Product] = []
    public var inputs: [Input]
    /// The difference's grid: A's.
    public var crsWKT: String
    public var geoTransform: [Double]
    public var width: Int
    public var height: Int
    public var cellAreaM2: Double
    public var coregistration: CoregistrationOutcome
    public var stableTerrain: StableTerrain
    public var volumes: Volumes
    public var uncertaintyMethod = DifferenceManifest.uncertaintyMethodText
    public static let uncertaintyMethodText = """
        σ_dh = NMAD of B − A on stable terrain after coregistration; L = its correlation length (the lag at which \
        the autocorrelation of B − A on stable terrain falls below 1/e, at least one cell); for a region of area S \
        (cells of area a): random error of the mean height change σ_r = σ_dh·√(max(a, πL²)/S), error of the \
        vertical alignment σ_b = σ_dh·√(max(a, πL²)/S_stable) (common to every cell); σ_V = S·√(σ_r² + σ_b²)
        """
    /// Colours of difference.png: blue (B below A) – white – red (B above A) over ±colourRangeM.
    public var colourRangeM: Double
    public var software: Provenance.Software
    public var started: String
    public var finished: String
}

/// Multi-date differencing: B coregistered on A on stable terrain (Nuth & Kääb), then B − A on A's grid,
/// the volumes of change over an area of interest and their uncertainty. Strip by strip (bounded memory).
public enum DSMDifference {
    static let strip = 256
    /// Raster formats a user's DSM or mask raster may be.
    public static let uploadDrivers = DEMCoregistration.uploadDrivers

    public static func run(_ o: DifferenceOptions, progress: (Double, String) -> Void = { _, _ in }) throws -> DifferenceManifest {
        let started = Date()
        GDAL.setCacheMax(bytes: 256 << 20)
        let nameA = o.nameA ?? URL(fileURLWithPath: o.a).lastPathComponent, nameB = o.nameB ?? URL(fileURLWithPath: o.b).lastPathComponent
        let drivers = o.trusted ? nil : uploadDrivers
        func open(_ path: String, _ name: String) throws -> (RasterDataset, [Double]) {
            let ds: RasterDataset
            do { ds = try RasterDataset(path: path, drivers: drivers) } catch {
                throw DifferenceError.input("\(name): not a raster this service reads (\(drivers?.joined(separator: ", ") ?? "GDAL formats"))")
            }
            guard let gt = ds.geoTransform, gt[2] == 0, gt[4] == 0, gt[1] > 0, gt[5] < 0, !ds.projectionWKT.isEmpty else {
                throw DifferenceError.input("\(name): a DSM needs a coordinate system and a north-up grid")
            }
            return (ds, gt)
        }
        let (a, gtA) = try open(o.a, nameA)
        let (b, gtB) = try open(o.b, nameB)
        let wkt = a.projectionWKT, w = a.width, h = a.height
        // Both outlines in lon/lat, for the overlap check and the messages.
        let fa = try STACItem.footprint(geoTransform: gtA, width: w, height: h, wkt: wkt)
        let fb = try STACItem.footprint(geoTransform: gtB, width: b.width, height: b.height, wkt: b.projectionWKT)
        func box(_ x: [Double]) -> String { String(format: "lon %.5f–%.5f, lat %.5f–%.5f", x[0], x[2], x[1], x[3]) }
        let ox = min(fa.bbox[2], fb.bbox[2]) - max(fa.bbox[0], fb.bbox[0]), oy = min(fa.bbox[3], fb.bbox[3]) - max(fa.bbox[1], fb.bbox[1])
        guard ox > 0, oy > 0 else {
            throw DifferenceError.noOverlap("\(nameA) (\(box(fa.bbox))) and \(nameB) (\(box(fb.bbox))) do not overlap: nothing to difference")
        }

        let fm = FileManager.default
        try fm.createDirectory(atPath: o.output, withIntermediateDirectories: true)
        let scratch = (o.output as NSString).appendingPathComponent(".difference-work")
        try? fm.removeItem(atPath: scratch)
        try fm.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: scratch) }
        func s(_ n: String) -> String { (scratch as NSString).appendingPathComponent(n) }
        // A raster resampled onto A's grid (A's CRS, extent and size).
        let te = [gtA[0], gtA[3] + Double(h) * gtA[5], gtA[0] + Double(w) * gtA[1], gtA[3]].map { String(format: "%.12g", $0) }
        func warpOntoA(_ source: String, _ destination: String, resampling: String, type: String, extra: [String] = []) throws {
            try GeoProducts.warp(source: source, destination: destination, arguments: ["-of", "GTiff", "-t_srs", wkt, "-te"] + te
                                 + ["-ts", "\(w)", "\(h)", "-r", resampling, "-ot", type] + extra
                                 + ["-co", "TILED=YES", "-co", "COMPRESS=DEFLATE", "-wo", "NUM_THREADS=1"])
        }
        // A byte raster on A's grid, strip by strip: 1 where `rule` says so for the strip's cell k.
        func writeMask(_ path: String, _ rule: (_ y: Int, _ rows: Int) throws -> (Int) -> Bool) throws {
            let writer = try WindowedRasterWriter(path: path, width: w, height: h, bands: 1, type: .byte, geoTransform: gtA, projectionWKT: wkt, noData: nil)
            try forEachStrip(height: h) { y, rows in
                let inMask = try rule(y, rows)
                try writer.write(band: 1, x: 0, y: y, width: w, height: rows, values: (0..<(w * rows)).map { inMask($0) ? 1 : 0 })
            }
            try writer.close()
        }

        // Masks on A's grid (1 byte per cell, on disk).
        func onGrid(_ path: String, _ what: String) throws -> String {
            let dst = s("\(what).tif")
            let isVector = [".geojson", ".json"].contains { path.lowercased().hasSuffix($0) }
            do {
                if isVector {
                    try WindowedRasterWriter(path: dst, width: w, height: h, bands: 1, type: .byte, geoTransform: gtA, projectionWKT: wkt, noData: nil).close()
                    try GeoProducts.rasterize(vector: path, into: dst, drivers: o.trusted ? nil : ["GeoJSON"])
                } else {
                    let src = try RasterDataset(path: path, drivers: drivers)
                    guard src.geoTransform != nil, !src.projectionWKT.isEmpty else { throw DifferenceError.input("the \(what) mask has no georeferencing") }
                    try warpOntoA(path, dst, resampling: "near", type: "Byte")
                }
            } catch let e as DifferenceError { throw e } catch {
                throw DifferenceError.input("the \(what) mask \(URL(fileURLWithPath: path).lastPathComponent) cannot be read: GeoJSON polygons or a georeferenced raster (non-zero = \(what == "stable" ? "stable terrain" : "changed"))")
            }
            return dst
        }
        let stable = try o.stableMask.map { try onGrid($0, "stable") }
        let changed = try o.changedMask.map { try onGrid($0, "changed") }
        var aoiRaster: String?
        if let aoi = o.aoi {
            let geojson = s("aoi.geojson")
            let text = "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",\"properties\":{},\"geometry\":\(aoi.geoJSONPolygon)}]}"
            try Data(text.utf8).write(to: URL(fileURLWithPath: geojson))
            aoiRaster = try onGrid(geojson, "aoi")
        }
        // The AOI is where the change is measured: it is not stable terrain either, unless it covers (almost)
        // everything.
        let aoiDS = try aoiRaster.map { try RasterDataset(path: $0) }
        var insideAOI = 0
        if let aoiDS { try forEachStrip(height: h) { y, rows in insideAOI += try aoiDS.read(row: y, height: rows).reduce(0) { $0 + ($1 > 0 ? 1 : 0) } } }
        guard aoiDS == nil || insideAOI > 0 else {
            throw DifferenceError.noOverlap("the area of interest does not overlap \(nameA) (\(box(fa.bbox)))")
        }
        let aoiIsStable = aoiDS == nil || w * h - insideAOI < 1000
        // Cells never used as stable terrain (coregistration, error statistics): outside the stable mask, in
        // the changed mask, in the AOI.
        var excluded: String?
        if stable != nil || changed != nil || !aoiIsStable {
            let path = s("excluded.tif")
            let stableDS = try stable.map { try RasterDataset(path: $0) }, changedDS = try changed.map { try RasterDataset(path: $0) }
            try writeMask(path) { y, rows in
                let st = try stableDS?.read(row: y, height: rows), ch = try changedDS?.read(row: y, height: rows)
                let ao = aoiIsStable ? nil : try aoiDS?.read(row: y, height: rows)
                return { k in (st.map { $0[k] <= 0 } ?? false) || (ch.map { $0[k] > 0 } ?? false) || (ao.map { $0[k] > 0 } ?? false) }
            }
            excluded = path
        }

        // Pass 0: B coregistered on A on the stable terrain given; B on A's grid.
        let moved = s("b_coregistered.tif"), onA = s("b_on_a.tif")
        func coregister(excluding ex: String?) throws -> CoregistrationOutcome {
            let c: CoregistrationOutcome
            do {
                c = try DEMCoregistration.estimate(dsm: o.b, dsmDatum: .ellipsoid, reference: o.a, referenceDatum: .ellipsoid, referenceName: nameA,
                                                   trusted: o.trusted, excluded: ex, scratch: s("coregistration"))
            } catch let e as FinishingError {
                throw DifferenceError.coregistration(e.description.replacingOccurrences(of: "reference DEM", with: nameA))
            }
            try? fm.removeItem(atPath: moved); try? fm.removeItem(atPath: onA)
            try DEMCoregistration.apply(c, dsm: o.b, to: moved)
            try warpOntoA(moved, onA, resampling: "bilinear", type: "Float32", extra: ["-dstnodata", "nan"])
            return c
        }
        progress(0.1, "coregistering \(nameB) on \(nameA) (Nuth & Kääb)")
        var coreg = try coregister(excluding: excluded)
        // Pass 1: what changed between the dates is found in B − A (its 7×7 mean beyond 3 NMAD of that mean's
        // spread) and left out of the stable terrain, then B is coregistered again: a change left in would pull
        // the fit (a lava flow's thin margins bias the vertical alignment, and with it every volume).
        progress(0.3, "finding the changes in B − A to leave them out of the stable terrain")
        let auto = try changedAreas(a: a, bOnA: try RasterDataset(path: onA), excluded: excluded, width: w, height: h, geoTransform: gtA, wkt: wkt,
                                    output: s("changed_auto.tif"))
        if auto.cells > 0 {
            let combined = s("excluded_with_changes.tif")
            let ex = try excluded.map { try RasterDataset(path: $0) }, ch = try RasterDataset(path: s("changed_auto.tif"))
            try writeMask(combined) { y, rows in
                let e = try ex?.read(row: y, height: rows), c = try ch.read(row: y, height: rows)
                return { k in c[k] > 0 || (e.map { $0[k] > 0 } ?? false) }
            }
            excluded = combined
            coreg = try coregister(excluding: combined)
        }
        progress(0.5, String(format: "B shifted by %+.2f m east, %+.2f m north, %+.2f m up; differencing on A's grid", coreg.dx, coreg.dy, coreg.dz))
        let cell = DEMCoregistration.metricCellSize(geoTransform: gtA, wkt: wkt, centreY: gtA[3] + Double(h) / 2 * gtA[5])
        let cellArea = cell.0 * cell.1

        // Pass 2: B − A, and a sample of it on stable terrain.
        let diffPath = s("difference.tif")
        let writer = try WindowedRasterWriter(path: diffPath, width: w, height: h, bands: 1, type: .float32, geoTransform: gtA, projectionWKT: wkt,
                                              noData: .nan, bandDescriptions: ["B − A (m)"])
        let ndA = a.noDataValue().map(Float.init)
        let bOnA = try RasterDataset(path: onA)
        var stableSample: [Float] = [], stableCells = 0
        let excl = try excluded.map { try RasterDataset(path: $0) }
        // Stable terrain for the error statistics: every cell not excluded above.
        let stride = max(1, w * h / 4_000_000)
        var counter = 0
        try forEachStrip(height: h) { y, rows in
            let za = try a.read(row: y, height: rows), zb = try bOnA.read(row: y, height: rows)
            let ex = try excl?.read(row: y, height: rows)
            var d = [Float](repeating: .nan, count: w * rows)
            let heights = DEMCoregistration.plausibleHeights
            for k in d.indices {
                let va = za[k], vb = zb[k]
                guard va != ndA, heights.contains(va), heights.contains(vb) else { continue }
                d[k] = vb - va
                if ex.map({ $0[k] > 0 }) ?? false { continue }
                stableCells += 1
                counter += 1
                if counter % stride == 0 { stableSample.append(d[k]) }
            }
            try writer.write(band: 1, x: 0, y: y, width: w, height: rows, values: d)
        }
        try writer.close()
        guard stableSample.count >= 100 else {
            throw DifferenceError.noOverlap("\(nameA) and \(nameB) have too few cells in common on stable terrain (\(stableCells)) to compare them")
        }
        var sample = stableSample
        let median = NuthKaab.median(&sample)
        var deviations = stableSample.map { abs($0 - median) }
        let nmad = 1.4826 * NuthKaab.median(&deviations)
        progress(0.7, String(format: "stable terrain: %d cells, NMAD %.3f m; estimating the error's correlation length", stableCells, nmad))
        let (corrLength, autocorrelation) = try correlationLength(difference: diffPath, excluded: excl,
                                                                   median: median, nmad: nmad, cell: (cell.0 + cell.1) / 2)

        // Pass 3: volumes over the region. Gain and loss are summed over the changes found (the 7×7 mean of
        // B − A beyond 5 NMAD of its spread), else over the cells beyond 2 NMAD: not over noise.
        let changesFound = auto.cells > 0 ? try RasterDataset(path: s("changed_auto.tif")) : nil
        let threshold = changesFound != nil ? auto.threshold * 5 / 3 : Double(max(2 * nmad, 0.01))
        var net = 0.0, gain = 0.0, loss = 0.0, nValid = 0, nGain = 0, nLoss = 0, nRegion = 0
        let diff = try RasterDataset(path: diffPath)
        var absSample: [Float] = []
        try forEachStrip(height: h) { y, rows in
            let d = try diff.read(row: y, height: rows), ao = try aoiDS?.read(row: y, height: rows)
            let found = try changesFound?.read(row: y, height: rows)
            for k in d.indices {
                if let ao, ao[k] <= 0 { continue }
                nRegion += 1
                let v = d[k]
                guard v.isFinite else { continue }
                nValid += 1
                net += Double(v)
                let changed = found.map { $0[k] > 1 } ?? (abs(Double(v)) > threshold)
                if changed && v > 0 { gain += Double(v); nGain += 1 } else if changed && v < 0 { loss -= Double(v); nLoss += 1 }
                if (nValid % stride) == 0 { absSample.append(abs(v)) }
            }
        }
        guard nValid > 0 else { throw DifferenceError.noOverlap("\(nameA) and \(nameB) have no height in common in the area of interest") }
        let footprint = max(cellArea, Double.pi * corrLength * corrLength)
        let stableArea = Double(stableCells) * cellArea
        func sigma(_ area: Double) -> Double {
            guard area > 0 else { return 0 }
            let random = Double(nmad) * (footprint / area).squareRoot(), bias = Double(nmad) * (footprint / stableArea).squareRoot()
            return area * (random * random + bias * bias).squareRoot()
        }
        let volumes = DifferenceManifest.Volumes(
            region: o.aoi == nil ? "the whole common area" : "the area of interest", regionAreaM2: Double(nRegion) * cellArea,
            coverage: Double(nValid) / Double(max(1, nRegion)),
            netM3: net * cellArea, netUncertaintyM3: sigma(Double(nValid) * cellArea),
            gainM3: gain * cellArea, gainUncertaintyM3: sigma(Double(nGain) * cellArea),
            lossM3: loss * cellArea, lossUncertaintyM3: sigma(Double(nLoss) * cellArea),
            changedAreaM2: Double(nGain + nLoss) * cellArea, gainAreaM2: Double(nGain) * cellArea, lossAreaM2: Double(nLoss) * cellArea,
            thresholdM: threshold)

        progress(0.85, "writing difference.tif and difference.png")
        let staging = s("staging")
        try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
        func staged(_ n: String) -> String { (staging as NSString).appendingPathComponent(n) }
        try GeoProducts.toCOG(source: diffPath, destination: staged("difference.tif"), content: .continuous)
        let p98 = absSample.isEmpty ? 1 : Double(Self.quantile(absSample, 0.98))
        let range = niceCeiling(max(Double(threshold), p98))
        try DifferenceMap.write(difference: staged("difference.tif"), range: range, to: staged("difference.png"), scratch: scratch)

        var manifest = DifferenceManifest(
            inputs: [try input("A (earlier)", o.a, name: nameA), try input("B (later)", o.b, name: nameB)],
            crsWKT: wkt, geoTransform: gtA, width: w, height: h, cellAreaM2: cellArea, coregistration: coreg,
            stableTerrain: .init(definition: stableDefinition(o, aoiIsStable: aoiIsStable, automatic: auto.cells > 0), cells: stableCells, areaM2: stableArea,
                                 median: Double(median), nmad: Double(nmad), correlationLengthM: corrLength, autocorrelation: autocorrelation,
                                 automaticChangeAreaM2: Double(auto.cells) * cellArea),
            volumes: volumes, colourRangeM: range, software: .current(),
            started: STACItem.iso(started), finished: STACItem.iso(Date()))
        manifest.products = [
            .init(code: "D", file: "difference.tif", description: "B − A on A's grid after coregistering B on A (Float32, nodata NaN)", units: "m"),
            .init(code: "D", file: "difference.png", description: String(format: "B − A coloured blue (B below A) – white – red (B above A) over ±%g m, with its legend", range), units: "RGBA"),
        ]
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try enc.encode(manifest).write(to: URL(fileURLWithPath: staged("manifest.json")), options: .atomic)
        try STACItem.write(try item(manifest, id: URL(fileURLWithPath: o.output).standardizedFileURL.lastPathComponent, footprint: fa), to: staged("item.json"))
        for f in try fm.contentsOfDirectory(atPath: staging) {
            let dst = (o.output as NSString).appendingPathComponent(f)
            try? fm.removeItem(atPath: dst)
            try fm.moveItem(atPath: staged(f), toPath: dst)
        }
        progress(1, "products in \(o.output)")
        return manifest
    }

    static func stableDefinition(_ o: DifferenceOptions, aoiIsStable: Bool, automatic: Bool) -> String {
        var parts: [String] = []
        if o.stableMask != nil { parts.append("inside the stable-terrain mask") }
        if o.changedMask != nil { parts.append("outside the changed-area mask") }
        if o.aoi != nil && !aoiIsStable { parts.append("outside the area of interest") }
        if automatic { parts.append("outside the changes found after a first coregistration (7×7 mean of B − A beyond 3 NMAD)") }
        return parts.isEmpty ? "every cell where both DSMs have a height" : "cells " + parts.joined(separator: ", ")
    }

    /// Cells whose 7×7 mean of B − A lies beyond 3 NMAD (of that mean, on the cells not already excluded)
    /// from its median: the changes between the dates, written as a byte raster on A's grid.
    static func changedAreas(a: RasterDataset, bOnA: RasterDataset, excluded: String?, width w: Int, height h: Int,
                             geoTransform gt: [Double], wkt: String, output: String) throws -> (cells: Int, threshold: Double) {
        let r = 3, ndA = a.noDataValue().map(Float.init)
        let ex = try excluded.map { try RasterDataset(path: $0) }
        // The 7×7 mean of B − A, strip by strip with a halo of r rows (written to disk: it is read twice).
        let meanPath = output + ".mean.tif"
        let means = try WindowedRasterWriter(path: meanPath, width: w, height: h, bands: 1, type: .float32, geoTransform: gt, projectionWKT: wkt, noData: .nan)
        var sample: [Float] = []
        let stride = max(1, w * h / 2_000_000)
        var counter = 0
        try forEachStrip(height: h) { y, rows in
            let y0 = max(0, y - r), y1 = min(h, y + rows + r), n = y1 - y0
            let za = try a.read(row: y0, height: n), zb = try bOnA.read(row: y0, height: n)
            var d = [Float](repeating: 0, count: w * n), c = [Float](repeating: 0, count: w * n)
            let heights = DEMCoregistration.plausibleHeights
            for k in d.indices where za[k] != ndA && heights.contains(za[k]) && heights.contains(zb[k]) { d[k] = zb[k] - za[k]; c[k] = 1 }
            // Separable box sums: along rows, then along columns.
            func rowSums(_ v: [Float]) -> [Float] {
                var out = [Float](repeating: 0, count: v.count)
                for j in 0..<n {
                    var acc: Float = 0
                    let base = j * w
                    for i in 0..<min(w, r + 1) { acc += v[base + i] }
                    for i in 0..<w {
                        out[base + i] = acc
                        if i + r + 1 < w { acc += v[base + i + r + 1] }
                        if i - r >= 0 { acc -= v[base + i - r] }
                    }
                }
                return out
            }
            let sd = rowSums(d), sc = rowSums(c)
            let e = try ex?.read(row: y, height: rows)
            var m = [Float](repeating: .nan, count: w * rows)
            for jj in 0..<rows {
                let j = y + jj - y0
                for i in 0..<w {
                    var ssum: Float = 0, scount: Float = 0
                    for dj in max(0, j - r)...min(n - 1, j + r) { ssum += sd[dj * w + i]; scount += sc[dj * w + i] }
                    guard scount >= 10, c[j * w + i] > 0 else { continue }
                    let v = ssum / scount
                    m[jj * w + i] = v
                    if !(e.map { $0[jj * w + i] > 0 } ?? false) {
                        counter += 1
                        if counter % stride == 0 { sample.append(v) }
                    }
                }
            }
            try means.write(band: 1, x: 0, y: y, width: w, height: rows, values: m)
        }
        try means.close()
        defer { try? FileManager.default.removeItem(atPath: meanPath) }
        guard sample.count >= 100 else { return (0, .nan) }
        let med = NuthKaab.median(&sample)
        var deviations = sample.map { abs($0 - med) }
        let spread = 1.4826 * NuthKaab.median(&deviations)
        let t = 3 * max(spread, 1e-3)
        let meanDS = try RasterDataset(path: meanPath)
        let writer = try WindowedRasterWriter(path: output, width: w, height: h, bands: 1, type: .byte, geoTransform: gt, projectionWKT: wkt, noData: nil)
        var cells = 0
        try forEachStrip(height: h) { y, rows in
            let m = try meanDS.read(row: y, height: rows)
            // 1: beyond 3 NMAD (left out of the stable terrain); 2: beyond 5 NMAD (a change, for gain and loss —
            // at 3 NMAD, one noise cell in 370 would pass, thousands over a scene).
            let v = m.map { x -> Float in x.isFinite && abs(x - med) > t ? (abs(x - med) > t * 5 / 3 ? 2 : 1) : 0 }
            cells += v.reduce(0) { $0 + ($1 > 0 ? 1 : 0) }
            try writer.write(band: 1, x: 0, y: y, width: w, height: rows, values: v)
        }
        try writer.close()
        return (cells, Double(t))
    }

    static func forEachStrip(height: Int, _ body: (Int, Int) throws -> Void) throws {
        var y = 0
        while y < height {
            let rows = min(strip, height - y)
            try body(y, rows)
            y += rows
        }
    }

    static func quantile(_ v: [Float], _ q: Double) -> Float {
        guard !v.isEmpty else { return .nan }
        let s = v.sorted()
        return s[min(s.count - 1, max(0, Int((Double(s.count - 1) * q).rounded())))]
    }

    /// 1, 2 or 5 × 10^k at or above `x`.
    static func niceCeiling(_ x: Double) -> Double {
        guard x > 0, x.isFinite else { return 1 }
        let e = pow(10, (log10(x)).rounded(.down))
        for m in [1.0, 2, 5, 10] where m * e >= x * (1 - 1e-9) { return m * e }
        return 10 * e
    }

    /// Autocorrelation of B − A on stable terrain (within 4 NMAD of its median) along rows and columns, in a
    /// window of at most 1024² cells at the grid's centre; the correlation length is where it falls below 1/e.
    static func correlationLength(difference: String, excluded: RasterDataset?, median: Float, nmad: Float,
                                  cell: Double) throws -> (Double, [[Double]]) {
        let ds = try RasterDataset(path: difference)
        let ww = min(1024, ds.width), wh = min(1024, ds.height)
        let x0 = (ds.width - ww) / 2, y0 = (ds.height - wh) / 2
        let d = try ds.read(column: x0, row: y0, width: ww, height: wh)
        let ex = try excluded?.read(column: x0, row: y0, width: ww, height: wh)
        let limit = 4 * max(nmad, 1e-6)
        var v = [Double](repeating: .nan, count: d.count)
        for k in d.indices where d[k].isFinite && abs(d[k] - median) <= limit && !(ex.map { $0[k] > 0 } ?? false) {
            v[k] = Double(d[k] - median)
        }
        var rows: [[Double]] = [[0, 1]]
        var length: Double?
        var previous = (lag: 0.0, rho: 1.0)
        for lag in [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64] where lag < min(ww, wh) {
            var sxy = 0.0, sxx = 0.0, syy = 0.0, n = 0
            for j in 0..<wh {
                for i in 0..<ww {
                    let p = v[j * ww + i]
                    guard p.isFinite else { continue }
                    if i + lag < ww { let q = v[j * ww + i + lag]; if q.isFinite { sxy += p * q; sxx += p * p; syy += q * q; n += 1 } }
                    if j + lag < wh { let q = v[(j + lag) * ww + i]; if q.isFinite { sxy += p * q; sxx += p * p; syy += q * q; n += 1 } }
                }
            }
            guard n >= 100, sxx > 0, syy > 0 else { break }
            let rho = sxy / (sxx * syy).squareRoot()
            rows.append([Double(lag) * cell, (rho * 1000).rounded() / 1000])
            if length == nil && rho < exp(-1) {
                // Linear between the last lag above 1/e and this one.
                let t = (previous.rho - exp(-1)) / max(1e-9, previous.rho - rho)
                length = (previous.lag + t * (Double(lag) - previous.lag)) * cell
            }
            previous = (Double(lag), rho)
        }
        return (max(cell, length ?? previous.lag * cell), rows)
    }

    static func input(_ role: String, _ path: String, name: String) throws -> DifferenceManifest.Input {
        let f = try Provenance.file(path)
        return .init(role: role, file: name, bytes: f.bytes, sha256: f.sha256, datetime: acquisition(of: path))
    }

    /// The acquisition time of a DSM: from the STAC item of its result folder (`item.json` beside it).
    static func acquisition(of path: String) -> String? {
        let item = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("item.json")
        guard let data = FileManager.default.contents(atPath: item),
              let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let p = o["properties"] as? [String: Any] else { return nil }
        return (p["datetime"] as? String) ?? (p["end_datetime"] as? String)
    }

    static func item(_ m: DifferenceManifest, id: String, footprint: (polygon: [[Double]], bbox: [Double])) throws -> [String: Any] {
        let finished = STACItem.date(m.finished) ?? Date()
        var props = STACItem.timeFields(acquisitions: m.inputs.compactMap { $0.datetime.flatMap(STACItem.date) }, fallback: finished)
        if m.inputs.contains(where: { $0.datetime == nil }) { props = ["datetime": STACItem.iso(finished)] }
        props["created"] = STACItem.iso(finished)
        props["gsd"] = (m.cellAreaM2.squareRoot() * 1000).rounded() / 1000
        if let epsg = SpatialReference.epsg(wkt: m.crsWKT) { props["proj:epsg"] = epsg } else { props["proj:epsg"] = NSNull(); props["proj:wkt2"] = m.crsWKT }
        props["proj:shape"] = [m.height, m.width]
        props["proj:transform"] = [m.geoTransform[1], 0, m.geoTransform[0], 0, m.geoTransform[5], m.geoTransform[3]]
        props["dsmopt:process"] = "dsm-difference"
        props["dsmopt:inputs"] = m.inputs.map { ["role": $0.role, "file": $0.file, "sha256": $0.sha256] }
        props["dsmopt:volumes"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(m.volumes))
        props["dsmopt:shift"] = ["dx": m.coregistration.dx, "dy": m.coregistration.dy, "dz": m.coregistration.dz]
        return STACItem.feature(id: id, ring: footprint.polygon, bbox: footprint.bbox, properties: props,
                                products: m.products.map { ($0.code, $0.file, $0.description) })
    }
}
