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
    /// With `upload`: which image (1-based) of a zipped delivery holding several; without, all of them.
    public var image: Int? = nil
}

/// A request's `parameters`: the region (`roi` or `aoi`) and the table's parameters by their keys
/// (`JobParameterTable.specs`, the same spelling as `dsmopt run`'s options and the presets).
public struct JobParameters: Sendable, Codable, Equatable {
    public var roi: [Int]?
    public var aoi: AreaOfInterest?
    public var values: [String: ParameterValue] = [:]

    public init() {}

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        for k in c.allKeys {
            switch k.stringValue {
            case "roi": roi = try c.decode([Int].self, forKey: k)
            case "aoi": aoi = try c.decode(AreaOfInterest.self, forKey: k)
            default: values[k.stringValue] = try c.decode(ParameterValue.self, forKey: k)
            }
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encodeIfPresent(roi, forKey: Key("roi"))
        try c.encodeIfPresent(aoi, forKey: Key("aoi"))
        for (k, v) in values { try c.encode(v, forKey: Key(k)) }
    }

    var resolution: Double? { values["resolution"]?.number }
    var resolutionFactor: Double? { values["resolution-factor"]?.number }
}

/// One input of a job as recorded at submission.
public struct InputRecord: Sendable, Codable, Equatable {
    public var field: String
    public var upload: String
    public var fileName: String
    public var bytes: Int64
    public var sha256: String
}

/// A job as submitted, once validated: what the worker runs.
public struct ExecutionRequest: Sendable, Codable, Equatable {
    public var name: String?
    public var images: [ImageReference]
    public var preset: String?
    public var parameters: JobParameters?
    /// Optional files for the finishing steps, each an upload of the caller's: a reference DEM for
    /// `coregister`, a water mask (GeoJSON or raster) or a multispectral image (NDWI) for `mask-water`.
    public var referenceDem: ImageReference?
    public var waterMask: ImageReference?
    public var multispectral: ImageReference?
    /// Paths of the inputs on the server, filled by validation.
    public var resolvedImagePaths: [String] = []
    /// What the job was given, recorded at submission (the job record shows it): request field, upload, file
    /// name, size and SHA-256.
    public var inputs: [InputRecord]?
    /// The catalogue account that forwarded the job (it may read it).
    public var forwardedBy: String?
    public var resolvedReferenceDem: String?
    public var resolvedWaterMask: String?
    public var resolvedMultispectral: String?
    /// The `dsmopt` version and job-file format of the daemon that accepted the job: a worker of another
    /// version refuses it (the job file and the products must mean the same on every machine).
    public var acceptedBy: SoftwareStamp?
    /// Publish the products in the DSM catalogue when the job succeeds.
    public var publish: Bool?
    /// Mail the owner when the job ends (nil: when they have an address and the service sends mail); false:
    /// no mail about this job; true: required, refused when no mail can be sent.
    public var mail: Bool?
    /// The process: nil or "dsm-opt" (a DSM from images), "dsm-difference" (two DSMs differenced).
    public var process: String?
    /// The inputs of a `dsm-difference` job.
    public var difference: DifferenceInputs?
    /// Where to POST the job's outcome when it ends (OGC API – Processes callbacks).
    public var subscriber: Subscriber?
    /// The base of the links in the job's callback and mail: the one it was submitted under
    /// (`ServiceAPI.baseURL`), set at submission; `publicURL`, when configured, is used instead.
    public var linkBase: String?

    /// The optional files by request field.
    static let fileFields = ["referenceDem", "waterMask", "multispectral"]
}

/// A job's subscriber (OGC API – Processes callbacks): when the job succeeds, its results document is POSTed
/// to `successUri`; when it fails or is dismissed, its status document to `failedUri`. Progress callbacks
/// (`inProgressUri`) are not offered.
public struct Subscriber: Sendable, Codable, Equatable {
    public var successUri: String?
    public var failedUri: String?

    /// The subscriber of a request (`subscriber`), checked field by field: absolute http(s) URLs without
    /// credentials or fragment, at most 2,000 characters; at least one of the two.
    static func parse(_ value: JSONValue, field: String = "subscriber") -> (Subscriber?, [FieldError]) {
        guard let d = value.object else { return (nil, [FieldError(field: field, message: "must be an object like {\"successUri\": \"https://…\", \"failedUri\": \"https://…\"}")]) }
        var s = Subscriber(), errors: [FieldError] = []
        for k in d.keys.sorted() {
            switch k {
            case "successUri", "failedUri":
                guard let text = d[k]?.string else {
                    errors.append(.init(field: "\(field).\(k)", message: "must be a string: an absolute http(s) URL")); continue
                }
                if let problem = uriProblem(text) { errors.append(.init(field: "\(field).\(k)", message: problem)); continue }
                if k == "successUri" { s.successUri = text } else { s.failedUri = text }
            case "inProgressUri":
                errors.append(.init(field: "\(field).\(k)", message: "progress callbacks are not offered (successUri and failedUri are): poll the job's status for its progress"))
            default:
                errors.append(.init(field: "\(field).\(k)", message: "unknown field (a subscriber holds successUri and failedUri)"))
            }
        }
        if errors.isEmpty, s.successUri == nil, s.failedUri == nil {
            errors.append(.init(field: field, message: "give successUri, failedUri or both"))
        }
        return (errors.isEmpty ? s : nil, errors)
    }

    /// Why `text` cannot be a callback URI, or nil.
    static func uriProblem(_ text: String) -> String? {
        guard text.count <= 2000 else { return "longer than 2,000 characters" }
        guard let c = URLComponents(string: text), let scheme = c.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = c.host, !host.isEmpty, URL(string: text) != nil else {
            return "'\(text.prefix(100))' is not an absolute http(s) URL"
        }
        guard c.user == nil, c.password == nil else { return "URLs with credentials are not accepted" }
        guard c.fragment == nil else { return "a callback URL has no fragment" }
        return nil
    }
}

/// Which software accepted a job.
public struct SoftwareStamp: Sendable, Codable, Equatable {
    public var version: String
    public var jobFormat: Int
    public static var current: SoftwareStamp { SoftwareStamp(version: Provenance.Software.currentVersion, jobFormat: JobSpec.currentFormat) }
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
        let known: Set<String> = Set(["name", "images", "preset", "parameters", "publish", "mail", "subscriber"] + ExecutionRequest.fileFields)
        for k in obj.keys.sorted() where !known.contains(k) { errors.append(.init(field: k, message: "unknown field")) }
        var req = ExecutionRequest(images: [])
        if let n = obj["name"] {
            if let s = n.string, !s.isEmpty, s.count <= 200 { req.name = s } else { errors.append(.init(field: "name", message: "must be a string of 1–200 characters")) }
        }
        if let imgs = obj["images"]?.array {
            // One upload may be a zipped delivery of 2–3 images: the count of images is checked once the
            // uploads are expanded; here, at most 3 entries.
            let deliveries = imgs.contains { $0.object?["upload"] != nil && $0.object?["image"] == nil }
            if !((deliveries ? 1 : 2)...3).contains(imgs.count) { errors.append(.init(field: "images", message: "stereo needs 2 or 3 images, got \(imgs.count)")) }
            for (i, im) in imgs.enumerated() {
                guard let d = im.object else { errors.append(.init(field: "images[\(i)]", message: "must be an object like {\"upload\": \"<id>\"}")); continue }
                var ref = ImageReference(upload: d["upload"]?.string, url: d["url"]?.string, path: d["path"]?.string)
                if let n = d["image"] {
                    if let v = n.number, v == v.rounded(), v >= 1, v <= 3, ref.upload != nil { ref.image = Int(v) } else {
                        errors.append(.init(field: "images[\(i)].image", message: "must be 1, 2 or 3 (which image of a zipped delivery), with upload"))
                    }
                }
                if [ref.upload, ref.url, ref.path].compactMap({ $0 }).count != 1 || d.count != (d["image"] == nil ? 1 : 2) {
                    errors.append(.init(field: "images[\(i)]", message: "give exactly one of upload, url, path (a string), and with upload optionally image"))
                }
                req.images.append(ref)
            }
        } else {
            errors.append(.init(field: "images", message: obj["images"] == nil ? "is required" : "must be an array of 2 or 3 images"))
        }
        for field in ExecutionRequest.fileFields {
            guard let v = obj[field] else { continue }
            guard let d = v.object, d.count == 1, let id = d["upload"]?.string else {
                errors.append(.init(field: field, message: "must be {\"upload\": \"<id>\"}: a file uploaded first"))
                continue
            }
            let ref = ImageReference(upload: id, url: nil, path: nil)
            switch field {
            case "referenceDem": req.referenceDem = ref
            case "waterMask": req.waterMask = ref
            default: req.multispectral = ref
            }
        }
        if let p = obj["publish"] {
            if case .bool(let b) = p { req.publish = b } else { errors.append(.init(field: "publish", message: "must be true or false")) }
        }
        if let m = obj["mail"] {
            if case .bool(let b) = m { req.mail = b } else { errors.append(.init(field: "mail", message: "must be true or false")) }
        }
        if let v = obj["subscriber"] {
            let (s, e) = Subscriber.parse(v)
            req.subscriber = s
            errors += e
        }
        if let p = obj["preset"] {
            if let s = p.string {
                if let presets, let problem = presets.problems[s] {
                    errors.append(.init(field: "preset", message: "preset '\(s)' is unavailable: \(APIProblem.presetReason(problem)); choose another (\(presets.presets.keys.sorted().joined(separator: ", ")))"))
                } else if let presets, presets.presets[s] == nil {
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

    /// Why an API field's area of interest was refused.
    struct AreaProblem: Error { var message: String }

    /// The area an API field gives as text (a bounding box or GeoJSON; nil: the field is neither a string nor
    /// an object), or why it is none, with `AreaOfInterest.parse`'s reason.
    static func areaOfInterest(_ text: String?) -> Result<AreaOfInterest, AreaProblem> {
        let form = "must be a GeoJSON Polygon/Feature or \"minLon,minLat,maxLon,maxLat\""
        guard let text else { return .failure(AreaProblem(message: form)) }
        do { return .success(try AreaOfInterest.parse(text)) } catch PipelineError.invalidAOI(let why) {
            return .failure(AreaProblem(message: "\(form): \(why)"))
        } catch { return .failure(AreaProblem(message: "\(form): \(error)")) }
    }

    /// Table-driven: every key of `JobParameterTable.specs` with its type and range, plus `roi` and `aoi`.
    static func parameters(_ d: [String: JSONValue]) -> (JobParameters, [FieldError]) {
        var p = JobParameters()
        var e: [FieldError] = []
        for (k, v) in d.sorted(by: { $0.key < $1.key }) where k != "roi" && k != "aoi" {
            guard let spec = JobParameterTable.spec(k) else {
                e.append(.init(field: "parameters.\(k)", message: "unknown parameter (known: roi, aoi, \(JobParameterTable.specs.map(\.key).joined(separator: ", ")))"))
                continue
            }
            // camelCase is read (maskWater); stored under the table's spelling (mask-water).
            let key = spec.key
            if p.values[key] != nil { e.append(.init(field: "parameters.\(k)", message: "given twice (as \(key) and \(k))")); continue }
            switch (spec.kind, v) {
            case (.boolean, .bool(let b)): p.values[key] = .bool(b)
            case (.boolean, _): e.append(.init(field: "parameters.\(k)", message: "must be true or false"))
            case (.choice, .string(let w)):
                if let problem = spec.problem(w) { e.append(.init(field: "parameters.\(k)", message: "\(problem.value): expected \(problem.expected)")) }
                else { p.values[key] = .word(w) }
            case (.choice, _): e.append(.init(field: "parameters.\(k)", message: "must be a string: expected \(spec.expected)"))
            case (_, .number(let n)):
                if let problem = spec.problem(n) { e.append(.init(field: "parameters.\(k)", message: "\(problem.value): expected \(problem.expected)")) }
                else { p.values[key] = .number(n) }
            default: e.append(.init(field: "parameters.\(k)", message: "must be a number: expected \(spec.expected)"))
            }
        }
        // The output CRS must hold a grid in metres (checked against GDAL's registry, not only the code's range).
        if let code = p.values["epsg"]?.number, let why = OutputCRS.problem(epsg: Int(code)) {
            e.append(.init(field: "parameters.epsg", message: why))
        }
        if let r = d["roi"] {
            let a = r.array?.compactMap(\.number) ?? []
            if a.count == 4, r.array?.count == 4, a.allSatisfy({ $0 == $0.rounded() && $0 >= 0 && $0 < 1e7 }), a[2] > 0, a[3] > 0 {
                p.roi = a.map { Int($0) }
            } else { e.append(.init(field: "parameters.roi", message: "must be [col, row, width, height] with non-negative integers and positive sizes")) }
        }
        if let a = d["aoi"] {
            // A bounding box string or inline GeoJSON; never a file name (the pipeline reads no file for it).
            let text = a.string ?? (a.object != nil ? a.jsonText : nil)
            switch areaOfInterest(text) {
            case .success(let aoi): p.aoi = aoi
            case .failure(let problem): e.append(.init(field: "parameters.aoi", message: problem.message))
            }
        }
        if p.roi != nil && p.aoi != nil { e.append(.init(field: "parameters.aoi", message: "give roi or aoi, not both")) }
        return (p, e)
    }
}
