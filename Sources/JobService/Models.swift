import Foundation

/// Who a user is to the service.
public enum Role: String, Sendable, Codable, CaseIterable {
    /// Submits and follows their own jobs.
    case researcher
    /// Also manages presets and sees every job.
    case `operator`
    /// Also manages users and quotas.
    case admin
    /// A catalogue service account (e.g. DINAMIS) that forwards jobs on behalf of named users.
    case catalogue
}

/// Per-user limits, checked atomically when a job is submitted.
public struct Quota: Sendable, Codable, Equatable {
    /// Jobs accepted or running at the same time.
    public var maxConcurrentJobs: Int = 2
    /// Compute budget: CPU-seconds per calendar month (UTC), charged from measured usage.
    public var cpuSecondsPerMonth: Double = 36_000
    /// Uploads plus results kept on disk, bytes.
    public var storageBytes: Int64 = 50 << 30
    /// Largest single input image, bytes.
    public var maxInputBytes: Int64 = 8 << 30

    public init() {}

    public var limitsAreNonNegative: Bool { maxConcurrentJobs >= 0 && cpuSecondsPerMonth >= 0 && storageBytes >= 0 && maxInputBytes >= 0 }
}

/// Some of a quota's limits, to replace those of a quota and keep the others: `defaultQuota` in a
/// configuration file, `PUT /admin/users/{id}/quota`, `dsmopt admin set-quota` / `create-user`.
public struct QuotaSettings: Decodable, Sendable {
    public var maxConcurrentJobs: Int?
    public var cpuSecondsPerMonth: Double?
    public var storageBytes: Int64?
    public var maxInputBytes: Int64?

    enum CodingKeys: String, CodingKey, CaseIterable { case maxConcurrentJobs, cpuSecondsPerMonth, storageBytes, maxInputBytes }

    public init(maxConcurrentJobs: Int? = nil, cpuSecondsPerMonth: Double? = nil, storageBytes: Int64? = nil, maxInputBytes: Int64? = nil) {
        self.maxConcurrentJobs = maxConcurrentJobs
        self.cpuSecondsPerMonth = cpuSecondsPerMonth
        self.storageBytes = storageBytes
        self.maxInputBytes = maxInputBytes
    }

    public func applied(to quota: Quota) -> Quota {
        var q = quota
        if let v = maxConcurrentJobs { q.maxConcurrentJobs = v }
        if let v = cpuSecondsPerMonth { q.cpuSecondsPerMonth = v }
        if let v = storageBytes { q.storageBytes = v }
        if let v = maxInputBytes { q.maxInputBytes = v }
        return q
    }
}

public struct User: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var role: Role
    public var quota: Quota
    public var createdAt: Date
    /// Where mail about the user's jobs goes (a job's end); nil: no mail.
    public var email: String? = nil

    /// The longest user name, in Unicode code points (what JSON Schema's `maxLength` counts).
    public static let maximumNameLength = 100
    /// Code points a user name must not hold: the C0 and C1 control characters (a line break would forge a
    /// line in a log or a mail).
    public static let forbiddenInNames: [ClosedRange<UInt32>] = [0x00...0x1F, 0x7F...0x9F]
    /// The same rule as an OpenAPI (ECMA-262) pattern, for the API's description.
    public static var namePattern: String {
        "^[^" + forbiddenInNames.map { String(format: "\\x%02x-\\x%02x", $0.lowerBound, $0.upperBound) }.joined() + "]*$"
    }

    /// Why `name` cannot name a user, or nil. A name is shown in the portal, mail, logs and listings and typed
    /// in `dsmopt admin` commands: 1–100 code points, none of them a control character.
    public static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "a user name must not be empty" }
        let length = name.unicodeScalars.count
        if length > maximumNameLength { return "a user name has at most \(maximumNameLength) characters (this one \(length))" }
        if name.unicodeScalars.contains(where: { c in forbiddenInNames.contains { $0.contains(c.value) } }) {
            return "a user name must not hold control characters (line breaks, tabs, …)"
        }
        return nil
    }
}

public struct Upload: Sendable, Codable, Equatable {
    public var id: String
    public var userId: String
    public var fileName: String
    public var size: Int64
    public var sha256: String
    public var createdAt: Date

    public init(id: String, userId: String, fileName: String, size: Int64, sha256: String, createdAt: Date) {
        self.id = id; self.userId = userId; self.fileName = fileName; self.size = size; self.sha256 = sha256; self.createdAt = createdAt
    }
}

/// OGC API – Processes job states.
public enum JobStatus: String, Sendable, Codable, CaseIterable {
    case accepted, running, successful, failed, dismissed
}

public struct Job: Sendable, Codable, Equatable {
    public var id: String
    public var userId: String
    public var name: String
    public var status: JobStatus
    /// 0–100.
    public var progress: Int
    public var stage: String?
    public var message: String?
    /// The validated execution request (JSON).
    public var request: String
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    /// When the results are deleted (finished time + retention).
    public var purgeAt: Date?
    public var purged: Bool
    public var error: String?
    public var cpuSeconds: Double
    public var resultBytes: Int64
    /// Attempts started so far; the current (or last) attempt's number. Every update a worker makes is
    /// fenced by it, and each attempt works in its own folder.
    public var attempts: Int
    /// The attempt whose folder holds the results (set by the successful, fenced finish).
    public var resultAttempt: Int? = nil
    public var worker: String?
    public var leaseUntil: Date?
    public var cancelRequested: Bool
    /// The job's callback to its subscriber (`subscriber` in the execute request), nil without one.
    public var callback: DeliveryState? = nil
    /// The mail to its owner when it ends (the owner had an address and the service a mail server when the
    /// job was submitted), nil without one.
    public var mail: DeliveryState? = nil
    /// When the mail reminding the owner that the results are about to be purged fell due and was queued
    /// (`JobStore.queuePurgeReminders`), nil before.
    public var purgeReminderAt: Date? = nil
    /// That reminder's delivery, from then on (`DeliveryChannel.reminder`).
    public var reminder: DeliveryState? = nil

    public init(id: String, userId: String, name: String, status: JobStatus = .accepted, progress: Int = 0, stage: String? = nil,
                message: String? = nil, request: String, createdAt: Date, startedAt: Date? = nil, finishedAt: Date? = nil,
                purgeAt: Date? = nil, purged: Bool = false, error: String? = nil, cpuSeconds: Double = 0, resultBytes: Int64 = 0,
                attempts: Int = 0, resultAttempt: Int? = nil, worker: String? = nil, leaseUntil: Date? = nil, cancelRequested: Bool = false,
                callback: DeliveryState? = nil, mail: DeliveryState? = nil, purgeReminderAt: Date? = nil, reminder: DeliveryState? = nil) {
        self.id = id; self.userId = userId; self.name = name; self.status = status; self.progress = progress; self.stage = stage
        self.message = message; self.request = request; self.createdAt = createdAt; self.startedAt = startedAt; self.finishedAt = finishedAt
        self.purgeAt = purgeAt; self.purged = purged; self.error = error; self.cpuSeconds = cpuSeconds; self.resultBytes = resultBytes
        self.attempts = attempts; self.resultAttempt = resultAttempt; self.worker = worker; self.leaseUntil = leaseUntil
        self.cancelRequested = cancelRequested
        self.callback = callback
        self.mail = mail
        self.purgeReminderAt = purgeReminderAt
        self.reminder = reminder
    }

    /// The order of purges: soonest first, then by id (`UPDATE … RETURNING` gives rows in no set order).
    static func soonestPurgeFirst(_ a: Job, _ b: Job) -> Bool {
        (a.purgeAt ?? .distantFuture, a.id) < (b.purgeAt ?? .distantFuture, b.id)
    }
}

/// What is sent when a job ends, each kept on the job's row (its outbox) with its own `DeliveryState`.
public enum DeliveryChannel: String, Sendable, CaseIterable {
    /// OGC API – Processes callbacks: the outcome POSTed to the subscriber's URI.
    case callback
    /// A mail to the job's owner.
    case mail
    /// The mail reminding a successful job's owner, `purgeReminderSeconds` before the purge, that its results
    /// are about to be deleted: queued when due (its end mail delivered), then sent and retried as the end mail is.
    case reminder
}

/// Where a job's callback (or mail) stands: `pending` until the job has ended and the subscriber's URI has
/// answered a POST of its outcome with 2xx (the mail server has accepted the mail): `delivered`; `failed`
/// once the service's attempts are spent or the URI is refused (an internal address; the mail refused for
/// good); `skipped` when the subscriber gave no URI for the way the job ended (no mail for a job its owner
/// dismissed, or an owner without an address by then).
public struct DeliveryState: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable, CaseIterable { case pending, delivered, failed, skipped }
    public var state: State
    /// POSTs tried so far.
    public var attempts: Int = 0
    /// Why the last attempt failed (or why none was made).
    public var error: String? = nil
    /// When the next attempt is due (or, while one runs, when its claim lapses).
    public var nextAttempt: Date? = nil

    public init(state: State, attempts: Int = 0, error: String? = nil, nextAttempt: Date? = nil) {
        self.state = state; self.attempts = attempts; self.error = error; self.nextAttempt = nextAttempt
    }

    /// Zero of every state on every channel (what `Store.deliveryCounts` fills in).
    static var emptyCounts: [DeliveryChannel: [State: Int]] {
        Dictionary(uniqueKeysWithValues: DeliveryChannel.allCases.map { c in (c, Dictionary(uniqueKeysWithValues: State.allCases.map { ($0, 0) })) })
    }
}

/// Which jobs a listing shows: OGC API – Processes' job list filters (`processID`, `status`, `datetime` on the
/// creation time, `minDuration` / `maxDuration`), within one user's jobs or all. An empty list filters nothing.
public struct JobQuery: Sendable, Equatable {
    public var userId: String?
    public var statuses: [JobStatus] = []
    public var processIDs: [String] = []
    /// Created within [createdFrom, createdTo] (either end open when nil).
    public var createdFrom: Date?
    public var createdTo: Date?
    /// Seconds from the start to the finish, or to `now` while the job runs; a job not started has no
    /// duration and is left out when either bound is given.
    public var minDuration: Double?
    public var maxDuration: Double?
    public var now = Date()

    public init(userId: String? = nil) { self.userId = userId }

    /// The process a job's request names (`ExecutionRequest.process`; nil is the DSM process).
    public static let defaultProcess = "dsm-opt"

    /// Whether `job` passes, its request naming `process` — the stores' SQL says the same.
    public func matches(_ job: Job, process: String?) -> Bool {
        if let u = userId, job.userId != u { return false }
        if !statuses.isEmpty, !statuses.contains(job.status) { return false }
        if !processIDs.isEmpty, !processIDs.contains(process ?? Self.defaultProcess) { return false }
        if let f = createdFrom, job.createdAt < f { return false }
        if let t = createdTo, job.createdAt > t { return false }
        if minDuration != nil || maxDuration != nil {
            guard let start = job.startedAt else { return false }
            let d = (job.finishedAt ?? now).timeIntervalSince(start)
            if let m = minDuration, d < m { return false }
            if let m = maxDuration, d > m { return false }
        }
        return true
    }
}

/// A user's current consumption, as shown by `GET /me`.
public struct Usage: Sendable, Codable, Equatable {
    public var activeJobs: Int
    public var cpuSecondsThisMonth: Double
    public var storageBytes: Int64

    public init(activeJobs: Int, cpuSecondsThisMonth: Double, storageBytes: Int64) {
        self.activeJobs = activeJobs
        // Sums of measured CPU carry float noise (15.399999999999999): shown to the hundredth.
        self.cpuSecondsThisMonth = (cpuSecondsThisMonth * 100).rounded() / 100
        self.storageBytes = storageBytes
    }
}

/// Which limit a submission would exceed.
public enum QuotaExceeded: Error, Equatable, CustomStringConvertible {
    case concurrentJobs(limit: Int)
    case cpuBudget(used: Double, limit: Double)
    case storage(used: Int64, requested: Int64, limit: Int64)
    /// The results a job is expected to write do not fit in what is left of the storage quota.
    case resultStorage(used: Int64, estimate: Int64, limit: Int64)
    case inputSize(file: String, size: Int64, limit: Int64)

    public var description: String {
        switch self {
        case .concurrentJobs(let l): return "the limit of \(l) concurrent jobs is reached"
        case .cpuBudget(let u, let l): return "the monthly compute budget is used up (\(Int(u)) of \(Int(l)) CPU-seconds)"
        case .storage(let u, let r, let l): return "storage quota exceeded (\(u) bytes used, \(r) more requested, limit \(l))"
        case .resultStorage(let u, let r, let l):
            return "storage quota exceeded: this job's results need about \(r) bytes (estimated from its DSM cells), \(max(0, l - u)) of \(l) are left; delete old jobs or uploads, or choose a smaller area or a coarser resolution"
        case .inputSize(let f, let s, let l): return "input \(f) is \(s) bytes, above the per-input limit of \(l)"
        }
    }

    /// The quota field at stake.
    public var limit: String {
        switch self {
        case .concurrentJobs: return "maxConcurrentJobs"
        case .cpuBudget: return "cpuSecondsPerMonth"
        case .storage, .resultStorage: return "storageBytes"
        case .inputSize: return "maxInputBytes"
        }
    }
}

/// An upload a job was to read is no longer there: it was deleted while the job was being checked. Found
/// atomically with the job's insertion (`JobStore.createJob`), so that no job is queued without its inputs.
public struct UploadsGone: Error, Equatable, CustomStringConvertible {
    public var ids: [String]
    public init(ids: [String]) { self.ids = ids }
    public var description: String { "upload\(ids.count == 1 ? "" : "s") \(ids.joined(separator: ", ")) deleted while the job was being submitted" }
}

/// What `JobStore.deleteUpload` did: the check that no queued or running job reads the upload and the
/// deletion are one transaction.
public enum UploadDeletion: Equatable, Sendable {
    case deleted
    /// No upload with this id for this user.
    case notFound
    /// Queued or running jobs read it (their ids, oldest first); nothing was deleted.
    case inUse(jobs: [String])
}

/// A job's products published in the DSM catalogue: a STAC item of the `dsm-opt` collection, served to
/// every authenticated user, kept after the job's purge until withdrawn.
public struct Publication: Sendable, Codable, Equatable {
    /// The item's id: the job's.
    public var id: String
    /// The job's owner: the storage counts against their quota.
    public var ownerId: String
    public var publishedBy: String
    public var publishedAt: Date
    /// Bytes of the published products.
    public var bytes: Int64
    /// minLon, minLat, maxLon, maxLat.
    public var bbox: [Double]
    /// Acquisition time span (one instant for one stereo pass).
    public var start: Date?
    public var end: Date?
    /// The STAC item as published (asset addresses relative to its catalogue folder).
    public var item: String

    public init(id: String, ownerId: String, publishedBy: String, publishedAt: Date, bytes: Int64, bbox: [Double], start: Date?, end: Date?, item: String) {
        self.id = id; self.ownerId = ownerId; self.publishedBy = publishedBy; self.publishedAt = publishedAt; self.bytes = bytes
        self.bbox = bbox; self.start = start; self.end = end; self.item = item
    }
}

/// A catalogue search as the store runs it: bounding box and time interval intersect, ids, one page.
public struct CatalogueQuery: Sendable, Equatable {
    public var bbox: [Double]?
    public var start: Date?
    public var end: Date?
    public var ids: [String]?
    public var limit: Int
    public var offset: Int
    public init(bbox: [Double]? = nil, start: Date? = nil, end: Date? = nil, ids: [String]? = nil, limit: Int = 10, offset: Int = 0) {
        self.bbox = bbox; self.start = start; self.end = end; self.ids = ids; self.limit = limit; self.offset = offset
    }
}

/// What the catalogue holds: the collection's extent.
public struct CatalogueSummary: Sendable, Equatable {
    public var count: Int
    public var bbox: [Double]?
    public var start: Date?
    public var end: Date?
}

/// One task of one stage of a job, run by whichever worker claims it (a job spread over many workers):
/// a block of neighbouring tiles (`TilePlan.taskGroups(stage)`, `TileStage.taskBlock`), created by the
/// job's coordinating attempt (`jobAttempt`), claimed with a lease, fenced by its own attempt number, and
/// counted (`completions`) so that tests and operators see every tile run once.
public struct TileTask: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable { case queued, running, done, failed }
    public var jobId: String
    public var jobAttempt: Int
    /// The pipeline step's stage: match, fuse or ortho.
    public var stage: String
    /// The task's index among the stage's tasks (`TilePlan.taskGroups(stage)[tile]` are its tiles).
    public var tile: Int
    public var state: State
    public var attempts: Int
    public var worker: String?
    /// The job's run folder (on the shared data folder) holding the plan and the finished tiles.
    public var runDirectory: String
    public var completions: Int
    public var doneBy: String?
    public var cpuSeconds: Double
    public var error: String?
}

/// Tasks of one stage of a job's attempt, by state.
public struct TaskTally: Sendable, Equatable {
    public var queued = 0, running = 0, done = 0, failed = 0
    /// The error of a failed task (the last attempt's), if any.
    public var failure: String?
    public var total: Int { queued + running + done + failed }
    public init() {}
}
