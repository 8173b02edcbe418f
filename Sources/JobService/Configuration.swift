import DSMPipeline
import Foundation
import GDALKit

/// Daemon configuration: defaults < config file (JSON, `--config` or DIR/dsmopt.json) < environment
/// (`DSMOPT_*`) < command-line flags.
public struct ServiceConfiguration: Sendable, Codable, Equatable {
    /// Data folder: database, uploads, job folders, presets.
    public var dataDirectory: String
    public var host = "127.0.0.1"
    /// 0 picks a free port (written to DIR/server.port).
    public var port = 8080
    /// Jobs run at the same time by this process.
    public var workers = 1
    /// Largest accepted upload, bytes (413 above).
    public var maxUploadBytes: Int64 = 8 << 30
    /// How long results are kept after a job finishes, seconds (default 21 days).
    public var retentionSeconds: Double = 21 * 86_400
    /// Lease of a running job; a worker that stops heart-beating loses its job after this many seconds.
    public var leaseSeconds: Double = 15
    /// Root under which the catalogue may reference images by path.
    public var archiveRoot: String?
    /// Quota given to users created without explicit limits.
    public var defaultQuota = Quota()
    /// The `dsmopt` executable that runs jobs (default: this one).
    public var executable: String?
    /// Attempts of a job whose worker keeps stopping (crash, stall) before it fails.
    public var maxAttempts = 3
    /// How long the record of a finished job is kept after its results are purged (its CPU stays in the
    /// month's usage until then), seconds (default 400 days).
    public var jobRecordSeconds: Double = 400 * 86_400
    /// `/metrics` without a token (for a scraper on a private network); default: operator or admin token.
    public var metricsPublic = false
    /// Free space kept on the data folder's file system: uploads and job starts are refused (507) below it.
    public var minFreeBytes: Int64 = 1 << 30
    /// Uploads one user may stream at the same time (429 above).
    public var maxConcurrentUploads = 2
    /// A connection idle for this long (no request, or a stalled body) is closed, seconds.
    public var idleTimeoutSeconds: Double = 60
    /// Largest DSM a job may ask for, in cells (422 above); the estimate comes from the AOI/ROI and resolution.
    public var maxJobCells: Double = 400e6
    /// Finest DSM resolution allowed, as a multiple of the image GSD (422 below).
    public var minResolutionFactor: Double = 0.5
    /// Wall-clock limit of one attempt, seconds (the run stops itself beyond it).
    public var maxJobWallSeconds: Double = 7 * 86_400
    /// A run that uses no CPU for this long (a deadlock, a wait that never ends) is stopped and its job, or
    /// its tiles, fail with that reason, seconds (default 30 min; at least 3).
    public var stallSeconds: Double = 1800
    /// Seconds between sweeps of orphaned folders (job folders without a job, abandoned uploads).
    public var sweepSeconds: Double = 60
    /// Age after which a folder nothing refers to (abandoned upload, job folder without a job) is swept, seconds.
    public var orphanAgeSeconds: Double = 600
    /// Hosts the catalogue's image URLs may point at even when they resolve to internal addresses (the
    /// catalogue's own store); every other internal address is refused.
    public var catalogueAllowedHosts: [String] = []
    /// Longest a catalogue image download may take, seconds.
    public var fetchTimeoutSeconds: Double = 1800
    /// Hosts a job's callback URIs (`subscriber`) may point at even when they are or resolve to internal
    /// addresses (a receiver inside the operator's network); every other internal address is refused.
    public var callbackAllowedHosts: [String] = []
    /// POSTs tried per callback before it is given up (`failed`); the first retry after
    /// `callbackRetrySeconds`, each next one after twice as long (at most an hour).
    public var callbackAttempts = 8
    public var callbackRetrySeconds: Double = 30
    /// How long after `POST /me/callback-secret` callbacks still carry a signature under the replaced secret
    /// as well (a day, as most webhook senders give; 0: the new secret's only).
    public var callbackSecretGraceSeconds: Double = 86_400
    /// Where mail to users goes (a job's end, to the owner's address): `smtp://`, `smtp+starttls://` or
    /// `smtps://[user:password@]host[:port]` (`SMTPSettings`); default none: no mail is sent.
    public var smtpURL: String?
    /// Certificate authorities (PEM) the mail server's TLS certificate may chain to, beside the system's.
    public var smtpCAFile: String?
    /// The sender of that mail (default `dsmopt@` this machine's name).
    public var mailFrom: String?
    /// Attempts to hand a mail to the server before it is given up (`failed`); the first retry after
    /// `mailRetrySeconds`, each next one after twice as long (at most an hour). A refusal for good (a 5xx
    /// reply: no such mailbox) is not tried again.
    public var mailAttempts = 8
    public var mailRetrySeconds: Double = 60
    /// How long before a job's results are purged its owner is reminded by mail (jobs whose end mail was
    /// delivered, kept longer than this); 0: no reminder.
    public var purgeReminderSeconds: Double = 3 * 86_400
    /// The job store: nil or `sqlite` for the data folder's SQLite database (one machine); a
    /// `postgres://…` URL for a PostgreSQL database shared by daemons and workers on several machines (the
    /// data folder must then be on a filesystem they all see).
    public var store: String?
    /// Attempts to reach the PostgreSQL store at start (1, 2, 4 … 30 s apart) before giving up.
    public var storeConnectAttempts = 6
    /// Memory budget of one run (its tiles are planned within it); default: the pipeline's (half the RAM).
    public var jobMemoryBytes: Int?
    /// Spread each DSM job's ground tiles over every worker of the store as tile tasks (a job runs on many
    /// machines); default: on with a PostgreSQL store, off with SQLite (one machine: one run per job, using
    /// all its cores without the per-task process start).
    public var tileTasks: Bool?
    /// Ground tile size of jobs, in DSM cells (default: the pipeline's, about 1024 pixels of the first image).
    public var tileCells: Int?
    public var spreadsTiles: Bool { tileTasks ?? (store?.hasPrefix("postgres") == true) }
    /// The reference DEM for `coregister` when a job gives none: a raster, a VRT, or a folder of DEM tiles
    /// (SRTM .hgt, Copernicus GeoTIFF) read as one mosaic over each job's area; and its vertical datum.
    public var referenceDEM: String?
    public var referenceDEMVerticalDatum = VerticalDatum.egm96
    /// The water layer for `mask-water` when a job gives no mask: a raster, a folder of raster tiles (e.g.
    /// a surface-water occurrence map) or a vector file; raster values ≥ `waterLayerThreshold` are water.
    public var waterLayer: String?
    public var waterLayerThreshold = 50.0
    /// A basemap for the portal's maps, as a tile URL template (`https://…/{z}/{x}/{y}.png`) and its
    /// attribution; default none: the portal fetches nothing from the internet.
    public var basemapURL: String?
    public var basemapAttribution: String?
    /// The address clients reach the service at — scheme, host, port and any path prefix, e.g.
    /// `https://dsm.example.org/dsmopt` behind a reverse proxy that forwards `/dsmopt/…` to this daemon as
    /// `/…`. Every link the API gives (job status, results, uploads, processes, `Location`, the catalogue's
    /// STAC links and assets) starts with it. Default: the address of each request (its Host header, and
    /// `X-Forwarded-Proto` for the scheme), which is right without a proxy or behind one that keeps the
    /// Host header and adds no prefix.
    public var publicURL: String?

    public init(dataDirectory: String) { self.dataDirectory = dataDirectory }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case dataDirectory, host, port, workers, maxUploadBytes, retentionSeconds, leaseSeconds, archiveRoot, defaultQuota, executable
        case maxAttempts, jobRecordSeconds, metricsPublic, minFreeBytes, maxConcurrentUploads, idleTimeoutSeconds, maxJobCells
        case minResolutionFactor, maxJobWallSeconds, stallSeconds, jobMemoryBytes, sweepSeconds, orphanAgeSeconds, catalogueAllowedHosts, fetchTimeoutSeconds, callbackAllowedHosts, callbackAttempts, callbackRetrySeconds, callbackSecretGraceSeconds, smtpURL, smtpCAFile, mailFrom, mailAttempts, mailRetrySeconds, purgeReminderSeconds, store, storeConnectAttempts, tileTasks, tileCells
        case referenceDEM, referenceDEMVerticalDatum, waterLayer, waterLayerThreshold, basemapURL, basemapAttribution, publicURL
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(dataDirectory: try c.decodeIfPresent(String.self, forKey: .dataDirectory) ?? "dsmopt-data")
        host = try c.decodeIfPresent(String.self, forKey: .host) ?? host
        port = try c.decodeIfPresent(Int.self, forKey: .port) ?? port
        workers = try c.decodeIfPresent(Int.self, forKey: .workers) ?? workers
        maxUploadBytes = try c.decodeIfPresent(Int64.self, forKey: .maxUploadBytes) ?? maxUploadBytes
        retentionSeconds = try c.decodeIfPresent(Double.self, forKey: .retentionSeconds) ?? retentionSeconds
        leaseSeconds = try c.decodeIfPresent(Double.self, forKey: .leaseSeconds) ?? leaseSeconds
        archiveRoot = try c.decodeIfPresent(String.self, forKey: .archiveRoot)
        defaultQuota = try c.decodeIfPresent(QuotaSettings.self, forKey: .defaultQuota)?.applied(to: defaultQuota) ?? defaultQuota
        executable = try c.decodeIfPresent(String.self, forKey: .executable)
        maxAttempts = try c.decodeIfPresent(Int.self, forKey: .maxAttempts) ?? maxAttempts
        jobRecordSeconds = try c.decodeIfPresent(Double.self, forKey: .jobRecordSeconds) ?? jobRecordSeconds
        metricsPublic = try c.decodeIfPresent(Bool.self, forKey: .metricsPublic) ?? metricsPublic
        minFreeBytes = try c.decodeIfPresent(Int64.self, forKey: .minFreeBytes) ?? minFreeBytes
        maxConcurrentUploads = try c.decodeIfPresent(Int.self, forKey: .maxConcurrentUploads) ?? maxConcurrentUploads
        idleTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .idleTimeoutSeconds) ?? idleTimeoutSeconds
        maxJobCells = try c.decodeIfPresent(Double.self, forKey: .maxJobCells) ?? maxJobCells
        minResolutionFactor = try c.decodeIfPresent(Double.self, forKey: .minResolutionFactor) ?? minResolutionFactor
        maxJobWallSeconds = try c.decodeIfPresent(Double.self, forKey: .maxJobWallSeconds) ?? maxJobWallSeconds
        stallSeconds = try c.decodeIfPresent(Double.self, forKey: .stallSeconds) ?? stallSeconds
        jobMemoryBytes = try c.decodeIfPresent(Int.self, forKey: .jobMemoryBytes)
        tileTasks = try c.decodeIfPresent(Bool.self, forKey: .tileTasks)
        tileCells = try c.decodeIfPresent(Int.self, forKey: .tileCells)
        sweepSeconds = try c.decodeIfPresent(Double.self, forKey: .sweepSeconds) ?? sweepSeconds
        orphanAgeSeconds = try c.decodeIfPresent(Double.self, forKey: .orphanAgeSeconds) ?? orphanAgeSeconds
        catalogueAllowedHosts = try c.decodeIfPresent([String].self, forKey: .catalogueAllowedHosts) ?? catalogueAllowedHosts
        fetchTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .fetchTimeoutSeconds) ?? fetchTimeoutSeconds
        callbackAllowedHosts = try c.decodeIfPresent([String].self, forKey: .callbackAllowedHosts) ?? callbackAllowedHosts
        callbackAttempts = try c.decodeIfPresent(Int.self, forKey: .callbackAttempts) ?? callbackAttempts
        callbackRetrySeconds = try c.decodeIfPresent(Double.self, forKey: .callbackRetrySeconds) ?? callbackRetrySeconds
        callbackSecretGraceSeconds = try c.decodeIfPresent(Double.self, forKey: .callbackSecretGraceSeconds) ?? callbackSecretGraceSeconds
        smtpURL = try c.decodeIfPresent(String.self, forKey: .smtpURL)
        smtpCAFile = try c.decodeIfPresent(String.self, forKey: .smtpCAFile)
        mailFrom = try c.decodeIfPresent(String.self, forKey: .mailFrom)
        mailAttempts = try c.decodeIfPresent(Int.self, forKey: .mailAttempts) ?? mailAttempts
        mailRetrySeconds = try c.decodeIfPresent(Double.self, forKey: .mailRetrySeconds) ?? mailRetrySeconds
        purgeReminderSeconds = try c.decodeIfPresent(Double.self, forKey: .purgeReminderSeconds) ?? purgeReminderSeconds
        store = try c.decodeIfPresent(String.self, forKey: .store)
        storeConnectAttempts = try c.decodeIfPresent(Int.self, forKey: .storeConnectAttempts) ?? storeConnectAttempts
        referenceDEM = try c.decodeIfPresent(String.self, forKey: .referenceDEM)
        referenceDEMVerticalDatum = try c.decodeIfPresent(VerticalDatum.self, forKey: .referenceDEMVerticalDatum) ?? referenceDEMVerticalDatum
        waterLayer = try c.decodeIfPresent(String.self, forKey: .waterLayer)
        waterLayerThreshold = try c.decodeIfPresent(Double.self, forKey: .waterLayerThreshold) ?? waterLayerThreshold
        basemapURL = try c.decodeIfPresent(String.self, forKey: .basemapURL)
        basemapAttribution = try c.decodeIfPresent(String.self, forKey: .basemapAttribution)
        publicURL = try c.decodeIfPresent(String.self, forKey: .publicURL)
    }

    /// Applies a JSON config file and the `DSMOPT_*` environment on top of the defaults.
    public static func load(dataDirectory: String, file: String?, environment: [String: String]) throws -> ServiceConfiguration {
        var c = ServiceConfiguration(dataDirectory: dataDirectory)
        let path = file ?? (dataDirectory as NSString).appendingPathComponent("dsmopt.json")
        if FileManager.default.fileExists(atPath: path) {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
                throw ConfigurationError.invalid("\(path): cannot be read (\((error as NSError).localizedDescription))")
            }
            c = try decode(data, file: path)
            c.dataDirectory = dataDirectory
        } else if file != nil {
            throw ConfigurationError.missingFile(path)
        }
        // A number that does not parse is refused, not ignored (the default would run instead).
        func number<T: LosslessStringConvertible>(_ name: String, _: T.Type) throws -> T? {
            guard let v = environment[name], !v.isEmpty else { return nil }
            guard let n = T(v.trimmingCharacters(in: .whitespaces)) else { throw ConfigurationError.invalid("\(name) must be a number, not '\(v)'") }
            return n
        }
        if let v = environment["DSMOPT_HOST"] { c.host = v }
        if let v = try number("DSMOPT_PORT", Int.self) { c.port = v }
        if let v = try number("DSMOPT_WORKERS", Int.self) { c.workers = v }
        if let v = try number("DSMOPT_MAX_UPLOAD_BYTES", Int64.self) { c.maxUploadBytes = v }
        if let v = try number("DSMOPT_RETENTION_SECONDS", Double.self) { c.retentionSeconds = v }
        if let v = environment["DSMOPT_ARCHIVE_ROOT"] { c.archiveRoot = v }
        if let v = environment["DSMOPT_STORE"], !v.isEmpty { c.store = v }
        if let v = environment["DSMOPT_TILE_TASKS"], !v.isEmpty {
            guard let b = ["on": true, "true": true, "1": true, "off": false, "false": false, "0": false][v.lowercased()] else {
                throw ConfigurationError.invalid("DSMOPT_TILE_TASKS is on or off, not '\(v)'")
            }
            c.tileTasks = b
        }
        if let v = environment["DSMOPT_REFERENCE_DEM"], !v.isEmpty { c.referenceDEM = v }
        if let v = environment["DSMOPT_WATER_LAYER"], !v.isEmpty { c.waterLayer = v }
        if let v = environment["DSMOPT_BASEMAP_URL"], !v.isEmpty { c.basemapURL = v }
        if let v = environment["DSMOPT_PUBLIC_URL"], !v.isEmpty { c.publicURL = v }
        if let v = environment["DSMOPT_SMTP_URL"], !v.isEmpty { c.smtpURL = v }
        if let v = environment["DSMOPT_MAIL_FROM"], !v.isEmpty { c.mailFrom = v }
        if let v = environment["DSMOPT_CATALOGUE_ALLOWED_HOSTS"] { c.catalogueAllowedHosts = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        if let v = environment["DSMOPT_CALLBACK_ALLOWED_HOSTS"] { c.callbackAllowedHosts = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        return c
    }

    /// A configuration file's settings: a JSON object whose every key is a setting — a misspelt key would
    /// silently leave its setting at the default, so it is refused, with the nearest known one —, its errors
    /// named by the file and the setting.
    static func decode(_ data: Data, file: String) throws -> ServiceConfiguration {
        func invalid(_ why: String) -> ConfigurationError { .invalid("\(file): \(why)") }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch {
            let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String
            throw invalid("not valid JSON\(detail.map { " (\($0))" } ?? "")")
        }
        guard let settings = object as? [String: Any] else { throw invalid("expected a JSON object of settings, e.g. {\"port\": 8080}") }
        if let problem = unknownKeys(settings, known: CodingKeys.allCases.map(\.stringValue), prefix: "") { throw invalid(problem) }
        if let quota = settings["defaultQuota"] as? [String: Any],
           let problem = unknownKeys(quota, known: QuotaSettings.CodingKeys.allCases.map(\.stringValue), prefix: "defaultQuota.") {
            throw invalid(problem)
        }
        // A null would leave the default in force while reading as "none" or "no limit": refused, as the API
        // refuses null fields.
        let quota = settings["defaultQuota"] as? [String: Any] ?? [:]
        let nulls = settings.keys.filter { settings[$0] is NSNull } + quota.keys.filter { quota[$0] is NSNull }.map { "defaultQuota.\($0)" }
        if let key = nulls.sorted().first {
            throw invalid("'\(key)' is null: give it a value, or leave the setting out for its default")
        }
        do { return try JSONDecoder().decode(ServiceConfiguration.self, from: data) } catch let e as DecodingError {
            if case .dataCorrupted(let c) = e, c.codingPath.isEmpty, let setting = culprit(settings) {
                // Foundation's decoder names no setting for a number that does not fit its type (80.5 for a port).
                throw invalid("\(setting) does not fit the setting (a whole number where one is expected, within its range)")
            }
            throw invalid(e.plainDescription)
        }
    }

    /// The setting (`key = value`, one level into objects) that fails to decode on its own.
    static func culprit(_ settings: [String: Any]) -> String? {
        func fails(_ object: [String: Any]) -> Bool {
            guard let d = try? JSONSerialization.data(withJSONObject: object) else { return true }
            return (try? JSONDecoder().decode(ServiceConfiguration.self, from: d)) == nil
        }
        for key in settings.keys.sorted() where fails([key: settings[key]!]) {
            if let inner = settings[key] as? [String: Any], let sub = inner.keys.sorted().first(where: { fails([key: [$0: inner[$0]!]]) }) {
                return "\(key).\(sub) = \(inner[sub]!)"
            }
            return "\(key) = \(settings[key]!)"
        }
        return nil
    }

    /// What is wrong with the first key of `object` not in `known`, and the known key it was likely meant as.
    static func unknownKeys(_ object: [String: Any], known: [String], prefix: String) -> String? {
        guard let key = object.keys.sorted().first(where: { !known.contains($0) }) else { return nil }
        let nearest = known.map { ($0, editDistance($0.lowercased(), key.lowercased())) }.min { $0.1 < $1.1 }
        let hint = nearest.flatMap { $0.1 <= max(2, key.count / 4) ? " (did you mean '\(prefix)\($0.0)'?)" : nil } ?? ""
        return "unknown setting '\(prefix)\(key)'\(hint)"
    }

    /// Levenshtein's distance (insertions, deletions, substitutions).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var diagonal = row[0]
            row[0] = i + 1
            for (j, y) in b.enumerated() {
                let above = row[j + 1]
                row[j + 1] = min(above + 1, row[j] + 1, diagonal + (x == y ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }

    /// The longest duration a setting may give, 100 years: longer is a typo (`--retention 99999999999999999999d`
    /// was taken as written), and its dates (a purge date of 1e300 s) are none the portal or a mail can show.
    public static let longestSeconds: Double = 100 * 365.25 * 86_400

    public func validate() throws {
        guard (0...65535).contains(port) else { throw ConfigurationError.invalid("port \(port) outside 0–65535") }
        for (name, v) in [("retentionSeconds", retentionSeconds), ("leaseSeconds", leaseSeconds), ("jobRecordSeconds", jobRecordSeconds),
                          ("idleTimeoutSeconds", idleTimeoutSeconds), ("maxJobWallSeconds", maxJobWallSeconds), ("stallSeconds", stallSeconds),
                          ("sweepSeconds", sweepSeconds), ("orphanAgeSeconds", orphanAgeSeconds), ("fetchTimeoutSeconds", fetchTimeoutSeconds),
                          ("callbackRetrySeconds", callbackRetrySeconds), ("callbackSecretGraceSeconds", callbackSecretGraceSeconds),
                          ("mailRetrySeconds", mailRetrySeconds), ("purgeReminderSeconds", purgeReminderSeconds)] where !(v <= Self.longestSeconds) {
            throw ConfigurationError.invalid("\(name) \(v) is longer than 100 years (\(Int(Self.longestSeconds)) s)")
        }
        guard (0...64).contains(workers) else { throw ConfigurationError.invalid("workers \(workers) outside 0–64") }
        guard maxUploadBytes > 0 else { throw ConfigurationError.invalid("maxUploadBytes must be positive") }
        guard retentionSeconds > 0 else { throw ConfigurationError.invalid("retention must be positive") }
        guard leaseSeconds >= 3 else { throw ConfigurationError.invalid("leaseSeconds must be at least 3") }
        guard stallSeconds >= 3 else { throw ConfigurationError.invalid("stallSeconds must be at least 3") }
        guard (1...20).contains(maxAttempts) else { throw ConfigurationError.invalid("maxAttempts \(maxAttempts) outside 1–20") }
        guard (1...50).contains(callbackAttempts) else { throw ConfigurationError.invalid("callbackAttempts \(callbackAttempts) outside 1–50") }
        guard callbackRetrySeconds >= 1 else { throw ConfigurationError.invalid("callbackRetrySeconds must be at least 1") }
        guard (0...(30 * 86_400)).contains(callbackSecretGraceSeconds) else { throw ConfigurationError.invalid("callbackSecretGraceSeconds \(callbackSecretGraceSeconds) outside 0–2592000 (30 days)") }
        guard (1...50).contains(mailAttempts) else { throw ConfigurationError.invalid("mailAttempts \(mailAttempts) outside 1–50") }
        guard mailRetrySeconds >= 1 else { throw ConfigurationError.invalid("mailRetrySeconds must be at least 1") }
        guard purgeReminderSeconds >= 0, purgeReminderSeconds.isFinite else { throw ConfigurationError.invalid("purgeReminderSeconds must be 0 (no reminder) or more") }
        if smtpURL != nil {
            do { _ = try smtpSettings() } catch { throw ConfigurationError.invalid("\(error)") }
            if let problem = MailMessage.addressProblem(mailSender) { throw ConfigurationError.invalid("mailFrom: \(problem)") }
        } else if smtpCAFile != nil || mailFrom != nil {
            throw ConfigurationError.invalid("smtpCAFile and mailFrom need smtpURL (where to send mail)")
        }
        if let t = tileCells, !(64...4096).contains(t) { throw ConfigurationError.invalid("tileCells \(t) outside 64–4096") }
        if let u = basemapURL, !(u.hasPrefix("https://") || u.hasPrefix("http://")) || !u.contains("{z}") || !u.contains("{x}") || !u.contains("{y}") {
            throw ConfigurationError.invalid("basemapURL must be an http(s) tile URL template with {z}, {x} and {y}")
        }
        if let u = publicURL {
            guard let c = URLComponents(string: u), ["http", "https"].contains(c.scheme?.lowercased() ?? ""), !(c.host ?? "").isEmpty,
                  c.query == nil, c.fragment == nil, c.user == nil, c.password == nil else {
                throw ConfigurationError.invalid("publicURL must be an absolute http(s) URL without query, fragment or credentials (e.g. https://dsm.example.org/dsmopt), not '\(u)'")
            }
        }
        guard defaultQuota.limitsAreNonNegative else {
            throw ConfigurationError.invalid("defaultQuota's limits must not be negative")
        }
        guard jobRecordSeconds > 0, minFreeBytes >= 0, maxConcurrentUploads >= 1, idleTimeoutSeconds > 0, maxJobCells > 0,
              minResolutionFactor > 0, maxJobWallSeconds > 0 else {
            throw ConfigurationError.invalid("jobRecordSeconds, idleTimeoutSeconds, maxJobCells, minResolutionFactor and maxJobWallSeconds must be positive, maxConcurrentUploads at least 1, minFreeBytes non-negative")
        }
        // A job finer than the pipeline makes would be accepted, then fail in its run.
        guard minResolutionFactor >= JobParameterTable.finestResolutionFactor else {
            throw ConfigurationError.invalid("minResolutionFactor \(minResolutionFactor) is below \(JobParameterTable.finestResolutionFactor), the finest DSM cell a run makes (× the image GSD)")
        }
    }

    /// The mail server's settings (nil: no mail).
    public func smtpSettings() throws -> SMTPSettings? { try smtpURL.map { try SMTPSettings(url: $0, caFile: smtpCAFile) } }

    /// The sender address of mail to users.
    public var mailSender: String {
        mailFrom ?? "dsmopt@" + SMTPClient.localName
    }

    /// `publicURL` without its trailing slashes: the base every link is built on (nil: from each request).
    var publicBase: String? {
        guard var u = publicURL else { return nil }
        while u.hasSuffix("/") { u.removeLast() }
        return u
    }

    // Layout of the data folder.
    public var databasePath: String { path("dsmopt.sqlite") }
    public var uploadsDirectory: String { path("uploads") }
    public var jobsDirectory: String { path("jobs") }
    public var presetsDirectory: String { path("presets") }
    /// Published products (the DSM catalogue), one folder per item; the job purge never touches it.
    public var catalogueDirectory: String { path("catalogue") }
    func path(_ s: String) -> String { (dataDirectory as NSString).appendingPathComponent(s) }
    func jobDirectory(_ id: String) -> String { (jobsDirectory as NSString).appendingPathComponent(id) }
    /// One attempt's folder: its job file, events, log and run output. Attempts never share a folder.
    func attemptDirectory(_ id: String, _ attempt: Int) -> String { (jobDirectory(id) as NSString).appendingPathComponent("attempt-\(attempt)") }
    /// Logs of the tile tasks run for an attempt (one per claim, named after the stage, task indices and worker).
    func taskLogDirectory(_ id: String, _ attempt: Int) -> String { (attemptDirectory(id, attempt) as NSString).appendingPathComponent("tasks") }
    /// What a job reads from other jobs' results or the catalogue, linked at its submission (`dsm-difference`):
    /// the job keeps its inputs whatever happens to their source; removed when the job ends.
    func inputsDirectory(_ id: String) -> String { (jobDirectory(id) as NSString).appendingPathComponent("inputs") }
    /// The run's output folder of an attempt; the results, once the attempt is promoted.
    func runDirectory(_ id: String, _ attempt: Int) -> String { (attemptDirectory(id, attempt) as NSString).appendingPathComponent("out") }
    /// Where a finished job's results are: the promoted attempt's output (nil before a successful finish).
    func resultsDirectory(_ job: Job) -> String? { job.resultAttempt.map { runDirectory(job.id, $0) } }
    func logPath(_ id: String, _ attempt: Int) -> String { (attemptDirectory(id, attempt) as NSString).appendingPathComponent("log.txt") }
    func uploadPath(_ u: Upload) -> String {
        ((uploadsDirectory as NSString).appendingPathComponent(u.id) as NSString).appendingPathComponent(u.fileName)
    }
}

public enum ConfigurationError: Error, Equatable, CustomStringConvertible {
    case missingFile(String)
    case invalid(String)
    case cannotListen(host: String, port: Int, reason: String)
    case storeUnreachable(String)

    /// The store could not be reached (worth retrying), as opposed to a wrong configuration.
    public var isUnreachable: Bool { if case .storeUnreachable = self { return true }; return false }

    public var description: String {
        switch self {
        case .missingFile(let f): return "\(f): configuration file not found"
        case .invalid(let r): return "invalid configuration: \(r)"
        case .cannotListen(let h, let p, let r): return "cannot listen on \(h):\(p): \(r) (another dsmopt serve? choose another --port or DSMOPT_PORT)"
        case .storeUnreachable(let r): return "cannot reach the job store: \(r)"
        }
    }
}

/// Parses "21d", "12h", "30m", "45s" or plain seconds.
public func parseDuration(_ s: String) -> Double? {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
    if let u = s.last, let f = units[u], let v = Double(s.dropLast()), v > 0 { return v * f }
    return Double(s).flatMap { $0 > 0 ? $0 : nil }
}
