import DSMCore
import Foundation
import GDALKit
import SensorIngest

/// An area of interest given on the ground.
public enum AreaOfInterest: Sendable, Equatable {
    /// min lon, min lat, max lon, max lat.
    case boundingBox(Double, Double, Double, Double)
    /// A polygon ring of (lon, lat).
    case polygon([[Double]])

    var ring: [[Double]] {
        switch self {
        case .boundingBox(let a, let b, let c, let d): return [[a, b], [c, b], [c, d], [a, d]]
        case .polygon(let r): return r
        }
    }

    /// Parses "minLon,minLat,maxLon,maxLat" or a GeoJSON Polygon / Feature / FeatureCollection (first polygon).
    public static func parse(_ text: String) throws -> AreaOfInterest {
        let parts = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        if parts.count == 4, parts.allSatisfy({ $0 != nil }) {
            let v = parts.map { $0! }
            guard v[0] < v[2], v[1] < v[3] else { throw PipelineError.invalidAOI("bounding box must be minLon,minLat,maxLon,maxLat with min < max") }
            return .boundingBox(v[0], v[1], v[2], v[3])
        }
        var data = Data(text.utf8)
        if FileManager.default.fileExists(atPath: text), let d = FileManager.default.contents(atPath: text) { data = d }
        guard let json = try? JSONSerialization.jsonObject(with: data) else {
            throw PipelineError.invalidAOI("neither a lon/lat bounding box nor GeoJSON (text or file)")
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
        return .polygon(ring)
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

    public var description: String {
        switch self {
        case .invalidParameters(let p): return "invalid parameters: " + p.map(\.description).joined(separator: "; ")
        case .invalidAOI(let r): return "invalid area of interest: \(r)"
        case .aoiOutsideFootprint: return "the area of interest lies outside the first image's footprint"
        case .invalidROI(let r): return "invalid region of interest: \(r)"
        case .outputNotWritable(let f, let r): return "\(f): output folder is not writable (\(r))"
        case .noPairSelected(let r): return "no stereo pair can be matched: \(r)"
        case .nothingMatched(let r): return "matching produced no point: \(r)"
        }
    }
}

/// Expert parameters given on top of a preset (nil: keep the preset's).
public struct ParameterOverrides: Sendable, Equatable {
    public var window: Int?
    public var regularisation: Double?
    public var zUncertainty: Double?
    public var precision: Double?
    public var decorrelationThreshold: Double?
    public init() {}

    public func applied(to p: MatchingParameters) -> MatchingParameters {
        var q = p
        if let window { q.window = window }
        if let regularisation { q.regularisation = regularisation }
        if let zUncertainty { q.zUncertainty = zUncertainty }
        if let precision { q.precision = precision }
        if let decorrelationThreshold { q.decorrelationThreshold = decorrelationThreshold }
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
    public var tileSize = 512
    public var presetFolder: String?

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
        var problems = matching.validate()
        if let r = options.resolution, !(r > 0 && r <= 1000) {
            problems.append(ParameterProblem(field: "resolution", value: "\(r)", expected: "metres in (0, 1000]"))
        }
        if let f = options.resolutionFactor, !(f >= 0.5 && f <= 20) {
            problems.append(ParameterProblem(field: "resolution-factor", value: "\(f)", expected: "from 0.5 to 20"))
        }
        if !(64...4096).contains(options.tileSize) {
            problems.append(ParameterProblem(field: "tile-size", value: "\(options.tileSize)", expected: "64–4096 pixels"))
        }
        if !problems.isEmpty { throw PipelineError.invalidParameters(problems) }
        try checkWritable(options.output)
        if let epsg = options.epsg { _ = try CoordinateTransform(fromEPSG: 4326, toEPSG: epsg) }

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
            guard r.width > 0, r.height > 0, r.x >= 0, r.y >= 0, r.x + r.width <= first.width, r.y + r.height <= first.height else {
                throw PipelineError.invalidROI("\(r.x) \(r.y) \(r.width) \(r.height) is not inside the \(first.width)×\(first.height) first image")
            }
            roi = r
        } else if let aoi = options.aoi {
            roi = try window(of: aoi, in: first, heights: [scene.low, scene.median, scene.high])
        }
        let gsd = report.images[0].gsd
        let factor = options.resolutionFactor ?? preset.resolutionFactor
        let resolution = options.resolution ?? (factor * gsd * 100).rounded() / 100
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
        let resolved = ResolvedParameters(preset: preset.name, matching: matching, resolution: resolution,
                                          resolutionFactor: options.resolution == nil ? factor : nil, epsg: epsg, roi: roi,
                                          pairs: report.selected, heightRange: [heights.lowerBound, heights.upperBound],
                                          verticalReference: "heights in metres above the WGS84 ellipsoid")
        return Prepared(images: images, inspection: report, parameters: resolved, grid: grid, heights: heights)
    }

    public struct Prepared: Sendable {
        public var images: [SensorImage]
        public var inspection: InspectionReport
        public var parameters: ResolvedParameters
        public var grid: GridDefinition
        public var heights: ClosedRange<Double>
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

    /// The first image's pixel window that covers an AOI (projected at several heights), clipped to the image.
    func window(of aoi: AreaOfInterest, in image: SensorImage, heights: [Double]) throws -> PixelWindow {
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

    /// The pixel window bounding projected points, clipped to the image; nil when nothing is left.
    static func clippedWindow(columns cs: [Double], rows rs: [Double], in image: SensorImage) -> PixelWindow? {
        let x0 = max(0, Int(cs.min()!.rounded(.down))), y0 = max(0, Int(rs.min()!.rounded(.down)))
        let x1 = min(image.width - 1, Int(cs.max()!.rounded(.up))), y1 = min(image.height - 1, Int(rs.max()!.rounded(.up)))
        guard x1 >= x0, y1 >= y0 else { return nil }
        return PixelWindow(x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1)
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

    /// Matches one pair over a window of its reference image and returns the projected points.
    func matchPair(_ a: SensorImage, _ b: SensorImage, window: PixelWindow, prepared: Prepared,
                   progressRange: (Double, Double), label: String) throws -> ProjectedPoints {
        let tiles = PairRectification.tiles(window, size: options.tileSize)
        let rect = PairRectification(first: a, second: b)
        let toGrid = try CoordinateTransform(fromEPSG: 4326, toEPSG: prepared.grid.epsg)
        let matcher = DenseMatcher(parameters: prepared.parameters.matching)
        var all = ProjectedPoints()
        for (k, w) in tiles.enumerated() {
            let t = try rect.rectify(w, heights: prepared.heights)
            let m = try matcher.match(left: t.left, right: t.right, minDisparity: t.geometry.disparityRange.lowerBound,
                                      maxDisparity: t.geometry.disparityRange.upperBound)
            // Lines of sight over the source windows of both grids.
            let lw = EpipolarResampler.sourceWindow(toGrid: t.geometry.left, width: t.geometry.width, height: t.geometry.height,
                                                    imageWidth: Int.max / 4, imageHeight: Int.max / 4)!
            let rw = EpipolarResampler.sourceWindow(toGrid: t.geometry.right, width: t.geometry.rightWidth, height: t.geometry.height,
                                                    imageWidth: Int.max / 4, imageHeight: Int.max / 4)!
            let g1 = try LineOfSightGrid(model: a.model, x0: Double(lw.x), y0: Double(lw.y), x1: Double(lw.x + lw.width),
                                         y1: Double(lw.y + lw.height), heights: prepared.heights)
            let g2 = try LineOfSightGrid(model: b.model, x0: Double(rw.x), y0: Double(rw.y), x1: Double(rw.x + rw.width),
                                         y1: Double(rw.y + rw.height), heights: prepared.heights)
            let pts = Triangulation.points(tile: t.geometry, disparity: m, first: g1, second: g2)
            var p = ProjectedPoints()
            p.x = pts.map(\.longitude); p.y = pts.map(\.latitude)
            p.z = pts.map { Float($0.height) }; p.score = pts.map(\.score)
            toGrid.transform(x: &p.x, y: &p.y)
            all.append(p)
            let f = progressRange.0 + (progressRange.1 - progressRange.0) * Double(k + 1) / Double(tiles.count)
            progress(.init(stage: "match", fraction: f,
                           message: "\(label): tile \(k + 1)/\(tiles.count), \(pts.count) points, row residual \(String(format: "%.2f", t.parallaxAfter.medianAbsolute)) px"))
        }
        return all
    }

    /// Runs everything and returns the manifest.
    @discardableResult
    public func run() throws -> Manifest {
        let prepared = try prepare()
        let staging = (options.output as NSString).appendingPathComponent(".staging-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        do {
            let manifest = try produce(prepared, into: staging)
            // Move the finished products into place, replacing older ones of the same name.
            for file in try FileManager.default.contentsOfDirectory(atPath: staging) where !file.hasPrefix(".") {
                let dst = (options.output as NSString).appendingPathComponent(file)
                try? FileManager.default.removeItem(atPath: dst)
                try FileManager.default.moveItem(atPath: (staging as NSString).appendingPathComponent(file), toPath: dst)
            }
            try? FileManager.default.removeItem(atPath: staging)
            progress(.init(stage: "done", fraction: 1, message: "products in \(options.output)"))
            return manifest
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw error
        }
    }

    func produce(_ prepared: Prepared, into dir: String) throws -> Manifest {
        let images = prepared.images
        let pairs = prepared.parameters.pairs
        var heightsPerPair: [GridRaster] = [], scoresPerPair: [GridRaster] = []
        var pointsTotal = 0
        for (n, pair) in pairs.enumerated() {
            let a = images[pair[0]], b = images[pair[1]]
            let w = pair[0] == 0 ? prepared.parameters.roi
                : try window(of: prepared.parameters.roi, from: images[0], to: a, heights: prepared.heights)
            let range = (0.05 + 0.6 * Double(n) / Double(pairs.count), 0.05 + 0.6 * Double(n + 1) / Double(pairs.count))
            let pts = try matchPair(a, b, window: w, prepared: prepared, progressRange: range, label: "pair \(pair)")
            pointsTotal += pts.count
            let r = Rasterizer.rasterize(pts, grid: prepared.grid)
            heightsPerPair.append(r.height); scoresPerPair.append(r.score)
        }
        guard pointsTotal > 0 else { throw PipelineError.nothingMatched("no pixel of the selected pairs correlated above the decorrelation threshold") }
        progress(.init(stage: "fuse", fraction: 0.7, message: "fusing \(pairs.count) pair(s), \(pointsTotal) points"))
        let bhs = pairs.map { pair in prepared.inspection.pairs.first { $0.images == pair }?.baseToHeight ?? 1 }
        let weights = bhs.map { Float($0 * $0) }
        // Align every pair vertically on the pair with the largest B/H before fusing.
        let reference = bhs.indices.max { bhs[$0] < bhs[$1] }!
        let offsets = DSMFusion.verticalOffsets(heightsPerPair, reference: reference)
        for k in heightsPerPair.indices {
            guard let o = offsets[k], o != 0 else { continue }
            heightsPerPair[k].values = heightsPerPair[k].values.map { $0 - o }
        }
        if pairs.count > 1 {
            let text = zip(pairs, offsets).map { "\($0.0): \($0.1.map { String(format: "%+.2f m", $0) } ?? "n/a")" }.joined(separator: ", ")
            progress(.init(stage: "fuse", fraction: 0.68, message: "vertical offsets removed before fusion (reference pair \(pairs[reference])): \(text)"))
        }
        let fused = DSMFusion.fuse(heights: heightsPerPair, scores: scoresPerPair, weights: weights)
        progress(.init(stage: "filter", fraction: 0.75, message: "outlier removal, small-hole filling, denoising"))
        let cleaned = DSMFilter.removeOutliers(fused.height)
        let maxHole = max(4, Int((25 / (prepared.grid.resolution * prepared.grid.resolution)).rounded()))
        let (holesFilled, filled) = DSMFilter.fillSmallHoles(cleaned, maximumArea: maxHole)
        let dsm = DSMFilter.denoise(holesFilled)
        let writer = try ProductWriter(folder: dir, grid: prepared.grid)
        var manifest = Manifest(parameters: prepared.parameters, grid: prepared.grid, crsWKT: writer.wkt)
        manifest.pairOffsets = zip(pairs, offsets).map { PairOffset(pair: $0.0, verticalOffsetM: $0.1.map(Double.init), baseToHeight: 0) }
        for k in manifest.pairOffsets.indices { manifest.pairOffsets[k].baseToHeight = bhs[k] }
        try writer.writeDSMProducts(raw: fused.height, score: fused.score, dsm: dsm, filled: filled,
                                    contributors: fused.contributors, pairs: pairs, manifest: &manifest)
        progress(.init(stage: "hillshade", fraction: 0.8, message: "hillshades"))
        try writer.writeHillshades(dsm: dsm, manifest: &manifest)
        if options.orthoImages || options.orthoMosaic {
            progress(.init(stage: "ortho", fraction: 0.85, message: "true ortho-images"))
            try writer.writeOrthos(dsm: dsm, images: images, incidences: prepared.inspection.images.map(\.incidenceDeg),
                                   individual: options.orthoImages, mosaic: options.orthoMosaic, manifest: &manifest)
        }
        if options.pointCloud {
            progress(.init(stage: "pointcloud", fraction: 0.95, message: "LAS point cloud"))
            try writer.writePointCloud(dsm: dsm, score: fused.score, manifest: &manifest)
        }
        try writer.writeJSON(prepared.parameters, name: "parameters.json")
        manifest.products.append(.init(code: "-", file: "parameters.json", description: "fully resolved parameters of the run", units: "-"))
        try writer.writeJSON(manifest, name: "manifest.json")
        return manifest
    }
}
