import Foundation
import Logging
import PostgresNIO

/// The job store on PostgreSQL, for several daemons and workers on several machines (with a shared
/// filesystem for uploads and job folders). Same contract as `SQLiteJobStore` (the shared contract tests
/// run against both): quotas checked atomically, jobs claimed with `FOR UPDATE SKIP LOCKED`, every update a
/// worker makes fenced by its attempt number, versioned migrations applied under an advisory lock.
public final class PostgresJobStore: JobStore, @unchecked Sendable {
    let client: PostgresClient
    let logger = Logger(label: "dsmopt-postgres")
    private let runner: Task<Void, Never>

    /// `postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]`.
    public init(url: String) async throws {
        guard let u = URLComponents(string: url), ["postgres", "postgresql"].contains(u.scheme ?? ""), let host = u.host, !host.isEmpty,
              let user = u.user, !user.isEmpty else {
            throw ConfigurationError.invalid("store URL must look like postgres://user[:password]@host[:port]/database")
        }
        let database = u.path.hasPrefix("/") ? String(u.path.dropFirst()) : u.path
        let sslmode = u.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        let tls: PostgresClient.Configuration.TLS
        switch sslmode {
        case "disable": tls = .disable
        case "require": tls = .require(.makeClientConfiguration())
        default: tls = .prefer(.makeClientConfiguration())
        }
        // A server that refuses or does not answer fails the start at once (the caller retries); the pool
        // itself would wait for a connection as long as it takes.
        guard Self.accepts(host: host, port: u.port ?? 5432) else {
            throw ConfigurationError.storeUnreachable("PostgreSQL \(host):\(u.port ?? 5432) does not accept connections")
        }
        var config = PostgresClient.Configuration(host: host, port: u.port ?? 5432, username: user, password: u.password,
                                                  database: database.isEmpty ? nil : database, tls: tls)
        config.options.maximumConnections = 8
        let client = PostgresClient(configuration: config)
        self.client = client
        runner = Task { await client.run() }
        let where_ = "PostgreSQL \(host):\(u.port ?? 5432)/\(database)"
        do {
            // The pool waits for a connection as long as it takes: a server that does not answer must fail
            // the start (and be retried by the caller), not hang it.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await self.migrate() }
                group.addTask {
                    try await Task.sleep(nanoseconds: 120_000_000_000)
                    throw ConfigurationError.storeUnreachable("\(where_) does not answer within 120 s")
                }
                try await group.next()
                group.cancelAll()
            }
        } catch {
            runner.cancel()
            if let e = error as? ConfigurationError { throw e }
            if let p = error as? PSQLError, p.code == .serverClosedConnection || p.code == .connectionError || p.code == .clientClosedConnection {
                throw ConfigurationError.storeUnreachable("\(where_) does not answer (\(p.code))")
            }
            if "\(error)".contains("connect") || "\(String(reflecting: error))".contains("Connection refused") {
                throw ConfigurationError.storeUnreachable("\(where_) does not answer")
            }
            throw ConfigurationError.invalid("\(where_): \(String(reflecting: error))")
        }
    }

    deinit { runner.cancel() }

    /// Whether a TCP connection to host:port succeeds within 5 s.
    static func accepts(host: String, port: Int) -> Bool {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return false }
        defer { freeaddrinfo(first) }
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let a = p {
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if fd >= 0 {
                var tv = timeval(tv_sec: 5, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                let ok = connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0
                close(fd)
                if ok { return true }
            }
            p = a.pointee.ai_next
        }
        return false
    }

    /// Append-only list of migrations: never edit one that has shipped.
    static let migrations: [(String, [String])] = [
        ("v1-users-uploads-jobs", [
            """
            CREATE TABLE users (
                id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                role TEXT NOT NULL CHECK (role IN ('researcher', 'operator', 'admin', 'catalogue')),
                token_hash TEXT NOT NULL UNIQUE, quota TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)
            """,
            """
            CREATE TABLE uploads (
                id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id),
                file_name TEXT NOT NULL, size BIGINT NOT NULL CHECK (size >= 0), sha256 TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL)
            """,
            """
            CREATE TABLE jobs (
                id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), name TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('accepted', 'running', 'successful', 'failed', 'dismissed')),
                progress INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
                stage TEXT, message TEXT, request TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL, started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, purge_at DOUBLE PRECISION,
                purged BOOLEAN NOT NULL DEFAULT FALSE, error TEXT,
                cpu_seconds DOUBLE PRECISION NOT NULL DEFAULT 0, result_bytes BIGINT NOT NULL DEFAULT 0,
                attempts INTEGER NOT NULL DEFAULT 0, result_attempt INTEGER, worker TEXT, lease_until DOUBLE PRECISION,
                cancel_requested BOOLEAN NOT NULL DEFAULT FALSE)
            """,
            "CREATE INDEX jobs_queue ON jobs(status, created_at)",
            "CREATE INDEX jobs_user ON jobs(user_id, created_at)",
            "CREATE INDEX jobs_purge ON jobs(purged, purge_at)",
        ]),
        ("v3-catalogue", [
            """
            CREATE TABLE publications (
                id TEXT PRIMARY KEY, owner_id TEXT NOT NULL REFERENCES users(id), published_by TEXT NOT NULL,
                published_at DOUBLE PRECISION NOT NULL, bytes BIGINT NOT NULL CHECK (bytes >= 0),
                min_lon DOUBLE PRECISION NOT NULL, min_lat DOUBLE PRECISION NOT NULL, max_lon DOUBLE PRECISION NOT NULL,
                max_lat DOUBLE PRECISION NOT NULL, start_time DOUBLE PRECISION, end_time DOUBLE PRECISION, item TEXT NOT NULL)
            """,
            "CREATE INDEX publications_place ON publications(min_lon, max_lon, min_lat, max_lat)",
            "CREATE INDEX publications_time ON publications(start_time, end_time)",
        ]),
        ("v4-tile-tasks", [
            """
            CREATE TABLE tasks (
                job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, job_attempt INTEGER NOT NULL,
                stage TEXT NOT NULL, tile INTEGER NOT NULL CHECK (tile >= 0),
                state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
                attempts INTEGER NOT NULL DEFAULT 0, worker TEXT, lease_until DOUBLE PRECISION, run_dir TEXT NOT NULL,
                completions INTEGER NOT NULL DEFAULT 0, done_by TEXT, cpu_seconds DOUBLE PRECISION NOT NULL DEFAULT 0, error TEXT,
                PRIMARY KEY (job_id, stage, tile))
            """,
            "CREATE INDEX tasks_queue ON tasks(state, job_id)",
        ]),
        ("v5-callbacks", [
            "ALTER TABLE jobs ADD COLUMN callback_state TEXT CHECK (callback_state IN ('pending', 'delivered', 'failed', 'skipped'))",
            "ALTER TABLE jobs ADD COLUMN callback_attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE jobs ADD COLUMN callback_at DOUBLE PRECISION",
            "ALTER TABLE jobs ADD COLUMN callback_error TEXT",
            "CREATE INDEX jobs_callbacks ON jobs(callback_state, callback_at)",
        ]),
        ("v6-callback-secrets", [
            "ALTER TABLE users ADD COLUMN callback_secret TEXT",
        ]),
        ("v7-callback-secret-rotation", [
            "ALTER TABLE users ADD COLUMN previous_callback_secret TEXT",
            "ALTER TABLE users ADD COLUMN previous_callback_secret_until DOUBLE PRECISION",
        ]),
        ("v8-mail", [
            "ALTER TABLE users ADD COLUMN email TEXT",
            "ALTER TABLE jobs ADD COLUMN mail_state TEXT CHECK (mail_state IN ('pending', 'delivered', 'failed', 'skipped'))",
            "ALTER TABLE jobs ADD COLUMN mail_attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE jobs ADD COLUMN mail_at DOUBLE PRECISION",
            "ALTER TABLE jobs ADD COLUMN mail_error TEXT",
            "CREATE INDEX jobs_mail ON jobs(mail_state, mail_at)",
        ]),
        ("v9-purge-reminder", [
            "ALTER TABLE jobs ADD COLUMN purge_reminder_at DOUBLE PRECISION",
        ]),
        // Reminders sent (at most once) before they were retried count as delivered.
        ("v10-reminder-delivery", [
            "ALTER TABLE jobs ADD COLUMN reminder_state TEXT CHECK (reminder_state IN ('pending', 'delivered', 'failed', 'skipped'))",
            "ALTER TABLE jobs ADD COLUMN reminder_attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE jobs ADD COLUMN reminder_at DOUBLE PRECISION",
            "ALTER TABLE jobs ADD COLUMN reminder_error TEXT",
            "CREATE INDEX jobs_reminder ON jobs(reminder_state, reminder_at)",
            "UPDATE jobs SET reminder_state = 'delivered', reminder_attempts = 1 WHERE purge_reminder_at IS NOT NULL",
        ]),
    ]

    func migrate() async throws {
        try await client.withTransaction(logger: logger) { c in
            // One migrator at a time, whichever process starts first.
            try await c.query("SELECT pg_advisory_xact_lock(7465626)", logger: logger)
            try await c.query("CREATE TABLE IF NOT EXISTS dsmopt_migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)", logger: logger)
            var applied = Set<String>()
            for try await name in try await c.query("SELECT name FROM dsmopt_migrations", logger: logger).decode(String.self) { applied.insert(name) }
            for (name, statements) in Self.migrations where !applied.contains(name) {
                for sql in statements { try await c.query(PostgresQuery(unsafeSQL: sql), logger: logger) }
                try await c.query("INSERT INTO dsmopt_migrations (name, applied_at) VALUES (\(name), \(Date().timeIntervalSince1970))", logger: logger)
            }
        }
    }

    /// A transaction whose closure's own errors (a quota refusal…) come out as they were thrown.
    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> sending T) async throws -> T {
        do { return try await client.withTransaction(logger: logger, body) } catch let e as PostgresTransactionError {
            if let inner = e.closureError { throw inner }
            throw e
        }
    }

    // MARK: rows

    static func user(_ r: PostgresRandomAccessRow) throws -> User {
        User(id: try r["id"].decode(String.self), name: try r["name"].decode(String.self),
             role: Role(rawValue: try r["role"].decode(String.self)) ?? .researcher,
             quota: SQLiteJobStore.decodeQuota(try r["quota"].decode(String.self)),
             createdAt: Date(timeIntervalSince1970: try r["created_at"].decode(Double.self)), email: try r["email"].decode(String?.self))
    }

    static func date(_ r: PostgresRandomAccessRow, _ k: String) throws -> Date? {
        try r[k].decode(Double?.self).map { Date(timeIntervalSince1970: $0) }
    }

    static func job(_ r: PostgresRandomAccessRow) throws -> Job {
        Job(id: try r["id"].decode(String.self), userId: try r["user_id"].decode(String.self), name: try r["name"].decode(String.self),
            status: JobStatus(rawValue: try r["status"].decode(String.self)) ?? .failed,
            progress: Int(try r["progress"].decode(Int32.self)), stage: try r["stage"].decode(String?.self),
            message: try r["message"].decode(String?.self), request: try r["request"].decode(String.self),
            createdAt: Date(timeIntervalSince1970: try r["created_at"].decode(Double.self)), startedAt: try date(r, "started_at"),
            finishedAt: try date(r, "finished_at"), purgeAt: try date(r, "purge_at"), purged: try r["purged"].decode(Bool.self),
            error: try r["error"].decode(String?.self), cpuSeconds: try r["cpu_seconds"].decode(Double.self),
            resultBytes: try r["result_bytes"].decode(Int64.self), attempts: Int(try r["attempts"].decode(Int32.self)),
            resultAttempt: try r["result_attempt"].decode(Int32?.self).map(Int.init), worker: try r["worker"].decode(String?.self),
            leaseUntil: try date(r, "lease_until"), cancelRequested: try r["cancel_requested"].decode(Bool.self),
            callback: try delivery(r, .callback), mail: try delivery(r, .mail), purgeReminderAt: try date(r, "purge_reminder_at"),
            reminder: try delivery(r, .reminder))
    }

    static func delivery(_ r: PostgresRandomAccessRow, _ channel: DeliveryChannel) throws -> DeliveryState? {
        let c = channel.rawValue
        return try r["\(c)_state"].decode(String?.self).flatMap(DeliveryState.State.init).map {
            DeliveryState(state: $0, attempts: Int(try r["\(c)_attempts"].decode(Int32.self)), error: try r["\(c)_error"].decode(String?.self),
                          nextAttempt: try date(r, "\(c)_at"))
        }
    }

    static func upload(_ r: PostgresRandomAccessRow) throws -> Upload {
        Upload(id: try r["id"].decode(String.self), userId: try r["user_id"].decode(String.self), fileName: try r["file_name"].decode(String.self),
               size: try r["size"].decode(Int64.self), sha256: try r["sha256"].decode(String.self),
               createdAt: Date(timeIntervalSince1970: try r["created_at"].decode(Double.self)))
    }

    func rows(_ q: PostgresQuery, on c: PostgresConnection? = nil) async throws -> [PostgresRandomAccessRow] {
        let seq: PostgresRowSequence
        if let c { seq = try await c.query(q, logger: logger) } else { seq = try await client.query(q, logger: logger) }
        return try await seq.collect().map { $0.makeRandomAccess() }
    }

    // MARK: users

    public func createUser(name: String, role: Role, quota: Quota) async throws -> (User, token: String) {
        let token = SQLiteJobStore.newToken()
        let u = User(id: SQLiteJobStore.newID(), name: name, role: role, quota: quota, createdAt: Date())
        let encoded = try SQLiteJobStore.encode(quota)
        let inserted = try await rows("""
            INSERT INTO users (id, name, role, token_hash, quota, created_at)
            VALUES (\(u.id), \(name), \(role.rawValue), \(SQLiteJobStore.hash(token)), \(encoded), \(u.createdAt.timeIntervalSince1970))
            ON CONFLICT (name) DO NOTHING RETURNING id
            """)
        guard !inserted.isEmpty else { throw StoreError.duplicateUser(name) }
        return (u, token)
    }

    public func user(token: String) async throws -> User? {
        try await rows("SELECT * FROM users WHERE token_hash = \(SQLiteJobStore.hash(token))").first.map(Self.user)
    }
    public func user(id: String) async throws -> User? { try await rows("SELECT * FROM users WHERE id = \(id)").first.map(Self.user) }
    public func user(name: String) async throws -> User? { try await rows("SELECT * FROM users WHERE name = \(name)").first.map(Self.user) }
    public func users() async throws -> [User] { try await rows("SELECT * FROM users ORDER BY created_at").map(Self.user) }

    public func setQuota(userId: String, quota: Quota) async throws -> User? {
        let encoded = try SQLiteJobStore.encode(quota)
        return try await rows("UPDATE users SET quota = \(encoded) WHERE id = \(userId) RETURNING *").first.map(Self.user)
    }

    public func rotateToken(userId: String) async throws -> String? {
        let token = SQLiteJobStore.newToken()
        return try await rows("UPDATE users SET token_hash = \(SQLiteJobStore.hash(token)) WHERE id = \(userId) RETURNING id").isEmpty ? nil : token
    }

    public func revokeToken(userId: String) async throws -> Bool {
        !(try await rows("UPDATE users SET token_hash = 'revoked:' || id WHERE id = \(userId) RETURNING id").isEmpty)
    }

    public func tokenHash(userId: String) async throws -> String? {
        try await rows("SELECT token_hash FROM users WHERE id = \(userId)").first
            .flatMap { SQLiteJobStore.liveTokenHash(try $0["token_hash"].decode(String.self)) }
    }

    public func callbackSecrets(userId: String, renewKeepingPreviousUntil until: Date?) async throws -> CallbackSecrets? {
        // Kept: a read. Missing (or renewed): a write.
        if until == nil, let kept = try await rows("SELECT callback_secret, previous_callback_secret, previous_callback_secret_until FROM users WHERE id = \(userId)")
            .first.flatMap(Self.callbackSecrets) {
            return kept
        }
        let fresh = CallbackSignature.newSecret()
        let q: PostgresQuery = if let until {
            // SET reads the row as it was: the replaced secret becomes the previous one.
            """
            UPDATE users SET previous_callback_secret = callback_secret, previous_callback_secret_until = \(until.timeIntervalSince1970),
                callback_secret = \(fresh)
            WHERE id = \(userId) RETURNING callback_secret, previous_callback_secret, previous_callback_secret_until
            """
        } else {
            // Only a missing secret is set: concurrent first uses agree on one (the row lock).
            """
            UPDATE users SET callback_secret = COALESCE(callback_secret, \(fresh))
            WHERE id = \(userId) RETURNING callback_secret, previous_callback_secret, previous_callback_secret_until
            """
        }
        return try await rows(q).first.flatMap(Self.callbackSecrets)
    }

    static func callbackSecrets(_ r: PostgresRandomAccessRow) throws -> CallbackSecrets? {
        guard let current = try r["callback_secret"].decode(String?.self) else { return nil }
        return CallbackSecrets(current: current, previous: try r["previous_callback_secret"].decode(String?.self),
                               previousUntil: try date(r, "previous_callback_secret_until"))
    }

    // MARK: uploads

    public func addUpload(_ u: Upload) async throws {
        try await client.query("""
            INSERT INTO uploads (id, user_id, file_name, size, sha256, created_at)
            VALUES (\(u.id), \(u.userId), \(u.fileName), \(u.size), \(u.sha256), \(u.createdAt.timeIntervalSince1970))
            """, logger: logger)
    }

    public func upload(id: String, userId: String) async throws -> Upload? {
        try await rows("SELECT * FROM uploads WHERE id = \(id) AND user_id = \(userId)").first.map(Self.upload)
    }

    public func uploads(userId: String) async throws -> [Upload] {
        try await rows("SELECT * FROM uploads WHERE user_id = \(userId) ORDER BY created_at DESC, id").map(Self.upload)
    }

    public func deleteUpload(id: String, userId: String) async throws -> UploadDeletion {
        try await transaction { c in
            // The user's row lock, as in `createJob`: a submission checking this upload waits, or is waited for.
            try await c.query("SELECT id FROM users WHERE id = \(userId) FOR UPDATE", logger: logger)
            guard !(try await rows("SELECT id FROM uploads WHERE id = \(id) AND user_id = \(userId)", on: c).isEmpty) else { return .notFound }
            let readers = try await rows("""
                SELECT j.id FROM jobs j WHERE j.user_id = \(userId) AND j.status IN ('accepted', 'running')
                  AND EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(j.request::jsonb -> 'inputs') = 'array'
                                                                      THEN j.request::jsonb -> 'inputs' ELSE '[]'::jsonb END) i
                              WHERE i ->> 'upload' = \(id))
                ORDER BY j.created_at, j.id
                """, on: c).map { try $0["id"].decode(String.self) }
            if !readers.isEmpty { return .inUse(jobs: readers) }
            try await c.query("DELETE FROM uploads WHERE id = \(id) AND user_id = \(userId)", logger: logger)
            return .deleted
        }
    }

    func usage(userId: String, now: Date, on c: PostgresConnection?) async throws -> Usage {
        let month = SQLiteJobStore.monthStart(now)
        let r = try await rows("""
            SELECT
              (SELECT COUNT(*) FROM jobs WHERE user_id = \(userId) AND status IN ('accepted', 'running')) AS active,
              (SELECT COALESCE(SUM(cpu_seconds), 0) FROM jobs WHERE user_id = \(userId) AND COALESCE(finished_at, started_at, created_at) >= \(month)) AS cpu,
              (SELECT COALESCE(SUM(size), 0)::BIGINT FROM uploads WHERE user_id = \(userId)) AS uploads,
              (SELECT COALESCE(SUM(result_bytes), 0)::BIGINT FROM jobs WHERE user_id = \(userId) AND NOT purged
                 AND id NOT IN (SELECT id FROM publications)) AS results,
              (SELECT COALESCE(SUM(bytes), 0)::BIGINT FROM publications WHERE owner_id = \(userId)) AS published
            """, on: c)[0]
        return Usage(activeJobs: Int(try r["active"].decode(Int64.self)), cpuSecondsThisMonth: try r["cpu"].decode(Double.self),
                     storageBytes: try r["uploads"].decode(Int64.self) + r["results"].decode(Int64.self) + r["published"].decode(Int64.self))
    }

    public func usage(userId: String, now: Date) async throws -> Usage { try await usage(userId: userId, now: now, on: nil) }

    // MARK: jobs

    public func createJob(_ job: Job, inputBytes: [(String, Int64)], uploads: [String], quota: Quota, results: Int64, now: Date) async throws {
        try await transaction { c in
            // The user's row lock serialises this user's submissions and upload deletions: the checks and the
            // insert are atomic.
            try await c.query("SELECT id FROM users WHERE id = \(job.userId) FOR UPDATE", logger: logger)
            var gone: [String] = []
            for id in uploads where !gone.contains(id) {
                if try await rows("SELECT id FROM uploads WHERE id = \(id) AND user_id = \(job.userId)", on: c).isEmpty { gone.append(id) }
            }
            if !gone.isEmpty { throw UploadsGone(ids: gone) }
            for (name, size) in inputBytes where size > quota.maxInputBytes {
                throw QuotaExceeded.inputSize(file: name, size: size, limit: quota.maxInputBytes)
            }
            let u = try await usage(userId: job.userId, now: now, on: c)
            if u.activeJobs >= quota.maxConcurrentJobs { throw QuotaExceeded.concurrentJobs(limit: quota.maxConcurrentJobs) }
            if u.cpuSecondsThisMonth >= quota.cpuSecondsPerMonth { throw QuotaExceeded.cpuBudget(used: u.cpuSecondsThisMonth, limit: quota.cpuSecondsPerMonth) }
            if u.storageBytes >= quota.storageBytes { throw QuotaExceeded.storage(used: u.storageBytes, requested: 0, limit: quota.storageBytes) }
            if u.storageBytes + results > quota.storageBytes { throw QuotaExceeded.resultStorage(used: u.storageBytes, estimate: results, limit: quota.storageBytes) }
            try await c.query("""
                INSERT INTO jobs (id, user_id, name, status, progress, request, created_at, callback_state, mail_state, mail_error)
                VALUES (\(job.id), \(job.userId), \(job.name), 'accepted', 0, \(job.request), \(job.createdAt.timeIntervalSince1970), \(job.callback?.state.rawValue),
                        \(job.mail?.state.rawValue), \(job.mail?.error))
                """, logger: logger)
        }
    }

    public func job(id: String) async throws -> Job? { try await rows("SELECT * FROM jobs WHERE id = \(id)").first.map(Self.job) }

    /// A job query's SQL with `$n` placeholders and their bindings, then `tail` (whose `?` are bound to `more`).
    static func filtered(_ head: String, _ q: JobQuery, tail: String = "", _ more: [Int] = []) -> PostgresQuery {
        let (filter, args) = JobQuerySQL.whereClause(q, process: "(request::jsonb ->> 'process')")
        var binds = PostgresBindings()
        var sql = "", n = 0
        for ch in "\(head) \(filter) \(tail)" {
            if ch == "?" { n += 1; sql += "$\(n)" } else { sql.append(ch) }
        }
        for a in args {
            switch a { case .text(let t): binds.append(t); case .number(let v): binds.append(v) }
        }
        for v in more { binds.append(v) }
        return PostgresQuery(unsafeSQL: sql, binds: binds)
    }

    public func jobs(_ query: JobQuery, limit: Int, offset: Int) async throws -> [Job] {
        try await rows(Self.filtered("SELECT * FROM jobs", query, tail: "ORDER BY created_at DESC, id LIMIT ? OFFSET ?", [limit, offset])).map(Self.job)
    }

    public func countJobs(_ query: JobQuery) async throws -> Int {
        Int(try await rows(Self.filtered("SELECT COUNT(*) AS n FROM jobs", query))[0]["n"].decode(Int64.self))
    }

    public func jobCounts() async throws -> [JobStatus: Int] {
        var out: [JobStatus: Int] = [:]
        for s in JobStatus.allCases { out[s] = 0 }
        for r in try await rows("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status") {
            if let s = JobStatus(rawValue: try r["status"].decode(String.self)) { out[s] = Int(try r["n"].decode(Int64.self)) }
        }
        return out
    }

    public func claimJob(worker: String, leaseUntil: Date, now: Date) async throws -> Job? {
        // SKIP LOCKED: workers on any machine claim different jobs without waiting for each other. Fair
        // share: the user with the fewest running jobs first, then the oldest job.
        try await rows("""
            UPDATE jobs SET status = 'running', worker = \(worker), lease_until = \(leaseUntil.timeIntervalSince1970),
                started_at = COALESCE(started_at, \(now.timeIntervalSince1970)), attempts = attempts + 1, progress = 0, stage = 'queued', message = NULL
            WHERE id = (
                WITH running AS (SELECT user_id, COUNT(*) AS n FROM jobs WHERE status = 'running' GROUP BY user_id)
                SELECT j.id FROM jobs j LEFT JOIN running r ON r.user_id = j.user_id WHERE j.status = 'accepted'
                ORDER BY COALESCE(r.n, 0), j.created_at, j.id
                LIMIT 1 FOR UPDATE OF j SKIP LOCKED)
            RETURNING *
            """).first.map(Self.job)
    }

    public func heartbeat(jobId: String, attempt: Int, worker: String, progress: Int?, stage: String?, message: String?, leaseUntil: Date) async throws -> Bool {
        let p = progress.map { Int32(max(0, min(100, $0))) }
        return !(try await rows("""
            UPDATE jobs SET progress = COALESCE(\(p), progress), stage = COALESCE(\(stage), stage), message = COALESCE(\(message), message),
                lease_until = \(leaseUntil.timeIntervalSince1970)
            WHERE id = \(jobId) AND worker = \(worker) AND attempts = \(Int32(attempt)) AND status = 'running' RETURNING id
            """).isEmpty)
    }

    public func finish(jobId: String, attempt: Int, worker: String, status: JobStatus, error: String?, cpuSeconds: Double,
                       resultBytes: Int64, finishedAt: Date, purgeAt: Date?) async throws -> Bool {
        let ok = status == .successful
        return !(try await rows("""
            UPDATE jobs SET status = \(status.rawValue), error = \(error), cpu_seconds = cpu_seconds + \(cpuSeconds), result_bytes = \(resultBytes),
                finished_at = \(finishedAt.timeIntervalSince1970), purge_at = \(purgeAt?.timeIntervalSince1970),
                progress = CASE WHEN \(ok) THEN 100 ELSE progress END,
                result_attempt = CASE WHEN \(ok) THEN attempts ELSE NULL END, worker = NULL, lease_until = NULL
            WHERE id = \(jobId) AND worker = \(worker) AND attempts = \(Int32(attempt)) AND status = 'running' RETURNING id
            """).isEmpty)
    }

    public func requeueExpired(now: Date, maxAttempts: Int) async throws -> [String] {
        let t = now.timeIntervalSince1970, m = Int32(maxAttempts)
        return try await rows("""
            UPDATE jobs SET
                status = CASE WHEN cancel_requested THEN 'dismissed' WHEN attempts >= \(m) THEN 'failed' ELSE 'accepted' END,
                error = CASE WHEN NOT cancel_requested AND attempts >= \(m) THEN 'the job was started ' || attempts || ' times and its worker stopped responding each time' ELSE error END,
                finished_at = CASE WHEN cancel_requested OR attempts >= \(m) THEN \(t) ELSE finished_at END,
                worker = NULL, lease_until = NULL, stage = 'requeued after its worker stopped'
            WHERE status = 'running' AND lease_until < \(t) RETURNING id
            """).map { try $0["id"].decode(String.self) }
    }

    public func release(jobId: String, attempt: Int, worker: String) async throws {
        try await client.query("""
            UPDATE jobs SET status = 'accepted', worker = NULL, lease_until = NULL, stage = 'requeued at shutdown', attempts = attempts - 1
            WHERE id = \(jobId) AND worker = \(worker) AND attempts = \(Int32(attempt)) AND status = 'running' AND NOT cancel_requested
            """, logger: logger)
    }

    public func cancel(jobId: String, now: Date) async throws -> Job? {
        try await transaction { c in
            try await c.query("UPDATE jobs SET status = 'dismissed', finished_at = \(now.timeIntervalSince1970), stage = 'dismissed' WHERE id = \(jobId) AND status = 'accepted'", logger: logger)
            try await c.query("UPDATE jobs SET cancel_requested = TRUE WHERE id = \(jobId) AND status = 'running'", logger: logger)
            return try await rows("SELECT * FROM jobs WHERE id = \(jobId)", on: c).first.map(Self.job)
        }
    }

    public func claimDeliveries(_ channel: DeliveryChannel, now: Date, leaseUntil: Date, limit: Int) async throws -> [Job] {
        let c = channel.rawValue
        // SKIP LOCKED: daemons on several machines claim different ones.
        return try await rows("""
            UPDATE jobs SET \(unescaped: c)_attempts = \(unescaped: c)_attempts + 1, \(unescaped: c)_at = \(leaseUntil.timeIntervalSince1970)
            WHERE id IN (
                SELECT id FROM jobs WHERE \(unescaped: c)_state = 'pending' AND status IN ('successful', 'failed', 'dismissed')
                    AND COALESCE(\(unescaped: c)_at, 0) <= \(now.timeIntervalSince1970) ORDER BY finished_at, id LIMIT \(Int32(limit)) FOR UPDATE SKIP LOCKED)
            RETURNING *
            """).map(Self.job)
    }

    public func queuePurgeReminders(now: Date, lead: Double) async throws -> [String] {
        let t = now.timeIntervalSince1970
        // SKIP LOCKED: daemons on several machines queue different ones, each once.
        return try await rows("""
            UPDATE jobs SET purge_reminder_at = \(t), reminder_state = 'pending', reminder_attempts = 0, reminder_at = NULL, reminder_error = NULL
            WHERE id IN (
                SELECT id FROM jobs WHERE status = 'successful' AND NOT purged AND reminder_state IS NULL AND mail_state = 'delivered'
                    AND purge_at > \(t) AND purge_at <= \(t + lead) AND purge_at - finished_at > \(lead)
                FOR UPDATE SKIP LOCKED)
            RETURNING *
            """).map(Self.job).sorted(by: Job.soonestPurgeFirst).map(\.id)
    }

    public func deliveryCounts() async throws -> [DeliveryChannel: [DeliveryState.State: Int]] {
        var out = DeliveryState.emptyCounts
        for c in DeliveryChannel.allCases {
            for r in try await rows("""
                SELECT \(unescaped: c.rawValue)_state AS state, COUNT(*) AS n FROM jobs
                WHERE \(unescaped: c.rawValue)_state IS NOT NULL AND status IN ('successful', 'failed', 'dismissed') GROUP BY 1
                """) {
                if let s = DeliveryState.State(rawValue: try r["state"].decode(String.self)) { out[c]?[s] = Int(try r["n"].decode(Int64.self)) }
            }
        }
        return out
    }

    public func recordDelivery(_ channel: DeliveryChannel, jobId: String, attempt: Int, state: DeliveryState.State, error: String?, nextAttempt: Date?) async throws {
        let c = channel.rawValue
        try await client.query("""
            UPDATE jobs SET \(unescaped: c)_state = \(state.rawValue), \(unescaped: c)_error = \(error), \(unescaped: c)_at = \(nextAttempt?.timeIntervalSince1970)
            WHERE id = \(jobId) AND \(unescaped: c)_attempts = \(Int32(attempt)) AND \(unescaped: c)_state = 'pending'
            """, logger: logger)
    }

    public func setEmail(userId: String, email: String?) async throws -> Bool {
        try await !rows("UPDATE users SET email = \(email) WHERE id = \(userId) RETURNING id").isEmpty
    }

    public func delete(jobId: String) async throws { try await client.query("DELETE FROM jobs WHERE id = \(jobId)", logger: logger) }

    public func jobsToPurge(now: Date) async throws -> [Job] {
        try await rows("SELECT * FROM jobs WHERE NOT purged AND purge_at IS NOT NULL AND purge_at <= \(now.timeIntervalSince1970)").map(Self.job)
    }

    public func markPurged(jobId: String) async throws {
        try await client.query("UPDATE jobs SET purged = TRUE, result_bytes = 0 WHERE id = \(jobId)", logger: logger)
    }

    public func deleteJobRecords(purgedBefore before: Date) async throws -> [String] {
        try await rows("""
            DELETE FROM jobs WHERE status IN ('successful', 'failed', 'dismissed') AND COALESCE(purge_at, finished_at, created_at) < \(before.timeIntervalSince1970)
                AND (purged OR status != 'successful') RETURNING id
            """).map { try $0["id"].decode(String.self) }
    }

    public func allJobIds() async throws -> Set<String> { Set(try await rows("SELECT id FROM jobs").map { try $0["id"].decode(String.self) }) }
    public func allUploadIds() async throws -> Set<String> { Set(try await rows("SELECT id FROM uploads").map { try $0["id"].decode(String.self) }) }

    // MARK: catalogue

    static func publication(_ r: PostgresRandomAccessRow) throws -> Publication {
        Publication(id: try r["id"].decode(String.self), ownerId: try r["owner_id"].decode(String.self), publishedBy: try r["published_by"].decode(String.self),
                    publishedAt: Date(timeIntervalSince1970: try r["published_at"].decode(Double.self)), bytes: try r["bytes"].decode(Int64.self),
                    bbox: [try r["min_lon"].decode(Double.self), try r["min_lat"].decode(Double.self), try r["max_lon"].decode(Double.self), try r["max_lat"].decode(Double.self)],
                    start: try r["start_time"].decode(Double?.self).map(Date.init(timeIntervalSince1970:)),
                    end: try r["end_time"].decode(Double?.self).map(Date.init(timeIntervalSince1970:)), item: try r["item"].decode(String.self))
    }

    public func publish(_ p: Publication) async throws -> Bool {
        !(try await rows("""
            INSERT INTO publications (id, owner_id, published_by, published_at, bytes, min_lon, min_lat, max_lon, max_lat, start_time, end_time, item)
            VALUES (\(p.id), \(p.ownerId), \(p.publishedBy), \(p.publishedAt.timeIntervalSince1970), \(p.bytes), \(p.bbox[0]), \(p.bbox[1]), \(p.bbox[2]), \(p.bbox[3]),
                    \(p.start?.timeIntervalSince1970), \(p.end?.timeIntervalSince1970), \(p.item))
            ON CONFLICT (id) DO NOTHING RETURNING id
            """).isEmpty)
    }

    public func publication(id: String) async throws -> Publication? {
        try await rows("SELECT * FROM publications WHERE id = \(id)").first.map(Self.publication)
    }

    public func withdraw(id: String) async throws -> Publication? {
        try await rows("DELETE FROM publications WHERE id = \(id) RETURNING *").first.map(Self.publication)
    }

    public func publications(_ q: CatalogueQuery) async throws -> [Publication] {
        // Absent filters are NULL parameters: one statement, every value bound.
        let b = q.bbox
        let ids = q.ids
        if let ids, ids.isEmpty { return [] }
        return try await rows("""
            SELECT * FROM publications
            WHERE (\(b?[2])::DOUBLE PRECISION IS NULL OR (min_lon <= \(b?[2]) AND max_lon >= \(b?[0]) AND min_lat <= \(b?[3]) AND max_lat >= \(b?[1])))
              AND (\(q.end?.timeIntervalSince1970)::DOUBLE PRECISION IS NULL OR COALESCE(start_time, end_time) <= \(q.end?.timeIntervalSince1970))
              AND (\(q.start?.timeIntervalSince1970)::DOUBLE PRECISION IS NULL OR COALESCE(end_time, start_time) >= \(q.start?.timeIntervalSince1970))
              AND (\(ids)::TEXT[] IS NULL OR id = ANY(\(ids)))
            ORDER BY COALESCE(end_time, start_time) DESC, id LIMIT \(q.limit) OFFSET \(q.offset)
            """).map(Self.publication)
    }

    public func catalogueSummary() async throws -> CatalogueSummary {
        let r = try await rows("""
            SELECT COUNT(*) AS n, MIN(min_lon) AS a, MIN(min_lat) AS b, MAX(max_lon) AS c, MAX(max_lat) AS d,
                   MIN(COALESCE(start_time, end_time)) AS s, MAX(COALESCE(end_time, start_time)) AS e FROM publications
            """)[0]
        let n = Int(try r["n"].decode(Int64.self))
        let bbox = n == 0 ? nil : [try r["a"].decode(Double.self), try r["b"].decode(Double.self), try r["c"].decode(Double.self), try r["d"].decode(Double.self)]
        return CatalogueSummary(count: n, bbox: bbox, start: try r["s"].decode(Double?.self).map(Date.init(timeIntervalSince1970:)),
                                end: try r["e"].decode(Double?.self).map(Date.init(timeIntervalSince1970:)))
    }

    public func allPublicationIds() async throws -> Set<String> {
        Set(try await rows("SELECT id FROM publications").map { try $0["id"].decode(String.self) })
    }
}
