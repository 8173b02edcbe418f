import Crypto
import DSMCore
import DSMPipeline
import Foundation
import HTTPTypes
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import SensorIngest
import ZIPFoundation

/// An HTTP error as an RFC 9457 problem document.
struct APIProblem: Error, CustomStringConvertible {
    var status: HTTPResponse.Status
    var title: String
    var detail: String
    var errors: [FieldError]? = nil
    var limit: String? = nil
    /// The problem type (RFC 9457): `about:blank` unless OGC API – Processes names the exception.
    var type = "about:blank"

    var description: String { detail }

    static func notFound(_ what: String) -> APIProblem { APIProblem(status: .notFound, title: "Not Found", detail: what) }
    /// OGC API – Processes' exception types (Part 1, Core, 1.0: no-such-process, no-such-job, result-not-ready).
    static func ogc(_ exception: String, _ what: String) -> APIProblem {
        APIProblem(status: .notFound, title: "Not Found", detail: what, type: "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/\(exception)")
    }
    static func forbidden(_ why: String) -> APIProblem { APIProblem(status: .forbidden, title: "Forbidden", detail: why) }
    static func badRequest(_ why: String) -> APIProblem { APIProblem(status: .badRequest, title: "Bad Request", detail: why) }
    /// 422: the request is understood but cannot be processed, for the reason given (`errors`: the fields).
    static func unprocessable(_ detail: String, errors: [FieldError]? = nil) -> APIProblem {
        APIProblem(status: .unprocessableContent, title: "Unprocessable Content", detail: detail, errors: errors)
    }
    /// A request with invalid fields: 422 listing each (`errors`).
    static func invalid(_ errors: [FieldError]) -> APIProblem {
        unprocessable("the request has \(errors.count) invalid field(s)", errors: errors)
    }
    /// 507: the service's disk cannot take what the request needs stored.
    static func insufficientStorage(_ why: String) -> APIProblem {
        APIProblem(status: .init(code: 507, reasonPhrase: "Insufficient Storage"), title: "Insufficient Storage", detail: why)
    }
    /// A preset whose file in the data folder's presets is invalid (an operator's edit): 503 until it is
    /// mended; the other presets stay usable.
    static func presetUnavailable(_ name: String, _ problem: PresetError) -> APIProblem {
        APIProblem(status: .serviceUnavailable, title: "Service Unavailable", detail: "preset '\(name)' is unavailable: \(presetReason(problem))")
    }
    /// What is wrong with a preset's file, without the server's path.
    static func presetReason(_ problem: PresetError) -> String {
        if case .invalid(_, let reason) = problem { return "its file is invalid (\(reason))" }
        return problem.description
    }
    /// A submission over quota: 429 for the concurrent-jobs limit (it clears when a job ends), 403 otherwise.
    static func quota(_ q: QuotaExceeded) -> APIProblem {
        if case .concurrentJobs = q { return APIProblem(status: .tooManyRequests, title: "Too Many Requests", detail: q.description, limit: q.limit) }
        return APIProblem(status: .forbidden, title: "Forbidden", detail: q.description, limit: q.limit)
    }

    var response: Response {
        struct Body: Encodable { var type: String; var title: String; var status: Int; var detail: String; var errors: [FieldError]?; var limit: String? }
        let b = Body(type: type, title: title, status: Int(status.code), detail: detail, errors: errors, limit: limit)
        // RFC 9110: a 401 names the scheme the client must use.
        var extra: HTTPFields = status == .unauthorized ? [.wwwAuthenticate: "Bearer realm=\"dsmopt\""] : [:]
        // A concurrent-jobs limit clears when a job ends: suggest when to try again.
        if status == .tooManyRequests { extra[.retryAfter] = "30" }
        return jsonResponse(b, status: status, contentType: "application/problem+json", headers: extra)
    }
}

/// `date` in UTC as `format` (a `DateFormatter` pattern) writes it, in English whatever the machine's locale.
func utcText(_ date: Date, _ format: String) -> String {
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.timeZone = TimeZone(identifier: "UTC")
    f.dateFormat = format
    return f.string(from: date)
}

/// The bytes of a JSON body the service sends (in answers and in callbacks): keys sorted, slashes not escaped,
/// dates in ISO 8601.
func jsonBody<T: Encodable>(_ value: T) throws -> Data {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    enc.dateEncodingStrategy = .iso8601
    return try enc.encode(value)
}

/// The same for a `JSONSerialization` object (documents built as dictionaries: results, manifests, STAC).
func jsonBody(object: Any) throws -> Data {
    try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
}

func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, contentType: String = "application/json",
                                headers extra: HTTPFields = [:]) -> Response {
    let data = (try? jsonBody(value)) ?? Data("{}".utf8)
    var headers = extra
    headers[.contentType] = contentType
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// A stored result file that cannot be read as what it should be: the server's fault, not the request's.
struct DamagedResult: Error, CustomStringConvertible {
    let job: String, file: String, bytes: Int
    var description: String { "the results of job \(job) are damaged: \(file) (\(bytes) bytes) is not a JSON object" }
}

/// Turns thrown problems into problem documents and records per-route latency.
struct ProblemAndMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServiceMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        var response: Response
        do { response = try await next(request, context) } catch let p as APIProblem {
            response = p.response
        } catch let e as HTTPError {
            response = APIProblem(status: e.status, title: e.status.reasonPhrase, detail: e.body ?? e.status.reasonPhrase).response
        } catch {
            // The detail (which may name server paths) goes to the log with a request id; the client gets the id.
            let id = UUID().uuidString.lowercased().prefix(12)
            FileHandle.standardError.write(Data("dsmopt: request \(id) \(request.method.rawValue) \(request.uri.path) failed: \(error)\n".utf8))
            response = APIProblem(status: .internalServerError, title: "Internal Server Error",
                                  detail: "internal error (request id \(id)); the operator's log has the details").response
        }
        // Labels stay bounded: the matched route pattern (one label for every unmatched path), known methods.
        let method = Self.knownMethods.contains(request.method) ? request.method.rawValue : "OTHER"
        let route = context.endpointPath.flatMap { $0 == "NotFound" ? nil : $0 } ?? "unmatched"
        // A path that exists with other methods: 405 with Allow (RFC 9110 §15.5.6), not 404.
        if response.status == .notFound, route == "unmatched" {
            let allowed = OpenAPIDocument.methods(forPath: request.uri.path)
            if !allowed.isEmpty {
                var r = APIProblem(status: .methodNotAllowed, title: "Method Not Allowed",
                                   detail: "\(request.method.rawValue) is not allowed on \(request.uri.path); allowed: \(allowed.joined(separator: ", "))").response
                r.headers[.allow] = allowed.joined(separator: ", ")
                response = r
            } else if let process = Self.unknownProcess(request.uri.path) {
                response = APIProblem.ogc("no-such-process", "no process \(process); GET /processes lists them").response
            }
        }
        metrics.observeRequest(method: method, route: route, status: Int(response.status.code),
                               seconds: Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
        return response
    }

    static var knownMethods: Set<HTTPRequest.Method> { [.get, .head, .post, .put, .delete, .options, .patch] }

    /// The process id of an unmatched `/processes/{id}` or `/processes/{id}/execution` path.
    static func unknownProcess(_ path: String) -> String? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3 || (parts.count == 4 && parts[3] == "execution"), parts[0].isEmpty, parts[1] == "processes", !parts[2].isEmpty else { return nil }
        return String(parts[2].prefix(100))
    }
}

/// The REST API: OGC API – Processes style jobs, uploads, presets, users and quotas.
public struct ServiceAPI: Sendable {
    let store: JobStore
    let config: ServiceConfiguration
    let metrics: ServiceMetrics
    let inFlight = UploadsInFlight()
    let maps = MapRenderer()

    public init(store: JobStore, config: ServiceConfiguration, metrics: ServiceMetrics) {
        self.store = store
        self.config = config
        self.metrics = metrics
    }

    // MARK: helpers

    func authenticate(_ request: Request) async throws -> User {
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        guard let h = request.headers[.authorization], h.lowercased().hasPrefix("bearer ") else {
            throw APIProblem(status: .unauthorized, title: "Unauthorized", detail: "an Authorization: Bearer <token> header is required")
        }
        guard let u = try await store.user(token: String(h.dropFirst(7)).trimmingCharacters(in: .whitespaces)) else {
            throw APIProblem(status: .unauthorized, title: "Unauthorized", detail: "unknown or revoked token")
        }
        return u
    }

    func require(_ user: User, _ roles: Set<Role>) throws {
        guard roles.contains(user.role) else {
            throw APIProblem.forbidden("this needs the role \(roles.map(\.rawValue).sorted().joined(separator: " or ")); you are \(user.role.rawValue)")
        }
    }

    /// The name of `job`'s owner: the viewer's own, or read from the store (nil for a user since deleted).
    func ownerName(of job: Job, viewer: User) async throws -> String? {
        job.userId == viewer.id ? viewer.name : try await store.user(id: job.userId)?.name
    }

    /// A job the caller may see: their own, any for operators and admins, and — `reading` only — the jobs the
    /// catalogue account forwarded (so that it can report status and results back to the catalogue's user);
    /// 404 otherwise.
    func visibleJob(_ id: String?, for user: User, reading: Bool = false) async throws -> Job {
        guard let id, let job = try await store.job(id: id),
              job.userId == user.id || [.operator, .admin].contains(user.role) || (reading && Self.forwarded(job, by: user)) else {
            throw APIProblem.ogc("no-such-job", "no job \(id ?? "") for this user")
        }
        return job
    }

    /// OGC API – Processes' job list filters (conformance class job-list), each repeatable or comma-separated.
    static let jobListFilters = ["type", "processID", "status", "datetime", "minDuration", "maxDuration"]

    /// The filters of `GET /jobs`; a value the standard does not allow is a 400 naming it.
    static func jobQuery(_ q: Parameters) throws -> JobQuery {
        var query = JobQuery()
        func values(_ name: String) -> [String] {
            q.getAll(name).flatMap { $0.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } }
        }
        for t in values("type") where t != "process" { throw APIProblem.badRequest("type \(t): the jobs here are all of type process") }
        query.processIDs = values("processID")
        query.statuses = try values("status").map {
            guard let s = JobStatus(rawValue: $0) else {
                throw APIProblem.badRequest("status \($0) is not one of \(JobStatus.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return s
        }
        let dates = q.getAll("datetime")
        if dates.count > 1 { throw APIProblem.badRequest("datetime: give one date-time or interval") }
        if let d = dates.first { (query.createdFrom, query.createdTo) = try DateTimeInterval.parse(d, field: "datetime") }
        for (name, keyPath) in [("minDuration", \JobQuery.minDuration), ("maxDuration", \JobQuery.maxDuration)] {
            let given = q.getAll(name)
            guard let text = given.first else { continue }
            guard given.count == 1, let v = Int(text), v >= 0, v <= 1 << 40 else { throw APIProblem.badRequest("\(name) must be one whole number of seconds ≥ 0") }
            query[keyPath: keyPath] = Double(v)
        }
        return query
    }

    static func forwarded(_ job: Job, by user: User) -> Bool {
        guard user.role == .catalogue, let r = try? JSONDecoder().decode(ExecutionRequest.self, from: Data(job.request.utf8)) else { return false }
        return r.forwardedBy == user.id
    }

    func presets() throws -> PresetLibrary { try PresetLibrary(folder: config.presetsDirectory) }

    func body(_ request: Request, limit: Int = 4 << 20) async throws -> Data {
        do {
            let b = try await request.body.collect(upTo: limit)
            return Data(b.readableBytesView)
        } catch {
            throw APIProblem(status: .contentTooLarge, title: "Content Too Large", detail: "request body above \(limit) bytes")
        }
    }

    struct JobView: Encodable {
        var jobID: String
        var processID: String
        var type = "process"
        var name: String
        /// The owner's user id, and name (in the job lists and the job's own document, for operators who
        /// see every user's jobs).
        var owner: String
        var ownerName: String?
        var status: String
        var progress: Int
        var stage: String?
        var message: String?
        var created: Date
        var started: Date?
        var finished: Date?
        var purgeDate: Date?
        /// When the mail reminding the owner that the purge date is near fell due (`purgeReminderSeconds`
        /// before it) and was queued; `reminder` says where it stands.
        var purgeReminder: Date?
        var resultsPurged: Bool
        var error: String?
        var cpuSeconds: Double
        /// Attempts started (a job whose worker stopped is run again, up to the service's limit).
        var attempts: Int
        /// What the job was asked with: preset, parameters as given, and its inputs (name, size, SHA-256).
        var preset: String
        var parameters: JobParameters?
        var inputs: [InputRecord]?
        /// The request's `mail` as given (absent: mail when the owner has an address and the service sends mail).
        var requestedMail: Bool?
        /// With a subscriber: where it is POSTed and where that stands.
        var callback: CallbackView?
        /// With a mail to the owner on its end: where that stands.
        var mail: DeliveryView?
        /// Once the purge reminder is queued: where it stands.
        var reminder: DeliveryView?
        var links: [[String: String]]
    }

    struct DeliveryView: Encodable {
        var state: String
        var attempts: Int
        var error: String?
        var nextAttempt: Date?

        init(_ d: DeliveryState) {
            state = d.state.rawValue; attempts = d.attempts; error = d.error; nextAttempt = d.state == .pending ? d.nextAttempt : nil
        }
    }

    struct CallbackView: Encodable {
        var successUri: String?
        var failedUri: String?
        var state: String
        var attempts: Int
        var error: String?
        var nextAttempt: Date?
    }

    /// A job's status document; its links start with `base` (`baseURL(request)`); `ownerName` is the name of
    /// the job's owner (`ownerName(of:viewer:)`).
    static func view(_ j: Job, base: String, ownerName: String?) -> JobView {
        let request = try? JSONDecoder().decode(ExecutionRequest.self, from: Data(j.request.utf8))
        var links = [["href": "\(base)/jobs/\(j.id)", "rel": "self", "type": "application/json"],
                     ["href": "\(base)/jobs/\(j.id)/logs", "rel": "log", "type": "text/plain"]]
        if j.status == .successful {
            links.append(["href": "\(base)/jobs/\(j.id)/results", "rel": "http://www.opengis.net/def/rel/ogc/1.0/results", "type": "application/json"])
            links.append(["href": "\(base)/jobs/\(j.id)/results.zip", "rel": "enclosure", "type": "application/zip", "title": "every result in one zip archive"])
        }
        return JobView(jobID: j.id, processID: request?.process ?? JobQuery.defaultProcess, name: j.name, owner: j.userId, ownerName: ownerName, status: j.status.rawValue, progress: j.progress, stage: j.stage,
                       message: j.message, created: j.createdAt, started: j.startedAt, finished: j.finishedAt, purgeDate: j.purgeAt, purgeReminder: j.purgeReminderAt,
                       resultsPurged: j.purged, error: j.error, cpuSeconds: (j.cpuSeconds * 100).rounded() / 100,
                       attempts: j.attempts, preset: request?.preset ?? "default", parameters: request?.parameters, inputs: request?.inputs,
                       requestedMail: request?.mail, callback: j.callback.map {
                           CallbackView(successUri: request?.subscriber?.successUri, failedUri: request?.subscriber?.failedUri, state: $0.state.rawValue,
                                        attempts: $0.attempts, error: $0.error, nextAttempt: $0.state == .pending ? $0.nextAttempt : nil)
                       }, mail: j.mail.map(DeliveryView.init), reminder: j.reminder.map(DeliveryView.init), links: links)
    }

    /// The address of a `PUT /me/email` body (`{"email": "…"}`), checked.
    static func emailAddress(in data: Data) throws -> String {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], let email = object["email"] as? String,
              object.count == 1 else {
            throw APIProblem.unprocessable("expected {\"email\": \"name@example.org\"} (DELETE /me/email removes it)")
        }
        if let problem = MailMessage.addressProblem(email) {
            throw APIProblem.unprocessable("email: \(problem)")
        }
        return email
    }

    /// What a new job sends when it ends: its outcome to its subscriber (a callback), and a mail to its owner
    /// when they have an address and the service a mail server.
    func announce(_ job: inout Job, subscriber: Subscriber?, mail: Bool?, owner: User) {
        if subscriber != nil { job.callback = DeliveryState(state: .pending) }
        if owner.email != nil, config.smtpURL != nil {
            job.mail = mail == false ? DeliveryState(state: .skipped, error: "turned off for this job") : DeliveryState(state: .pending)
        }
    }

    /// A request's `mail`: true asks for a mail the service must be able to send.
    func mailErrors(_ mail: Bool?, owner: User) -> [FieldError] {
        guard mail == true else { return [] }
        if config.smtpURL == nil { return [.init(field: "mail", message: "this service sends no mail (no smtpURL configured)")] }
        if owner.email == nil { return [.init(field: "mail", message: "you have no address to mail: set one first (PUT /me/email)")] }
        return []
    }

    /// The base every link the API gives starts with (job status, results, uploads, processes, `Location`,
    /// the catalogue's STAC links and assets): the configured public URL (`publicURL`: behind a reverse
    /// proxy, with its path prefix), else the address the client used (Host header; `X-Forwarded-Proto`
    /// for the scheme).
    func baseURL(_ request: Request) -> String {
        if let base = config.publicBase { return base }
        let scheme = request.headers[HTTPField.Name("X-Forwarded-Proto")!].flatMap { ["http", "https"].contains($0) ? $0 : nil } ?? "http"
        let host = request.head.authority ?? "\(config.host):\(config.port)"
        return "\(scheme)://\(host)"
    }

    // MARK: routes

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ProblemAndMetricsMiddleware(metrics: metrics))

        addPortalRoutes(to: router)
        addSTACRoutes(to: router)
        router.get("/health") { _, _ in jsonResponse(["status": "ok"]) }
        router.get("/metrics") { request, _ in
            if !config.metricsPublic { try require(try await authenticate(request), [.operator, .admin]) }
            let text = metrics.render(jobCounts: try await store.jobCounts(), deliveries: try await store.deliveryCounts(), invalidPresets: ((try? presets())?.problems.keys).map(Array.init) ?? [])
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        let openAPI = config.publicBase.map { OpenAPIDocument.json(server: $0) } ?? OpenAPIDocument.json
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: openAPI)))
        }
        router.get("/processes") { request, _ in jsonResponse(ProcessDescription.list(base: baseURL(request))) }
        router.get("/processes/dsm-opt") { request, _ in
            var d = try ProcessDescription.dsmOpt(presets: try presets())
            d.links = ProcessDescription.links(of: ProcessDescription.summary, base: baseURL(request))
            return jsonResponse(d)
        }
        router.get("/processes/dsm-difference") { request, _ in
            var d = ProcessDescription.difference
            d.links = ProcessDescription.links(of: ProcessDescription.differenceSummary, base: baseURL(request))
            return jsonResponse(d)
        }

        router.post("/uploads") { request, _ in try await upload(request) }
        router.get("/uploads") { request, _ in
            let user = try await authenticate(request)
            let base = baseURL(request)
            let list = try await store.uploads(userId: user.id).map { uploadView($0, base: base) }
            return jsonResponse(["uploads": list])
        }
        router.get("/uploads/:id") { request, context in
            let user = try await authenticate(request)
            let id = context.parameters.get("id") ?? ""
            guard let u = try await store.upload(id: id, userId: user.id) else { throw APIProblem.notFound("no upload \(id) for this user") }
            return jsonResponse(await describedUpload(u, base: baseURL(request)))
        }
        router.post("/processes/dsm-opt/inspection") { request, _ in
            let user = try await authenticate(request)
            return try await inspection(try await body(request), for: user)
        }
        router.delete("/uploads/:id") { request, context in
            let user = try await authenticate(request)
            let id = context.parameters.get("id") ?? ""
            // Jobs keep their own copy of nothing: a queued or running job still needs its inputs (checked by
            // the store atomically with the deletion, and with submissions).
            switch try await store.deleteUpload(id: id, userId: user.id) {
            case .notFound: throw APIProblem.notFound("no upload \(id) for this user")
            case .inUse(let jobs):
                throw APIProblem(status: .conflict, title: "Conflict",
                                 detail: "upload \(id) is an input of \(jobs.count == 1 ? "a queued or running job" : "\(jobs.count) queued or running jobs") (\(jobs.joined(separator: ", "))): delete it once \(jobs.count == 1 ? "that job has" : "they have") ended, or dismiss \(jobs.count == 1 ? "it" : "them")")
            case .deleted:
                try? FileManager.default.removeItem(atPath: (config.uploadsDirectory as NSString).appendingPathComponent(id))
                return Response(status: .noContent)
            }
        }
        router.post("/processes/dsm-opt/execution") { request, _ in
            let user = try await authenticate(request)
            return try await submit(try ExecuteEnvelope.flattened(try await body(request)), for: user, allowRemote: false, base: baseURL(request))
        }
        router.post("/processes/dsm-difference/execution") { request, _ in
            let user = try await authenticate(request)
            return try await submitDifference(try ExecuteEnvelope.flattened(try await body(request)), for: user, base: baseURL(request))
        }
        router.post("/catalogue/jobs") { request, _ in
            let caller = try await authenticate(request)
            try require(caller, [.catalogue])
            return try await catalogueSubmit(try await body(request), caller: caller, base: baseURL(request))
        }
        router.get("/jobs") { request, _ in
            let user = try await authenticate(request)
            // Integers (clamped: limit to 1–200, offset to 0–2^40, so that `offset + limit` cannot overflow);
            // anything else is a 400, not silently the default.
            let q = request.uri.queryParameters
            func integer(_ name: String, _ fallback: Int) throws -> Int {
                guard let t = q[Substring(name)] else { return fallback }
                guard let v = Int(t), abs(v) <= 9_007_199_254_740_991 else { throw APIProblem.badRequest("\(name) must be an integer (|n| ≤ 2^53 − 1)") }
                return v
            }
            let limit = min(200, max(1, try integer("limit", 20)))
            let offset = min(1 << 40, max(0, try integer("offset", 0)))
            if let all = q["all"], all != "true", all != "false" { throw APIProblem.badRequest("all must be true or false") }
            var query = try Self.jobQuery(q)
            query.userId = [.operator, .admin].contains(user.role) && q["all"] == "true" ? nil : user.id
            var jobs: [Job], total: Int
            if user.role == .catalogue {
                // The jobs it forwarded (newest first, among the service's latest 5,000).
                query.userId = nil
                let forwarded = try await store.jobs(query, limit: 5000, offset: 0).filter { Self.forwarded($0, by: user) }
                total = forwarded.count
                jobs = Array(forwarded.dropFirst(offset).prefix(limit))
            } else {
                jobs = try await store.jobs(query, limit: limit, offset: offset)
                total = try await store.countJobs(query)
            }
            struct Page: Encodable { var jobs: [JobView]; var total: Int; var limit: Int; var offset: Int; var links: [[String: String]] }
            // The pages around this one keep its filters.
            var kept = URLComponents()
            kept.queryItems = Self.jobListFilters.flatMap { name in q.getAll(name).map { URLQueryItem(name: name, value: $0) } }
                + (q["all"].map { [URLQueryItem(name: "all", value: String($0))] } ?? [])
            let filters = (kept.percentEncodedQuery ?? "").isEmpty ? "" : "&" + kept.percentEncodedQuery!
            var links: [[String: String]] = []
            let base = baseURL(request)
            if offset + limit < total { links.append(["rel": "next", "href": "\(base)/jobs?limit=\(limit)&offset=\(offset + limit)\(filters)"]) }
            if offset > 0 { links.append(["rel": "prev", "href": "\(base)/jobs?limit=\(limit)&offset=\(max(0, offset - limit))\(filters)"]) }
            var names = [user.id: user.name]
            for id in Set(jobs.map(\.userId)) where names[id] == nil { names[id] = try await store.user(id: id)?.name }
            let views = jobs.map { Self.view($0, base: base, ownerName: names[$0.userId] ?? nil) }
            return jsonResponse(Page(jobs: views, total: total, limit: limit, offset: offset, links: links))
        }
        router.get("/jobs/:id") { request, context in
            let user = try await authenticate(request)
            let job = try await visibleJob(context.parameters.get("id"), for: user, reading: true)
            return jsonResponse(Self.view(job, base: baseURL(request), ownerName: try await ownerName(of: job, viewer: user)))
        }
        router.delete("/jobs/:id") { request, context in
            let user = try await authenticate(request)
            let job = try await visibleJob(context.parameters.get("id"), for: user)
            // Policy: operators see every job; only its owner or an admin cancels or deletes it.
            guard job.userId == user.id || user.role == .admin else {
                throw APIProblem.forbidden("only the owner of job \(job.id) or an admin may cancel or delete it")
            }
            if job.status == .accepted || job.status == .running {
                let j = try await store.cancel(jobId: job.id, now: Date()) ?? job
                return jsonResponse(Self.view(j, base: baseURL(request), ownerName: try await ownerName(of: j, viewer: user)), status: .accepted)
            }
            try? FileManager.default.removeItem(atPath: config.jobDirectory(job.id))
            try await store.delete(jobId: job.id)
            var v = Self.view(job, base: baseURL(request), ownerName: try await ownerName(of: job, viewer: user))
            v.status = JobStatus.dismissed.rawValue
            return jsonResponse(v)
        }
        router.get("/jobs/:id/logs") { request, context in
            let user = try await authenticate(request)
            let job = try await visibleJob(context.parameters.get("id"), for: user)
            // Every attempt's log, in order, each under a header line.
            var text = ""
            if job.attempts > 0 {
                for a in 1...job.attempts {
                    guard let t = try? String(contentsOfFile: config.logPath(job.id, a), encoding: .utf8) else { continue }
                    text += "==> attempt \(a)\(a == job.resultAttempt ? " (results)" : "") <==\n" + t
                }
            }
            return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("/jobs/:id/results") { request, context in
            let user = try await authenticate(request)
            let job = try await readyJob(try await visibleJob(context.parameters.get("id"), for: user, reading: true))
            return try Self.json(try resultsDocument(job, base: baseURL(request)))
        }
        // Links to the job's results that need no token until a date (`DownloadLink`), signed by the caller.
        router.post("/jobs/:id/download-links") { request, context in
            let user = try await authenticate(request)
            let job = try await readyJob(try await visibleJob(context.parameters.get("id"), for: user, reading: true))
            let seconds = try Self.linkSeconds(in: try await body(request, limit: 4096))
            guard let link = try await downloadLink(job, for: user, seconds: seconds) else {
                throw APIProblem(status: .unauthorized, title: "Unauthorized", detail: "unknown or revoked token")
            }
            return try Self.json(try downloadLinks(job, link: link, base: baseURL(request)), status: .created)
        }
        // GET and HEAD on every product, with Range, ETag, If-None-Match and If-Range: GDAL's /vsicurl/
        // and QGIS stream the COGs from here. A download link (`DownloadLink`) stands in for the token.
        for method in [HTTPRequest.Method.get, .head] {
            router.on("/jobs/:id/results/:file", method: method) { request, context in
                let (user, link) = try await resultsReader(request, job: context.parameters.get("id"))
                let job = try await readyJob(try await visibleJob(context.parameters.get("id"), for: user, reading: true))
                let file = context.parameters.get("file") ?? ""
                if file == "manifest.json" { return try manifest(job, request: request, link: link) }
                return try download(job: job, file: file, request: request)
            }
            // Every file of the results document in one zip, resumable as a product is.
            router.on("/jobs/:id/results.zip", method: method) { request, context in
                let user = try await resultsReader(request, job: context.parameters.get("id")).user
                let job = try await readyJob(try await visibleJob(context.parameters.get("id"), for: user, reading: true))
                return try await resultsArchive(job, request: request)
            }
        }
        router.get("/presets") { _, _ in jsonResponse(try presets().presets.values.sorted { $0.name < $1.name }) }
        router.get("/presets/:name") { _, context in
            let lib = try presets()
            let name = context.parameters.get("name") ?? ""
            if let problem = lib.problems[name] { throw APIProblem.presetUnavailable(name, problem) }
            guard let p = lib.presets[name] else { throw APIProblem.notFound("no preset \(name)") }
            return jsonResponse(p)
        }
        router.put("/presets/:name") { request, context in
            let user = try await authenticate(request)
            try require(user, [.operator, .admin])
            return try await putPreset(context.parameters.get("name") ?? "", try await body(request))
        }
        router.get("/me") { request, _ in
            let user = try await authenticate(request)
            struct Me: Encodable { var id: String; var name: String; var role: String; var quota: Quota; var usage: Usage; var email: String?; var mailConfigured: Bool }
            return jsonResponse(Me(id: user.id, name: user.name, role: user.role.rawValue, quota: user.quota,
                                   usage: try await store.usage(userId: user.id, now: Date()), email: user.email, mailConfigured: config.smtpURL != nil))
        }
        // The address mail about the caller's jobs goes to (each job's end), or none.
        router.put("/me/email") { request, _ in
            let user = try await authenticate(request)
            let email = try Self.emailAddress(in: try await body(request, limit: 4096))
            guard try await store.setEmail(userId: user.id, email: email) else { throw APIProblem.notFound("no such user") }
            struct Email: Encodable { var email: String; var mailConfigured: Bool }
            return jsonResponse(Email(email: email, mailConfigured: config.smtpURL != nil))
        }
        router.delete("/me/email") { request, _ in
            let user = try await authenticate(request)
            guard try await store.setEmail(userId: user.id, email: nil) else { throw APIProblem.notFound("no such user") }
            return Response(status: .noContent)
        }
        router.get("/admin/users") { request, _ in
            let user = try await authenticate(request)
            try require(user, [.admin])
            struct U: Encodable { var id: String; var name: String; var role: String; var quota: Quota; var usage: Usage; var email: String? }
            var out: [U] = []
            for u in try await store.users() {
                out.append(U(id: u.id, name: u.name, role: u.role.rawValue, quota: u.quota, usage: try await store.usage(userId: u.id, now: Date()), email: u.email))
            }
            return jsonResponse(out)
        }
        router.post("/admin/users") { request, _ in
            let user = try await authenticate(request)
            try require(user, [.admin])
            struct NewUser: Decodable { var name: String; var role: Role; var quota: Quota?; var email: String? }
            let data = try await body(request)
            let raw = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
            guard let n = try? JSONDecoder().decode(NewUser.self, from: data), !n.name.isEmpty, !raw.values.contains(where: { $0 is NSNull }) else {
                throw APIProblem.unprocessable("expected {\"name\": string, \"role\": researcher|operator|admin|catalogue, \"quota\"?: {...}, \"email\"?: string}")
            }
            if let problem = User.nameProblem(n.name) { throw APIProblem.unprocessable("name: \(problem)") }
            if let e = n.email, let problem = MailMessage.addressProblem(e) {
                throw APIProblem.unprocessable("email: \(problem)")
            }
            do {
                var (u, token) = try await store.createUser(name: n.name, role: n.role, quota: n.quota ?? config.defaultQuota)
                if let e = n.email, try await store.setEmail(userId: u.id, email: e) { u.email = e }
                struct Created: Encodable { var user: User; var token: String }
                return jsonResponse(Created(user: u, token: token), status: .created, headers: [.location: "\(baseURL(request))/admin/users/\(u.id)"])
            } catch let e as StoreError { throw APIProblem(status: .conflict, title: "Conflict", detail: e.description) }
        }
        // Token rotation (the new token is shown once) and revocation; both act at once on every request.
        router.post("/admin/users/:id/token") { request, context in
            try require(try await authenticate(request), [.admin])
            guard let id = context.parameters.get("id"), let token = try await store.rotateToken(userId: id) else { throw APIProblem.notFound("no such user") }
            struct Rotated: Encodable { var id: String; var token: String }
            return jsonResponse(Rotated(id: id, token: token), status: .created)
        }
        router.delete("/admin/users/:id/token") { request, context in
            try require(try await authenticate(request), [.admin])
            guard let id = context.parameters.get("id"), try await store.revokeToken(userId: id) else { throw APIProblem.notFound("no such user") }
            return Response(status: .noContent)
        }
        router.post("/me/token") { request, _ in
            let user = try await authenticate(request)
            guard let token = try await store.rotateToken(userId: user.id) else { throw APIProblem.notFound("no such user") }
            struct Rotated: Encodable { var id: String; var token: String }
            return jsonResponse(Rotated(id: user.id, token: token), status: .created)
        }
        // The key that signs the callbacks of the user's jobs (`CallbackSignature`): shown (created on first
        // use), or replaced — callbacks sent from then on are signed with the new one, and with the replaced one
        // too for `callbackSecretGraceSeconds`.
        router.get("/me/callback-secret") { request, _ in try await callbackSecret(for: try await authenticate(request), renew: false) }
        router.post("/me/callback-secret") { request, _ in try await callbackSecret(for: try await authenticate(request), renew: true) }
        router.put("/admin/users/:id/quota") { request, context in
            let user = try await authenticate(request)
            try require(user, [.admin])
            // Partial updates: the fields given replace the user's current ones (as `admin set-quota`).
            let id = context.parameters.get("id") ?? ""
            guard let target = try await store.user(id: id) else { throw APIProblem.notFound("no such user") }
            let data = try await body(request)
            let raw = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
            let keys = Set(raw.keys)
            let known = Set(QuotaSettings.CodingKeys.allCases.map(\.rawValue))
            guard let p = try? JSONDecoder().decode(QuotaSettings.self, from: data), !keys.isEmpty, keys.isSubset(of: known), raw.values.allSatisfy({ $0 is NSNumber }),
                  (0...1_000_000).contains(p.maxConcurrentJobs ?? 0), (0...1e12).contains(p.cpuSecondsPerMonth ?? 0),
                  (0...(Int64(1) << 60)).contains(p.storageBytes ?? 0), (0...(Int64(1) << 60)).contains(p.maxInputBytes ?? 0) else {
                throw APIProblem.unprocessable("expected some of {maxConcurrentJobs (0–10^6), cpuSecondsPerMonth (0–10^12), storageBytes, maxInputBytes (0–2^60)}")
            }
            guard let u = try await store.setQuota(userId: id, quota: p.applied(to: target.quota)) else { throw APIProblem.notFound("no such user") }
            return jsonResponse(u)
        }
        return router
    }

    func readyJob(_ job: Job) async throws -> Job {
        if job.purged { throw APIProblem(status: .gone, title: "Gone", detail: "the results of job \(job.id) were purged after the retention period") }
        switch job.status {
        case .successful: return job
        case .accepted, .running:
            throw APIProblem.ogc("result-not-ready", "job \(job.id) has no results yet (status \(job.status.rawValue), \(job.progress) %)")
        case .failed: throw APIProblem.notFound("job \(job.id) has no results (status failed: \(job.error ?? "no reason recorded"))")
        case .dismissed: throw APIProblem.notFound("job \(job.id) has no results (status dismissed)")
        }
    }

    // MARK: download links

    /// Who reads a job's results: the holder of a token (the Authorization header, which wins when both are
    /// given), or of a download link for this job (its query), with that link. A link that does not hold is a
    /// 403 saying why.
    func resultsReader(_ request: Request, job id: String?) async throws -> (user: User, link: DownloadLink?) {
        guard request.headers[.authorization] == nil else { return (try await authenticate(request), nil) }
        let q = request.uri.queryParameters
        do {
            guard let link = try DownloadLink.parse(jobId: id ?? "", query: { name in q.getAll(name).map { String($0) } }) else {
                return (try await authenticate(request), nil)
            }
            try link.verify(tokenHash: try await store.tokenHash(userId: link.userId), now: Date())
            guard let user = try await store.user(id: link.userId) else { throw DownloadLink.Refusal.badSignature }
            return (user, link)
        } catch let refusal as DownloadLink.Refusal {
            throw APIProblem.forbidden(refusal.description)
        }
    }

    /// The duration of the links `POST /jobs/{id}/download-links` asks for: its body's `expiresIn` (seconds), or
    /// `DownloadLink.defaultSeconds` for an empty body.
    static func linkSeconds(in data: Data) throws -> Int64 {
        if data.allSatisfy({ [0x20, 0x09, 0x0a, 0x0d].contains($0) }) { return DownloadLink.defaultSeconds }
        let range = "expiresIn: whole seconds from 60 to \(DownloadLink.maxSeconds) (30 days)"
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw APIProblem.badRequest("the body must be a JSON object: {\"expiresIn\": seconds}, or empty for \(DownloadLink.defaultSeconds) s")
        }
        let unknown = object.keys.filter { $0 != "expiresIn" }.sorted()
        guard unknown.isEmpty else { throw APIProblem.unprocessable("unknown field(s) \(unknown.joined(separator: ", ")); the only one is \(range)") }
        struct Asked: Decodable { var expiresIn: Int64? }
        guard let asked = try? JSONDecoder().decode(Asked.self, from: data), !(object["expiresIn"] is NSNull) else {
            throw APIProblem.invalid([FieldError(field: "expiresIn", message: "must be \(range)")])
        }
        guard let v = asked.expiresIn else { return DownloadLink.defaultSeconds }
        guard (60...DownloadLink.maxSeconds).contains(v) else { throw APIProblem.invalid([FieldError(field: "expiresIn", message: "must be \(range)")]) }
        return v
    }

    /// A link to `job`'s results signed by `user`, for `seconds` from now but never past the purge; nil when the
    /// user's token is revoked (or the user gone).
    func downloadLink(_ job: Job, for user: User, seconds: Int64, now: Date = Date()) async throws -> DownloadLink? {
        guard let hash = try await store.tokenHash(userId: user.id) else { return nil }
        var expires = Int64(now.timeIntervalSince1970) + seconds
        if let purge = job.purgeAt { expires = min(expires, Int64(purge.timeIntervalSince1970)) }
        return DownloadLink(jobId: job.id, userId: user.id, expires: expires, tokenHash: hash)
    }

    /// `POST /jobs/{id}/download-links`' answer: the expiry, the query that signs, the zip and the results
    /// document with every href signed.
    func downloadLinks(_ job: Job, link: DownloadLink, base: String) throws -> [String: Any] {
        ["expires": ISO8601DateFormatter().string(from: link.expiryDate), "query": link.query,
         "archive": "\(base)/jobs/\(job.id)/results.zip?\(link.query)",
         "results": Self.signed(try resultsDocument(job, base: base), link: link)]
    }

    /// A results document (output → link or list of links) with `link`'s query on each href.
    static func signed(_ document: [String: Any], link: DownloadLink) -> [String: Any] {
        func sign(_ l: [String: Any]) -> [String: Any] {
            var l = l
            if let href = l["href"] as? String { l["href"] = "\(href)?\(link.query)" }
            return l
        }
        return document.mapValues { value in
            if let list = value as? [[String: Any]] { return list.map(sign) }
            if let one = value as? [String: Any] { return sign(one) }
            return value
        }
    }

    // MARK: uploads

    static func sanitize(_ name: String) -> String? {
        let base = (name as NSString).lastPathComponent
        let ok = base.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0) }
        return ok && !base.isEmpty && !base.hasPrefix(".") && base.count <= 200 ? base : nil
    }

    static func tooLarge(_ detail: String, limit: String) -> APIProblem {
        APIProblem(status: .contentTooLarge, title: "Content Too Large", detail: detail, limit: limit)
    }

    /// 507 when the data folder's file system is nearly full.
    func requireFreeSpace(for bytes: Int64) throws {
        if let free = freeBytes(config.dataDirectory), free - bytes < config.minFreeBytes {
            throw APIProblem.insufficientStorage("the service's disk is nearly full; try again later (the operators have been told by /metrics and the log)")
        }
    }

    func upload(_ request: Request) async throws -> Response {
        let user = try await authenticate(request)
        let given = request.uri.queryParameters["name"].map(String.init) ?? "upload.tif"
        guard let name = Self.sanitize(given), name == given, name.unicodeScalars.allSatisfy(\.isASCII) else {
            throw APIProblem.badRequest("the file name may only hold ASCII letters, digits, '.', '_' and '-' (no folders)")
        }
        let limit = min(config.maxUploadBytes, user.quota.maxInputBytes)
        let limitName = limit == config.maxUploadBytes ? "maxUploadBytes" : "maxInputBytes"
        let declared = request.headers[.contentLength].flatMap { Int64($0) }
        if let cl = declared, cl > limit { throw Self.tooLarge("upload of \(cl) bytes above the limit of \(limit) bytes", limit: limitName) }
        try requireFreeSpace(for: declared ?? 0)
        // The storage quota is reserved before the body streams: what this user has stored plus what their
        // other uploads in flight have received so far; re-checked on every chunk.
        let usage = try await store.usage(userId: user.id, now: Date())
        guard let slot = inFlight.begin(user: user.id, max: config.maxConcurrentUploads, declared: declared ?? 0) else {
            throw APIProblem(status: .tooManyRequests, title: "Too Many Requests",
                             detail: "at most \(config.maxConcurrentUploads) uploads of one user at a time", limit: "maxConcurrentUploads")
        }
        defer { inFlight.end(slot) }
        let room = user.quota.storageBytes - usage.storageBytes
        func overQuota(_ size: Int64) -> APIProblem {
            APIProblem(status: .forbidden, title: "Forbidden",
                       detail: QuotaExceeded.storage(used: usage.storageBytes, requested: size, limit: user.quota.storageBytes).description, limit: "storageBytes")
        }
        if let cl = declared, cl + inFlight.others(slot) > room { throw overQuota(cl) }
        let id = SQLiteJobStore.newID()
        let dir = (config.uploadsDirectory as NSString).appendingPathComponent(id)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let final = (dir as NSString).appendingPathComponent(name), part = final + ".part"
        guard FileManager.default.createFile(atPath: part, contents: nil), let handle = FileHandle(forWritingAtPath: part) else {
            try? FileManager.default.removeItem(atPath: dir)
            throw APIProblem.insufficientStorage("the upload cannot be stored")
        }
        var hasher = SHA256()
        var size: Int64 = 0
        do {
            for try await chunk in request.body {
                size += Int64(chunk.readableBytes)
                if size > limit { throw Self.tooLarge("upload above the limit of \(limit) bytes", limit: limitName) }
                inFlight.received(slot, bytes: size)
                if size + inFlight.others(slot) > room { throw overQuota(size) }
                let bytes = Data(chunk.readableBytesView)
                hasher.update(data: bytes)
                try handle.write(contentsOf: bytes)
            }
            try handle.close()
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: dir)
            if let p = error as? APIProblem { throw p }
            if let free = freeBytes(config.dataDirectory), free < config.minFreeBytes + (64 << 20) {
                throw APIProblem.insufficientStorage("the service's disk filled up during the upload; try again later")
            }
            throw APIProblem.badRequest("the upload was interrupted")
        }
        guard size > 0 else {
            try? FileManager.default.removeItem(atPath: dir)
            throw APIProblem.badRequest("empty upload")
        }
        // What the service can use starts like one: TIFF/BigTIFF, JPEG2000, a zip of a product, or DIMAP XML.
        guard let kind = UploadKind(signatureOf: part) else {
            try? FileManager.default.removeItem(atPath: dir)
            throw APIProblem(status: .unsupportedMediaType, title: "Unsupported Media Type",
                             detail: "the upload is not a TIFF, JPEG2000, zip, DIMAP XML or GeoJSON (.geojson, .json) file (send the raw file bytes as the request body, not a form)")
        }
        if kind == .zip, !name.lowercased().hasSuffix(".zip") {
            try? FileManager.default.removeItem(atPath: dir)
            throw APIProblem(status: .unsupportedMediaType, title: "Unsupported Media Type", detail: "a zip archive must be uploaded with a name ending in .zip")
        }
        try FileManager.default.moveItem(atPath: part, toPath: final)
        var u = Upload(id: id, userId: user.id, fileName: name, size: size, sha256: hexString(hasher.finalize()), createdAt: Date())
        try await storeUpload(&u, room: room - inFlight.others(slot))
        return jsonResponse(uploadView(u, base: baseURL(request)), status: .created, headers: [.location: "\(baseURL(request))/uploads/\(id)"])
    }

    /// Records a file already written at `config.uploadPath(u)`. A zipped product is extracted first (off
    /// the server's threads, counting the bytes really written against `room`); the upload's size is
    /// then what it occupies on disk. On failure the upload's folder is removed: nothing half-stored remains.
    func storeUpload(_ u: inout Upload, room: Int64) async throws {
        let path = config.uploadPath(u)
        let dir = (path as NSString).deletingLastPathComponent
        do {
            if u.fileName.lowercased().hasSuffix(".zip") {
                let folder = (dir as NSString).appendingPathComponent("product")
                let limit = min(room - u.size, config.maxUploadBytes * 4)
                let limitName = limit == config.maxUploadBytes * 4 ? "maxUploadBytes" : "storageBytes"
                let extracted = try await withCheckedThrowingContinuation { (c: CheckedContinuation<Int64, Error>) in
                    DispatchQueue.global().async {
                        c.resume(with: Result { try Self.extractProduct(path, into: folder, limit: limit, limitName: limitName) })
                    }
                }
                u.size += extracted
            }
            try await store.addUpload(u)
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw error
        }
    }

    /// Most entries a zipped product may hold (a tiled DIMAP product has a few dozen files).
    static let maxZipEntries = 2000

    /// Extracts a zipped product (e.g. a DIMAP folder) beside the upload. The bytes really inflated are
    /// counted and extraction stops at `limit` (declared sizes are not trusted); entries are capped;
    /// symbolic links and entries that would land outside the folder are refused. Returns the bytes written.
    static func extractProduct(_ zip: String, into folder: String, limit: Int64, limitName: String) throws -> Int64 {
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: zip), accessMode: .read) } catch {
            throw APIProblem.unprocessable("the upload is not a valid zip archive")
        }
        let fm = FileManager.default
        let root = URL(fileURLWithPath: folder).standardizedFileURL.path
        var count = 0
        for entry in archive {
            count += 1
            guard count <= maxZipEntries else { throw APIProblem.unprocessable("the archive holds more than \(maxZipEntries) entries") }
            let p = entry.path
            if p.hasPrefix("/") || p.contains("\\") || p.split(separator: "/").contains("..") {
                throw APIProblem.unprocessable("zip entry \(p) points outside the archive")
            }
            guard entry.type != .symlink else { throw APIProblem.unprocessable("zip entry \(p) is a symbolic link; links are not accepted") }
            // Compared as unsigned: a ZIP64 size near 2^64 must not trap on conversion.
            guard limit > 0, entry.uncompressedSize <= UInt64(limit) else {
                throw tooLarge("zip entry \(p) declares \(entry.uncompressedSize) bytes, above the \(max(0, limit)) bytes left", limit: limitName)
            }
        }
        try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var total: Int64 = 0
        for entry in archive {
            let dest = URL(fileURLWithPath: folder).appendingPathComponent(entry.path).standardizedFileURL.path
            guard dest.hasPrefix(root + "/") else { throw APIProblem.unprocessable("zip entry \(entry.path) points outside the archive") }
            if entry.type == .directory { try fm.createDirectory(atPath: dest, withIntermediateDirectories: true); continue }
            try fm.createDirectory(atPath: (dest as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard fm.createFile(atPath: dest, contents: nil), let h = FileHandle(forWritingAtPath: dest) else {
                throw APIProblem.insufficientStorage("the archive cannot be extracted here")
            }
            defer { try? h.close() }
            do {
                _ = try archive.extract(entry, bufferSize: 1 << 16) { chunk in
                    // Real bytes, counted as they inflate.
                    total += Int64(chunk.count)
                    if total > limit { throw tooLarge("the archive expands beyond \(limit) bytes", limit: limitName) }
                    try h.write(contentsOf: chunk)
                }
            } catch let p as APIProblem { throw p } catch {
                throw APIProblem.unprocessable("the zip archive cannot be extracted (entry \(entry.path) is damaged)")
            }
        }
        return total
    }

    /// The images an upload stands for, in delivery order: the file itself; the one image of a zipped product
    /// (a DIMAP product, tiled or not, is one image: its DIM file); or each image of a zipped delivery (a
    /// stereo or tri-stereo delivery: 2–3 products, panchromatic first when PAN + MS bundles).
    func imagePaths(_ u: Upload) throws -> [String] {
        let path = config.uploadPath(u)
        // A zipped product (extracted) or a product copied from the archive lives in `product/`.
        let folder = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("product")
        guard FileManager.default.fileExists(atPath: folder) else { return [path] }
        var found: [String] = []
        do { found = try ProductDiscovery.expandFolder(folder) } catch IngestError.noImagesInFolder { found = [] } catch {
            // A malformed product: say why, naming the upload, not the server's folder.
            throw FetchError(description: "\(error)".replacingOccurrences(of: folder + "/", with: u.fileName + ": "))
        }
        if found.isEmpty {
            let all = (FileManager.default.subpaths(atPath: folder) ?? []).filter { ["tif", "tiff", "jp2"].contains(($0 as NSString).pathExtension.lowercased()) }
            found = all.sorted().map { (folder as NSString).appendingPathComponent($0) }
        }
        guard !found.isEmpty else { throw FetchError(description: "the zipped upload \(u.fileName) holds no image") }
        guard found.count <= 3 else {
            throw FetchError(description: "the zipped upload \(u.fileName) holds \(found.count) images; a delivery holds 2 or 3 views (upload the products of one stereo or tri-stereo acquisition)")
        }
        return found
    }

    /// The images that `images` entries of a request stand for, in order: an upload of one image is that
    /// image; a zipped delivery is each of its images, or the one its `image` (1-based) names. Each comes
    /// with the name messages use for it (the upload's file name, "delivery.zip image 2" in a delivery).
    func expandImages(_ refs: [(index: Int, upload: Upload, image: Int?)]) -> (images: [(path: String, name: String, upload: Upload, field: String)], errors: [FieldError]) {
        var out: [(path: String, name: String, upload: Upload, field: String)] = []
        var errors: [FieldError] = []
        for ref in refs {
            let all: [String]
            do { all = try imagePaths(ref.upload) } catch {
                errors.append(.init(field: "images[\(ref.index)].upload", message: "\(error)"))
                continue
            }
            var chosen = Array(all.enumerated())
            if let n = ref.image {
                guard (1...all.count).contains(n) else {
                    errors.append(.init(field: "images[\(ref.index)].image", message: "\(ref.upload.fileName) holds \(all.count) image(s): give 1 to \(all.count)"))
                    continue
                }
                chosen = [(n - 1, all[n - 1])]
            }
            for (k, path) in chosen {
                let name = all.count > 1 ? "\(ref.upload.fileName) image \(k + 1)" : ref.upload.fileName
                if let first = out.firstIndex(where: { $0.path == path }) {
                    errors.append(.init(field: "images[\(ref.index)].upload", message: "the same image as \(out[first].field) (\(name)): a stereo pair needs two different images"))
                    continue
                }
                out.append((path, name, ref.upload, "images[\(ref.index)]" + (all.count > 1 ? " image \(k + 1)" : "")))
            }
        }
        if errors.isEmpty, !(2...3).contains(out.count) {
            errors.append(.init(field: "images", message: "stereo needs 2 or 3 images, got \(out.count)"))
        }
        return (out, errors)
    }

    // MARK: uploads and inspection

    struct UploadView: Encodable {
        var id: String
        var fileName: String
        var size: Int64
        var sha256: String
        var created: Date
        /// What was read from it when it is an image (GET /uploads/{id} reads it once; the list shows it after).
        var image: ImageSummary?
        /// For a zipped delivery of several images: what was read from each, in delivery order (`"image": n`
        /// in a request picks one; `{"upload": id}` alone uses them all).
        var images: [ImageSummary]?
        var readError: String?
        /// What the file is, by its first bytes (`UploadKind`): tiff, jpeg2000, zip, xml (DIMAP) or geojson (a
        /// water mask, not an image).
        var kind: String?
        var links: [[String: String]]
    }

    /// An image's description without server paths.
    struct ImageSummary: Codable {
        var width: Int, height: Int, bands: Int, dataType: String, rpcSource: String
        var gsd: Double, incidenceDeg: Double, azimuthDeg: Double
        var acquisitionTime: String?, platform: String?
        var footprint: [[Double]]
    }

    func describedPath(_ u: Upload) -> String {
        ((config.uploadPath(u) as NSString).deletingLastPathComponent as NSString).appendingPathComponent(".described.json")
    }

    /// An upload as listed: its record, and what was read from it when `describedUpload` has cached that.
    func uploadView(_ u: Upload, base: String) -> UploadView {
        let cached = FileManager.default.contents(atPath: describedPath(u)).flatMap { try? JSONDecoder().decode([ImageSummary].self, from: $0) }
        return UploadView(id: u.id, fileName: u.fileName, size: u.size, sha256: u.sha256, created: u.createdAt,
                          image: cached?.count == 1 ? cached?[0] : nil, images: (cached?.count ?? 0) > 1 ? cached : nil, readError: nil,
                          kind: UploadKind(signatureOf: config.uploadPath(u))?.rawValue, links: [["href": "\(base)/uploads/\(u.id)", "rel": "self", "type": "application/json"]])
    }

    /// The upload with what is read from it: `dsmopt describe` in a child process (CPU-limited, input
    /// drivers only), cached beside the upload.
    func describedUpload(_ u: Upload, base: String) async -> UploadView {
        var view = uploadView(u, base: base)
        guard view.image == nil, view.images == nil else { return view }
        if view.kind == UploadKind.geojson.rawValue { return view }
        do {
            let paths = try imagePaths(u)
            var summaries: [ImageSummary] = []
            for (k, path) in paths.enumerated() {
                let (status, data) = try await child(["describe", path, "--cpu-seconds", "30"], timeout: 60)
                guard status == 0, let s = try? JSONDecoder().decode(ImageSummary.self, from: data) else {
                    view.readError = (paths.count > 1 ? "image \(k + 1) is " : "") + "not an image the service can read (no RPC model, or not a GeoTIFF/JPEG2000/DIMAP image)"
                    return view
                }
                summaries.append(s)
            }
            if summaries.count == 1 { view.image = summaries[0] } else { view.images = summaries }
            try? JSONEncoder().encode(summaries).write(to: URL(fileURLWithPath: describedPath(u)))
        } catch {
            view.readError = "\(error)"
        }
        return view
    }

    /// `POST /processes/dsm-opt/inspection`: what `dsmopt inspect` prints for 2–3 uploads (images, B/H,
    /// convergence, overlap, the pairs selected and why) without queuing a job; upload names, no server paths.
    func inspection(_ body: Data, for user: User) async throws -> Response {
        guard let obj = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let images = obj["images"] as? [[String: Any]] else {
            throw APIProblem.unprocessable("give {\"images\": [{\"upload\": \"<id>\"}, …]}",
                                           errors: [.init(field: "images", message: "must be an array of 2 or 3 {\"upload\": \"<id>\"}")])
        }
        var errors: [FieldError] = []
        if !(1...3).contains(images.count) { errors.append(.init(field: "images", message: "stereo needs 2 or 3 images, got \(images.count)")) }
        var refs: [(index: Int, upload: Upload, image: Int?)] = []
        for (i, im) in images.enumerated() {
            let image = im["image"] as? Int
            guard let id = im["upload"] as? String, im.count == (im["image"] == nil ? 1 : 2), im["image"] == nil || (image ?? 0) >= 1 else {
                errors.append(.init(field: "images[\(i)]", message: "must be {\"upload\": \"<id>\"} or {\"upload\": \"<id>\", \"image\": n} (n ≥ 1)")); continue
            }
            guard let u = try await store.upload(id: id, userId: user.id) else { errors.append(.init(field: "images[\(i)].upload", message: "unknown upload \(id)")); continue }
            refs.append((i, u, image))
        }
        var paths: [String] = [], names: [String] = []
        if errors.isEmpty {
            let expanded = expandImages(refs)
            errors += expanded.errors
            paths = expanded.images.map(\.path); names = expanded.images.map(\.name)
        }
        guard errors.isEmpty else {
            throw APIProblem.invalid(errors)
        }
        let (status, data) = try await child(["inspect"] + paths, timeout: 120)
        var text = String(decoding: data, as: UTF8.self)
        for (p, n) in zip(paths, names) { text = text.replacingOccurrences(of: p, with: n) }
        text = text.replacingOccurrences(of: config.dataDirectory + "/", with: "")
        guard status == 0, (try? JSONSerialization.jsonObject(with: Data(text.utf8))) != nil else {
            throw APIProblem.unprocessable("the images cannot be inspected together (unreadable, without RPC, or not overlapping)",
                                           errors: [.init(field: "images", message: "cannot be inspected together: check each with GET /uploads/{id}")])
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// The refusal of a submission whose uploads were deleted while it was being checked, naming the fields.
    static func uploadsGone(_ g: UploadsGone, records: [InputRecord]) -> APIProblem {
        var seen = Set<String>()
        let errors = records.filter { g.ids.contains($0.upload) && seen.insert($0.field).inserted }
            .map { FieldError(field: "\($0.field).upload", message: "upload \($0.upload) (\($0.fileName)) was deleted while the job was being submitted") }
        return APIProblem.unprocessable(g.description, errors: errors)
    }

    /// Storage a job's results take, estimated from its DSM cells: 24 bytes per cell for the rasters (DSM
    /// layers, score, hillshades, orthos and mosaic as DEFLATE COGs; measured 17–19 on La Réunion at 0.5 and
    /// 1 m), 34 more with the point cloud (one LAS point format 6 record per cell).
    static func estimatedResultBytes(cells: Double, pointCloud: Bool) -> Int64 {
        Int64((cells * (24 + (pointCloud ? 34 : 0))).rounded(.up))
    }

    /// Runs `dsmopt ARGS` in a child process (stdout captured in a file of the data folder, killed after
    /// `timeout` seconds); returns its exit status (the signal's number when one ended it) and its stdout.
    func child(_ arguments: [String], timeout: Double) async throws -> (Int32, Data) {
        let output = (config.dataDirectory as NSString).appendingPathComponent(".child-\(UUID().uuidString).out")
        defer { try? FileManager.default.removeItem(atPath: output) }
        let c = try ChildRun(executable: config.executable ?? currentExecutable(), arguments: arguments,
                             environment: ProcessInfo.processInfo.environment, log: "/dev/null", events: nil, output: output)
        let deadline = Date().addingTimeInterval(timeout)
        _ = await c.runToEnd(stallSeconds: .infinity, every: 0.02) {
            if Date() > deadline { c.signal(SIGKILL) }
            return false
        }
        return (c.terminationStatus ?? -1, (try? Data(contentsOf: URL(fileURLWithPath: output))) ?? Data())
    }

    // MARK: submission

    /// Validates a request (fields, images, preset), checks the quota atomically and queues the job.
    func submit(_ body: Data, for user: User, allowRemote: Bool, base: String, fetched: [Upload]? = nil, forwardedBy: String? = nil) async throws -> Response {
        let lib = try presets()
        let (parsed, fieldErrors) = RequestValidator.validate(body, presets: lib)
        var errors = fieldErrors
        guard var request = parsed, errors.isEmpty else {
            throw APIProblem.invalid(errors)
        }
        if let s = request.subscriber {
            let (checked, e) = checkedSubscriber(s)
            request.subscriber = checked
            errors += e
        }
        errors += mailErrors(request.mail, owner: user)
        var inputs: [(String, Int64)] = []
        var records: [InputRecord] = []
        var paths: [String] = []
        var resultBytes: Int64 = 0
        var refs: [(index: Int, upload: Upload, image: Int?)] = []
        for (i, ref) in request.images.enumerated() {
            if let id = ref.upload, let first = request.images.prefix(i).firstIndex(where: { $0.upload == id && $0.image == ref.image }) {
                errors.append(.init(field: "images[\(i)].upload", message: "the same upload as images[\(first)]: a stereo pair needs two different images"))
                continue
            }
            var upload = fetched?[i]  // catalogue jobs: the images the service fetched itself
            if upload == nil {
                guard let id = ref.upload else {
                    errors.append(.init(field: "images[\(i)]", message: allowRemote ? "could not be fetched" : "only the catalogue may reference URLs or paths; upload the image first"))
                    continue
                }
                guard let u = try await store.upload(id: id, userId: user.id) else {
                    errors.append(.init(field: "images[\(i)].upload", message: "unknown upload \(id)"))
                    continue
                }
                upload = u
            }
            guard let u = upload else { continue }
            refs.append((i, u, ref.image))
        }
        // A zipped delivery stands for its 2–3 images (or the one `image` names); the count is checked after.
        if errors.isEmpty {
            let expanded = expandImages(refs)
            errors += expanded.errors
            for im in expanded.images {
                records.append(InputRecord(field: im.field, upload: im.upload.id, fileName: im.name, bytes: im.upload.size, sha256: im.upload.sha256))
                paths.append(im.path)
                inputs.append((im.name, im.upload.size))
            }
        }
        // The finishing steps' files (uploads of the caller's) and sources.
        var files: [String: String] = [:]
        for (field, ref) in [("referenceDem", request.referenceDem), ("waterMask", request.waterMask), ("multispectral", request.multispectral)] {
            guard let id = ref?.upload else { continue }
            guard let u = try await store.upload(id: id, userId: user.id) else {
                errors.append(.init(field: "\(field).upload", message: "unknown upload \(id)"))
                continue
            }
            files[field] = config.uploadPath(u)
            inputs.append((u.fileName, u.size))
            records.append(InputRecord(field: field, upload: u.id, fileName: u.fileName, bytes: u.size, sha256: u.sha256))
        }
        // The job's values, then its preset's options.
        var values = request.parameters?.values ?? [:]
        for (k, v) in (try? lib.preset(request.preset ?? "default"))?.options ?? [:] where values[k] == nil { values[k] = v }
        if values["coregister"]?.bool == true && request.referenceDem == nil && config.referenceDEM == nil {
            errors.append(.init(field: "parameters.coregister", message: "no reference DEM: give one with the job (referenceDem) — this service has none configured"))
        }
        if values["mask-water"]?.bool == true && request.waterMask == nil && request.multispectral == nil && config.waterLayer == nil {
            errors.append(.init(field: "parameters.mask-water", message: "no water mask: give one with the job (waterMask: GeoJSON or raster; or multispectral for NDWI) — this service has no water layer configured"))
        }
        for (field, given) in [("referenceDem", request.referenceDem != nil), ("waterMask", request.waterMask != nil), ("multispectral", request.multispectral != nil)] where given {
            let key = field == "referenceDem" ? "coregister" : "mask-water"
            if values[key]?.bool != true { errors.append(.init(field: field, message: "given without parameters.\(key) = true")) }
        }
        // Every image must be readable with an RPC model, overlap the others, and hold the ROI/AOI, before
        // anything is queued. The images are read by a child process (`dsmopt check-inputs`, CPU-limited,
        // with the input drivers only): a hostile file or a parser crash cannot take the API down.
        // Messages name uploads, never server paths.
        if errors.isEmpty {
            var spec = JobSpec(images: paths)
            spec.roi = request.parameters?.roi
            spec.aoi = request.parameters?.aoi
            spec.referenceDEM = files["referenceDem"]
            spec.waterMask = files["waterMask"]
            spec.multispectral = files["multispectral"]
            let check = try await checkInputs(spec)
            let allPaths = paths + ["referenceDem", "waterMask", "multispectral"].compactMap { files[$0] }
            func named(_ m: String) -> String {
                var m = m
                for (i, p) in allPaths.enumerated() where i < inputs.count { m = m.replacingOccurrences(of: p, with: inputs[i].0) }
                return m.replacingOccurrences(of: config.dataDirectory + "/", with: "")
            }
            // An upload deleted meanwhile reads as a missing file: said as it is.
            if !check.errors.isEmpty {
                var gone: [String] = []
                for id in Set(records.map(\.upload)).sorted() where try await store.upload(id: id, userId: user.id) == nil { gone.append(id) }
                if !gone.isEmpty { throw Self.uploadsGone(UploadsGone(ids: gone), records: records) }
            }
            errors += check.errors.map { FieldError(field: $0.field, message: named($0.message)) }
            // What cannot be served is refused now: too fine a resolution, too many DSM cells.
            if errors.isEmpty, let first = check.images.first ?? nil, let a = check.area, a.count == 4 {
                let gsd = first.gsd
                let factor = request.parameters?.resolutionFactor ?? (try? lib.preset(request.preset ?? "default"))?.resolutionFactor ?? 2
                let resolution = request.parameters?.resolution ?? factor * gsd
                if resolution < config.minResolutionFactor * gsd * 0.999 {
                    let field = request.parameters?.resolution != nil ? "parameters.resolution" : "parameters.resolution-factor"
                    errors.append(.init(field: field, message: String(format: "a %.3f m DSM is finer than this service allows: at least %.2f × the image GSD (%.3f m)", resolution, config.minResolutionFactor, gsd)))
                }
                let pixels = Double(a[2]) * Double(a[3])
                let cellsPerPixel: Double = (gsd * gsd) / (resolution * resolution)
                let cells: Double = pixels * cellsPerPixel
                if cells > config.maxJobCells {
                    errors.append(.init(field: "parameters", message: String(format: "the DSM would have %.0f M cells, above this service's limit of %.0f M: choose a smaller area or a coarser resolution", cells / 1e6, config.maxJobCells / 1e6)))
                }
                var pointCloud = values["point-cloud"]?.bool
                if pointCloud == nil, let d = JobParameterTable.spec("point-cloud")?.defaultValue { pointCloud = d != 0 }
                resultBytes = Self.estimatedResultBytes(cells: cells, pointCloud: pointCloud == true)
            }
        }
        guard errors.isEmpty else {
            throw APIProblem.invalid(errors)
        }
        request.resolvedImagePaths = paths
        request.inputs = records
        request.acceptedBy = .current
        request.linkBase = base
        request.forwardedBy = forwardedBy
        request.resolvedReferenceDem = files["referenceDem"]
        request.resolvedWaterMask = files["waterMask"]
        request.resolvedMultispectral = files["multispectral"]
        let now = Date()
        var job = Job(id: SQLiteJobStore.newID(), userId: user.id, name: request.name ?? "dsm-opt job", status: .accepted, progress: 0,
                      stage: nil, message: nil, request: String(decoding: try JSONEncoder().encode(request), as: UTF8.self),
                      createdAt: now, startedAt: nil, finishedAt: nil, purgeAt: nil, purged: false, error: nil, cpuSeconds: 0,
                      resultBytes: 0, attempts: 0, worker: nil, leaseUntil: nil, cancelRequested: false)
        announce(&job, subscriber: request.subscriber, mail: request.mail, owner: user)
        do {
            try await store.createJob(job, inputBytes: inputs, uploads: records.map(\.upload), quota: user.quota, results: resultBytes, now: now)
        } catch let q as QuotaExceeded {
            throw APIProblem.quota(q)
        } catch let g as UploadsGone {
            // Deleted while the images were being checked (`DELETE /uploads/{id}` is atomic with this insert).
            throw Self.uploadsGone(g, records: records)
        }
        return jsonResponse(Self.view(job, base: base, ownerName: user.name), status: .created, headers: [.location: "\(base)/jobs/\(job.id)"])
    }

    /// Catalogue forwarding: `{"user": NAME, "images": [{"url"|"path": …}], …}`; the service fetches the images
    /// as uploads of that user, whose quota applies.
    func catalogueSubmit(_ body: Data, caller: User, base: String) async throws -> Response {
        guard let obj = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else { throw APIProblem.badRequest("not a JSON object") }
        guard let name = obj["user"] as? String else {
            throw APIProblem.unprocessable("user is required", errors: [.init(field: "user", message: "is required")])
        }
        guard let user = try await store.user(name: name) else {
            throw APIProblem.unprocessable("unknown user '\(name)'",
                                           errors: [.init(field: "user", message: "unknown user '\(name)'")])
        }
        var forwarded = obj
        forwarded.removeValue(forKey: "user")
        let data = try JSONSerialization.data(withJSONObject: forwarded)
        let (parsed, errors) = RequestValidator.validate(data, presets: try presets())
        guard let request = parsed else {
            throw APIProblem.invalid(errors)
        }
        var fetched: [Upload] = []
        var fetchErrors: [FieldError] = []
        for (i, ref) in request.images.enumerated() {
            do { fetched.append(try await fetch(ref, for: user)) } catch {
                fetchErrors.append(.init(field: "images[\(i)]", message: "\(error)"))
            }
        }
        // A refused submission leaves nothing of what was fetched for it.
        func discardFetched() async {
            for u in fetched {
                _ = try? await store.deleteUpload(id: u.id, userId: user.id)
                try? FileManager.default.removeItem(atPath: (config.uploadsDirectory as NSString).appendingPathComponent(u.id))
            }
        }
        guard fetchErrors.isEmpty else {
            await discardFetched()
            throw APIProblem.unprocessable("images could not be fetched", errors: fetchErrors)
        }
        do { return try await submit(data, for: user, allowRemote: true, base: base, fetched: fetched, forwardedBy: caller.id) } catch {
            await discardFetched()
            throw error
        }
    }

    /// Fetches one catalogue image as an upload of `user`, under their storage quota and input limit:
    /// an archive path (copied with its companion files, or the whole DIMAP product) or a URL (streamed under
    /// a byte cap, redirects refused, internal addresses refused). Nothing is left behind on failure.
    func fetch(_ ref: ImageReference, for user: User) async throws -> Upload {
        let id = SQLiteJobStore.newID()
        let dir = (config.uploadsDirectory as NSString).appendingPathComponent(id)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        do {
            let usage = try await store.usage(userId: user.id, now: Date())
            let room = user.quota.storageBytes - usage.storageBytes
            let cap = min(room, config.maxUploadBytes, user.quota.maxInputBytes)
            try requireFreeSpace(for: 0)
            if let path = ref.path {
                return try await copyFromArchive(path, into: dir, id: id, user: user, cap: cap)
            }
            guard let url = ref.url.flatMap(URL.init(string:)) else { throw FetchError(description: "expected an http(s) url or an archive path") }
            let name = Self.sanitize(url.lastPathComponent) ?? "image.tif"
            let file = (dir as NSString).appendingPathComponent(name)
            let policy = FetchPolicy(allowedHosts: Set(config.catalogueAllowedHosts.map { $0.lowercased() }), timeoutSeconds: config.fetchTimeoutSeconds, maxBytes: cap)
            let size = try await StreamingDownload.fetch(url, to: file, policy: policy)
            guard let kind = UploadKind(signatureOf: file), kind != .xml else {
                throw FetchError(description: "\(url.lastPathComponent) is not a GeoTIFF, JPEG2000 or zipped product")
            }
            if kind == .zip, !name.lowercased().hasSuffix(".zip") { throw FetchError(description: "\(url.lastPathComponent) is a zip archive: its URL must end in .zip") }
            var u = Upload(id: id, userId: user.id, fileName: name, size: size, sha256: try sha256(of: file), createdAt: Date())
            try await storeUpload(&u, room: room)
            return u
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            if let p = error as? APIProblem { throw FetchError(description: p.detail) }
            throw error
        }
    }

    /// An archive path: a GeoTIFF/JPEG2000 with its companion files (RPC sidecars, DIM), a DIM file (its
    /// whole product folder) or a product/delivery folder, copied into the upload's `product/` folder.
    func copyFromArchive(_ path: String, into dir: String, id: String, user: User, cap: Int64) async throws -> Upload {
        guard let root = config.archiveRoot else { throw FetchError(description: "no archive root is configured for paths") }
        let fm = FileManager.default
        let rootPath = URL(fileURLWithPath: root).standardizedFileURL.resolvingSymlinksInPath().path
        func confined(_ p: String) throws -> String {
            let r = URL(fileURLWithPath: p).standardizedFileURL.resolvingSymlinksInPath().path
            guard r.hasPrefix(rootPath + "/") else { throw FetchError(description: "path \(path) is outside the archive") }
            return r
        }
        let source = try confined((rootPath as NSString).appendingPathComponent(path))
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: source, isDirectory: &isDir) else { throw FetchError(description: "no file \(path) in the archive") }
        // (source file, path below product/)
        var files: [(String, String)] = []
        let top: String
        if isDir.boolValue || DIMAPProduct.isDIMFile(source) {
            top = isDir.boolValue ? source : (source as NSString).deletingLastPathComponent
            let base = (top as NSString).lastPathComponent
            for rel in (fm.subpaths(atPath: top) ?? []).sorted() {
                let f = (top as NSString).appendingPathComponent(rel)
                var d: ObjCBool = false
                if fm.fileExists(atPath: f, isDirectory: &d), !d.boolValue { files.append((try confined(f), base + "/" + rel)) }
            }
        } else {
            top = source
            files = ([source] + SensorImage.companionFiles(of: source)).map { ($0, ($0 as NSString).lastPathComponent) }
            files = try files.map { (try confined($0.0), $0.1) }
        }
        var total: Int64 = 0
        for (f, _) in files { total += (try fm.attributesOfItem(atPath: f)[.size] as? NSNumber)?.int64Value ?? 0 }
        guard total <= cap else { throw FetchError(description: "\(path) holds \(total) bytes, above the \(max(0, cap)) bytes this user may add") }
        try requireFreeSpace(for: total)
        let product = (dir as NSString).appendingPathComponent("product")
        for (f, rel) in files {
            let dest = (product as NSString).appendingPathComponent(rel)
            try fm.createDirectory(atPath: (dest as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try fm.copyItem(atPath: f, toPath: dest)
        }
        let name = Self.sanitize((top as NSString).lastPathComponent) ?? "product"
        let u = Upload(id: id, userId: user.id, fileName: name, size: total, sha256: try sha256(of: source, orFolder: isDir.boolValue), createdAt: Date())
        try await store.addUpload(u)
        return u
    }

    /// SHA-256 of a file, read in chunks (of a folder: of nothing, there is no one file).
    func sha256(of path: String, orFolder folder: Bool = false) throws -> String {
        var hasher = SHA256()
        if !folder, let h = FileHandle(forReadingAtPath: path) {
            defer { try? h.close() }
            while let chunk = try h.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        }
        return hexString(hasher.finalize())
    }

    /// What `dsmopt check-inputs` reports.
    struct InputCheck: Decodable {
        struct Image: Decodable { var width: Int; var height: Int; var gsd: Double }
        var images: [Image?]
        var errors: [FieldError]
        var area: [Int]?
    }

    /// Runs `dsmopt check-inputs` on a job's images in a child process, with a CPU limit and a timeout.
    func checkInputs(_ spec: JobSpec) async throws -> InputCheck {
        let scratch = (config.dataDirectory as NSString).appendingPathComponent(".check-\(UUID().uuidString).json")
        try JSONEncoder().encode(spec).write(to: URL(fileURLWithPath: scratch))
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let (status, data) = try await child(["check-inputs", "--job", scratch, "--cpu-seconds", "60"], timeout: 120)
        guard status == 0, let report = try? JSONDecoder().decode(InputCheck.self, from: data) else {
            return InputCheck(images: [], errors: [FieldError(field: "images", message: "the images could not be read (the check stopped with status \(status)): are they valid GeoTIFF/JPEG2000/DIMAP products?")], area: nil)
        }
        return report
    }

    // MARK: downloads

    /// A finished job's manifest (`manifest.json` of its results): the results document, the served manifest and
    /// the portal's map read it here. Missing: 404; present but not a JSON object: `DamagedResult` (a 500 whose
    /// detail goes to the operator's log). `folder`: the job's results folder when the caller has it already.
    func manifestObject(_ job: Job, folder: String? = nil) throws -> [String: Any] {
        let path = ((try folder ?? resultsFolder(job)) as NSString).appendingPathComponent("manifest.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw APIProblem.notFound("the results of job \(job.id) have no manifest")
        }
        guard let manifest = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw DamagedResult(job: job.id, file: "manifest.json", bytes: data.count)
        }
        return manifest
    }

    /// The files a finished job's results are: its manifest's products, the manifest and the STAC item.
    /// `products`: the manifest's, when the caller has read them.
    func resultsFiles(_ job: Job, folder: String, products: [[String: Any]]? = nil) throws -> [String] {
        Self.resultsFiles(folder: folder, products: try products ?? (manifestObject(job, folder: folder)["products"] as? [[String: Any]] ?? []))
    }

    /// The files of a results folder whose manifest lists `products`: theirs, then the manifest and the STAC item.
    static func resultsFiles(folder: String, products: [[String: Any]]) -> [String] {
        var files = products.compactMap { $0["file"] as? String }.filter { sanitize($0) == $0 }
        for extra in ["manifest.json", "item.json"] where !files.contains(extra)
            && FileManager.default.fileExists(atPath: (folder as NSString).appendingPathComponent(extra)) { files.append(extra) }
        return files
    }

    /// The results document of OGC API – Processes: each output's name (the process description's `outputs`) →
    /// a link to its file, `orthos` → one link per image. What the products are, their grid and the run's
    /// figures are in the manifest, one of the outputs.
    func resultsDocument(_ job: Job, base: String) throws -> [String: Any] {
        let folder = try resultsFolder(job)
        let products = try manifestObject(job, folder: folder)["products"] as? [[String: Any]] ?? []
        var document: [String: Any] = [:]
        let files = try resultsFiles(job, folder: folder, products: products)
        for file in files {
            let output = ProcessDescription.output(file: file)
            let id = output?.id ?? (file as NSString).deletingPathExtension
            var link: [String: Any] = ["href": "\(base)/jobs/\(job.id)/results/\(file)", "type": STACItem.mediaType(file), "title": output?.title ?? file]
            if id == "orthos" {
                let code = products.first { $0["file"] as? String == file }?["code"] as? String ?? "C"
                link["title"] = "\(code) true ortho (\(file))"
                document[id] = (document[id] as? [[String: Any]] ?? []) + [link]
            } else {
                document[id] = link
            }
        }
        return document
    }

    /// The manifest as served: each product with its link (`href`) and size, the job's id and purge date. Built
    /// per request, so always whole (no Range: it is a few kilobytes); its ETag is (a prefix of) the SHA-256 of
    /// those bytes, so If-None-Match answers 304 while they stay the same.
    /// Read through a download link (`link`), each href carries its query.
    func manifest(_ job: Job, request: Request, link: DownloadLink? = nil) throws -> Response {
        let folder = try resultsFolder(job)
        var manifest = try manifestObject(job, folder: folder)
        if var products = manifest["products"] as? [[String: Any]] {
            let results = "\(baseURL(request))/jobs/\(job.id)/results"
            for i in products.indices {
                let file = products[i]["file"] as? String ?? ""
                products[i]["href"] = "\(results)/\(file)" + (link.map { "?\($0.query)" } ?? "")
                let size = (try? FileManager.default.attributesOfItem(atPath: (folder as NSString).appendingPathComponent(file)))?[.size] as? NSNumber
                if let size { products[i]["bytes"] = size.int64Value }
            }
            manifest["products"] = products
        }
        manifest["jobID"] = job.id
        manifest["purgeDate"] = job.purgeAt.map { ISO8601DateFormatter().string(from: $0) }
        let out = try jsonBody(object: manifest)
        let etag = "\"" + hexString(SHA256.hash(data: out).prefix(16)) + "\""
        if Self.ifNoneMatch(request, matches: etag) { return Response(status: .notModified, headers: [.eTag: etag]) }
        let headers: HTTPFields = [.contentType: "application/json", .contentLength: "\(out.count)", .eTag: etag]
        if request.method == .head { return Response(status: .ok, headers: headers, body: ResponseBody(contentLength: out.count) { writer in try await writer.finish(nil) }) }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: out)))
    }

    /// Whether the request's If-None-Match names `etag` (or is `*`): the client's copy is current (304).
    static func ifNoneMatch(_ request: Request, matches etag: String) -> Bool {
        guard let inm = request.headers[.ifNoneMatch] else { return false }
        return inm == "*" || inm.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == etag }
    }

    /// The job's results as one zip: the results document's files under a folder named after the job's id.
    func resultsArchive(_ job: Job, request: Request) async throws -> Response {
        let folder = try resultsFolder(job)
        return try await serveArchive(folder: folder, files: try resultsFiles(job, folder: folder), root: "dsmopt-\(job.id)", request: request)
    }

    /// `files` of `folder` as one zip (`ResultsArchive`) under `root/`, for GET and HEAD with Range. The
    /// CRC-32s are read from the folder's index (a job's is written when the job ends, and a published item
    /// starts with its job's), computed off the server's threads where it lacks them.
    func serveArchive(folder: String, files: [String], root: String, request: Request) async throws -> Response {
        let members = try await ResultsArchive.indexed(folder: folder, files: files)
        let archive = ResultsArchive(folder: folder, root: root, members: members)
        return try Self.serveBytes(request, size: archive.length, etag: archive.etag, modified: archive.modified,
                                   type: "application/zip", fileName: "\(root).zip") { from, length, writer in
            try await archive.write(from: from, count: length) { try await writer.write(ByteBuffer(bytes: $0)) }
        }
    }

    func download(job: Job, file: String, request: Request) throws -> Response {
        try serveFile(folder: try resultsFolder(job), file: file, owner: "the results of job \(job.id)", request: request)
    }

    /// A product file of a folder (a job's results, a catalogue item's), with Range, ETag, If-None-Match
    /// and If-Range, for GET and HEAD.
    func serveFile(folder: String, file: String, owner: String, request: Request) throws -> Response {
        guard let name = Self.sanitize(file) else { throw APIProblem.notFound("no product \(file)") }
        let path = (folder as NSString).appendingPathComponent(name)
        guard let attrs = try? FileManager.default.attributesOfItem(atPath: path), let size = (attrs[.size] as? NSNumber)?.int64Value else {
            throw APIProblem.notFound("no product \(file) in \(owner)")
        }
        // A strong validator: size and modification time (products never change in place).
        let modified = (attrs[.modificationDate] as? Date) ?? Date(timeIntervalSince1970: 0)
        let etag = "\"\(String(size, radix: 16))-\(String(Int64(modified.timeIntervalSince1970 * 1e6), radix: 16))\""
        return try Self.serveBytes(request, size: size, etag: etag, modified: modified, type: STACItem.mediaType(name), fileName: name) { from, length, writer in
            try await sendFileRange(path, from: from, count: length, vanished: APIProblem.notFound("product vanished")) { try await writer.write(ByteBuffer(bytes: $0)) }
        }
    }

    /// A download of `size` bytes for GET and HEAD: 304 when If-None-Match names `etag`, one range (Range,
    /// applied only while If-Range names this representation) as 206, 416 outside it; `write` sends `length`
    /// bytes from `from`.
    static func serveBytes(_ request: Request, size: Int64, etag: String, modified: Date, type: String, fileName: String,
                           write: @escaping @Sendable (_ from: Int64, _ length: Int64, _ writer: inout any ResponseBodyWriter) async throws -> Void) throws -> Response {
        var start: Int64 = 0, end = size - 1
        var status: HTTPResponse.Status = .ok
        var headers: HTTPFields = [.acceptRanges: "bytes", .eTag: etag, .lastModified: Self.httpDate(modified)]
        if Self.ifNoneMatch(request, matches: etag) { return Response(status: .notModified, headers: headers) }
        // If-Range: the range applies only to the representation the client already has.
        var range = request.headers[.range]
        if let ifRange = request.headers[.ifRange], ifRange != etag, ifRange != Self.httpDate(modified) { range = nil }
        if let range {
            // bytes=a-b, bytes=a-, bytes=-n (one range).
            let spec = range.hasPrefix("bytes=") ? String(range.dropFirst(6)) : ""
            let parts = spec.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, !spec.contains(",") else { throw APIProblem(status: .rangeNotSatisfiable, title: "Range Not Satisfiable", detail: "unsupported range \(range)") }
            if parts[0].isEmpty, let n = Int64(parts[1]), n > 0 { start = max(0, size - n) }
            else if let a = Int64(parts[0]) { start = a; if let b = Int64(parts[1]) { end = min(b, size - 1) } }
            else { throw APIProblem(status: .rangeNotSatisfiable, title: "Range Not Satisfiable", detail: "unsupported range \(range)") }
            guard start <= end, start < size else {
                var p = APIProblem(status: .rangeNotSatisfiable, title: "Range Not Satisfiable", detail: "range \(range) outside the \(size) bytes").response
                p.headers[.contentRange] = "bytes */\(size)"
                return p
            }
            status = .partialContent
            headers[.contentRange] = "bytes \(start)-\(end)/\(size)"
        }
        let length = end - start + 1
        headers[.contentType] = type
        headers[.contentDisposition] = "attachment; filename=\"\(fileName)\""
        let from = start
        if request.method == .head {
            // The headers a GET would send, no body.
            headers[.contentLength] = "\(length)"
            return Response(status: status, headers: headers, body: ResponseBody(contentLength: Int(length)) { writer in try await writer.finish(nil) })
        }
        let body = ResponseBody(contentLength: Int(length)) { writer in
            try await write(from, length, &writer)
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }

    /// An IMF-fixdate (RFC 9110), e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
    static func httpDate(_ d: Date) -> String { utcText(d, "EEE, dd MMM yyyy HH:mm:ss 'GMT'") }

    // MARK: presets

    func putPreset(_ name: String, _ body: Data) async throws -> Response {
        guard let safe = Self.sanitize(name), !safe.contains("."), safe == name else { throw APIProblem.badRequest("invalid preset name '\(name)'") }
        // Validate through the same loader as the presets folder, in a scratch folder.
        let scratch = (config.dataDirectory as NSString).appendingPathComponent(".preset-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var obj = (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? nil
        guard obj != nil else { throw APIProblem.unprocessable("not a JSON object") }
        if let k = obj?.first(where: { $0.value is NSNull })?.key {
            throw APIProblem.unprocessable("\(k) is null: give a value or leave the field out")
        }
        // The path names the preset (a `name` in the body, a string, is replaced by it).
        let known = Set(Preset.fieldNames)
        if let k = obj?.keys.sorted().first(where: { !known.contains($0) }) {
            throw APIProblem.unprocessable("unknown field \(k) (a preset has \(known.sorted().joined(separator: ", ")))",
                                           errors: [.init(field: k, message: "unknown field")])
        }
        guard let d = obj?["description"] as? String, (1...500).contains(d.count) else {
            throw APIProblem.unprocessable("description must be a string of 1–500 characters (the portal shows it beside the preset)",
                                           errors: [.init(field: "description", message: "a string of 1–500 characters")])
        }
        if let n = obj?["name"], !(n is String) { throw APIProblem.unprocessable("name must be a string") }
        obj?["name"] = name
        let data = try JSONSerialization.data(withJSONObject: obj!, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: (scratch as NSString).appendingPathComponent("\(name).json")))
        let preset: Preset
        do {
            let scratchLibrary = try PresetLibrary(folder: scratch)
            try scratchLibrary.requireValid()
            preset = try scratchLibrary.preset(name)
        } catch let e as PresetError {
            throw APIProblem.unprocessable(e.description.replacingOccurrences(of: scratch + "/", with: ""))
        }
        let before = try presets()
        let existed = before.presets[name] != nil || before.problems[name] != nil
        let target = (config.presetsDirectory as NSString).appendingPathComponent("\(name).json")
        try data.write(to: URL(fileURLWithPath: target), options: .atomic)
        return jsonResponse(preset, status: existed ? .ok : .created)
    }
}

/// The kinds of file an upload may be, recognised by their first bytes.
enum UploadKind: String, Equatable {
    case tiff, jpeg2000, zip, xml, geojson

    init?(signatureOf path: String) {
        guard let h = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? h.close() }
        let b = [UInt8]((try? h.read(upToCount: 64)) ?? Data())
        func starts(_ p: [UInt8]) -> Bool { b.count >= p.count && Array(b.prefix(p.count)) == p }
        if starts([0x49, 0x49, 0x2A, 0]) || starts([0x4D, 0x4D, 0, 0x2A]) || starts([0x49, 0x49, 0x2B, 0]) || starts([0x4D, 0x4D, 0, 0x2B]) {
            self = .tiff
        } else if starts([0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20, 0x0D, 0x0A, 0x87, 0x0A]) || starts([0xFF, 0x4F, 0xFF, 0x51]) {
            self = .jpeg2000
        } else if starts([0x50, 0x4B, 0x03, 0x04]) {
            self = .zip
        } else if ["geojson", "json"].contains(((path.hasSuffix(".part") ? String(path.dropLast(5)) : path) as NSString).pathExtension.lowercased()),
                  b.first(where: { ![0x20, 0x09, 0x0A, 0x0D, 0xEF, 0xBB, 0xBF].contains($0) }) == UInt8(ascii: "{") {
            // A GeoJSON water mask (read later by GDAL's GeoJSON driver only).
            self = .geojson
        } else if xmlRootElement(path) == "Dimap_Document" {
            // DIMAP XML only: a VRT (`<VRTDataset>`, which can read server files or URLs) or any other XML is refused.
            self = .xml
        } else {
            return nil
        }
    }
}

/// The uploads being streamed, per user: their count (capped) and the bytes each has received (reserved
/// against the user's storage quota while it streams).
final class UploadsInFlight: @unchecked Sendable {
    struct Slot: Hashable { let user: String; let id: UUID }
    private let lock = NSLock()
    /// Per upload: its declared length (reserved from the start) and the bytes received so far.
    private var slots: [Slot: (declared: Int64, received: Int64)] = [:]

    func begin(user: String, max: Int, declared: Int64) -> Slot? {
        lock.withLock {
            guard slots.keys.filter({ $0.user == user }).count < max else { return nil }
            let s = Slot(user: user, id: UUID())
            slots[s] = (declared, 0)
            return s
        }
    }

    func received(_ s: Slot, bytes: Int64) { lock.withLock { slots[s]?.received = bytes } }
    /// Bytes reserved by this user's other uploads in flight: their declared length, or what they have
    /// received when that is more (or nothing was declared).
    func others(_ s: Slot) -> Int64 {
        lock.withLock { slots.filter { $0.key.user == s.user && $0.key != s }.values.reduce(0) { $0 + max($1.declared, $1.received) } }
    }
    func end(_ s: Slot) { _ = lock.withLock { slots.removeValue(forKey: s) } }
}

/// The name of an XML file's root element (after the declaration, comments and doctype), from its first 8 KiB.
func xmlRootElement(_ path: String) -> String? {
    guard let h = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? h.close() }
    let bytes = (try? h.read(upToCount: 8192)) ?? Data()
    guard let text = String(data: bytes, encoding: .utf8) ?? String(data: bytes, encoding: .isoLatin1) else { return nil }
    var rest = Substring(text.drop { $0 == "\u{FEFF}" })
    while let lt = rest.firstIndex(of: "<") {
        rest = rest[rest.index(after: lt)...]
        if rest.hasPrefix("?") || rest.hasPrefix("!") {
            let end = rest.hasPrefix("!--") ? rest.range(of: "-->")?.upperBound : rest.firstIndex(of: ">").map { rest.index(after: $0) }
            guard let e = end else { return nil }
            rest = rest[e...]
            continue
        }
        return String(rest.prefix { !$0.isWhitespace && $0 != ">" && $0 != "/" })
    }
    return nil
}
