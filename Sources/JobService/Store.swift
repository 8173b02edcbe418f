import Crypto
import Foundation
import GRDB

/// Everything the API and the workers keep durably. The SQLite implementation serves one machine
/// (several processes may share its file); a PostgreSQL one can implement the same protocol for
/// several machines.
public protocol JobStore: Sendable {
    func createUser(name: String, role: Role, quota: Quota) async throws -> (User, token: String)
    func user(token: String) async throws -> User?
    func user(id: String) async throws -> User?
    func user(name: String) async throws -> User?
    func users() async throws -> [User]
    func setQuota(userId: String, quota: Quota) async throws -> User?

    func addUpload(_ upload: Upload) async throws
    func upload(id: String, userId: String) async throws -> Upload?
    /// A user's uploads, newest first.
    func uploads(userId: String) async throws -> [Upload]
    func usage(userId: String, now: Date) async throws -> Usage
    /// Removes an upload record of its owner unless a queued or running job of theirs reads it (its request's
    /// `inputs`): the check and the deletion are atomic, with each other and with `createJob`'s check that
    /// the job's uploads exist, so that no job is queued without its inputs.
    func deleteUpload(id: String, userId: String) async throws -> UploadDeletion

    /// Inserts a job if the user's quota allows it and the uploads it reads (`uploads`, ids of the user's)
    /// all still exist, atomically with the checks (`QuotaExceeded`, `UploadsGone`). `results`: the storage
    /// its results are expected to take (bytes), which must fit in what is left of the storage quota.
    func createJob(_ job: Job, inputBytes: [(String, Int64)], uploads: [String], quota: Quota, results: Int64, now: Date) async throws
    func job(id: String) async throws -> Job?
    /// The jobs `query` selects, newest first.
    func jobs(_ query: JobQuery, limit: Int, offset: Int) async throws -> [Job]
    func countJobs(_ query: JobQuery) async throws -> Int
    func jobCounts() async throws -> [JobStatus: Int]

    /// Claims the next accepted job for `worker` with a lease, starting a new attempt (`attempts` + 1), or
    /// nil. Fair between users: the job of the user with the fewest running jobs goes first, then the oldest.
    func claimJob(worker: String, leaseUntil: Date, now: Date) async throws -> Job?
    /// Renews the lease and records progress; false when this attempt no longer owns the job (fenced by
    /// worker and attempt number).
    func heartbeat(jobId: String, attempt: Int, worker: String, progress: Int?, stage: String?, message: String?, leaseUntil: Date) async throws -> Bool
    /// Ends the attempt, fenced: false (and nothing changed) when it no longer owns the job. A successful
    /// finish promotes the attempt's folder as the results (`resultAttempt`). CPU seconds are added to
    /// the job's charge in every ending.
    func finish(jobId: String, attempt: Int, worker: String, status: JobStatus, error: String?, cpuSeconds: Double,
                resultBytes: Int64, finishedAt: Date, purgeAt: Date?) async throws -> Bool
    /// Puts back in the queue the running jobs whose lease expired (their worker died or stalled); a job
    /// that has had `maxAttempts` attempts fails instead, with the reason.
    func requeueExpired(now: Date, maxAttempts: Int) async throws -> [String]
    /// Gives back an attempt's job (graceful shutdown): it runs again later. Fenced.
    func release(jobId: String, attempt: Int, worker: String) async throws
    /// Cancels: an accepted job is dismissed at once; a running one is flagged for its worker.
    func cancel(jobId: String, now: Date) async throws -> Job?
    func delete(jobId: String) async throws
    func jobsToPurge(now: Date) async throws -> [Job]
    func markPurged(jobId: String) async throws
    /// Deletes the records of finished jobs whose results were purged before `before`; returns their ids.
    func deleteJobRecords(purgedBefore before: Date) async throws -> [String]
    /// Ids of every job, for the purge's orphan check.
    func allJobIds() async throws -> Set<String>

    /// Claims up to `limit` ended jobs whose callback (or mail) is pending and due (`DeliveryState`), oldest
    /// ending first: each claim counts an attempt and holds it until `leaseUntil` (another process takes it
    /// up after that, so it is sent at least once whichever process dies).
    func claimDeliveries(_ channel: DeliveryChannel, now: Date, leaseUntil: Date, limit: Int) async throws -> [Job]
    /// Records the outcome of a callback's (mail's) attempt (the claim's `attempts`), fenced by it: `pending`
    /// with the next attempt's time, or `delivered`, `failed`, `skipped`.
    func recordDelivery(_ channel: DeliveryChannel, jobId: String, attempt: Int, state: DeliveryState.State, error: String?, nextAttempt: Date?) async throws
    /// Callbacks, mails and purge reminders of the jobs that have ended (those still held, not yet deleted after their purge),
    /// by state; `pending` counts those still to be delivered. Every channel and state is present.
    func deliveryCounts() async throws -> [DeliveryChannel: [DeliveryState.State: Int]]
    /// Queues the purge reminder (`DeliveryChannel.reminder` pending, `purgeReminderAt` = `now`) of every
    /// successful job whose results are purged within `lead` seconds after `now`, that is kept longer than
    /// `lead` after its end and whose end mail was delivered (its owner reads mail about it), once each:
    /// `claimDeliveries(.reminder, …)` then sends it. Returns the ids queued, soonest purge first.
    func queuePurgeReminders(now: Date, lead: Double) async throws -> [String]
    /// Sets (nil: removes) the address mail about a user's jobs goes to; false when there is no such user.
    func setEmail(userId: String, email: String?) async throws -> Bool
    /// Ids of every upload, for the purge's orphan check.
    func allUploadIds() async throws -> Set<String>

    /// Replaces a user's token (rotation); returns the new one. The old one is refused from now on.
    func rotateToken(userId: String) async throws -> String?
    /// Revokes a user's token: every request with it is refused from now on.
    func revokeToken(userId: String) async throws -> Bool
    /// The stored hash of a user's token, from which the key of their download links derives (`DownloadLink`):
    /// rotating or revoking the token voids every link it signed. nil when there is no such user or their
    /// token is revoked.
    func tokenHash(userId: String) async throws -> String?
    /// The keys that sign the callbacks of a user's jobs (`CallbackSignature`): the current one, created on
    /// first use; with `renewKeepingPreviousUntil`, replaced by a new one, the replaced one kept as `previous`
    /// until that date (a later renewal replaces it too). nil when there is no such user.
    func callbackSecrets(userId: String, renewKeepingPreviousUntil: Date?) async throws -> CallbackSecrets?

    // The DSM catalogue.
    /// Records a publication; false when the job is already published (nothing changed).
    func publish(_ p: Publication) async throws -> Bool
    func publication(id: String) async throws -> Publication?
    /// Removes a publication and returns it (nil when there was none).
    func withdraw(id: String) async throws -> Publication?
    /// Publications whose bbox and time span intersect the query's, newest acquisition first, one page.
    func publications(_ q: CatalogueQuery) async throws -> [Publication]
    func catalogueSummary() async throws -> CatalogueSummary
    func allPublicationIds() async throws -> Set<String>

    // Tile tasks: one job's tiles spread over many workers (see `TileTask`).
    /// Queues tasks of a stage (`tiles`: their indices among the stage's tasks, `TilePlan.taskGroups`) for the
    /// job's coordinating attempt `jobAttempt`; the job's tasks of other attempts are removed (their workers
    /// find their leases gone at the next heartbeat).
    func addTasks(jobId: String, jobAttempt: Int, runDirectory: String, stage: String, tiles: [Int]) async throws
    /// Claims up to `limit` queued tasks of one stage of one running job (of `preferJob` first, then the user
    /// with the fewest running tasks, then the oldest job), with a lease; each claim is a new attempt.
    func claimTasks(worker: String, limit: Int, leaseUntil: Date, preferJob: String?) async throws -> [TileTask]
    /// Renews the lease of claimed tasks; false if any is no longer this worker's attempt, or its job was
    /// cancelled or is no longer run by the attempt that queued it.
    func heartbeatTasks(_ tasks: [TileTask], worker: String, leaseUntil: Date) async throws -> Bool
    /// Fenced: records claimed tiles (of one stage of one job, as claimed) done, in one transaction; returns
    /// the tiles recorded (a tile whose claim was lost is not). The CPU seconds (of all of them, shared
    /// equally) are charged to the job's owner either way.
    func completeTasks(_ tasks: [TileTask], worker: String, cpuSeconds: Double) async throws -> [Int]
    /// Fenced: the attempt failed; queued again, or failed for good at `maxAttempts` attempts. CPU charged.
    func failTask(_ task: TileTask, worker: String, error: String, cpuSeconds: Double, maxAttempts: Int) async throws -> Bool
    /// Gives claimed tasks back at shutdown (their attempt is not counted).
    func releaseTasks(_ tasks: [TileTask], worker: String) async throws
    func taskTally(jobId: String, jobAttempt: Int, stage: String) async throws -> TaskTally
    func tasks(jobId: String) async throws -> [TileTask]
    /// Tasks whose lease ran out go back to the queue (or fail at `maxAttempts`); returns how many.
    func requeueExpiredTasks(now: Date, maxAttempts: Int) async throws -> Int
}

extension TileTask {
    static func expired(attempts: Int) -> String {
        "the tile was started \(attempts) times and its worker stopped responding each time"
    }
}

/// Lower-case hexadecimal of bytes (digests, tokens).
func hexString<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    bytes.map { String(format: "%02x", $0) }.joined()
}

public enum StoreError: Error, Equatable, CustomStringConvertible {
    case duplicateUser(String)
    /// A backup that was not made, and why.
    case backup(String)
    public var description: String {
        switch self {
        case .duplicateUser(let n): return "a user named '\(n)' already exists"
        case .backup(let why): return "backup: \(why)"
        }
    }
}

/// SQLite through GRDB (WAL mode), with versioned migrations.
public final class SQLiteJobStore: JobStore {
    let db: DatabasePool

    public init(path: String) throws {
        var config = Configuration()
        config.busyMode = .timeout(10)
        db = try DatabasePool(path: path, configuration: config)
        try Self.migrator.migrate(db)
    }

    /// What `backup(to:)` copied.
    public struct BackupSummary: Encodable, Sendable {
        public var path: String, bytes: Int64, integrity: String
        public var users: Int, uploads: Int, jobs: Int, publications: Int
    }

    /// A consistent copy of the store while daemons and workers keep using it (SQLite's online backup from a
    /// snapshot), written beside `path` and renamed into place once its integrity check passes; an existing
    /// file is never overwritten.
    public func backup(to path: String) throws -> BackupSummary {
        let fm = FileManager.default
        guard !fm.fileExists(atPath: path) else { throw StoreError.backup("\(path) exists: a backup never overwrites a file") }
        let partial = path + ".partial-\(getpid())"
        try? fm.removeItem(atPath: partial)
        defer { try? fm.removeItem(atPath: partial) }
        var summary: BackupSummary
        do {
            let copy = try DatabaseQueue(path: partial)
            try db.backup(to: copy)
            summary = try copy.read { db in
                BackupSummary(path: path, bytes: 0, integrity: try String.fetchAll(db, sql: "PRAGMA integrity_check").joined(separator: "; "),
                              users: try Int.fetchOne(db, sql: "SELECT count(*) FROM users") ?? 0,
                              uploads: try Int.fetchOne(db, sql: "SELECT count(*) FROM uploads") ?? 0,
                              jobs: try Int.fetchOne(db, sql: "SELECT count(*) FROM jobs") ?? 0,
                              publications: try Int.fetchOne(db, sql: "SELECT count(*) FROM publications") ?? 0)
            }
            try copy.close()
        } catch let e as DatabaseError {
            throw StoreError.backup("copying the store to \(partial) failed: \(e.message ?? e.description)")
        }
        guard summary.integrity == "ok" else { throw StoreError.backup("the copy failed its integrity check: \(summary.integrity)") }
        // Linked, not renamed: a file that appeared at `path` meanwhile is never replaced. Where the file
        // system has no hard links, renamed after one more check.
        if link(partial, path) != 0 {
            let why = errno
            guard [EPERM, ENOTSUP, EOPNOTSUPP].contains(why), !fm.fileExists(atPath: path), rename(partial, path) == 0 else {
                throw StoreError.backup("could not put the copy at \(path): \(String(cString: strerror(why)))")
            }
        }
        summary.bytes = ((try? fm.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
        return summary
    }

    /// Append-only list of migrations: never edit one that has shipped.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1-users-uploads-jobs") { db in
            try db.execute(sql: """
                CREATE TABLE users (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                    role TEXT NOT NULL CHECK (role IN ('researcher', 'operator', 'admin', 'catalogue')),
                    token_hash TEXT NOT NULL UNIQUE, quota TEXT NOT NULL, created_at REAL NOT NULL);
                CREATE TABLE uploads (
                    id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id),
                    file_name TEXT NOT NULL, size INTEGER NOT NULL CHECK (size >= 0), sha256 TEXT NOT NULL,
                    created_at REAL NOT NULL);
                CREATE TABLE jobs (
                    id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), name TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('accepted', 'running', 'successful', 'failed', 'dismissed')),
                    progress INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
                    stage TEXT, message TEXT, request TEXT NOT NULL,
                    created_at REAL NOT NULL, started_at REAL, finished_at REAL, purge_at REAL,
                    purged INTEGER NOT NULL DEFAULT 0, error TEXT,
                    cpu_seconds REAL NOT NULL DEFAULT 0, result_bytes INTEGER NOT NULL DEFAULT 0,
                    attempts INTEGER NOT NULL DEFAULT 0, worker TEXT, lease_until REAL,
                    cancel_requested INTEGER NOT NULL DEFAULT 0);
                CREATE INDEX jobs_queue ON jobs(status, created_at);
                CREATE INDEX jobs_user ON jobs(user_id, created_at);
                """)
        }
        m.registerMigration("v2-attempt-folders") { db in
            try db.execute(sql: """
                ALTER TABLE jobs ADD COLUMN result_attempt INTEGER;
                CREATE INDEX jobs_purge ON jobs(purged, purge_at);
                """)
        }
        m.registerMigration("v3-catalogue") { db in
            try db.execute(sql: """
                CREATE TABLE publications (
                    id TEXT PRIMARY KEY, owner_id TEXT NOT NULL REFERENCES users(id), published_by TEXT NOT NULL,
                    published_at REAL NOT NULL, bytes INTEGER NOT NULL CHECK (bytes >= 0),
                    min_lon REAL NOT NULL, min_lat REAL NOT NULL, max_lon REAL NOT NULL, max_lat REAL NOT NULL,
                    start_time REAL, end_time REAL, item TEXT NOT NULL);
                CREATE INDEX publications_place ON publications(min_lon, max_lon, min_lat, max_lat);
                CREATE INDEX publications_time ON publications(start_time, end_time);
                """)
        }
        m.registerMigration("v4-tile-tasks") { db in
            try db.execute(sql: """
                CREATE TABLE tasks (
                    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, job_attempt INTEGER NOT NULL,
                    stage TEXT NOT NULL, tile INTEGER NOT NULL CHECK (tile >= 0),
                    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
                    attempts INTEGER NOT NULL DEFAULT 0, worker TEXT, lease_until REAL, run_dir TEXT NOT NULL,
                    completions INTEGER NOT NULL DEFAULT 0, done_by TEXT, cpu_seconds REAL NOT NULL DEFAULT 0, error TEXT,
                    PRIMARY KEY (job_id, stage, tile));
                CREATE INDEX tasks_queue ON tasks(state, job_id);
                """)
        }
        m.registerMigration("v5-callbacks") { db in
            try db.execute(sql: """
                ALTER TABLE jobs ADD COLUMN callback_state TEXT CHECK (callback_state IN ('pending', 'delivered', 'failed', 'skipped'));
                ALTER TABLE jobs ADD COLUMN callback_attempts INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE jobs ADD COLUMN callback_at REAL;
                ALTER TABLE jobs ADD COLUMN callback_error TEXT;
                CREATE INDEX jobs_callbacks ON jobs(callback_state, callback_at);
                """)
        }
        m.registerMigration("v6-callback-secrets") { db in
            try db.execute(sql: "ALTER TABLE users ADD COLUMN callback_secret TEXT")
        }
        m.registerMigration("v7-callback-secret-rotation") { db in
            try db.execute(sql: """
                ALTER TABLE users ADD COLUMN previous_callback_secret TEXT;
                ALTER TABLE users ADD COLUMN previous_callback_secret_until REAL;
                """)
        }
        m.registerMigration("v8-mail") { db in
            try db.execute(sql: """
                ALTER TABLE users ADD COLUMN email TEXT;
                ALTER TABLE jobs ADD COLUMN mail_state TEXT CHECK (mail_state IN ('pending', 'delivered', 'failed', 'skipped'));
                ALTER TABLE jobs ADD COLUMN mail_attempts INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE jobs ADD COLUMN mail_at REAL;
                ALTER TABLE jobs ADD COLUMN mail_error TEXT;
                CREATE INDEX jobs_mail ON jobs(mail_state, mail_at);
                """)
        }
        m.registerMigration("v9-purge-reminder") { db in
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN purge_reminder_at REAL")
        }
        // Reminders sent (at most once) before they were retried count as delivered.
        m.registerMigration("v10-reminder-delivery") { db in
            try db.execute(sql: """
                ALTER TABLE jobs ADD COLUMN reminder_state TEXT CHECK (reminder_state IN ('pending', 'delivered', 'failed', 'skipped'));
                ALTER TABLE jobs ADD COLUMN reminder_attempts INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE jobs ADD COLUMN reminder_at REAL;
                ALTER TABLE jobs ADD COLUMN reminder_error TEXT;
                CREATE INDEX jobs_reminder ON jobs(reminder_state, reminder_at);
                UPDATE jobs SET reminder_state = 'delivered', reminder_attempts = 1 WHERE purge_reminder_at IS NOT NULL;
                """)
        }
        return m
    }

    static func hash(_ token: String) -> String { hexString(SHA256.hash(data: Data(token.utf8))) }

    static func newToken() -> String {
        var g = SystemRandomNumberGenerator()
        return "dso_" + hexString((0..<32).map { _ in UInt8.random(in: 0...255, using: &g) })
    }

    static func newID() -> String { UUID().uuidString.lowercased() }

    static func decodeQuota(_ s: String) -> Quota { (try? JSONDecoder().decode(Quota.self, from: Data(s.utf8))) ?? Quota() }
    static func encode<T: Encodable>(_ v: T) throws -> String { String(decoding: try JSONEncoder().encode(v), as: UTF8.self) }

    static func user(_ r: Row) -> User {
        User(id: r["id"], name: r["name"], role: Role(rawValue: r["role"]) ?? .researcher,
             quota: decodeQuota(r["quota"]), createdAt: Date(timeIntervalSince1970: r["created_at"]), email: r["email"])
    }

    static func date(_ r: Row, _ k: String) -> Date? { (r[k] as Double?).map { Date(timeIntervalSince1970: $0) } }

    static func job(_ r: Row) -> Job {
        Job(id: r["id"], userId: r["user_id"], name: r["name"], status: JobStatus(rawValue: r["status"]) ?? .failed,
            progress: r["progress"], stage: r["stage"], message: r["message"], request: r["request"],
            createdAt: Date(timeIntervalSince1970: r["created_at"]), startedAt: date(r, "started_at"),
            finishedAt: date(r, "finished_at"), purgeAt: date(r, "purge_at"), purged: r["purged"], error: r["error"],
            cpuSeconds: r["cpu_seconds"], resultBytes: r["result_bytes"], attempts: r["attempts"], resultAttempt: r["result_attempt"], worker: r["worker"],
            leaseUntil: date(r, "lease_until"), cancelRequested: r["cancel_requested"],
            callback: delivery(r, .callback), mail: delivery(r, .mail), purgeReminderAt: date(r, "purge_reminder_at"), reminder: delivery(r, .reminder))
    }

    static func delivery(_ r: Row, _ channel: DeliveryChannel) -> DeliveryState? {
        let c = channel.rawValue
        return (r["\(c)_state"] as String?).flatMap(DeliveryState.State.init).map {
            DeliveryState(state: $0, attempts: r["\(c)_attempts"], error: r["\(c)_error"], nextAttempt: date(r, "\(c)_at"))
        }
    }

    public func createUser(name: String, role: Role, quota: Quota) async throws -> (User, token: String) {
        let token = Self.newToken()
        let u = User(id: Self.newID(), name: name, role: role, quota: quota, createdAt: Date())
        let encoded = try Self.encode(quota)
        try await db.write { db in
            if try Row.fetchOne(db, sql: "SELECT 1 FROM users WHERE name = ?", arguments: [name]) != nil {
                throw StoreError.duplicateUser(name)
            }
            try db.execute(sql: "INSERT INTO users (id, name, role, token_hash, quota, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [u.id, name, role.rawValue, Self.hash(token), encoded, u.createdAt.timeIntervalSince1970])
        }
        return (u, token)
    }

    public func user(token: String) async throws -> User? {
        let h = Self.hash(token)
        return try await db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM users WHERE token_hash = ?", arguments: [h]).map(Self.user) }
    }

    public func user(id: String) async throws -> User? {
        try await db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM users WHERE id = ?", arguments: [id]).map(Self.user) }
    }

    public func user(name: String) async throws -> User? {
        try await db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM users WHERE name = ?", arguments: [name]).map(Self.user) }
    }

    public func users() async throws -> [User] {
        try await db.read { db in try Row.fetchAll(db, sql: "SELECT * FROM users ORDER BY created_at").map(Self.user) }
    }

    public func setQuota(userId: String, quota: Quota) async throws -> User? {
        let encoded = try Self.encode(quota)
        return try await db.write { db in
            try db.execute(sql: "UPDATE users SET quota = ? WHERE id = ?", arguments: [encoded, userId])
            return try Row.fetchOne(db, sql: "SELECT * FROM users WHERE id = ?", arguments: [userId]).map(Self.user)
        }
    }

    public func addUpload(_ u: Upload) async throws {
        try await db.write { db in
            try db.execute(sql: "INSERT INTO uploads (id, user_id, file_name, size, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [u.id, u.userId, u.fileName, u.size, u.sha256, u.createdAt.timeIntervalSince1970])
        }
    }

    public func upload(id: String, userId: String) async throws -> Upload? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM uploads WHERE id = ? AND user_id = ?", arguments: [id, userId]).map {
                Upload(id: $0["id"], userId: $0["user_id"], fileName: $0["file_name"], size: $0["size"], sha256: $0["sha256"],
                       createdAt: Date(timeIntervalSince1970: $0["created_at"]))
            }
        }
    }

    public func uploads(userId: String) async throws -> [Upload] {
        try await db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM uploads WHERE user_id = ? ORDER BY created_at DESC, id", arguments: [userId]).map {
                Upload(id: $0["id"], userId: $0["user_id"], fileName: $0["file_name"], size: $0["size"], sha256: $0["sha256"],
                       createdAt: Date(timeIntervalSince1970: $0["created_at"]))
            }
        }
    }

    public func deleteUpload(id: String, userId: String) async throws -> UploadDeletion {
        try await db.write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM uploads WHERE id = ? AND user_id = ?", arguments: [id, userId]) != nil else { return .notFound }
            let readers = try String.fetchAll(db, sql: """
                SELECT j.id FROM jobs j WHERE j.user_id = ? AND j.status IN ('accepted', 'running')
                  AND EXISTS (SELECT 1 FROM json_each(j.request, '$.inputs') i WHERE json_extract(i.value, '$.upload') = ?)
                ORDER BY j.created_at, j.id
                """, arguments: [userId, id])
            if !readers.isEmpty { return .inUse(jobs: readers) }
            try db.execute(sql: "DELETE FROM uploads WHERE id = ? AND user_id = ?", arguments: [id, userId])
            return .deleted
        }
    }

    static func monthStart(_ now: Date) -> Double {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC")!
        return cal.date(from: cal.dateComponents([.year, .month], from: now))!.timeIntervalSince1970
    }

    static func usage(_ db: Database, userId: String, now: Date) throws -> Usage {
        let active = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND status IN ('accepted', 'running')",
                                      arguments: [userId]) ?? 0
        let cpu = try Double.fetchOne(db, sql: "SELECT COALESCE(SUM(cpu_seconds), 0) FROM jobs WHERE user_id = ? AND COALESCE(finished_at, started_at, created_at) >= ?",
                                      arguments: [userId, monthStart(now)]) ?? 0
        let uploads = try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(size), 0) FROM uploads WHERE user_id = ?", arguments: [userId]) ?? 0
        // A published job's products are the publication's (hard links): counted once, as the publication.
        let results = try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(result_bytes), 0) FROM jobs WHERE user_id = ? AND purged = 0 AND id NOT IN (SELECT id FROM publications)",
                                         arguments: [userId]) ?? 0
        let published = try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(bytes), 0) FROM publications WHERE owner_id = ?", arguments: [userId]) ?? 0
        return Usage(activeJobs: active, cpuSecondsThisMonth: cpu, storageBytes: uploads + results + published)
    }

    public func usage(userId: String, now: Date) async throws -> Usage {
        try await db.read { db in try Self.usage(db, userId: userId, now: now) }
    }

    public func createJob(_ job: Job, inputBytes: [(String, Int64)], uploads: [String], quota: Quota, results: Int64, now: Date) async throws {
        try await db.write { db in
            var gone: [String] = []
            for id in uploads where !gone.contains(id) {
                if try Bool.fetchOne(db, sql: "SELECT 1 FROM uploads WHERE id = ? AND user_id = ?", arguments: [id, job.userId]) == nil { gone.append(id) }
            }
            if !gone.isEmpty { throw UploadsGone(ids: gone) }
            for (name, size) in inputBytes where size > quota.maxInputBytes {
                throw QuotaExceeded.inputSize(file: name, size: size, limit: quota.maxInputBytes)
            }
            let u = try Self.usage(db, userId: job.userId, now: now)
            if u.activeJobs >= quota.maxConcurrentJobs { throw QuotaExceeded.concurrentJobs(limit: quota.maxConcurrentJobs) }
            if u.cpuSecondsThisMonth >= quota.cpuSecondsPerMonth {
                throw QuotaExceeded.cpuBudget(used: u.cpuSecondsThisMonth, limit: quota.cpuSecondsPerMonth)
            }
            if u.storageBytes >= quota.storageBytes { throw QuotaExceeded.storage(used: u.storageBytes, requested: 0, limit: quota.storageBytes) }
            if u.storageBytes + results > quota.storageBytes { throw QuotaExceeded.resultStorage(used: u.storageBytes, estimate: results, limit: quota.storageBytes) }
            try db.execute(sql: "INSERT INTO jobs (id, user_id, name, status, progress, request, created_at, callback_state, mail_state, mail_error) VALUES (?, ?, ?, 'accepted', 0, ?, ?, ?, ?, ?)",
                           arguments: [job.id, job.userId, job.name, job.request, job.createdAt.timeIntervalSince1970, job.callback?.state.rawValue, job.mail?.state.rawValue, job.mail?.error])
        }
    }

    public func job(id: String) async throws -> Job? {
        try await db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id]).map(Self.job) }
    }

    static func filter(_ q: JobQuery) -> (sql: String, arguments: StatementArguments) {
        let (sql, args) = JobQuerySQL.whereClause(q, process: "json_extract(request, '$.process')")
        return (sql, StatementArguments(args.map { a -> (any DatabaseValueConvertible) in
            switch a { case .text(let t): return t; case .number(let n): return n }
        }))
    }

    public func jobs(_ query: JobQuery, limit: Int, offset: Int) async throws -> [Job] {
        let (filter, arguments) = Self.filter(query)
        return try await db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM jobs \(filter) ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                             arguments: arguments + [limit, offset]).map(Self.job)
        }
    }

    public func countJobs(_ query: JobQuery) async throws -> Int {
        let (filter, arguments) = Self.filter(query)
        return try await db.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM jobs \(filter)", arguments: arguments) ?? 0 }
    }

    public func jobCounts() async throws -> [JobStatus: Int] {
        try await db.read { db in
            var out: [JobStatus: Int] = [:]
            for s in JobStatus.allCases { out[s] = 0 }
            for r in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status") {
                if let s = JobStatus(rawValue: r["status"]) { out[s] = r["n"] }
            }
            return out
        }
    }

    public func claimJob(worker: String, leaseUntil: Date, now: Date) async throws -> Job? {
        try await db.write { db in
            // Fair share: among users with queued jobs, the one with the fewest running jobs first; then
            // the oldest job.
            // (Running counts computed once per claim, not once per queued job.)
            guard let id = try String.fetchOne(db, sql: """
                WITH running AS (SELECT user_id, COUNT(*) AS n FROM jobs WHERE status = 'running' GROUP BY user_id)
                SELECT j.id FROM jobs j LEFT JOIN running r ON r.user_id = j.user_id
                WHERE j.status = 'accepted'
                ORDER BY COALESCE(r.n, 0), j.created_at, j.id
                LIMIT 1
                """) else { return nil }
            try db.execute(sql: """
                UPDATE jobs SET status = 'running', worker = ?, lease_until = ?, started_at = COALESCE(started_at, ?), attempts = attempts + 1,
                    progress = 0, stage = 'queued', message = NULL WHERE id = ? AND status = 'accepted'
                """, arguments: [worker, leaseUntil.timeIntervalSince1970, now.timeIntervalSince1970, id])
            return try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id]).map(Self.job)
        }
    }

    public func heartbeat(jobId: String, attempt: Int, worker: String, progress: Int?, stage: String?, message: String?, leaseUntil: Date) async throws -> Bool {
        try await db.write { db in
            try db.execute(sql: """
                UPDATE jobs SET progress = COALESCE(?, progress), stage = COALESCE(?, stage), message = COALESCE(?, message), lease_until = ?
                WHERE id = ? AND worker = ? AND attempts = ? AND status = 'running'
                """, arguments: [progress.map { max(0, min(100, $0)) }, stage, message, leaseUntil.timeIntervalSince1970, jobId, worker, attempt])
            return db.changesCount == 1
        }
    }

    public func finish(jobId: String, attempt: Int, worker: String, status: JobStatus, error: String?, cpuSeconds: Double,
                       resultBytes: Int64, finishedAt: Date, purgeAt: Date?) async throws -> Bool {
        try await db.write { db in
            try db.execute(sql: """
                UPDATE jobs SET status = ?, error = ?, cpu_seconds = cpu_seconds + ?, result_bytes = ?, finished_at = ?, purge_at = ?,
                    progress = CASE WHEN ? = 'successful' THEN 100 ELSE progress END,
                    result_attempt = CASE WHEN ? = 'successful' THEN attempts ELSE NULL END, worker = NULL, lease_until = NULL
                WHERE id = ? AND worker = ? AND attempts = ? AND status = 'running'
                """, arguments: [status.rawValue, error, cpuSeconds, resultBytes, finishedAt.timeIntervalSince1970,
                                 purgeAt?.timeIntervalSince1970, status.rawValue, status.rawValue, jobId, worker, attempt])
            return db.changesCount == 1
        }
    }

    public func requeueExpired(now: Date, maxAttempts: Int) async throws -> [String] {
        try await db.write { db in
            let ids = try String.fetchAll(db, sql: "SELECT id FROM jobs WHERE status = 'running' AND lease_until < ?", arguments: [now.timeIntervalSince1970])
            for id in ids {
                try db.execute(sql: """
                    UPDATE jobs SET
                        status = CASE WHEN cancel_requested = 1 THEN 'dismissed' WHEN attempts >= ? THEN 'failed' ELSE 'accepted' END,
                        error = CASE WHEN cancel_requested = 0 AND attempts >= ? THEN 'the job was started ' || attempts || ' times and its worker stopped responding each time' ELSE error END,
                        finished_at = CASE WHEN cancel_requested = 1 OR attempts >= ? THEN ? ELSE finished_at END,
                        worker = NULL, lease_until = NULL, stage = 'requeued after its worker stopped'
                    WHERE id = ?
                    """, arguments: [maxAttempts, maxAttempts, maxAttempts, now.timeIntervalSince1970, id])
            }
            return ids
        }
    }

    public func release(jobId: String, attempt: Int, worker: String) async throws {
        try await db.write { db in
            try db.execute(sql: """
                UPDATE jobs SET status = 'accepted', worker = NULL, lease_until = NULL, stage = 'requeued at shutdown', attempts = attempts - 1
                WHERE id = ? AND worker = ? AND attempts = ? AND status = 'running' AND cancel_requested = 0
                """, arguments: [jobId, worker, attempt])
        }
    }

    public func cancel(jobId: String, now: Date) async throws -> Job? {
        try await db.write { db in
            try db.execute(sql: "UPDATE jobs SET status = 'dismissed', finished_at = ?, stage = 'dismissed' WHERE id = ? AND status = 'accepted'",
                           arguments: [now.timeIntervalSince1970, jobId])
            try db.execute(sql: "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", arguments: [jobId])
            return try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [jobId]).map(Self.job)
        }
    }

    public func delete(jobId: String) async throws {
        try await db.write { db in try db.execute(sql: "DELETE FROM jobs WHERE id = ?", arguments: [jobId]) }
    }

    public func jobsToPurge(now: Date) async throws -> [Job] {
        try await db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM jobs WHERE purged = 0 AND purge_at IS NOT NULL AND purge_at <= ?",
                             arguments: [now.timeIntervalSince1970]).map(Self.job)
        }
    }

    public func markPurged(jobId: String) async throws {
        try await db.write { db in try db.execute(sql: "UPDATE jobs SET purged = 1, result_bytes = 0 WHERE id = ?", arguments: [jobId]) }
    }

    public func deleteJobRecords(purgedBefore before: Date) async throws -> [String] {
        try await db.write { db in
            let ids = try String.fetchAll(db, sql: """
                SELECT id FROM jobs WHERE status IN ('successful', 'failed', 'dismissed') AND COALESCE(purge_at, finished_at, created_at) < ?
                    AND (purged = 1 OR status != 'successful')
                """, arguments: [before.timeIntervalSince1970])
            for id in ids { try db.execute(sql: "DELETE FROM jobs WHERE id = ?", arguments: [id]) }
            return ids
        }
    }

    public func claimDeliveries(_ channel: DeliveryChannel, now: Date, leaseUntil: Date, limit: Int) async throws -> [Job] {
        let c = channel.rawValue
        return try await db.write { db in
            try Row.fetchAll(db, sql: """
                UPDATE jobs SET \(c)_attempts = \(c)_attempts + 1, \(c)_at = ?
                WHERE id IN (
                    SELECT id FROM jobs WHERE \(c)_state = 'pending' AND status IN ('successful', 'failed', 'dismissed')
                        AND COALESCE(\(c)_at, 0) <= ? ORDER BY finished_at, id LIMIT ?)
                RETURNING *
                """, arguments: [leaseUntil.timeIntervalSince1970, now.timeIntervalSince1970, limit]).map(Self.job)
        }
    }

    public func queuePurgeReminders(now: Date, lead: Double) async throws -> [String] {
        let t = now.timeIntervalSince1970
        return try await db.write { db in
            try Row.fetchAll(db, sql: """
                UPDATE jobs SET purge_reminder_at = ?, reminder_state = 'pending', reminder_attempts = 0, reminder_at = NULL, reminder_error = NULL
                WHERE id IN (
                    SELECT id FROM jobs WHERE status = 'successful' AND purged = 0 AND reminder_state IS NULL AND mail_state = 'delivered'
                        AND purge_at > ? AND purge_at <= ? AND purge_at - finished_at > ?)
                RETURNING *
                """, arguments: [t, t, t + lead, lead]).map(Self.job).sorted(by: Job.soonestPurgeFirst).map(\.id)
        }
    }

    public func deliveryCounts() async throws -> [DeliveryChannel: [DeliveryState.State: Int]] {
        try await db.read { db in
            var out = DeliveryState.emptyCounts
            for c in DeliveryChannel.allCases {
                for r in try Row.fetchAll(db, sql: """
                    SELECT \(c.rawValue)_state AS state, COUNT(*) AS n FROM jobs
                    WHERE \(c.rawValue)_state IS NOT NULL AND status IN ('successful', 'failed', 'dismissed') GROUP BY 1
                    """) {
                    if let s = DeliveryState.State(rawValue: r["state"]) { out[c]?[s] = r["n"] }
                }
            }
            return out
        }
    }

    public func recordDelivery(_ channel: DeliveryChannel, jobId: String, attempt: Int, state: DeliveryState.State, error: String?, nextAttempt: Date?) async throws {
        let c = channel.rawValue
        try await db.write { db in
            try db.execute(sql: """
                UPDATE jobs SET \(c)_state = ?, \(c)_error = ?, \(c)_at = ?
                WHERE id = ? AND \(c)_attempts = ? AND \(c)_state = 'pending'
                """, arguments: [state.rawValue, error, nextAttempt?.timeIntervalSince1970, jobId, attempt])
        }
    }

    public func setEmail(userId: String, email: String?) async throws -> Bool {
        try await db.write { db in
            try db.execute(sql: "UPDATE users SET email = ? WHERE id = ?", arguments: [email, userId])
            return db.changesCount == 1
        }
    }

    public func allJobIds() async throws -> Set<String> {
        try await db.read { db in Set(try String.fetchAll(db, sql: "SELECT id FROM jobs")) }
    }

    public func allUploadIds() async throws -> Set<String> {
        try await db.read { db in Set(try String.fetchAll(db, sql: "SELECT id FROM uploads")) }
    }

    public func rotateToken(userId: String) async throws -> String? {
        let token = Self.newToken()
        return try await db.write { db in
            try db.execute(sql: "UPDATE users SET token_hash = ? WHERE id = ?", arguments: [Self.hash(token), userId])
            return db.changesCount == 1 ? token : nil
        }
    }

    public func revokeToken(userId: String) async throws -> Bool {
        try await db.write { db in
            // No token hashes to this (it is not hexadecimal), and it stays unique per user.
            try db.execute(sql: "UPDATE users SET token_hash = 'revoked:' || id WHERE id = ?", arguments: [userId])
            return db.changesCount == 1
        }
    }

    public func tokenHash(userId: String) async throws -> String? {
        try await db.read { db in try String.fetchOne(db, sql: "SELECT token_hash FROM users WHERE id = ?", arguments: [userId]) }
            .flatMap(Self.liveTokenHash)
    }

    /// A stored token hash, nil for a revoked token (`revokeToken`'s marker).
    static func liveTokenHash(_ stored: String) -> String? { stored.hasPrefix("revoked:") ? nil : stored }

    public func callbackSecrets(userId: String, renewKeepingPreviousUntil until: Date?) async throws -> CallbackSecrets? {
        let read = "SELECT callback_secret, previous_callback_secret, previous_callback_secret_until FROM users WHERE id = ?"
        // Kept: a read. Missing (or renewed): a write.
        if until == nil, let kept = try await db.read({ db in try Row.fetchOne(db, sql: read, arguments: [userId]).flatMap(Self.callbackSecrets) }) {
            return kept
        }
        let fresh = CallbackSignature.newSecret()
        return try await db.write { db in
            if let until {
                // SET reads the row as it was: the replaced secret becomes the previous one.
                try db.execute(sql: """
                    UPDATE users SET previous_callback_secret = callback_secret, previous_callback_secret_until = ?, callback_secret = ?
                    WHERE id = ?
                    """, arguments: [until.timeIntervalSince1970, fresh, userId])
            } else {
                // Only a missing secret is set: concurrent first uses agree on one.
                try db.execute(sql: "UPDATE users SET callback_secret = ? WHERE id = ? AND callback_secret IS NULL", arguments: [fresh, userId])
            }
            return try Row.fetchOne(db, sql: read, arguments: [userId]).flatMap(Self.callbackSecrets)
        }
    }

    static func callbackSecrets(_ r: Row) -> CallbackSecrets? {
        guard let current: String = r["callback_secret"] else { return nil }
        return CallbackSecrets(current: current, previous: r["previous_callback_secret"], previousUntil: date(r, "previous_callback_secret_until"))
    }

    // MARK: catalogue

    static func publication(_ r: Row) -> Publication {
        Publication(id: r["id"], ownerId: r["owner_id"], publishedBy: r["published_by"], publishedAt: date(r, "published_at")!,
                    bytes: r["bytes"], bbox: [r["min_lon"], r["min_lat"], r["max_lon"], r["max_lat"]],
                    start: date(r, "start_time"), end: date(r, "end_time"), item: r["item"])
    }

    public func publish(_ p: Publication) async throws -> Bool {
        try await db.write { db in
            try db.execute(sql: """
                INSERT INTO publications (id, owner_id, published_by, published_at, bytes, min_lon, min_lat, max_lon, max_lat, start_time, end_time, item)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING
                """, arguments: [p.id, p.ownerId, p.publishedBy, p.publishedAt.timeIntervalSince1970, p.bytes, p.bbox[0], p.bbox[1], p.bbox[2], p.bbox[3],
                                 p.start?.timeIntervalSince1970, p.end?.timeIntervalSince1970, p.item])
            return db.changesCount > 0
        }
    }

    public func publication(id: String) async throws -> Publication? {
        try await db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM publications WHERE id = ?", arguments: [id]).map(Self.publication) }
    }

    public func withdraw(id: String) async throws -> Publication? {
        try await db.write { db in
            guard let p = try Row.fetchOne(db, sql: "SELECT * FROM publications WHERE id = ?", arguments: [id]).map(Self.publication) else { return nil }
            try db.execute(sql: "DELETE FROM publications WHERE id = ?", arguments: [id])
            return p
        }
    }

    public func publications(_ q: CatalogueQuery) async throws -> [Publication] {
        var sql = "SELECT * FROM publications WHERE 1 = 1"
        var args: [DatabaseValueConvertible?] = []
        if let b = q.bbox {
            sql += " AND min_lon <= ? AND max_lon >= ? AND min_lat <= ? AND max_lat >= ?"
            args += [b[2], b[0], b[3], b[1]]
        }
        if let e = q.end { sql += " AND COALESCE(start_time, end_time) <= ?"; args.append(e.timeIntervalSince1970) }
        if let s = q.start { sql += " AND COALESCE(end_time, start_time) >= ?"; args.append(s.timeIntervalSince1970) }
        if let ids = q.ids {
            guard !ids.isEmpty else { return [] }
            sql += " AND id IN (\(ids.map { _ in "?" }.joined(separator: ", ")))"
            args += ids
        }
        sql += " ORDER BY COALESCE(end_time, start_time) DESC, id LIMIT ? OFFSET ?"
        args += [q.limit, q.offset]
        let arguments = StatementArguments(args), text = sql
        return try await db.read { db in try Row.fetchAll(db, sql: text, arguments: arguments).map(Self.publication) }
    }

    public func catalogueSummary() async throws -> CatalogueSummary {
        try await db.read { db in
            let r = try Row.fetchOne(db, sql: """
                SELECT COUNT(*) AS n, MIN(min_lon) AS a, MIN(min_lat) AS b, MAX(max_lon) AS c, MAX(max_lat) AS d,
                       MIN(COALESCE(start_time, end_time)) AS s, MAX(COALESCE(end_time, start_time)) AS e FROM publications
                """)!
            let n: Int = r["n"]
            return CatalogueSummary(count: n, bbox: n == 0 ? nil : [r["a"], r["b"], r["c"], r["d"]], start: Self.date(r, "s"), end: Self.date(r, "e"))
        }
    }

    public func allPublicationIds() async throws -> Set<String> {
        try await db.read { db in Set(try String.fetchAll(db, sql: "SELECT id FROM publications")) }
    }
}

/// A job query as SQL: the WHERE clause with `?` for each argument (each store numbers or binds them) and its
/// arguments in order; `process` is the SQL expression of the process a job's request names.
enum JobQuerySQL {
    enum Argument { case text(String), number(Double) }

    static func whereClause(_ q: JobQuery, process: String) -> (sql: String, arguments: [Argument]) {
        var clauses: [String] = [], args: [Argument] = []
        func list(_ values: [String]) -> String { values.map { _ in "?" }.joined(separator: ", ") }
        if let u = q.userId { clauses.append("user_id = ?"); args.append(.text(u)) }
        if !q.statuses.isEmpty { clauses.append("status IN (\(list(q.statuses.map(\.rawValue))))"); args += q.statuses.map { .text($0.rawValue) } }
        if !q.processIDs.isEmpty { clauses.append("COALESCE(\(process), '\(JobQuery.defaultProcess)') IN (\(list(q.processIDs)))"); args += q.processIDs.map { .text($0) } }
        if let f = q.createdFrom { clauses.append("created_at >= ?"); args.append(.number(f.timeIntervalSince1970)) }
        if let t = q.createdTo { clauses.append("created_at <= ?"); args.append(.number(t.timeIntervalSince1970)) }
        if q.minDuration != nil || q.maxDuration != nil {
            clauses.append("started_at IS NOT NULL")
            for (bound, op) in [(q.minDuration, ">="), (q.maxDuration, "<=")] {
                guard let bound else { continue }
                clauses.append("COALESCE(finished_at, ?) - started_at \(op) ?")
                args += [.number(q.now.timeIntervalSince1970), .number(bound)]
            }
        }
        return (clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND "), args)
    }
}

extension JobStore {
    public func jobs(userId: String?, limit: Int, offset: Int) async throws -> [Job] { try await jobs(JobQuery(userId: userId), limit: limit, offset: offset) }
    public func countJobs(userId: String?) async throws -> Int { try await countJobs(JobQuery(userId: userId)) }

    /// A job that reads no upload (tests, benchmarks).
    public func createJob(_ job: Job, inputBytes: [(String, Int64)], quota: Quota, results: Int64, now: Date) async throws {
        try await createJob(job, inputBytes: inputBytes, uploads: [], quota: quota, results: results, now: now)
    }

    /// A job that reads no upload and whose results need no room up front (tests, benchmarks).
    public func createJob(_ job: Job, inputBytes: [(String, Int64)], quota: Quota, now: Date) async throws {
        try await createJob(job, inputBytes: inputBytes, uploads: [], quota: quota, results: 0, now: now)
    }
}
