import DSMCore
import Foundation
import GDALKit
import SensorIngest

/// An area of interest given on the ground.
public enum AreaOfInterest: Sendable, Equatable, Codable {
    /// min lon, min lat, max lon, max lat.
    case boundingBox(Double, Double, Double, Double)
    /// A polygon ring of (lon, lat).
    case polygon([[Double]])

    /// The area as a GeoJSON Polygon geometry (closed ring), text that `parse` reads back.
    public var geoJSONPolygon: String {
        let closed = ring + [ring[0]]
        return "{\"type\":\"Polygon\",\"coordinates\":[[" + closed.map { "[\($0[0]),\($0[1])]" }.joined(separator: ",") + "]]}"
    }

    /// The outline as (lon, lat) positions (a bounding box as its 4 corners).
    public var ring: [[Double]] {
        switch self {
        case .boundingBox(let a, let b, let c, let d): return [[a, b], [c, b], [c, d], [a, d]]
        case .polygon(let r): return r
        }
    }

    /// Why a position is not a longitude and latitude in degrees (GeoJSON's, RFC 7946: longitude within
    /// −180…180, latitude within −90…90), or nil. A position far outside the images' domain would be projected
    /// through the RPC's polynomials to columns and rows beyond any image (a vertex at 1e308° stopped a run).
    public static func problem(longitude: Double, latitude: Double) -> String? {
        guard longitude.isFinite, latitude.isFinite else { return "a position is not a number (\(longitude), \(latitude))" }
        guard (-180...180).contains(longitude) else { return "longitude \(longitude) outside −180…180" }
        guard (-90...90).contains(latitude) else { return "latitude \(latitude) outside −90…90" }
        return nil
    }

    /// Why the area is not one on the ground, or nil (every position's `problem`, then a bounding box's order).
    public var problem: String? {
        for p in ring { if let why = Self.problem(longitude: p[0], latitude: p[1]) { return why } }
        if case .boundingBox(let a, let b, let c, let d) = self, !(a < c && b < d) {
            return "bounding box must be minLon,minLat,maxLon,maxLat with min < max"
        }
        return nil
    }

    /// Parses "minLon,minLat,maxLon,maxLat" or GeoJSON text: a Polygon / Feature / FeatureCollection (first
    /// polygon). Text only: a file is read by the caller (`--aoi-file`), never guessed from the text.
    public static func parse(_ text: String) throws -> AreaOfInterest {
        let parts = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        if parts.count == 4, parts.allSatisfy({ $0 != nil }) {
            let v = parts.map { $0! }
            let box = AreaOfInterest.boundingBox(v[0], v[1], v[2], v[3])
            if let why = box.problem { throw PipelineError.invalidAOI(why) }
            return box
        }
        guard let json = try? JSONSerialization.jsonObject(with: Data(text.utf8)) else {
            throw PipelineError.invalidAOI("neither a lon/lat bounding box nor GeoJSON text")
        }
        func polygon(_ o: Any) -> [[Double]]? {
            guard let d = o as? [String: Any] else { return nil }
            if let g = d["geometry"] { return polygon(g) }
            if let fs = d["features"] as? [Any] { return fs.lazy.compactMap(polygon).first }
            if d["type"] as? String == "Polygon", let c = d["coordinates"] as? [[[Double]]], let ring = c.first { return ring }
            if d["type"] as? String == "MultiPolygon", let c = d["coordinates"] as? [[[[Double]]]], let ring = c.first?.first { return ring }
            return nil
        }
        guard let ring = polygon(json), ring.count >= 3, ring.allSatisfy({ $0.count >= 2 }) else {
            throw PipelineError.invalidAOI("GeoJSON holds no Polygon with at least 3 positions")
        }
        if let why = AreaOfInterest.polygon(ring).problem { throw PipelineError.invalidAOI(why) }
        return .polygon(ring)
    }

    /// In a job file: `{"bbox": [minLon, minLat, maxLon, maxLat]}` or a GeoJSON Polygon geometry.
    enum CodingKeys: String, CodingKey { case bbox, type, coordinates }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let b = try c.decodeIfPresent([Double].self, forKey: .bbox) {
            guard b.count == 4 else {
                throw DecodingError.dataCorruptedError(forKey: .bbox, in: c, debugDescription: "bbox must be [minLon, minLat, maxLon, maxLat] with min < max")
            }
            self = .boundingBox(b[0], b[1], b[2], b[3])
            if let why = problem { throw DecodingError.dataCorruptedError(forKey: .bbox, in: c, debugDescription: "bbox: \(why)") }
            return
        }
        guard try c.decode(String.self, forKey: .type) == "Polygon", let ring = try c.decode([[[Double]]].self, forKey: .coordinates).first,
              ring.count >= 3, ring.allSatisfy({ $0.count >= 2 }) else {
            throw DecodingError.dataCorruptedError(forKey: .coordinates, in: c, debugDescription: "expected a GeoJSON Polygon with at least 3 positions")
        }
        self = .polygon(ring)
        if let why = problem { throw DecodingError.dataCorruptedError(forKey: .coordinates, in: c, debugDescription: why) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .boundingBox(let a, let b, let cc, let d): try c.encode([a, b, cc, d], forKey: .bbox)
        case .polygon(let ring):
            try c.encode("Polygon", forKey: .type)
            try c.encode([ring], forKey: .coordinates)
        }
    }
}

public enum PipelineError: Error, Equatable, CustomStringConvertible {
    case invalidParameters([ParameterProblem])
    case invalidAOI(String)
    case aoiOutsideFootprint
    case invalidROI(String)
    case outputNotWritable(String, String)
    case noPairSelected(String)
    case nothingMatched(String)
    case workFolder(String, String)
    case nothingToResume(String)

    public var description: String {
        switch self {
        case .invalidParameters(let p): return "invalid parameters: " + p.map(\.description).joined(separator: "; ")
        case .invalidAOI(let r): return "invalid area of interest: \(r)"
        case .aoiOutsideFootprint: return "the area of interest lies outside the first image's footprint"
        case .invalidROI(let r): return "invalid region of interest: \(r)"
        case .outputNotWritable(let f, let r): return "\(f): output folder is not writable (\(r))"
        case .noPairSelected(let r): return "no stereo pair can be matched: \(r)"
        case .nothingMatched(let r): return "matching produced no point: \(r)"
        case .workFolder(let f, let r): return "\(f): \(r)"
        case .nothingToResume(let f): return "\(f): no interrupted run to resume here (no \(WorkFolder.name)/plan.json)"
        }
    }
}

/// Expert parameters given on top of a preset, by the table's keys (absent: keep the preset's).
public struct ParameterOverrides: Sendable, Equatable {
    public private(set) var values: [String: Double] = [:]
    public init() {}

    public subscript(key: String) -> Double? {
        get { values[key] }
        set { values[key] = newValue }
    }

    /// Unknown keys and values out of range, checked on the values as given (before any conversion).
    public func problems() -> [ParameterProblem] {
        values.sorted { $0.key < $1.key }.compactMap { key, v in
            guard let spec = MatchingParameters.spec(key) else {
                return ParameterProblem(field: key, value: ParameterSpec.number(v), expected: "an expert parameter (\(MatchingParameters.specs.map(\.key).joined(separator: ", ")))")
            }
            return spec.problem(v)
        }
    }

    public func applied(to p: MatchingParameters) -> MatchingParameters {
        var q = p
        for (k, v) in values { q[key: k] = v }
        return q
    }
}

public struct PipelineOptions: Sendable {
    public var images: [String]
    public var output: String
    public var preset = "default"
    public var overrides = ParameterOverrides()
    /// DSM cell size in metres; nil: resolution factor × the first image's GSD.
    public var resolution: Double?
    public var resolutionFactor: Double?
    /// Output CRS; nil: the UTM zone of the scene.
    public var epsg: Int?
    public var roi: PixelWindow?
    public var aoi: AreaOfInterest?
    public var orthoImages = true
    public var orthoMosaic = true
    public var pointCloud = false
    /// Water masking, coregistration, vertical datum.
    public var finishing = FinishingOptions()
    /// The finishing keys the job set itself (the preset's options apply to the others).
    public var finishingGiven: Set<String> = []
    /// Ground tile size, DSM cells (the unit of work: tiles run in parallel and are resumable); nil: the
    /// size whose footprint is about 1024 pixels of the first image (margins then cost ~13 %).
    public var tileSize: Int?
    public var presetFolder: String?
    /// Memory the run may use (peak RSS); bounds the tiles in flight and the matcher's strips.
    public var memoryBudget = MemoryBudget.machineDefault
    /// Cores to use (default: all).
    public var cores = ProcessInfo.processInfo.activeProcessorCount

    public init(images: [String], output: String) {
        self.images = images
        self.output = output
    }
}

/// A progress event: stage name, overall completion in [0, 1], and a message.
public struct ProgressEvent: Sendable {
    public var stage: String
    public var fraction: Double
    public var message: String
}

/// Parameters of a run once every default, preset and override is applied (written as parameters.json).
public struct ResolvedParameters: Sendable, Codable, Equatable {
    public var preset: String
    public var matching: MatchingParameters
    public var resolution: Double
    public var resolutionFactor: Double?
    public var epsg: Int
    public var roi: PixelWindow
    public var pairs: [[Int]]
    public var heightRange: [Double]
    public var verticalReference: String
    /// The delivered DSM's denoising, from the resolution, GSD and widest B/H (nil in runs before it).
    public var denoising: DSMFilter.Denoising? = nil
    /// Set when the widest selected pair has B/H below `Denoising.weakBaseToHeight`: what was adapted.
    public var weakGeometry: String? = nil
    /// Per selected pair, the regularisation and large-jump ratio it is matched with: `matching`'s adapted to
    /// the pair's matching cost (`AdaptiveRegularisation`; the cost is in the manifest's `pointing`). Nil in
    /// runs before it.
    public var regularisationByPair: [Double]? = nil
    public var jumpPenaltyRatioByPair: [Double]? = nil
}

/// `dsmopt run`: pair selection → epipolar resampling → matching → triangulation → rasterisation →
/// fusion → filtering → products. Products are written into a staging folder inside the output folder
/// and moved into place only when everything succeeded.
public struct DSMPipelineRunner: Sendable {
    public var options: PipelineOptions
    public var progress: @Sendable (ProgressEvent) -> Void

    public init(options: PipelineOptions, progress: @escaping @Sendable (ProgressEvent) -> Void = { _ in }) {
        self.options = options
        self.progress = progress
    }

    /// Checks everything that can be checked before heavy work: parameters, preset, output folder,
    /// images and their overlap, AOI/ROI.
    public func prepare() throws -> Prepared {
        let library = try PresetLibrary(folder: options.presetFolder ?? PresetLibrary.defaultFolder())
        let preset = try library.preset(options.preset)
        let matching = options.overrides.applied(to: preset.parameters)
        var problems = options.overrides.problems()
        if problems.isEmpty { problems = matching.validate() }
        var finishing = options.finishing
        for (key, value) in preset.options where !options.finishingGiven.contains(key) { finishing.apply(key, value) }
        problems += finishing.problems
        for (key, value) in [("resolution", options.resolution), ("resolution-factor", options.resolutionFactor), ("epsg", options.epsg.map(Double.init))] {
            if let v = value, let p = JobParameterTable.spec(key)?.problem(v) { problems.append(p) }
        }
        if let t = options.tileSize, !(64...4096).contains(t) {
            problems.append(ParameterProblem(field: "tile-size", value: "\(t)", expected: "64–4096 cells"))
        }
        if options.memoryBudget.bytes < MemoryBudget.baseBytes + (64 << 20) {
            problems.append(ParameterProblem(field: "max-memory", value: "\(options.memoryBudget.bytes >> 20) MiB",
                                             expected: "at least \((MemoryBudget.baseBytes >> 20) + 64) MiB"))
        }
        if !problems.isEmpty { throw PipelineError.invalidParameters(problems) }
        try checkWritable(options.output)
        if let epsg = options.epsg {
            _ = try CoordinateTransform(fromEPSG: 4326, toEPSG: epsg)
            if let why = OutputCRS.problem(epsg: epsg) {
                throw PipelineError.invalidParameters([ParameterProblem(field: "epsg", value: "\(epsg)", expected: "a projected CRS in metres: \(why)")])
            }
        }

        progress(.init(stage: "inspect", fraction: 0, message: "reading \(options.images.count) images"))
        let paths = try ProductDiscovery.expand(options.images)
        guard (2...3).contains(paths.count) else { throw InspectionError.wrongImageCount(paths.count, paths) }
        let images = try paths.map { try SensorImage.open($0) }
        let report = try StereoInspector().inspect(images)
        guard !report.selected.isEmpty else { throw PipelineError.noPairSelected(report.reason) }
        let scene = report.sceneHeight
        let margin = max(20, matching.zUncertainty * (scene.high - scene.low))
        let heights = (scene.low - margin)...(scene.high + margin)

        let first = images[0]
        var roi = PixelWindow(x: 0, y: 0, width: first.width, height: first.height)
        if let r = options.roi {
            guard r.isInside(imageWidth: first.width, imageHeight: first.height) else {
                throw PipelineError.invalidROI("\(r.x) \(r.y) \(r.width) \(r.height) is not inside the \(first.width)×\(first.height) first image")
            }
            roi = r
        } else if let aoi = options.aoi {
            roi = try Self.window(of: aoi, in: first, heights: [scene.low, scene.median, scene.high])
        }
        let gsd = report.images[0].gsd
        let factor = options.resolutionFactor ?? preset.resolutionFactor
        let resolution = options.resolution ?? Self.cleanResolution(factor * gsd)
        // The resolution factor's minimum, as its clean value gives it (0.5 × 0.506 m: 0.25 m).
        let finest = min(JobParameterTable.finestResolutionFactor * gsd, Self.cleanResolution(JobParameterTable.finestResolutionFactor * gsd))
        if resolution < finest * 0.999 {
            throw PipelineError.invalidParameters([ParameterProblem(
                field: "resolution", value: ParameterSpec.number(resolution),
                expected: String(format: "at least %@ × the first image's GSD (%.3f m), %.2f m: finer cells hold no more heights",
                                 ParameterSpec.number(JobParameterTable.finestResolutionFactor), gsd, finest))])
        }
        // Output grid: the ROI's ground footprint at the scene's heights, in the output CRS.
        var lon: [Double] = [], lat: [Double] = []
        for h in [scene.low, scene.high] {
            for (c, r) in [(roi.x, roi.y), (roi.x + roi.width - 1, roi.y), (roi.x, roi.y + roi.height - 1),
                           (roi.x + roi.width - 1, roi.y + roi.height - 1)] {
                let g = try first.model.localize(column: Double(c), row: Double(r), height: h)
                lon.append(g.longitude); lat.append(g.latitude)
            }
        }
        let centreLon = lon.reduce(0, +) / Double(lon.count), centreLat = lat.reduce(0, +) / Double(lat.count)
        let epsg = options.epsg ?? CoordinateTransform.utmEPSG(longitude: centreLon, latitude: centreLat)
        let toGrid = try CoordinateTransform(fromEPSG: 4326, toEPSG: epsg)
        var xs = lon, ys = lat
        toGrid.transform(x: &xs, y: &ys)
        let grid = GridDefinition(epsg: epsg, minX: xs.min()!, minY: ys.min()!, maxX: xs.max()!, maxY: ys.max()!, resolution: resolution)
        // The finishing steps' files, over the run's area, before any matching.
        let ground = (minLon: lon.min()!, minLat: lat.min()!, maxLon: lon.max()!, maxLat: lat.max()!)
        if finishing.coregister, let ref = finishing.referenceDEM {
            try FinishingInputCheck.reference(ref, area: ground, trusted: finishing.referenceTrusted)
        }
        if finishing.maskWater, let mask = finishing.waterMask { try FinishingInputCheck.waterMask(mask, area: ground) }
        let widest = report.selected.compactMap { pair in report.pairs.first { $0.images == pair }?.baseToHeight }.max() ?? 1
        let denoising = DSMFilter.Denoising.forScene(resolution: resolution, gsd: gsd, baseToHeight: widest)
        let weak = widest < DSMFilter.Denoising.weakBaseToHeight
            ? String(format: "widest pair B/H %.3f < %.2f: the DSM's denoising σ is ×%.2f (%.1f cells) and its range %.1f m; expect more height noise than at B/H ≥ 0.2, and relief narrower than about 2σ smoothed",
                     widest, DSMFilter.Denoising.weakBaseToHeight, DSMFilter.Denoising.weakGeometryFactor(widest), denoising.sigma, denoising.range)
            : nil
        let resolved = ResolvedParameters(preset: preset.name, matching: matching, resolution: resolution,
                                          resolutionFactor: options.resolution == nil ? factor : nil, epsg: epsg, roi: roi,
                                          pairs: report.selected, heightRange: [heights.lowerBound, heights.upperBound],
                                          verticalReference: "heights in metres above the WGS84 ellipsoid",
                                          denoising: denoising, weakGeometry: weak)
        return Prepared(images: images, inspection: report, parameters: resolved, grid: grid, heights: heights, finishing: finishing)
    }

    /// A default cell size others can overlay: factor × GSD rounded to a clean step (0.05 m below 1 m,
    /// 0.1 m below 10 m, 1 m beyond), so that 2 × Pléiades' 0.506 m gives 1.0 m, not 1.01 m. The grid's
    /// origin is a multiple of the cell size (`GridDefinition`).
    public static func cleanResolution(_ r: Double) -> Double {
        let step = r < 1 ? 0.05 : r < 10 ? 0.1 : 1
        let v = max(1, (r / step).rounded()) * step
        return (v * 1e6).rounded() / 1e6
    }

    public struct Prepared: Sendable {
        public var images: [SensorImage]
        public var inspection: InspectionReport
        public var parameters: ResolvedParameters
        public var grid: GridDefinition
        public var heights: ClosedRange<Double>
        /// The job's finishing options with its preset's.
        public var finishing: FinishingOptions
    }

    func checkWritable(_ folder: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder, isDirectory: &isDir) {
            guard isDir.boolValue else { throw PipelineError.outputNotWritable(folder, "a file, not a folder") }
        } else {
            do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
                throw PipelineError.outputNotWritable(folder, "cannot be created")
            }
        }
        let probe = (folder as NSString).appendingPathComponent(".dsmopt-write-test-\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: probe, contents: Data("x".utf8)) else {
            throw PipelineError.outputNotWritable(folder, "cannot create files in it")
        }
        try? FileManager.default.removeItem(atPath: probe)
    }

    /// The first image's pixel window that covers an AOI, at the heights of its RPC model's domain (what
    /// can be checked before the scene heights are known); nil when the AOI misses the image.
    public static func roughWindow(of aoi: AreaOfInterest, in image: SensorImage) -> PixelWindow? {
        let h = image.model.heightNorm
        return try? window(of: aoi, in: image, heights: [h.offset - h.scale, h.offset, h.offset + h.scale])
    }

    /// The first image's pixel window that covers an AOI (projected at several heights), clipped to the image.
    static func window(of aoi: AreaOfInterest, in image: SensorImage, heights: [Double]) throws -> PixelWindow {
        var cs: [Double] = [], rs: [Double] = []
        for p in aoi.ring {
            for h in heights {
                let q = image.model.project(longitude: p[0], latitude: p[1], height: h)
                cs.append(q.column); rs.append(q.row)
            }
        }
        guard let w = Self.clippedWindow(columns: cs, rows: rs, in: image), w.width > 16, w.height > 16 else {
            throw PipelineError.aoiOutsideFootprint
        }
        return w
    }

    /// The pixel window bounding projected points, clipped to the image; nil when nothing is left, or when a
    /// point has no finite projection (the RPC's polynomials far outside their domain).
    public static func clippedWindow(columns cs: [Double], rows rs: [Double], in image: SensorImage) -> PixelWindow? {
        // Every point checked: min() and max() pass over a NaN.
        guard cs.allSatisfy(\.isFinite), rs.allSatisfy(\.isFinite),
              let c0 = cs.min(), let c1 = cs.max(), let r0 = rs.min(), let r1 = rs.max() else { return nil }
        // Clipped as numbers first: a projection beyond Int's range must not be converted.
        let x0 = max(0, c0.rounded(.down)), y0 = max(0, r0.rounded(.down))
        let x1 = min(Double(image.width - 1), c1.rounded(.up)), y1 = min(Double(image.height - 1), r1.rounded(.up))
        guard x1 >= x0, y1 >= y0 else { return nil }
        return PixelWindow(x: Int(x0), y: Int(y0), width: Int(x1 - x0) + 1, height: Int(y1 - y0) + 1)
    }

    /// The window of image `k` that sees the ground of the first image's ROI.
    func window(of roi: PixelWindow, from first: SensorImage, to other: SensorImage, heights: ClosedRange<Double>) throws -> PixelWindow {
        var cs: [Double] = [], rs: [Double] = []
        for (c, r) in [(roi.x, roi.y), (roi.x + roi.width - 1, roi.y), (roi.x, roi.y + roi.height - 1), (roi.x + roi.width - 1, roi.y + roi.height - 1)] {
            for h in [heights.lowerBound, heights.upperBound] {
                let g = try first.model.localize(column: Double(c), row: Double(r), height: h)
                let q = other.model.project(longitude: g.longitude, latitude: g.latitude, height: h)
                cs.append(q.column); rs.append(q.row)
            }
        }
        guard let w = Self.clippedWindow(columns: cs, rows: rs, in: other), w.width > 1, w.height > 1 else {
            throw PipelineError.aoiOutsideFootprint
        }
        return w
    }

    /// The whole-scene first pass and the tiling: per pair the region of its reference image and its
    /// relative pointing correction (sparse matching in sample windows), the ground tiles, and how many
    /// tiles fit the memory budget at once.
    func plan(_ prepared: Prepared) throws -> RunPlan {
        var p = prepared.parameters
        let incidences = prepared.inspection.images.map(\.incidenceDeg)
        progress(.init(stage: "orient", fraction: 0.02, message: "relative orientation of the images from tie points"))
        var orientation: OrientationAdjustment?, orientationNote: String?
        do {
            orientation = try OrientationPass.run(images: prepared.images, pairs: p.pairs, incidences: incidences, hubRegion: { hub in
                hub == 0 ? p.roi : try self.window(of: p.roi, from: prepared.images[0], to: prepared.images[hub], heights: prepared.heights)
            }, heights: prepared.heights)
            let o = orientation!
            progress(.init(stage: "orient", fraction: 0.03, message: String(format: "relative orientation: %d tie points (%d in 3+ images, %d rejected), residual RMS %.3f → %.3f px; biases ", o.tiePoints, o.multiViewTiePoints, o.rejected, o.rmsBeforePx, o.rmsAfterPx)
                + o.biases.enumerated().map { String(format: "image %d (%+.2f, %+.2f) px", $0.offset + 1, $0.element.column, $0.element.row) }.joined(separator: ", ")))
        } catch let e as OrientationError {
            orientationNote = "not corrected: \(e)"
            progress(.init(stage: "orient", fraction: 0.03, message: "relative orientation \(orientationNote!)"))
        }
        let images = prepared.images.oriented(by: orientation)
        var regions: [PixelWindow] = [], pointing: [PairPointing] = []
        for (n, pair) in p.pairs.enumerated() {
            let a = images[pair[0]], b = images[pair[1]]
            let region = pair[0] == 0 ? p.roi : try window(of: p.roi, from: images[0], to: a, heights: prepared.heights)
            regions.append(region)
            progress(.init(stage: "orient", fraction: 0.03 + 0.02 * Double(n) / Double(p.pairs.count),
                           message: "pair \(pair): measuring the relative pointing over the scene"))
            let rectification = PairRectification(first: a, second: b)
            let m = try rectification.measurePointing(over: region, heights: prepared.heights)
            var pp = PairPointing(pair: pair, correctionPx: m.correction, samples: m.samples)
            let noise = try MatchingNoise.measure(rectification, region: region, heights: prepared.heights,
                                                  pointingCorrection: m.correction, parameters: p.matching)
            pp.matchingCost = noise?.cost
            pp.matchingCostSamples = noise?.matches
            let adapted = noise.map { AdaptiveRegularisation.adapted(p.matching, typicalCost: $0.cost) } ?? p.matching
            pp.regularisation = adapted.regularisation
            pp.jumpPenaltyRatio = adapted.jumpPenaltyRatio
            pointing.append(pp)
            progress(.init(stage: "orient", fraction: 0.03 + 0.02 * Double(n + 1) / Double(p.pairs.count),
                           message: "pair \(pair): row correction \(String(format: "%+.3f", m.correction)) px from \(m.samples.filter { $0.matches >= 10 }.count)/\(m.samples.count) sample windows; "
                            + (noise.map { String(format: "matching cost %.4f (%d matches): regularisation %.4g, jump-penalty ratio %.3g", $0.cost, $0.matches, adapted.regularisation, adapted.jumpPenaltyRatio) }
                               ?? "too few matches to measure the matching cost: regularisation as set")))
        }
        p.regularisationByPair = pointing.map { $0.regularisation ?? p.matching.regularisation }
        p.jumpPenaltyRatioByPair = pointing.map { $0.jumpPenaltyRatio ?? p.matching.jumpPenaltyRatio }
        let bhs = p.pairs.map { pair in prepared.inspection.pairs.first { $0.images == pair }?.baseToHeight ?? 1 }
        // Labels of the widest search: height span × parallax per metre (B/H / GSD) / precision.
        let span = prepared.heights.upperBound - prepared.heights.lowerBound
        let labels = p.pairs.indices.map { k -> Int in
            let gsd = prepared.inspection.images[p.pairs[k][0]].gsd
            return Int((span * bhs[k] / max(gsd, 0.01) / p.matching.precision).rounded(.up)) + 8
        }.max() ?? 64
        let pixelsPerCell = p.resolution / max(prepared.inspection.images[0].gsd, 0.01)
        let tileSize = options.tileSize ?? max(128, min(4096, Int((1024 / pixelsPerCell).rounded())))
        let tiles = TilePlan(grid: prepared.grid, tileSize: tileSize)
        let epipolar = min(512, Int(Double(tileSize) * pixelsPerCell) + 64)
        let workload = TileWorkload.plan(budget: options.memoryBudget, cores: options.cores, epipolarWidth: max(epipolar, 128),
                                         labels: labels, tileCells: tiles.largestTile.width * tiles.largestTile.height, pairs: p.pairs.count)
        // Holes up to 100 m² are filled: on the La Réunion pair (0.5 m) against S2P, filling up to 25 m²
        // left completeness at 0.960 once speckles are removed, 100 m² gives 0.978 with RMSE 0.59 m,
        // 400 m² 0.992 but RMSE 0.66 m and twice the cells off by more than 5 m. A hole within that size
        // whose rim holds a tall step stays open (FuseTask, `DSMFilter.fillSmallHoles`' rim departure).
        let maxHole = max(4, Int((100 / (p.resolution * p.resolution)).rounded()))
        // Islands under 50 m² are removed (see `DSMFilter.removeIslands`). Measured 2026-11-24 (0.5 m):
        // the whole La Réunion pair's 144 cells off by > 20 m from CARS (one island, outside S2P's
        // footprint) → 0, its figures against S2P unchanged; 100 m² also took roof fragments and ground
        // CARS agrees with (of 1,065 cells removed, 490 within 1 m of CARS; at 50 m² 177 of 486).
        let maxIsland = max(1, Int((50 / (p.resolution * p.resolution)).rounded()))
        let denoising = p.denoising ?? DSMFilter.Denoising.forScene(resolution: p.resolution, gsd: prepared.inspection.images[0].gsd,
                                                                    baseToHeight: bhs.max() ?? 1)
        return RunPlan(images: images.map { URL(fileURLWithPath: $0.path).standardizedFileURL.path }, parameters: p, tiles: tiles,
                       heights: [prepared.heights.lowerBound, prepared.heights.upperBound], baseToHeight: bhs,
                       incidences: incidences,
                       roles: ViewRoles.roles(incidences: incidences,
                                              azimuths: prepared.inspection.images.map(\.azimuthDeg),
                                              times: prepared.inspection.images.map(\.acquisitionTime)),
                       pairRegions: regions, pointing: pointing, orientation: orientation, orientationNote: orientationNote,
                       workload: workload, memoryBudget: options.memoryBudget, gsd: prepared.inspection.images[0].gsd, filterMargin: min(maxHole, 64) + max(8, 3 + denoising.radius),
                       maxHoleCells: maxHole, maxIslandCells: maxIsland, orthoImages: options.orthoImages, orthoMosaic: options.orthoMosaic,
                       pointCloud: options.pointCloud, finishing: prepared.finishing,
                       inputs: try Provenance.inputs(images: images, reports: prepared.inspection.images, finishing: prepared.finishing))
    }

    /// Runs everything (or, with `resume`, what an interrupted run left undone) and returns the manifest.
    /// Finished tiles are kept in the output folder's work folder until the products are in place.
    @discardableResult
    public func run(resume: Bool = false) throws -> Manifest {
        let started = Date(), clock = ContinuousClock.now
        let (plan, images, work) = try planned(resume: resume)
        try runStage(.match, plan: plan, work: work, range: (0.05, 0.75), MatchTask(plan: plan, images: images, work: work).run)
        let offsets = try pairOffsets(plan: plan, work: work)
        try runStage(.fuse, plan: plan, work: work, range: (0.75, 0.85), FuseTask(plan: plan, offsets: offsets, work: work).run)
        try checkMatched(plan: plan, work: work)
        if plan.orthoImages || plan.orthoMosaic {
            try runStage(.ortho, plan: plan, work: work, range: (0.85, 0.92), OrthoTask(plan: plan, images: images, work: work).run)
        }
        let elapsed = ContinuousClock.now - clock
        return try assemble(plan: plan, images: images, work: work, offsets: offsets, started: started,
                            wallSeconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18,
                            cpuSeconds: ProcessUsage.cpuSeconds())
    }

    /// One step of a run whose tiles are spread over several processes or machines (the job service's
    /// tile tasks): each step is run by its own process on the shared work folder, in this order —
    /// `.plan` once, `.tiles(.match, …)` for every tile, `.offsets` once (triplets), `.tiles(.fuse, …)`,
    /// `.tiles(.ortho, …)` (when orthos are asked for), `.assemble` once. Tile files appear once, complete
    /// (the first complete write of a tile wins; a later one, e.g. by a worker that lost its lease, is
    /// dropped), so a step run twice changes nothing.
    public enum Step: Sendable, Equatable {
        case plan
        case tiles(TileStage, [Int])
        case offsets
        case assemble
    }

    /// Runs one step (see `Step`); `.assemble` returns the manifest. CPU seconds of every step are kept in
    /// the work folder so that the manifest's provenance counts the whole run's.
    @discardableResult
    public func run(step: Step) throws -> Manifest? {
        let work = WorkFolder(output: options.output)
        defer { if step != .assemble { try? work.recordCPU(step: step, seconds: ProcessUsage.cpuSeconds()) } }
        if step == .plan {
            let started = Date()
            _ = try planned(resume: false)
            try work.writeJSON(StepStart(started: ISO8601DateFormatter().string(from: started)), to: work.path("started.json"))
            return nil
        }
        let (plan, images, _) = try planned(resume: true)
        switch step {
        case .plan: return nil
        case .tiles(let stage, let indices):
            let all = plan.tiles.tiles
            if let bad = indices.first(where: { !all.indices.contains($0) }) {
                throw PipelineError.workFolder(work.planPath, "has \(all.count) tiles; there is no tile \(bad)")
            }
            let chosen = indices.map { all[$0] }
            switch stage {
            case .match: try runStage(.match, plan: plan, work: work, range: (0.05, 0.75), only: chosen, MatchTask(plan: plan, images: images, work: work).run)
            case .fuse:
                let offsets = plan.pairs.count > 1 ? try work.readJSON(PairOffsets.self, from: work.path("offsets.json")) : nil
                if plan.pairs.count > 1 && offsets == nil { throw PipelineError.workFolder(work.path("offsets.json"), "missing: the offsets step runs before fusion") }
                try runStage(.fuse, plan: plan, work: work, range: (0.75, 0.85), only: chosen, FuseTask(plan: plan, offsets: offsets, work: work).run)
            case .ortho: try runStage(.ortho, plan: plan, work: work, range: (0.85, 0.92), only: chosen, OrthoTask(plan: plan, images: images, work: work).run)
            }
            return nil
        case .offsets:
            _ = try pairOffsets(plan: plan, work: work)
            return nil
        case .assemble:
            let offsets = plan.pairs.count > 1 ? try work.readJSON(PairOffsets.self, from: work.path("offsets.json")) : nil
            let record: StepStart? = try? work.readJSON(StepStart.self, from: work.path("started.json"))
            let started = record.flatMap { ISO8601DateFormatter().date(from: $0.started) } ?? Date()
            let cpu = work.recordedCPU() + ProcessUsage.cpuSeconds()
            return try assemble(plan: plan, images: images, work: work, offsets: offsets, started: started,
                                wallSeconds: Date().timeIntervalSince(started), cpuSeconds: cpu)
        }
    }

    struct StepStart: Codable { var started: String }

    /// The run's plan and oriented images: planned now (the whole-scene first pass; any earlier work
    /// folder is removed) or, resuming, read back from the work folder.
    func planned(resume: Bool) throws -> (RunPlan, [SensorImage], WorkFolder) {
        let work = WorkFolder(output: options.output)
        GDAL.setCacheMax(bytes: MemoryBudget.gdalCacheBytes)
        let plan: RunPlan
        let images: [SensorImage]
        if resume {
            // A plan of another format is refused before it is decoded (its fields may differ); without a plan, or
            // with one that is not JSON, the plan's own reading says which.
            if let format = work.planFormat, format != RunPlan.formatVersion {
                throw PipelineError.workFolder(work.planPath, "was written by another version of dsmopt (another plan format): run again without --resume")
            }
            guard let p = try work.readJSON(RunPlan.self, from: work.planPath) else { throw PipelineError.nothingToResume(options.output) }
            plan = p
            progress(.init(stage: "inspect", fraction: 0, message: "resuming: reading \(p.images.count) images"))
            // Images whose files are as they were when the run was planned were read whole then: their pixels
            // are not read again here (a tile task at 16384² spent a third of its CPU on it).
            images = try p.images.enumerated().map { k, path in
                try SensorImage.open(path, probe: !Provenance.unchanged(image: k, path: path, recorded: p.inputs))
            }.oriented(by: p.orientation)
        } else {
            let prepared = try prepare()
            try? FileManager.default.removeItem(atPath: work.root)
            plan = try self.plan(prepared)
            images = prepared.images.oriented(by: plan.orientation)
        }
        try work.create()
        if !resume { try work.writeJSON(plan, to: work.planPath) }
        let t = plan.tiles
        progress(.init(stage: "plan", fraction: 0.05,
                       message: "\(t.rows * t.columns) tiles of \(t.largestTile.width)×\(t.largestTile.height) cells (\(t.grid.width)×\(t.grid.height) cells at \(plan.parameters.resolution) m), \(plan.workload.concurrency) at a time, budget \(plan.memoryBudget.bytes >> 20) MiB"))
        return (plan, images, work)
    }

    /// Triplets: each pair's vertical offset to the reference pair, measured once over the whole scene
    /// from the match tiles (kept in the work folder); nil for a pair.
    func pairOffsets(plan: RunPlan, work: WorkFolder) throws -> PairOffsets? {
        guard plan.pairs.count > 1 else { return nil }
        let path = work.path("offsets.json")
        let offsets: PairOffsets
        if let o = try work.readJSON(PairOffsets.self, from: path) { offsets = o } else {
            let o = try OffsetPass.run(plan: plan, work: work)
            try WorkFolder.writeOnce(try WorkFolder.jsonData(o), to: path)
            offsets = try work.readJSON(PairOffsets.self, from: path) ?? o
        }
        let text = zip(plan.pairs, offsets.offsets).map { "\($0.0): \($0.1.map { String(format: "%+.2f m", $0) } ?? "n/a")" }.joined(separator: ", ")
        progress(.init(stage: "fuse", fraction: 0.75, message: "vertical offsets removed before fusion (reference pair \(plan.pairs[offsets.reference])): \(text)"))
        return offsets
    }

    /// The products from the finished tiles: written into the staging folder, then moved into place.
    func assemble(plan: RunPlan, images: [SensorImage], work: WorkFolder, offsets: PairOffsets?, started: Date,
                  wallSeconds: Double, cpuSeconds: Double) throws -> Manifest {
        let t = plan.tiles
        // Leftovers of an interrupted assembly are never products.
        try? FileManager.default.removeItem(atPath: work.stagingPath)
        try? FileManager.default.removeItem(atPath: work.assemblyPath)
        try checkMatched(plan: plan, work: work)
        let writerWKT = try SpatialReference.wkt(epsg: plan.grid.epsg)
        var manifest = Manifest(parameters: plan.parameters, grid: plan.grid, crsWKT: writerWKT)
        manifest.pairOffsets = plan.pairs.indices.map {
            PairOffset(pair: plan.pairs[$0], verticalOffsetM: offsets?.offsets[$0].map(Double.init) ?? (plan.pairs.count == 1 ? 0 : nil),
                       baseToHeight: plan.baseToHeight[$0])
        }
        manifest.pointing = plan.pointing
        manifest.orientation = plan.orientation
        manifest.orientationNote = plan.orientationNote
        manifest.tiling = .init(tileSizeCells: t.tileSize, tiles: t.rows * t.columns, rows: t.rows, columns: t.columns,
                                concurrentTiles: plan.workload.concurrency, matcherThreadsPerTile: plan.workload.matcherThreads,
                                stripRows: plan.workload.stripRows, memoryBudgetBytes: plan.memoryBudget.bytes,
                                estimatedBytesPerTile: plan.workload.bytesPerTile)
        progress(.init(stage: "products", fraction: 0.92, message: "assembling the products from \(t.rows * t.columns) tiles"))
        var assembly = ProductAssembly(plan: plan, images: images, work: work, staging: work.stagingPath, wkt: writerWKT) { m, f in
            progress(.init(stage: "products", fraction: f, message: m))
        }
        if let toGeo = try? CoordinateTransform(fromEPSG: plan.grid.epsg, toEPSG: 4326) {
            let g = plan.grid
            var xs = [g.originX, g.originX + Double(g.width) * g.resolution, g.originX, g.originX + Double(g.width) * g.resolution]
            var ys = [g.originY, g.originY, g.originY - Double(g.height) * g.resolution, g.originY - Double(g.height) * g.resolution]
            if toGeo.transform(x: &xs, y: &ys).allSatisfy({ $0 }) { assembly.area = (xs.min()!, ys.min()!, xs.max()!, ys.max()!) }
        }
        do {
            try assembly.run(manifest: &manifest)
            try work.writeJSON(plan.parameters, to: (work.stagingPath as NSString).appendingPathComponent("parameters.json"))
            manifest.products.append(.init(code: "-", file: "parameters.json", description: "fully resolved parameters of the run", units: "-"))
            manifest.provenance = Provenance(software: .current(), inputs: plan.inputs ?? [],
                                             started: ISO8601DateFormatter().string(from: started), finished: ISO8601DateFormatter().string(from: Date()),
                                             wallSeconds: (wallSeconds * 1000).rounded() / 1000,
                                             cpuSeconds: (cpuSeconds * 1000).rounded() / 1000)
            try work.writeJSON(manifest, to: (work.stagingPath as NSString).appendingPathComponent("manifest.json"))
            // The folder's STAC item (named after the folder; the service's catalogue names it after the job).
            try STACItem.write(try STACItem.item(id: URL(fileURLWithPath: options.output).standardizedFileURL.lastPathComponent, manifest: manifest),
                               to: (work.stagingPath as NSString).appendingPathComponent("item.json"))
            // Move the finished products into place, replacing older ones of the same name.
            for file in try FileManager.default.contentsOfDirectory(atPath: work.stagingPath) where !file.hasPrefix(".") {
                let dst = (options.output as NSString).appendingPathComponent(file)
                try? FileManager.default.removeItem(atPath: dst)
                try FileManager.default.moveItem(atPath: (work.stagingPath as NSString).appendingPathComponent(file), toPath: dst)
            }
        } catch {
            // Keep the finished tiles for --resume; never leave half-assembled products.
            try? FileManager.default.removeItem(atPath: work.stagingPath)
            try? FileManager.default.removeItem(atPath: work.assemblyPath)
            throw error
        }
        try? FileManager.default.removeItem(atPath: work.root)
        progress(.init(stage: "done", fraction: 1, message: "products in \(options.output)"))
        return manifest
    }

    /// Runs one stage over the tiles it has not finished yet, in parallel within the memory budget.
    func runStage(_ stage: TileStage, plan: RunPlan, work: WorkFolder, range: (Double, Double), only: [GroundTile]? = nil,
                  _ body: @escaping @Sendable (GroundTile) throws -> Void) throws {
        let all = only ?? plan.tiles.tiles
        let todo = all.filter { !work.isDone(stage, $0) }
        let already = all.count - todo.count
        if already > 0 {
            progress(.init(stage: stage.rawValue, fraction: range.0 + (range.1 - range.0) * Double(already) / Double(all.count),
                           message: "\(already)/\(all.count) tiles already done"))
        }
        // Each stage runs as many tiles at once as its per-tile memory allows within the budget.
        let (tw, th) = plan.tiles.largestTile
        let concurrency: Int
        switch stage {
        case .match: concurrency = plan.workload.concurrency
        case .fuse:
            let ext = (tw + 2 * plan.fuseMargin) * (th + 2 * plan.fuseMargin)
            concurrency = TileWorkload.concurrency(budget: plan.memoryBudget, cores: options.cores,
                                                   bytes: TileWorkload.fuseBytes(extendedCells: ext, pairs: plan.pairs.count,
                                                                                   bandsPerPair: plan.matchBandsPerPair))
        case .ortho:
            let ext = (tw + 2 * plan.orthoMargin) * (th + 2 * plan.orthoMargin)
            let ppc = plan.parameters.resolution / max(0.01, plan.gsd)
            concurrency = TileWorkload.concurrency(budget: plan.memoryBudget, cores: options.cores,
                                                   bytes: TileWorkload.orthoBytes(extendedCells: ext, images: plan.images.count, pixelsPerCell: ppc))
        }
        let progress = self.progress
        let executor = TileExecutor(concurrency: concurrency) { done, total, eta in
            let d = already + done, n = all.count
            let etaText = eta.map { $0 > 0 ? ", ETA \(Self.duration($0))" : "" } ?? ""
            progress(.init(stage: stage.rawValue, fraction: range.0 + (range.1 - range.0) * Double(d) / Double(n),
                           message: "tile \(d)/\(n)\(etaText)"))
        }
        try executor.run(todo, body)
    }

    public static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t / 60 % 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }

    /// A run where no tile matched anything is a failure, not an empty DSM.
    func checkMatched(plan: RunPlan, work: WorkFolder) throws {
        for t in plan.tiles.tiles {
            let r = try work.read(.fuse, t)
            if r.bands[0].contains(where: { !$0.isNaN }) { return }
        }
        throw PipelineError.nothingMatched("no pixel of the selected pairs correlated above the decorrelation threshold")
    }
}
