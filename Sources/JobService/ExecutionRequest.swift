import DSMCore
import DSMPipeline
import Foundation

/// One field error of a request (RFC 9457 problem documents list them in `errors`).
public struct FieldError: Sendable, Codable, Equatable {
    public var field: String
    public var message: String
}

/// An image of a job: an upload of the caller's (REST) or, for the catalogue, a URL or an archive path.
public struct ImageReference: Sendable, Codable, Equatable {
    public var upload: String?
    public var url: String?
    public var path: String?
}

/// Standard and expert parameters, named as the `dsmopt run` options.
public struct JobParameters: Sendable, Codable, Equatable {
    public var roi: [Int]?
    /// "minLon,minLat,maxLon,maxLat" or GeoJSON text.
    public var aoi: String?
    public var window: Int?
    public var regularisation: Double?
    public var zUncertainty: Double?
    public var precision: Double?
    public var decorrelationThreshold: Double?
    public var resolution: Double?
    public var resolutionFactor: Double?
    public var epsg: Int?
    public var pointCloud: Bool?
    public var orthos: Bool?
    public var mosaic: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case roi, aoi, window, regularisation, precision, resolution, epsg, orthos, mosaic
        case zUncertainty = "z-uncertainty", decorrelationThreshold = "decorrelation-threshold"
        case resolutionFactor = "resolution-factor", pointCloud = "point-cloud"
    }

    /// The `dsmopt run` arguments.
    var commandLine: [String] {
        var a: [String] = []
        if let roi { a += ["--roi"] + roi.map(String.init) }
        if let aoi { a += ["--aoi", aoi] }
        if let window { a += ["--window", "\(window)"] }
        if let regularisation { a += ["--regularisation", "\(regularisation)"] }
        if let zUncertainty { a += ["--z-uncertainty", "\(zUncertainty)"] }
        if let precision { a += ["--precision", "\(precision)"] }
        if let decorrelationThreshold { a += ["--decorrelation-threshold", "\(decorrelationThreshold)"] }
        if let resolution { a += ["--resolution", "\(resolution)"] }
        if let resolutionFactor { a += ["--resolution-factor", "\(resolutionFactor)"] }
        if let epsg { a += ["--epsg", "\(epsg)"] }
        if pointCloud == true { a.append("--point-cloud") }
        if orthos == false { a.append("--no-orthos") }
        if mosaic == false { a.append("--no-mosaic") }
        return a
    }
}

/// A job as submitted, once validated: what the worker runs.
public struct ExecutionRequest: Sendable, Codable, Equatable {
    public var name: String?
    public var images: [ImageReference]
    public var preset: String?
    public var parameters: JobParameters?
    /// Paths of the inputs on the server, filled by validation.
    public var resolvedImagePaths: [String] = []
}

/// A JSON value that keeps booleans, numbers and strings apart (for field-by-field validation).
indirect enum JSONValue: Decodable, Equatable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null } else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) } else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) } else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    var string: String? { if case .string(let s) = self { return s }; return nil }
    var number: Double? { if case .number(let n) = self { return n }; return nil }
    var object: [String: JSONValue]? { if case .object(let o) = self { return o }; return nil }
    var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }

    /// Back to JSON text (for GeoJSON areas of interest).
    var jsonText: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return n == n.rounded() && abs(n) < 1e15 ? String(Int(n)) : String(n)
        case .string(let s): return String(decoding: try! JSONEncoder().encode(s), as: UTF8.self)
        case .array(let a): return "[" + a.map(\.jsonText).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.map { JSONValue.string($0.key).jsonText + ":" + $0.value.jsonText }.joined(separator: ",") + "}"
        }
    }
}

/// Checks a JSON request body field by field, listing every problem (no partial acceptance).
enum RequestValidator {
    static func validate(_ body: Data, presets: PresetLibrary?) -> (ExecutionRequest?, [FieldError]) {
        var errors: [FieldError] = []
        guard let root = try? JSONDecoder().decode(JSONValue.self, from: body), let obj = root.object else {
            return (nil, [FieldError(field: "(body)", message: "not a JSON object")])
        }
        let known: Set<String> = ["name", "images", "preset", "parameters"]
        for k in obj.keys.sorted() where !known.contains(k) { errors.append(.init(field: k, message: "unknown field")) }
        var req = ExecutionRequest(images: [])
        if let n = obj["name"] {
            if let s = n.string, !s.isEmpty, s.count <= 200 { req.name = s } else { errors.append(.init(field: "name", message: "must be a string of 1–200 characters")) }
        }
        if let imgs = obj["images"]?.array {
            if !(2...3).contains(imgs.count) { errors.append(.init(field: "images", message: "stereo needs 2 or 3 images, got \(imgs.count)")) }
            for (i, im) in imgs.enumerated() {
                guard let d = im.object else { errors.append(.init(field: "images[\(i)]", message: "must be an object like {\"upload\": \"<id>\"}")); continue }
                let ref = ImageReference(upload: d["upload"]?.string, url: d["url"]?.string, path: d["path"]?.string)
                if [ref.upload, ref.url, ref.path].compactMap({ $0 }).count != 1 || d.count != 1 {
                    errors.append(.init(field: "images[\(i)]", message: "give exactly one of upload, url, path (a string)"))
                }
                req.images.append(ref)
            }
        } else {
            errors.append(.init(field: "images", message: obj["images"] == nil ? "is required" : "must be an array of 2 or 3 images"))
        }
        if let p = obj["preset"] {
            if let s = p.string {
                if let presets, presets.presets[s] == nil {
                    errors.append(.init(field: "preset", message: "unknown preset '\(s)' (available: \(presets.presets.keys.sorted().joined(separator: ", ")))"))
                }
                req.preset = s
            } else { errors.append(.init(field: "preset", message: "must be a string")) }
        }
        if let p = obj["parameters"] {
            if let d = p.object {
                let (params, e) = parameters(d)
                req.parameters = params
                errors += e
            } else { errors.append(.init(field: "parameters", message: "must be an object")) }
        }
        return (errors.isEmpty ? req : nil, errors)
    }

    static func parameters(_ d: [String: JSONValue]) -> (JobParameters, [FieldError]) {
        var p = JobParameters()
        var e: [FieldError] = []
        let known = Set(JobParameters.CodingKeys.allCases.map(\.rawValue))
        for k in d.keys.sorted() where !known.contains(k) { e.append(.init(field: "parameters.\(k)", message: "unknown parameter")) }
        func number(_ k: String) -> Double? {
            guard let v = d[k] else { return nil }
            if let n = v.number { return n }
            e.append(.init(field: "parameters.\(k)", message: "must be a number")); return nil
        }
        func integer(_ k: String) -> Int? {
            guard let x = number(k) else { return nil }
            guard x == x.rounded(), abs(x) < 1e9 else { e.append(.init(field: "parameters.\(k)", message: "must be an integer")); return nil }
            return Int(x)
        }
        func bool(_ k: String) -> Bool? {
            guard let v = d[k] else { return nil }
            if case .bool(let b) = v { return b }
            e.append(.init(field: "parameters.\(k)", message: "must be true or false")); return nil
        }
        if let r = d["roi"] {
            let a = r.array?.compactMap(\.number) ?? []
            if a.count == 4, r.array?.count == 4, a.allSatisfy({ $0 == $0.rounded() && $0 >= 0 && $0 < 1e7 }), a[2] > 0, a[3] > 0 {
                p.roi = a.map { Int($0) }
            } else { e.append(.init(field: "parameters.roi", message: "must be [col, row, width, height] with non-negative integers and positive sizes")) }
        }
        if let a = d["aoi"] {
            let text = a.string ?? (a.object != nil ? a.jsonText : nil)
            if let text, (try? AreaOfInterest.parse(text)) != nil { p.aoi = text } else {
                e.append(.init(field: "parameters.aoi", message: "must be a GeoJSON Polygon/Feature or \"minLon,minLat,maxLon,maxLat\""))
            }
        }
        if p.roi != nil && p.aoi != nil { e.append(.init(field: "parameters.aoi", message: "give roi or aoi, not both")) }
        p.window = integer("window")
        p.regularisation = number("regularisation")
        p.zUncertainty = number("z-uncertainty")
        p.precision = number("precision")
        p.decorrelationThreshold = number("decorrelation-threshold")
        p.resolution = number("resolution")
        p.resolutionFactor = number("resolution-factor")
        p.epsg = integer("epsg")
        p.pointCloud = bool("point-cloud")
        p.orthos = bool("orthos")
        p.mosaic = bool("mosaic")
        // Ranges: the same validation as the matcher and the pipeline.
        var m = MatchingParameters()
        if let v = p.window { m.window = v }
        if let v = p.regularisation { m.regularisation = v }
        if let v = p.zUncertainty { m.zUncertainty = v }
        if let v = p.precision { m.precision = v }
        if let v = p.decorrelationThreshold { m.decorrelationThreshold = v }
        for problem in m.validate() { e.append(.init(field: "parameters.\(problem.field)", message: "\(problem.value): expected \(problem.expected)")) }
        if let r = p.resolution, !(r > 0 && r <= 1000) { e.append(.init(field: "parameters.resolution", message: "\(r): expected metres in (0, 1000]")) }
        if let f = p.resolutionFactor, !(f >= 0.5 && f <= 20) { e.append(.init(field: "parameters.resolution-factor", message: "\(f): expected 0.5–20")) }
        if let c = p.epsg, !(1024...32767).contains(c) { e.append(.init(field: "parameters.epsg", message: "\(c): not an EPSG code")) }
        return (p, e)
    }
}
