import DSMPipeline
import Foundation
import Hummingbird

/// One DSM of a `dsm-difference` job: a successful job of the caller's, a published catalogue item, or an
/// upload of the caller's (a GeoTIFF).
public struct DSMReference: Sendable, Codable, Equatable {
    public var job: String?
    public var item: String?
    public var upload: String?
}

/// The inputs of a `dsm-difference` job as submitted, and their paths once resolved.
public struct DifferenceInputs: Sendable, Codable, Equatable {
    /// The earlier DSM (A, whose grid the difference is on), then the later one (B).
    public var dsms: [DSMReference]
    public var aoi: AreaOfInterest?
    /// GeoJSON polygons or rasters (uploads): stable terrain only; what changed.
    public var stableMask: ImageReference?
    public var changedMask: ImageReference?
    public var resolvedDSMs: [String] = []
    /// Names for messages and the manifest ("job <id> dsm.tif", "item <id> dsm.tif", the upload's file name).
    public var names: [String] = []
    public var resolvedStableMask: String?
    public var resolvedChangedMask: String?
}

extension ServiceAPI {
    /// `POST /processes/dsm-difference/execution`: `{"name"?, "dsms": [A, B], "aoi"?, "stableMask"?,
    /// "changedMask"?, "publish"?, "mail"?, "subscriber"?}`, each DSM `{"job": id}`, `{"item": id}` or `{"upload": id}`. Every field
    /// is checked (422 lists each problem); DSMs whose footprints are known (jobs, items) must overlap.
    func submitDifference(_ body: Data, for user: User, base: String) async throws -> Response {
        guard let obj = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            throw APIProblem.invalid([.init(field: "(body)", message: "not a JSON object")])
        }
        var errors: [FieldError] = []
        let known: Set<String> = ["name", "dsms", "aoi", "stableMask", "changedMask", "publish", "mail", "subscriber"]
        for k in obj.keys.sorted() where !known.contains(k) { errors.append(.init(field: k, message: "unknown field")) }
        var request = ExecutionRequest(images: [])
        request.process = "dsm-difference"
        var inputs = DifferenceInputs(dsms: [])
        if let n = obj["name"] {
            if let s = n as? String, !s.isEmpty, s.count <= 200 { request.name = s } else { errors.append(.init(field: "name", message: "must be a string of 1–200 characters")) }
        }
        // JSON booleans kept apart from numbers (`publish`); the subscriber read as the execution request's is.
        let values = try? JSONDecoder().decode([String: JSONValue].self, from: body)
        if obj["publish"] != nil {
            if case .bool(let b)? = values?["publish"] { request.publish = b } else {
                errors.append(.init(field: "publish", message: "must be true or false"))
            }
        }
        if obj["mail"] != nil {
            if case .bool(let b)? = values?["mail"] { request.mail = b } else {
                errors.append(.init(field: "mail", message: "must be true or false"))
            }
        }
        errors += mailErrors(request.mail, owner: user)
        if let v = values?["subscriber"] {
            let (subscriber, e) = checkedSubscriber(v)
            request.subscriber = subscriber
            errors += e
        }
        var records: [InputRecord] = []
        var bboxes: [[Double]?] = []
        var bytes: [(String, Int64)] = []
        if let list = obj["dsms"] as? [Any], list.count == 2 {
            for (i, d) in list.enumerated() {
                let field = "dsms[\(i)]"
                guard let o = d as? [String: Any], o.count == 1, let key = o.keys.first, ["job", "item", "upload"].contains(key), let id = o[key] as? String else {
                    errors.append(.init(field: field, message: "must be {\"job\": id}, {\"item\": id} or {\"upload\": id}"))
                    continue
                }
                var ref = DSMReference()
                switch key {
                case "job":
                    ref.job = id
                    guard let job = try await store.job(id: id), job.userId == user.id || [.operator, .admin].contains(user.role) else {
                        errors.append(.init(field: "\(field).job", message: "no job \(id) for this user")); continue
                    }
                    guard job.status == .successful, !job.purged, let dir = config.resultsDirectory(job),
                          FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("dsm.tif")) else {
                        errors.append(.init(field: "\(field).job", message: job.purged ? "the results of job \(id) were purged" : "job \(id) has no DSM (status \(job.status.rawValue))")); continue
                    }
                    inputs.resolvedDSMs.append((dir as NSString).appendingPathComponent("dsm.tif"))
                    inputs.names.append("job \(id) dsm.tif")
                    bboxes.append(Self.bbox(ofItemAt: (dir as NSString).appendingPathComponent("item.json")))
                case "item":
                    ref.item = id
                    guard let p = try await store.publication(id: id),
                          FileManager.default.fileExists(atPath: (catalogue.folder(id) as NSString).appendingPathComponent("dsm.tif")) else {
                        errors.append(.init(field: "\(field).item", message: "no published item \(id) with a DSM in the catalogue")); continue
                    }
                    inputs.resolvedDSMs.append((catalogue.folder(id) as NSString).appendingPathComponent("dsm.tif"))
                    inputs.names.append("item \(id) dsm.tif")
                    bboxes.append(p.bbox)
                default:
                    ref.upload = id
                    guard let u = try await store.upload(id: id, userId: user.id) else {
                        errors.append(.init(field: "\(field).upload", message: "unknown upload \(id)")); continue
                    }
                    guard UploadKind(signatureOf: config.uploadPath(u)) == .tiff else {
                        errors.append(.init(field: "\(field).upload", message: "\(u.fileName) is not a GeoTIFF DSM")); continue
                    }
                    inputs.resolvedDSMs.append(config.uploadPath(u))
                    inputs.names.append(u.fileName)
                    bboxes.append(nil)
                    records.append(InputRecord(field: field, upload: u.id, fileName: u.fileName, bytes: u.size, sha256: u.sha256))
                    bytes.append((u.fileName, u.size))
                }
                inputs.dsms.append(ref)
            }
            if inputs.dsms.count == 2, inputs.dsms[0] == inputs.dsms[1] { errors.append(.init(field: "dsms[1]", message: "the same DSM as dsms[0]: a difference needs two")) }
        } else {
            errors.append(.init(field: "dsms", message: obj["dsms"] == nil ? "is required: [earlier DSM, later DSM]" : "must be an array of 2 DSMs, the earlier first"))
        }
        if let a = obj["aoi"] {
            let text: String? = (a as? String) ?? (a is [String: Any] ? (try? JSONSerialization.data(withJSONObject: a)).map { String(decoding: $0, as: UTF8.self) } : nil)
            switch RequestValidator.areaOfInterest(text) {
            case .success(let aoi): inputs.aoi = aoi
            case .failure(let problem): errors.append(.init(field: "aoi", message: problem.message))
            }
        }
        for field in ["stableMask", "changedMask"] {
            guard let v = obj[field] else { continue }
            guard let d = v as? [String: Any], d.count == 1, let id = d["upload"] as? String else {
                errors.append(.init(field: field, message: "must be {\"upload\": \"<id>\"}: GeoJSON polygons or a raster uploaded first")); continue
            }
            guard let u = try await store.upload(id: id, userId: user.id) else { errors.append(.init(field: "\(field).upload", message: "unknown upload \(id)")); continue }
            let path = config.uploadPath(u)
            if field == "stableMask" { inputs.stableMask = ImageReference(upload: id, url: nil, path: nil); inputs.resolvedStableMask = path } else {
                inputs.changedMask = ImageReference(upload: id, url: nil, path: nil); inputs.resolvedChangedMask = path
            }
            records.append(InputRecord(field: field, upload: u.id, fileName: u.fileName, bytes: u.size, sha256: u.sha256))
            bytes.append((u.fileName, u.size))
        }
        // Footprints known now (jobs' and items' STAC bboxes) are checked now; an upload's when the job runs.
        if errors.isEmpty, bboxes.count == 2, let a = bboxes[0], let b = bboxes[1] {
            if a[0] > b[2] || b[0] > a[2] || a[1] > b[3] || b[1] > a[3] {
                errors.append(.init(field: "dsms", message: String(format: "%@ (lon %.5f–%.5f, lat %.5f–%.5f) and %@ (lon %.5f–%.5f, lat %.5f–%.5f) do not overlap",
                                                                   inputs.names[0], a[0], a[2], a[1], a[3], inputs.names[1], b[0], b[2], b[1], b[3])))
            } else if let aoi = inputs.aoi {
                let r = aoi.ring
                let lo = [r.map { $0[0] }.min()!, r.map { $0[1] }.min()!], hi = [r.map { $0[0] }.max()!, r.map { $0[1] }.max()!]
                if lo[0] > a[2] || a[0] > hi[0] || lo[1] > a[3] || a[1] > hi[1] {
                    errors.append(.init(field: "aoi", message: "the area of interest does not overlap \(inputs.names[0])"))
                }
            }
        }
        guard errors.isEmpty else {
            throw APIProblem.invalid(errors)
        }
        let jobId = SQLiteJobStore.newID()
        // DSMs of other jobs and catalogue items are linked into this job's folder now: that job's deletion
        // or purge, or the item's withdrawal, cannot take them from under it while it waits or runs.
        try linkInputs(&inputs, jobId: jobId)
        request.difference = inputs
        request.inputs = records
        request.acceptedBy = .current
        request.linkBase = base
        // The results: a Float32 difference on A's grid (about the size of A) and a PNG.
        let sizeA = ((try? FileManager.default.attributesOfItem(atPath: inputs.resolvedDSMs[0]))?[.size] as? NSNumber)?.int64Value ?? 0
        let now = Date()
        var job = Job(id: jobId, userId: user.id, name: request.name ?? "dsm-difference job", request: String(decoding: try JSONEncoder().encode(request), as: UTF8.self),
                      createdAt: now)
        announce(&job, subscriber: request.subscriber, mail: request.mail, owner: user)
        do {
            try await store.createJob(job, inputBytes: bytes, uploads: records.map(\.upload), quota: user.quota, results: 2 * sizeA + (4 << 20), now: now)
        } catch {
            try? FileManager.default.removeItem(atPath: config.jobDirectory(jobId))
            switch error {
            case let q as QuotaExceeded: throw APIProblem.quota(q)
            case let g as UploadsGone: throw Self.uploadsGone(g, records: records)
            default: throw error
            }
        }
        return jsonResponse(Self.view(job, base: base, ownerName: user.name), status: .created, headers: [.location: "\(base)/jobs/\(job.id)"])
    }

    /// Links the DSMs that `inputs` reads from jobs' results or catalogue items, each with the STAC item beside
    /// it (its acquisition time), into the job's inputs folder (`a/`, `b/`; copied where a link cannot be
    /// made), and resolves them there. Uploads stay where they are: their deletion checks the queued jobs. A
    /// source deleted since it was checked is a 422 naming its field; on any failure nothing is left.
    func linkInputs(_ inputs: inout DifferenceInputs, jobId: String) throws {
        let fm = FileManager.default
        for (i, ref) in inputs.dsms.enumerated() where ref.upload == nil {
            let source = (inputs.resolvedDSMs[i] as NSString).deletingLastPathComponent
            let target = (config.inputsDirectory(jobId) as NSString).appendingPathComponent(i == 0 ? "a" : "b")
            do {
                try fm.createDirectory(atPath: target, withIntermediateDirectories: true)
                for name in ["dsm.tif", "item.json"] {
                    let src = (source as NSString).appendingPathComponent(name), dst = (target as NSString).appendingPathComponent(name)
                    // The item only dates the DSM: one deleted meanwhile is done without.
                    if name == "item.json" && !fm.fileExists(atPath: src) { continue }
                    try linkOrCopy(src, dst)
                }
            } catch {
                try? fm.removeItem(atPath: config.jobDirectory(jobId))
                let field = "dsms[\(i)].\(ref.job != nil ? "job" : "item")"
                if !fm.fileExists(atPath: inputs.resolvedDSMs[i]) {
                    throw APIProblem.invalid([.init(field: field, message: "\(inputs.names[i]) was deleted while the job was being submitted")])
                }
                let why = "\(error)".replacingOccurrences(of: config.dataDirectory + "/", with: "")
                throw APIProblem.insufficientStorage("\(inputs.names[i]) cannot be kept for the job: \(why)")
            }
            inputs.resolvedDSMs[i] = (target as NSString).appendingPathComponent("dsm.tif")
        }
    }

    /// The bbox of a result folder's STAC item.
    static func bbox(ofItemAt path: String) -> [Double]? {
        guard let d = FileManager.default.contents(atPath: path), let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
              let b = o["bbox"] as? [Double], b.count == 4 else { return nil }
        return b
    }
}
