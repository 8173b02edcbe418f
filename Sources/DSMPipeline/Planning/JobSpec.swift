import DSMCore
import Foundation
import GDALKit

/// The coordinate reference systems a DSM's grid may be in.
public enum OutputCRS {
    /// Why EPSG:`code` cannot hold a DSM's grid, or nil. The grid's cells are square in metres (the resolution,
    /// the hole and island sizes, the slopes and the denoising are in metres), so the CRS must be projected
    /// with metre axes: EPSG:4326 had given a grid of one 1° cell, and EPSG:4978 (geocentric) "no pixel
    /// correlated".
    public static func problem(epsg code: Int) -> String? {
        guard let d = try? SpatialReference.describe(epsg: code) else { return "EPSG:\(code) is not a coordinate reference system GDAL knows" }
        return problem(epsg: code, described: d)
    }

    /// The same, from what `SpatialReference.describe` gave for it (a caller that has it opens the CRS once).
    public static func problem(epsg code: Int, described d: SpatialReference.Description) -> String? {
        let advice = "a DSM's cells are square in metres, so its CRS must be projected in metres (the default is the scene's UTM zone; reproject the products afterwards, e.g. with gdalwarp)"
        guard let unit = d.metresPerUnit else {
            return "EPSG:\(code) (\(d.name)) is \(d.geographic ? "geographic, in degrees" : "not a projected CRS"): \(advice)"
        }
        guard abs(unit - 1) < 1e-9 else { return "EPSG:\(code) (\(d.name)) is in units of \(unit) m: \(advice)" }
        return nil
    }
}

/// The standard-mode parameters of a job (the expert ones are `MatchingParameters.specs`). With them,
/// the one table every interface reads: `dsmopt run` options, API `parameters`, presets, the process
/// description and OpenAPI.
public enum JobParameterTable {
    public static let standard: [ParameterSpec] = [
        ParameterSpec("resolution", .number, .standard, minimum: 0, minimumExclusive: true, maximum: 1000, defaultText: "resolution factor × image GSD",
                      unit: "metres", help: "DSM cell size"),
        ParameterSpec("resolution-factor", .number, .standard, minimum: 0.5, maximum: 20, default: 2, defaultText: "the preset's",
                      help: "DSM cell size as a multiple of the first image's GSD"),
        ParameterSpec("epsg", .integer, .standard, minimum: 1024, maximum: 32767, defaultText: "the UTM zone of the scene",
                      help: "EPSG code of the output coordinate reference system"),
        ParameterSpec("point-cloud", .boolean, .standard, default: 0, help: "Also deliver the DSM as a LAS 1.4 point cloud"),
        ParameterSpec("orthos", .boolean, .standard, default: 1, help: "Deliver a true ortho-image per input image"),
        ParameterSpec("mosaic", .boolean, .standard, default: 1, help: "Deliver the true ortho-mosaic"),
        ParameterSpec("coregister", .boolean, .standard, default: 0,
                      help: "Coregister the DSM on a reference DEM (Nuth & Kääb: horizontal shift, then vertical bias): the one given with the job, else the server's"),
        ParameterSpec("coregister-tilt", .boolean, .standard, default: 0,
                      help: "With coregister: also remove a tilt (a plane fitted to the differences left after the shift and the bias)"),
        ParameterSpec("reference-datum", choices: VerticalDatum.allCases.map(\.rawValue).reversed(), .standard,
                      help: "Vertical datum of the reference DEM given with the job (SRTM and most global DEMs: egm96)"),
        ParameterSpec("mask-water", .boolean, .standard, default: 0,
                      help: "Mask water surfaces: from the water mask given with the job (GeoJSON or raster), else the NDWI of its multispectral image, else the server's water layer"),
        ParameterSpec("water-fill", choices: WaterFill.allCases.map(\.rawValue), .standard,
                      help: "What water cells of the DSM get: nodata, or one flat level per water body (the median height of the DSM along its shore)"),
        ParameterSpec("ndwi-threshold", .number, .standard, minimum: -1, maximum: 1, default: 0,
                      help: "Water where the NDWI (green − NIR) / (green + NIR) of the multispectral image given with the job is at or above it"),
        ParameterSpec("vertical-datum", choices: VerticalDatum.allCases.map(\.rawValue), .standard,
                      help: "Heights of the DSM: above the WGS84 ellipsoid, or orthometric above the EGM96 geoid (PROJ's grid)"),
    ]

    /// The finest DSM cell a run makes, as a multiple of the first image's GSD: the resolution factor's minimum.
    /// Finer cells than half a pixel hold no more heights, only interpolation (and a cell of 1e-9 m stopped a
    /// run on an integer overflow). `--resolution` is held to it once the GSD is known; the job service's
    /// `minResolutionFactor` may only be coarser.
    public static var finestResolutionFactor: Double { standard.first { $0.key == "resolution-factor" }?.minimum ?? 0.5 }

    /// Standard then expert parameters.
    public static var specs: [ParameterSpec] { standard + MatchingParameters.specs }

    public static func spec(_ key: String) -> ParameterSpec? { specs.first { $0.key == canonical(key) } }

    /// The table's spelling of a key also accepted in camelCase (`maskWater` → `mask-water`), as JSON
    /// clients write it.
    public static func canonical(_ key: String) -> String {
        var out = ""
        for ch in key {
            if ch.isUppercase { out += "-" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }
}

/// A parameter value: a number, a boolean or a word (JSON keeps them apart).
public enum ParameterValue: Sendable, Codable, Equatable {
    case number(Double)
    case bool(Bool)
    case word(String)

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .bool(b) } else if let w = try? c.decode(String.self) { self = .word(w) }
        else { self = .number(try c.decode(Double.self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let v): if v == v.rounded() && abs(v) < 1e15 { try c.encode(Int64(v)) } else { try c.encode(v) }
        case .bool(let b): try c.encode(b)
        case .word(let w): try c.encode(w)
        }
    }

    public var number: Double? { if case .number(let v) = self { return v }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var word: String? { if case .word(let w) = self { return w }; return nil }

    public var text: String {
        switch self {
        case .number(let v): return ParameterSpec.number(v)
        case .bool(let b): return "\(b)"
        case .word(let w): return "\"\(w)\""
        }
    }

    /// The problem with this value for a parameter, or nil.
    public func problem(for spec: ParameterSpec) -> ParameterProblem? {
        switch (spec.kind, self) {
        case (.boolean, .bool): return nil
        case (.choice, .word(let w)): return spec.problem(w)
        case (.boolean, _), (.choice, _), (_, .bool), (_, .word): return ParameterProblem(field: spec.key, value: text, expected: spec.expected)
        case (_, .number(let v)): return spec.problem(v)
        }
    }
}

/// What a job asks for, typed: the contract between the job service and `dsmopt run --job job.json`
/// (also what `dsmopt run`'s options become). Parameters are keyed by the table's keys.
public struct JobSpec: Sendable, Codable, Equatable {
    public static let currentFormat = 1
    public var format = JobSpec.currentFormat
    /// Images (or DIMAP products) on this machine, the first the reference.
    public var images: [String]
    public var preset = "default"
    public var parameters: [String: ParameterValue] = [:]
    /// Region of the first image: col, row, width, height.
    public var roi: [Int]?
    public var aoi: AreaOfInterest?
    /// Resource limits the run applies to itself (the service sets them from the owner's budget).
    public var limits: RunLimits?
    /// Reference DEM for `coregister`: a raster file, or a folder of DEM tiles (SRTM .hgt, GeoTIFF) read as one mosaic.
    public var referenceDEM: String?
    /// True when `referenceDEM` is the operator's (any GDAL format); a reference a user sent is opened
    /// with a few raster drivers only.
    public var referenceIsServers: Bool?
    /// Water mask for `mask-water`: GeoJSON polygons or a raster (non-zero = water).
    public var waterMask: String?
    /// A multispectral image of the acquisition with RPC (blue, green, red, NIR), for `mask-water` by NDWI.
    public var multispectral: String?
    /// The operator's water layer, used for `mask-water` when no mask is given: a folder of raster tiles
    /// (e.g. surface-water occurrence in %) or a vector file.
    public var waterLayer: String?
    /// Raster water layers: values at or above it are water (e.g. 50 for an occurrence in %).
    public var waterLayerThreshold: Double?
    /// Ground tile size in DSM cells (default: about 1024 pixels of the first image); the service's operator sets it.
    public var tileSize: Int?

    public init(images: [String]) { self.images = images }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case format, images, preset, parameters, roi, aoi, limits, referenceDEM, referenceIsServers, waterMask, multispectral, waterLayer, waterLayerThreshold, tileSize
    }
    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Absent keys take their defaults; an unknown key is an error (a misspelt field must not be ignored).
    public init(from decoder: Decoder) throws {
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        let unknown = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue).filter { !known.contains($0) }
        if !unknown.isEmpty {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "unknown field(s): \(unknown.sorted().joined(separator: ", "))"))
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decodeIfPresent(Int.self, forKey: .format) ?? Self.currentFormat
        images = try c.decode([String].self, forKey: .images)
        preset = try c.decodeIfPresent(String.self, forKey: .preset) ?? "default"
        parameters = try c.decodeIfPresent([String: ParameterValue].self, forKey: .parameters) ?? [:]
        roi = try c.decodeIfPresent([Int].self, forKey: .roi)
        aoi = try c.decodeIfPresent(AreaOfInterest.self, forKey: .aoi)
        limits = try c.decodeIfPresent(RunLimits.self, forKey: .limits)
        referenceDEM = try c.decodeIfPresent(String.self, forKey: .referenceDEM)
        referenceIsServers = try c.decodeIfPresent(Bool.self, forKey: .referenceIsServers)
        waterMask = try c.decodeIfPresent(String.self, forKey: .waterMask)
        multispectral = try c.decodeIfPresent(String.self, forKey: .multispectral)
        waterLayer = try c.decodeIfPresent(String.self, forKey: .waterLayer)
        waterLayerThreshold = try c.decodeIfPresent(Double.self, forKey: .waterLayerThreshold)
        tileSize = try c.decodeIfPresent(Int.self, forKey: .tileSize)
    }

    /// Every problem: unknown keys, wrong types, values out of range, roi and aoi together.
    public func problems() -> [ParameterProblem] {
        var out: [ParameterProblem] = []
        if format != Self.currentFormat {
            out.append(ParameterProblem(field: "format", value: "\(format)", expected: "\(Self.currentFormat)"))
        }
        for (key, value) in parameters.sorted(by: { $0.key < $1.key }) {
            guard let spec = JobParameterTable.spec(key) else {
                out.append(ParameterProblem(field: key, value: "\(value)", expected: "a known parameter (\(JobParameterTable.specs.map(\.key).joined(separator: ", ")))"))
                continue
            }
            if spec.key != key { out.append(ParameterProblem(field: key, value: value.text, expected: "the spelling \(spec.key)")) }
            if let p = value.problem(for: spec) { out.append(p) }
        }
        if let r = roi, !(r.count == 4 && r[0] >= 0 && r[1] >= 0 && r[2] > 0 && r[3] > 0) {
            out.append(ParameterProblem(field: "roi", value: "\(r)", expected: "[col, row, width, height] with non-negative integers and positive sizes"))
        }
        if roi != nil && aoi != nil { out.append(ParameterProblem(field: "aoi", value: "given with roi", expected: "roi or aoi, not both")) }
        if flag("coregister") == true && referenceDEM == nil { out.append(FinishingOptions.noReference) }
        if flag("mask-water") == true && waterMask == nil && multispectral == nil && waterLayer == nil { out.append(FinishingOptions.noWaterSource) }
        if let l = limits {
            for (name, v) in [("limits.cpuSeconds", l.cpuSeconds), ("limits.wallSeconds", l.wallSeconds)] where v.map({ !($0 > 0 && $0.isFinite) }) ?? false {
                out.append(ParameterProblem(field: name, value: "\(v!)", expected: "a positive number of seconds"))
            }
            if let m = l.memoryBytes, !((MemoryBudget.baseBytes + (64 << 20))...MemoryBudget.maximumBytes).contains(m) {
                out.append(ParameterProblem(field: "limits.memoryBytes", value: "\(m)",
                                            expected: "at least \(MemoryBudget.baseBytes + (64 << 20)) bytes, at most \(MemoryBudget.maximumBytes) (1 PiB)"))
            }
        }
        return out
    }

    public func number(_ key: String) -> Double? { parameters[key]?.number }
    public func flag(_ key: String) -> Bool? { parameters[key]?.bool }
    public func word(_ key: String) -> String? { parameters[key]?.word }

    /// The pipeline's options for this job, or every problem at once.
    public func options(output: String) throws -> PipelineOptions {
        let problems = problems()
        guard problems.isEmpty else { throw PipelineError.invalidParameters(problems) }
        var o = PipelineOptions(images: images, output: output)
        o.preset = preset
        for spec in MatchingParameters.specs { if let v = number(spec.key) { o.overrides[spec.key] = v } }
        o.resolution = number("resolution")
        o.resolutionFactor = number("resolution-factor")
        o.epsg = number("epsg").map { Int($0) }
        o.pointCloud = flag("point-cloud") ?? false
        o.orthoImages = flag("orthos") ?? true
        o.orthoMosaic = flag("mosaic") ?? true
        var f = FinishingOptions()
        f.referenceDEM = referenceDEM
        f.referenceTrusted = referenceIsServers ?? false
        f.waterMask = waterMask
        f.multispectral = multispectral
        f.waterLayer = waterLayer
        f.waterLayerThreshold = waterLayerThreshold ?? FinishingOptions().waterLayerThreshold
        for key in FinishingOptions.keys { if let v = parameters[key] { f.apply(key, v); o.finishingGiven.insert(key) } }
        o.finishing = f
        if let r = roi { o.roi = PixelWindow(x: r[0], y: r[1], width: r[2], height: r[3]) }
        o.aoi = aoi
        if let m = limits?.memoryBytes { o.memoryBudget = MemoryBudget(bytes: m) }
        o.tileSize = tileSize
        return o
    }
}

/// Limits of one run: CPU time (the process stops itself when it is spent), wall-clock time, and the
/// memory budget the tiles are planned within.
public struct RunLimits: Sendable, Codable, Equatable {
    public var cpuSeconds: Double?
    public var wallSeconds: Double?
    public var memoryBytes: Int?
    public init(cpuSeconds: Double? = nil, wallSeconds: Double? = nil, memoryBytes: Int? = nil) {
        self.cpuSeconds = cpuSeconds; self.wallSeconds = wallSeconds; self.memoryBytes = memoryBytes
    }
}
