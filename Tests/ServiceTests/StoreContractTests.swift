import Crypto
import Foundation
import JobService
import TestSupport
import Testing

/// A fresh store of each kind: SQLite in a temporary folder, PostgreSQL in a new database of the test
/// cluster (`DSMOPT_TEST_POSTGRES`, started by scripts/test.sh; a missing cluster is a failure, not a skip).
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }

    static var postgresURL: String? { ProcessInfo.processInfo.environment["DSMOPT_TEST_POSTGRES"] }

    /// The URL of a new, empty database on the test cluster.
    static func newDatabase(prefix: String) throws -> String {
        let url = try #require(postgresURL, "DSMOPT_TEST_POSTGRES is not set: run scripts/test.sh (it starts a private PostgreSQL cluster), or set it to a server's URL")
        let name = prefix + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
        let created = try run("/usr/bin/psql", [url, "-v", "ON_ERROR_STOP=1", "-qc", "CREATE DATABASE \(name)"])
        #expect(created.status == 0, "\(created.stderr)")
        var c = try #require(URLComponents(string: url))
        c.path = "/\(name)"
        return c.string!
    }

    func make() async throws -> (any JobStore, TemporaryFolder) {
        let tmp = try TemporaryFolder()
        switch self {
        case .sqlite: return (try SQLiteJobStore(path: tmp.path("store.sqlite")), tmp)
        case .postgres: return (try await PostgresJobStore(url: try Self.newDatabase(prefix: "t_")), tmp)
        }
    }
}

/// The `JobStore` contract, run against both stores.
@Suite struct StoreContractTests {
    static let quota: Quota = { var q = Quota(); q.maxConcurrentJobs = 100; return q }()

    func job(_ user: String, at t: Double) -> Job {
        Job(id: UUID().uuidString.lowercased(), userId: user, name: "j", request: "{}", createdAt: Date(timeIntervalSince1970: t))
    }

    @Test(arguments: StoreKind.allCases) func usersAndTokens(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, token) = try await store.createUser(name: "ann", role: .researcher, quota: Quota())
        await #expect(throws: StoreError.duplicateUser("ann")) { _ = try await store.createUser(name: "ann", role: .admin, quota: Quota()) }
        #expect(try await store.user(token: token)?.id == u.id)
        #expect(try await store.user(name: "ann")?.id == u.id)
        // The token's hash keys the user's download links: it follows rotation, and a revoked token has none.
        let first = try #require(try await store.tokenHash(userId: u.id))
        #expect(first == SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined())
        let fresh = try #require(try await store.rotateToken(userId: u.id))
        #expect(try await store.user(token: token) == nil)
        #expect(try await store.user(token: fresh)?.id == u.id)
        let second = try await store.tokenHash(userId: u.id)
        #expect(second != nil && second != first)
        #expect(try await store.revokeToken(userId: u.id))
        #expect(try await store.user(token: fresh) == nil)
        #expect(try await store.tokenHash(userId: u.id) == nil)
        #expect(try await store.tokenHash(userId: "nobody") == nil)
        #expect(try await store.rotateToken(userId: "nobody") == nil)
        var q = Quota(); q.storageBytes = 123
        #expect(try await store.setQuota(userId: u.id, quota: q)?.quota.storageBytes == 123)
    }

    /// A user's callback signing secret is created once (concurrent first uses agree on it), kept, replaced
    /// only when renewed — the replaced one kept as the previous secret until the date given, the one before
    /// it dropped —, and per user; an unknown user has none.
    @Test(arguments: StoreKind.allCases) func callbackSecretsAreKeptPerUser(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, _) = try await store.createUser(name: "sig", role: .researcher, quota: Quota())
        let (v, _) = try await store.createUser(name: "sig2", role: .researcher, quota: Quota())
        let first = try await withThrowingTaskGroup(of: CallbackSecrets?.self) { group in
            for _ in 0..<8 { group.addTask { try await store.callbackSecrets(userId: u.id, renewKeepingPreviousUntil: nil) } }
            var all: [CallbackSecrets?] = []
            for try await s in group { all.append(s) }
            return all
        }
        let secrets = try #require(first.first ?? nil)
        let secret = secrets.current
        #expect(first.allSatisfy { $0 == CallbackSecrets(current: secret) }, "concurrent first uses: \(Set(first.map { $0?.current }).count) secrets")
        #expect(secret.hasPrefix("whsec_") && Data(base64Encoded: String(secret.dropFirst(6)))?.count == 32, "\(secret)")
        #expect(try await store.callbackSecrets(userId: u.id, renewKeepingPreviousUntil: nil) == secrets)
        let other = try #require(try await store.callbackSecrets(userId: v.id, renewKeepingPreviousUntil: nil))
        #expect(other.current != secret && other.previous == nil)

        let now = Date()
        let until = now.addingTimeInterval(600)
        let renewed = try #require(try await store.callbackSecrets(userId: u.id, renewKeepingPreviousUntil: until))
        #expect(renewed.current != secret && renewed.current.hasPrefix("whsec_") && renewed.previous == secret, "\(renewed)")
        #expect(abs((renewed.previousUntil?.timeIntervalSince1970 ?? 0) - until.timeIntervalSince1970) < 0.001, "\(String(describing: renewed.previousUntil))")
        #expect(renewed.signing(at: now) == [renewed.current, secret])
        #expect(renewed.signing(at: until.addingTimeInterval(1)) == [renewed.current], "after its grace the previous secret signs no more")
        #expect(try await store.callbackSecrets(userId: u.id, renewKeepingPreviousUntil: nil) == renewed)
        // A second renewal: the first renewal's secret becomes the previous one; the original is gone.
        let again = try #require(try await store.callbackSecrets(userId: u.id, renewKeepingPreviousUntil: now))
        #expect(again.previous == renewed.current && again.current != renewed.current && again.current != secret, "\(again)")
        #expect(again.signing(at: now.addingTimeInterval(0.01)) == [again.current], "a grace that has ended: the new secret only")
        #expect(try await store.callbackSecrets(userId: v.id, renewKeepingPreviousUntil: nil) == other)
        #expect(try await store.callbackSecrets(userId: "nobody", renewKeepingPreviousUntil: nil) == nil)
        #expect(try await store.callbackSecrets(userId: "nobody", renewKeepingPreviousUntil: until) == nil)
    }

    /// Quotas are checked atomically with the insert: of 12 concurrent submissions under a limit of 3
    /// concurrent jobs, exactly 3 are accepted.
    @Test(arguments: StoreKind.allCases) func quotaChecksAreAtomic(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let q: Quota = { var q = Quota(); q.maxConcurrentJobs = 3; return q }()
        let (u, _) = try await store.createUser(name: "bob", role: .researcher, quota: q)
        let accepted = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<12 {
                group.addTask { (try? await store.createJob(self.job(u.id, at: Double(i)), inputBytes: [], quota: q, now: Date())) != nil }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(accepted == 3)
        await #expect(throws: QuotaExceeded.concurrentJobs(limit: 3)) { try await store.createJob(job(u.id, at: 99), inputBytes: [], quota: q, now: Date()) }
        #expect(try await store.usage(userId: u.id, now: Date()).activeJobs == 3)
        // A job's expected results must fit in what is left of the storage quota.
        let small: Quota = { var q = Quota(); q.storageBytes = 1000; return q }()
        let (v, _) = try await store.createUser(name: "vera", role: .researcher, quota: small)
        await #expect(throws: QuotaExceeded.resultStorage(used: 0, estimate: 1001, limit: 1000)) {
            try await store.createJob(job(v.id, at: 1), inputBytes: [], quota: small, results: 1001, now: Date())
        }
        try await store.createJob(job(v.id, at: 2), inputBytes: [], quota: small, results: 1000, now: Date())
    }

    /// Concurrent claimers never get the same job.
    @Test(arguments: StoreKind.allCases) func claimsAreExclusive(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, _) = try await store.createUser(name: "cy", role: .researcher, quota: Self.quota)
        for i in 0..<8 { try await store.createJob(job(u.id, at: Double(i)), inputBytes: [], quota: Self.quota, now: Date()) }
        let claimed = await withTaskGroup(of: String?.self) { group in
            for w in 0..<12 {
                group.addTask { try? await store.claimJob(worker: "w\(w)", leaseUntil: Date().addingTimeInterval(60), now: Date())?.id }
            }
            return await group.compactMap { $0 }.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(claimed.count == 8 && Set(claimed).count == 8, "\(claimed)")
        #expect(try await store.claimJob(worker: "late", leaseUntil: Date().addingTimeInterval(60), now: Date()) == nil)
    }

    /// Fencing: an attempt that lost its lease can neither heart-beat nor finish; the next one can, and its
    /// folder is promoted. After `maxAttempts`, the job fails with the reason.
    @Test(arguments: StoreKind.allCases) func attemptsAreFenced(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, _) = try await store.createUser(name: "di", role: .researcher, quota: Self.quota)
        let j = job(u.id, at: 1)
        try await store.createJob(j, inputBytes: [], quota: Self.quota, now: Date())
        let first = try #require(try await store.claimJob(worker: "a", leaseUntil: Date().addingTimeInterval(-1), now: Date()))
        #expect(first.attempts == 1 && first.status == .running)
        #expect(try await store.requeueExpired(now: Date(), maxAttempts: 3) == [j.id])
        let second = try #require(try await store.claimJob(worker: "b", leaseUntil: Date().addingTimeInterval(60), now: Date()))
        #expect(second.attempts == 2)
        #expect(!(try await store.heartbeat(jobId: j.id, attempt: 1, worker: "a", progress: 50, stage: "x", message: nil, leaseUntil: Date().addingTimeInterval(60))))
        #expect(!(try await store.finish(jobId: j.id, attempt: 1, worker: "a", status: .failed, error: "late", cpuSeconds: 5, resultBytes: 0, finishedAt: Date(), purgeAt: nil)))
        // The same worker name with a stale attempt number is refused too.
        #expect(!(try await store.heartbeat(jobId: j.id, attempt: 1, worker: "b", progress: 50, stage: nil, message: nil, leaseUntil: Date())))
        #expect(try await store.heartbeat(jobId: j.id, attempt: 2, worker: "b", progress: 40, stage: "match", message: "m", leaseUntil: Date().addingTimeInterval(60)))
        #expect(try await store.finish(jobId: j.id, attempt: 2, worker: "b", status: .successful, error: nil, cpuSeconds: 7.5, resultBytes: 1000, finishedAt: Date(), purgeAt: Date().addingTimeInterval(-1)))
        let done = try #require(try await store.job(id: j.id))
        #expect(done.status == .successful && done.resultAttempt == 2 && done.progress == 100 && done.cpuSeconds == 7.5 && done.error == nil)
        #expect(try await store.usage(userId: u.id, now: Date()).storageBytes == 1000)
        // Retention: purge, then the record after its grace period.
        #expect(try await store.jobsToPurge(now: Date()).map(\.id) == [j.id])
        try await store.markPurged(jobId: j.id)
        #expect(try await store.usage(userId: u.id, now: Date()).storageBytes == 0)
        #expect(try await store.deleteJobRecords(purgedBefore: Date().addingTimeInterval(60)) == [j.id])
        #expect(try await store.job(id: j.id) == nil)
        #expect(!(try await store.allJobIds()).contains(j.id))
        // A job whose worker keeps dying fails after the cap, with the reason.
        let k = job(u.id, at: 2)
        try await store.createJob(k, inputBytes: [], quota: Self.quota, now: Date())
        for _ in 0..<2 {
            _ = try await store.claimJob(worker: "c", leaseUntil: Date().addingTimeInterval(-1), now: Date())
            _ = try await store.requeueExpired(now: Date(), maxAttempts: 2)
        }
        let failed = try #require(try await store.job(id: k.id))
        #expect(failed.status == .failed && failed.attempts == 2 && (failed.error ?? "").contains("2 times"), "\(failed)")
    }

    /// Callbacks: only ended jobs with a pending callback are claimed, each by one process at a time (its claim
    /// counted as an attempt and held until its lease), whichever way the job ended (a finish, a cancel, the
    /// lease sweep); a stale attempt's outcome is ignored; a retry is claimed again only once due; a claim
    /// that lapsed (its process died) is taken up by another.
    @Test(arguments: StoreKind.allCases) func callbacksAreClaimedOnceTheJobEnds(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, _) = try await store.createUser(name: "cal", role: .researcher, quota: Self.quota)
        var a = job(u.id, at: 1), b = job(u.id, at: 2), c = job(u.id, at: 3)
        let quiet = job(u.id, at: 4)
        a.callback = DeliveryState(state: .pending); b.callback = DeliveryState(state: .pending); c.callback = DeliveryState(state: .pending)
        for j in [a, b, c, quiet] { try await store.createJob(j, inputBytes: [], quota: Self.quota, now: Date()) }
        #expect(try await store.job(id: a.id)?.callback == DeliveryState(state: .pending))
        #expect(try await store.job(id: quiet.id)?.callback == nil)
        func claim(_ now: Date = Date(), lease: Double = 60) async throws -> [Job] {
            try await store.claimDeliveries(.callback, now: now, leaseUntil: now.addingTimeInterval(lease), limit: 10)
        }
        #expect(try await claim().isEmpty, "no job has ended")
        // a succeeds, b is cancelled while queued, c's worker dies on its only attempt; quiet ends too.
        let ra = try #require(try await store.claimJob(worker: "w", leaseUntil: Date().addingTimeInterval(60), now: Date()))
        #expect(ra.id == a.id)
        #expect(try await store.finish(jobId: a.id, attempt: 1, worker: "w", status: .successful, error: nil, cpuSeconds: 1, resultBytes: 0, finishedAt: Date(), purgeAt: nil))
        _ = try await store.cancel(jobId: b.id, now: Date())
        let rc = try #require(try await store.claimJob(worker: "w", leaseUntil: Date().addingTimeInterval(-1), now: Date()))
        #expect(rc.id == c.id)
        _ = try await store.requeueExpired(now: Date(), maxAttempts: 1)
        _ = try await store.cancel(jobId: quiet.id, now: Date())
        // Two processes claim at once: each callback goes to one of them.
        let both = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<2 { group.addTask { ((try? await claim()) ?? []).map(\.id) } }
            return await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(both.sorted() == [a.id, b.id, c.id].sorted(), "\(both)")
        let claimed = try #require(try await store.job(id: a.id)?.callback)
        #expect(claimed.state == .pending && claimed.attempts == 1)
        #expect(try await claim().isEmpty, "held by their claims")
        // a delivered; b to be retried in 30 s; c's claim lapses (its process died).
        try await store.recordDelivery(.callback, jobId: a.id, attempt: 2, state: .failed, error: "stale", nextAttempt: nil)  // stale: ignored
        #expect(try await store.job(id: a.id)?.callback?.state == .pending)
        try await store.recordDelivery(.callback, jobId: a.id, attempt: 1, state: .delivered, error: nil, nextAttempt: nil)
        try await store.recordDelivery(.callback, jobId: b.id, attempt: 1, state: .pending, error: "POST answered 503", nextAttempt: Date().addingTimeInterval(30))
        let later = try await claim(Date().addingTimeInterval(121)).map(\.id)
        #expect(later.sorted() == [b.id, c.id].sorted(), "\(later)")
        let cb = try #require(try await store.job(id: b.id)?.callback)
        #expect(cb.attempts == 2 && cb.error == "POST answered 503", "\(cb)")
        #expect(try await store.job(id: a.id)?.callback == DeliveryState(state: .delivered, attempts: 1))
        // The lapsed first claim of c can no longer record; the second can.
        try await store.recordDelivery(.callback, jobId: c.id, attempt: 1, state: .delivered, error: nil, nextAttempt: nil)
        #expect(try await store.job(id: c.id)?.callback?.state == .pending)
        try await store.recordDelivery(.callback, jobId: c.id, attempt: 2, state: .failed, error: "given up", nextAttempt: nil)
        #expect(try await store.job(id: c.id)?.callback == DeliveryState(state: .failed, attempts: 2, error: "given up"))
    }

    /// A job's mail to its owner has its own outbox state beside its callback: claiming and recording one
    /// leaves the other as it was. Users' addresses are kept, replaced and removed.
    @Test(arguments: StoreKind.allCases) func mailIsKeptApartFromCallbacks(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, _) = try await store.createUser(name: "mel", role: .researcher, quota: Self.quota)
        #expect(try await store.user(id: u.id)?.email == nil)
        #expect(try await store.setEmail(userId: u.id, email: "mel@example.org"))
        let byName = try await store.user(name: "mel"), listed = try await store.users()
        #expect(byName?.email == "mel@example.org" && listed.first?.email == "mel@example.org")
        #expect(try await !store.setEmail(userId: "nobody", email: "x@example.org"))
        var a = job(u.id, at: 1), b = job(u.id, at: 2)
        a.mail = DeliveryState(state: .pending); a.callback = DeliveryState(state: .pending)
        b.callback = DeliveryState(state: .pending)
        for j in [a, b] { try await store.createJob(j, inputBytes: [], quota: Self.quota, now: Date()) }
        let (ja, jb) = (try await store.job(id: a.id), try await store.job(id: b.id))
        #expect(ja?.mail == DeliveryState(state: .pending) && jb != nil && jb?.mail == nil)
        // The counts (/metrics) hold only ended jobs' deliveries: none yet.
        let before = try await store.deliveryCounts()
        #expect(before.count == DeliveryChannel.allCases.count && before.values.allSatisfy { $0.count == 4 && $0.values.allSatisfy { $0 == 0 } }, "\(before)")
        for j in [a, b] {
            let r = try #require(try await store.claimJob(worker: "w", leaseUntil: Date().addingTimeInterval(60), now: Date()))
            #expect(r.id == j.id)
            #expect(try await store.finish(jobId: j.id, attempt: 1, worker: "w", status: .successful, error: nil, cpuSeconds: 1, resultBytes: 0, finishedAt: Date(), purgeAt: nil))
        }
        let now = Date()
        let mails = try await store.claimDeliveries(.mail, now: now, leaseUntil: now.addingTimeInterval(60), limit: 10)
        #expect(mails.map(\.id) == [a.id] && mails.first?.mail?.attempts == 1 && mails.first?.callback == DeliveryState(state: .pending), "\(mails)")
        try await store.recordDelivery(.mail, jobId: a.id, attempt: 1, state: .pending, error: "451 later", nextAttempt: now.addingTimeInterval(5))
        #expect(try await store.job(id: a.id)?.mail == DeliveryState(state: .pending, attempts: 1, error: "451 later", nextAttempt: Date(timeIntervalSince1970: (now.timeIntervalSince1970 + 5))))
        let callbacks = try await store.claimDeliveries(.callback, now: now, leaseUntil: now.addingTimeInterval(60), limit: 10)
        #expect(Set(callbacks.map(\.id)) == [a.id, b.id] && callbacks.allSatisfy { $0.callback?.attempts == 1 })
        try await store.recordDelivery(.callback, jobId: a.id, attempt: 1, state: .delivered, error: nil, nextAttempt: nil)
        #expect(try await store.job(id: a.id)?.mail?.state == .pending, "the callback's record leaves the mail pending")
        #expect(try await store.claimDeliveries(.mail, now: now.addingTimeInterval(6), leaseUntil: now.addingTimeInterval(66), limit: 10).map(\.id) == [a.id])
        try await store.recordDelivery(.mail, jobId: a.id, attempt: 2, state: .delivered, error: nil, nextAttempt: nil)
        let done = try #require(try await store.job(id: a.id))
        #expect(done.mail == DeliveryState(state: .delivered, attempts: 2) && done.callback == DeliveryState(state: .delivered, attempts: 1), "\(done)")
        try await store.recordDelivery(.callback, jobId: b.id, attempt: 1, state: .failed, error: "refused", nextAttempt: nil)
        let counts = try await store.deliveryCounts()
        #expect(counts[.mail] == [.pending: 0, .delivered: 1, .failed: 0, .skipped: 0] && counts[.callback] == [.pending: 0, .delivered: 1, .failed: 1, .skipped: 0], "\(counts)")
        #expect(try await store.setEmail(userId: u.id, email: nil))
        #expect(try await store.user(id: u.id)?.email == nil)
    }

    /// Purge reminders: the successful jobs whose end mail was delivered, purged within the lead and kept
    /// longer than it, each queued once — by one of two concurrent queuers (on PostgreSQL each may take some
    /// of them, never the same one) — soonest purge first; then claimed, retried and recorded as a delivery.
    @Test(arguments: StoreKind.allCases) func purgeRemindersAreQueuedOnceAndDelivered(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, _) = try await store.createUser(name: "rem", role: .researcher, quota: Self.quota)
        let now = Date(), day = 86_400.0
        // (purge in, kept for, status, mail): soon and due; due later; due but mail skipped; due but failed;
        // not yet due; kept no longer than the lead; already past its purge date.
        let cases: [(purgeIn: Double, kept: Double, status: JobStatus, mail: DeliveryState.State)] = [
            (1 * day, 21 * day, .successful, .delivered), (2 * day, 21 * day, .successful, .delivered),
            (1 * day, 21 * day, .successful, .skipped), (1 * day, 21 * day, .failed, .delivered),
            (5 * day, 21 * day, .successful, .delivered), (1 * day, 2 * day, .successful, .delivered),
            (-60, 21 * day, .successful, .delivered)]
        var ids: [String] = []
        for (i, c) in cases.enumerated() {
            var j = job(u.id, at: Double(i)); j.mail = DeliveryState(state: .pending)
            try await store.createJob(j, inputBytes: [], quota: Self.quota, now: now)
            let r = try #require(try await store.claimJob(worker: "w", leaseUntil: now.addingTimeInterval(60), now: now))
            #expect(r.id == j.id)
            let purge = now.addingTimeInterval(c.purgeIn)
            #expect(try await store.finish(jobId: j.id, attempt: 1, worker: "w", status: c.status, error: nil, cpuSeconds: 1, resultBytes: 0,
                                           finishedAt: purge.addingTimeInterval(-c.kept), purgeAt: purge))
            ids.append(j.id)
        }
        // Each end mail claimed (its first attempt), then recorded as it went.
        #expect(try await store.claimDeliveries(.mail, now: now, leaseUntil: now.addingTimeInterval(60), limit: 10).count == cases.count)
        for (id, c) in zip(ids, cases) { try await store.recordDelivery(.mail, jobId: id, attempt: 1, state: c.mail, error: nil, nextAttempt: nil) }
        let queued = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<2 { group.addTask { (try? await store.queuePurgeReminders(now: now, lead: 3 * day)) ?? ["error"] } }
            return await group.reduce(into: [[String]]()) { $0.append($1) }
        }
        #expect(queued.flatMap { $0 }.sorted() == [ids[0], ids[1]].sorted()
                && queued.allSatisfy { $0 == $0.sorted { ids.firstIndex(of: $0)! < ids.firstIndex(of: $1)! } }, "\(queued) vs \(ids)")
        let due = try #require(try await store.job(id: ids[0]))
        #expect(abs((due.purgeReminderAt ?? .distantPast).timeIntervalSince(now)) < 0.01 && due.reminder == DeliveryState(state: .pending), "\(due)")
        let later = try await store.job(id: ids[4])
        #expect(later?.reminder == nil && later?.purgeReminderAt == nil)
        #expect(try await store.queuePurgeReminders(now: now.addingTimeInterval(60), lead: 3 * day).isEmpty, "queued once")
        // Claimed as deliveries; one is refused for now and tried again once its time comes, the other sent.
        let claimed = try await store.claimDeliveries(.reminder, now: now, leaseUntil: now.addingTimeInterval(60), limit: 10)
        #expect(Set(claimed.map(\.id)) == [ids[0], ids[1]] && claimed.allSatisfy { $0.reminder?.attempts == 1 }, "\(claimed)")
        try await store.recordDelivery(.reminder, jobId: ids[0], attempt: 1, state: .pending, error: "451 later", nextAttempt: now.addingTimeInterval(120))
        try await store.recordDelivery(.reminder, jobId: ids[1], attempt: 1, state: .delivered, error: nil, nextAttempt: nil)
        #expect(try await store.claimDeliveries(.reminder, now: now.addingTimeInterval(90), leaseUntil: now.addingTimeInterval(150), limit: 10).isEmpty)
        let again = try await store.claimDeliveries(.reminder, now: now.addingTimeInterval(130), leaseUntil: now.addingTimeInterval(190), limit: 10)
        #expect(again.map(\.id) == [ids[0]] && again.first?.reminder?.attempts == 2 && again.first?.reminder?.error == "451 later", "\(again)")
        #expect(try await store.deliveryCounts()[.reminder] == [.pending: 1, .delivered: 1, .failed: 0, .skipped: 0])
        // Two days on, the one purged in five days is due.
        #expect(try await store.queuePurgeReminders(now: now.addingTimeInterval(2.5 * day), lead: 3 * day) == [ids[4]])
    }

    /// Graceful release gives the attempt back (not counted); cancellation of queued and running jobs.
    @Test(arguments: StoreKind.allCases) func releaseAndCancel(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, _) = try await store.createUser(name: "ed", role: .researcher, quota: Self.quota)
        let a = job(u.id, at: 1), b = job(u.id, at: 2)
        try await store.createJob(a, inputBytes: [], quota: Self.quota, now: Date())
        try await store.createJob(b, inputBytes: [], quota: Self.quota, now: Date())
        let running = try #require(try await store.claimJob(worker: "w", leaseUntil: Date().addingTimeInterval(60), now: Date()))
        #expect(running.id == a.id)
        try await store.release(jobId: a.id, attempt: 2, worker: "w")  // stale: ignored
        #expect(try await store.job(id: a.id)?.status == .running)
        try await store.release(jobId: a.id, attempt: 1, worker: "w")
        let released = try #require(try await store.job(id: a.id))
        #expect(released.status == .accepted && released.attempts == 0)
        #expect(try await store.cancel(jobId: b.id, now: Date())?.status == .dismissed)
        _ = try await store.claimJob(worker: "w", leaseUntil: Date().addingTimeInterval(-1), now: Date())
        #expect(try await store.cancel(jobId: a.id, now: Date())?.cancelRequested == true)
        _ = try await store.requeueExpired(now: Date(), maxAttempts: 3)
        #expect(try await store.job(id: a.id)?.status == .dismissed)
        #expect(try await store.jobCounts()[.dismissed] == 2)
    }

    /// Fair share: a user with a job running waits behind another user's first job, even an older one.
    @Test(arguments: StoreKind.allCases) func schedulingIsFairBetweenUsers(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (busy, _) = try await store.createUser(name: "busy", role: .researcher, quota: Self.quota)
        let (other, _) = try await store.createUser(name: "other", role: .researcher, quota: Self.quota)
        for i in 0..<5 { try await store.createJob(job(busy.id, at: Double(i)), inputBytes: [], quota: Self.quota, now: Date()) }
        let late = job(other.id, at: 100)
        try await store.createJob(late, inputBytes: [], quota: Self.quota, now: Date())
        let first = try #require(try await store.claimJob(worker: "w1", leaseUntil: Date().addingTimeInterval(60), now: Date()))
        #expect(first.userId == busy.id)
        let second = try #require(try await store.claimJob(worker: "w2", leaseUntil: Date().addingTimeInterval(60), now: Date()))
        #expect(second.id == late.id)
    }

    @Test(arguments: StoreKind.allCases) func uploadsAndUsage(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, _) = try await store.createUser(name: "fay", role: .researcher, quota: Self.quota)
        let up = Upload(id: UUID().uuidString.lowercased(), userId: u.id, fileName: "a.tif", size: 5000, sha256: "00", createdAt: Date())
        try await store.addUpload(up)
        let read = try await store.upload(id: up.id, userId: u.id)
        #expect(read?.size == 5000 && read?.fileName == "a.tif" && read?.userId == u.id)
        #expect(try await store.upload(id: up.id, userId: "someone-else") == nil)
        #expect(try await store.usage(userId: u.id, now: Date()).storageBytes == 5000)
        #expect(try await store.allUploadIds() == [up.id])
        // A user's uploads, newest first; nobody else's.
        let later = Upload(id: UUID().uuidString.lowercased(), userId: u.id, fileName: "b.tif", size: 10, sha256: "01", createdAt: Date().addingTimeInterval(5))
        try await store.addUpload(later)
        #expect(try await store.uploads(userId: u.id).map(\.id) == [later.id, up.id])
        #expect(try await store.uploads(userId: "someone-else").isEmpty)
        #expect(try await store.deleteUpload(id: later.id, userId: u.id) == .deleted)
        #expect(try await store.deleteUpload(id: up.id, userId: "someone-else") == .notFound)
        #expect(try await store.deleteUpload(id: up.id, userId: u.id) == .deleted)
        #expect(try await store.deleteUpload(id: up.id, userId: u.id) == .notFound)
        #expect(try await store.usage(userId: u.id, now: Date()).storageBytes == 0)
    }

    /// A job's request as the API records it: its inputs name the uploads it reads.
    func job(_ user: String, at t: Double, reading uploads: [String]) -> Job {
        let inputs = uploads.enumerated().map { i, id in "{\"field\": \"images[\(i)]\", \"upload\": \"\(id)\", \"fileName\": \"f\", \"bytes\": 1, \"sha256\": \"00\"}" }
        var j = job(user, at: t)
        j.request = "{\"images\": [], \"inputs\": [\(inputs.joined(separator: ", "))]}"
        return j
    }

    /// An upload a queued or running job reads cannot be deleted (the jobs are named), one an ended job read
    /// can; a job whose upload is gone is not queued. Then submissions and deletions of the same upload race:
    /// whichever wins, no job is queued without its input.
    @Test(arguments: StoreKind.allCases) func uploadsInUseAreKept(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, _) = try await store.createUser(name: "hal", role: .researcher, quota: Self.quota)
        let (other, _) = try await store.createUser(name: "ivy", role: .researcher, quota: Self.quota)
        func upload(_ user: String = u.id) async throws -> String {
            let id = UUID().uuidString.lowercased()
            try await store.addUpload(Upload(id: id, userId: user, fileName: "\(id).tif", size: 10, sha256: "00", createdAt: Date()))
            return id
        }
        let a = try await upload(), b = try await upload(), spare = try await upload()
        let first = job(u.id, at: 1, reading: [a, b]), second = job(u.id, at: 2, reading: [b])
        try await store.createJob(first, inputBytes: [], uploads: [a, b], quota: Self.quota, results: 0, now: Date())
        try await store.createJob(second, inputBytes: [], uploads: [b], quota: Self.quota, results: 0, now: Date())
        #expect(try await store.deleteUpload(id: b, userId: u.id) == .inUse(jobs: [first.id, second.id]))
        // Running still reads it; an id inside another field's text is not a reference.
        let claimed = try #require(try await store.claimJob(worker: "w", leaseUntil: Date().addingTimeInterval(60), now: Date()))
        #expect(claimed.id == first.id)
        #expect(try await store.deleteUpload(id: a, userId: u.id) == .inUse(jobs: [first.id]))
        var mentions = job(u.id, at: 3)
        mentions.request = "{\"name\": \"about \(spare)\"}"
        try await store.createJob(mentions, inputBytes: [], quota: Self.quota, results: 0, now: Date())
        #expect(try await store.deleteUpload(id: spare, userId: u.id) == .deleted)
        // Ended: free to go.
        #expect(try await store.finish(jobId: first.id, attempt: claimed.attempts, worker: "w", status: .failed, error: "x", cpuSeconds: 0,
                                       resultBytes: 0, finishedAt: Date(), purgeAt: nil))
        #expect(try await store.deleteUpload(id: a, userId: u.id) == .deleted)
        #expect(try await store.deleteUpload(id: b, userId: u.id) == .inUse(jobs: [second.id]))
        _ = try await store.cancel(jobId: second.id, now: Date())
        #expect(try await store.deleteUpload(id: b, userId: u.id) == .deleted)
        // A job whose uploads are gone (or another user's) is refused, and nothing is queued.
        let c = try await upload(), theirs = try await upload(other.id)
        let late = job(u.id, at: 4, reading: [c, a, theirs])
        await #expect(throws: UploadsGone(ids: [a, theirs])) {
            try await store.createJob(late, inputBytes: [], uploads: [c, a, theirs], quota: Self.quota, results: 0, now: Date())
        }
        #expect(try await store.job(id: late.id) == nil)

        // The race: each round submits a job reading a fresh upload while that upload is deleted.
        var queued = 0, deleted = 0
        for round in 0..<40 {
            let id = try await upload()
            let j = job(u.id, at: Double(10 + round), reading: [id])
            let submit: @Sendable () async throws -> Bool = {
                do { try await store.createJob(j, inputBytes: [], uploads: [id], quota: Self.quota, results: 0, now: Date()); return true }
                catch is UploadsGone { return false }
            }
            let delete: @Sendable () async throws -> UploadDeletion = { try await store.deleteUpload(id: id, userId: u.id) }
            // Started in either order, alternately.
            let (s, d): (Bool, UploadDeletion)
            if round.isMultiple(of: 2) {
                async let a = submit(); async let b = delete(); (s, d) = try await (a, b)
            } else {
                async let b = delete(); async let a = submit(); (d, s) = try await (b, a)
            }
            // Exactly one wins: the job with its upload kept, or the deletion with no job.
            #expect(s != (d == .deleted), "round \(round): submitted \(s), deletion \(d)")
            if s { #expect(d == .inUse(jobs: [j.id])); #expect(try await store.upload(id: id, userId: u.id) != nil); queued += 1 }
            else { #expect(try await store.job(id: j.id) == nil); deleted += 1 }
        }
        #expect(queued + deleted == 40)
    }

    /// The DSM catalogue's records: publish once, search by place, time and ids (newest acquisition first,
    /// paged), the collection's extent, withdraw; published bytes count once against the owner's storage,
    /// after the job's purge too.
    @Test(arguments: StoreKind.allCases) func catalogueRecords(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, _) = try await store.createUser(name: "gil", role: .researcher, quota: Self.quota)
        let (ops, _) = try await store.createUser(name: "ops", role: .operator, quota: Self.quota)
        let day: Double = 86_400
        func pub(_ id: String, _ bbox: [Double], _ t: Double, bytes: Int64 = 1000) -> Publication {
            Publication(id: id, ownerId: u.id, publishedBy: ops.id, publishedAt: Date(), bytes: bytes, bbox: bbox,
                        start: Date(timeIntervalSince1970: t), end: Date(timeIntervalSince1970: t + 30), item: "{\"id\": \"\(id)\"}")
        }
        let j = job(u.id, at: 1)
        try await store.createJob(j, inputBytes: [], quota: Self.quota, results: 0, now: Date())
        let claimed = try #require(try await store.claimJob(worker: "w", leaseUntil: Date().addingTimeInterval(60), now: Date()))
        #expect(try await store.finish(jobId: j.id, attempt: claimed.attempts, worker: "w", status: .successful, error: nil, cpuSeconds: 1,
                                       resultBytes: 1000, finishedAt: Date(), purgeAt: Date().addingTimeInterval(-1)))
        #expect(try await store.usage(userId: u.id, now: Date()).storageBytes == 1000)
        let reunion = pub(j.id, [55.6, -21.3, 55.7, -21.2], 1_372_487_834), marseille = pub("m", [5.3, 43.2, 5.4, 43.3], 1_372_487_834 + 400 * day, bytes: 500)
        #expect(try await store.publish(reunion))
        #expect(!(try await store.publish(reunion)), "a second publication of the same job changes nothing")
        #expect(try await store.publish(marseille))
        // The job's results and its publication are the same files: counted once (1000 + 500, not 2500).
        #expect(try await store.usage(userId: u.id, now: Date()).storageBytes == 1500)
        try await store.markPurged(jobId: j.id)
        #expect(try await store.usage(userId: u.id, now: Date()).storageBytes == 1500, "published bytes still count after the purge")
        let stored = try #require(try await store.publication(id: j.id))
        #expect(stored.bbox == reunion.bbox && stored.ownerId == u.id && stored.publishedBy == ops.id && stored.item == reunion.item
                && abs(stored.start!.timeIntervalSince1970 - 1_372_487_834) < 1e-6)
        func ids(_ q: CatalogueQuery) async throws -> [String] { try await store.publications(q).map(\.id) }
        #expect(try await ids(CatalogueQuery(limit: 10)) == ["m", j.id], "newest acquisition first")
        #expect(try await ids(CatalogueQuery(bbox: [55, -22, 56, -21], limit: 10)) == [j.id])
        #expect(try await ids(CatalogueQuery(bbox: [55.65, -21.25, 55.66, -21.24], limit: 10)) == [j.id], "a box inside the footprint")
        #expect(try await ids(CatalogueQuery(bbox: [0, 0, 1, 1], limit: 10)).isEmpty)
        #expect(try await ids(CatalogueQuery(start: Date(timeIntervalSince1970: 1_372_487_834 + 10), limit: 10)) == ["m", j.id], "an interval that starts inside the span")
        #expect(try await ids(CatalogueQuery(start: Date(timeIntervalSince1970: 1_372_487_834 + 100), limit: 10)) == ["m"])
        #expect(try await ids(CatalogueQuery(end: Date(timeIntervalSince1970: 1_372_487_834 + day), limit: 10)) == [j.id])
        #expect(try await ids(CatalogueQuery(ids: ["m", "nope"], limit: 10)) == ["m"])
        #expect(try await ids(CatalogueQuery(ids: [], limit: 10)).isEmpty)
        #expect(try await ids(CatalogueQuery(limit: 1, offset: 1)) == [j.id])
        let summary = try await store.catalogueSummary()
        #expect(summary.count == 2 && summary.bbox == [5.3, -21.3, 55.7, 43.3])
        #expect(summary.start.map { abs($0.timeIntervalSince1970 - 1_372_487_834) < 1e-6 } == true)
        #expect(try await store.allPublicationIds() == [j.id, "m"])
        // A job record deleted after its purge leaves its publication in place.
        #expect(try await store.deleteJobRecords(purgedBefore: Date().addingTimeInterval(1)) == [j.id])
        #expect(try await store.publication(id: j.id) != nil)
        #expect(try await store.withdraw(id: j.id)?.id == j.id)
        #expect(try await store.withdraw(id: j.id) == nil)
        #expect(try await store.usage(userId: u.id, now: Date()).storageBytes == 500)
        #expect(try await store.catalogueSummary().count == 1)
    }

    /// 200 jobs, 4 workers claiming and finishing concurrently (two of them through a second connection to
    /// the store, as a second daemon would): none lost, none run twice.
    @Test(arguments: StoreKind.allCases) func manyJobsManyWorkers(kind: StoreKind) async throws {
        let (store, tmp) = try await kind.make()
        let second: any JobStore = kind == .sqlite ? try SQLiteJobStore(path: tmp.path("store.sqlite")) : store
        let (u, _) = try await store.createUser(name: "gus", role: .researcher, quota: Self.quota)
        var q = Self.quota; q.maxConcurrentJobs = 1000
        let quota = q
        for i in 0..<200 { try await store.createJob(job(u.id, at: Double(i)), inputBytes: [], quota: quota, now: Date()) }
        let runs = await withTaskGroup(of: [String].self) { group in
            for w in 0..<4 {
                let s = w % 2 == 0 ? store : second
                group.addTask {
                    var mine: [String] = []
                    while let j = try? await s.claimJob(worker: "w\(w)", leaseUntil: Date().addingTimeInterval(60), now: Date()) {
                        if (try? await s.finish(jobId: j.id, attempt: j.attempts, worker: "w\(w)", status: .successful, error: nil, cpuSeconds: 1,
                                                 resultBytes: 0, finishedAt: Date(), purgeAt: nil)) == true { mine.append(j.id) }
                    }
                    return mine
                }
            }
            return await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(runs.count == 200 && Set(runs).count == 200)
        #expect(try await store.jobCounts()[.successful] == 200)
        #expect(try await store.usage(userId: u.id, now: Date()).cpuSecondsThisMonth == 200)
    }

    /// Tile tasks: concurrent claimers take each tile once; a claim that lost its lease is fenced off; a tile
    /// failing at every attempt is reported; cancelled jobs' tiles are not handed out; each user's running
    /// tasks count in the fair order; CPU charged to the job; a job's new attempt replaces its tasks.
    @Test(arguments: StoreKind.allCases) func tileTasks(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, _) = try await store.createUser(name: "tia", role: .researcher, quota: Self.quota)
        let j = job(u.id, at: 1)
        try await store.createJob(j, inputBytes: [], quota: Self.quota, now: Date())
        _ = try #require(try await store.claimJob(worker: "coord", leaseUntil: Date().addingTimeInterval(60), now: Date()))
        try await store.addTasks(jobId: j.id, jobAttempt: 1, runDirectory: "/shared/run", stage: "match", tiles: Array(0..<10))
        let lease = Date().addingTimeInterval(60)
        let done = await withTaskGroup(of: [Int].self) { group in
            for w in 0..<6 {
                group.addTask {
                    var mine: [Int] = []
                    while let claim = try? await store.claimTasks(worker: "w\(w)", limit: 2, leaseUntil: lease, preferJob: nil), !claim.isEmpty {
                        mine += (try? await store.completeTasks(claim, worker: "w\(w)", cpuSeconds: 0.5 * Double(claim.count))) ?? []
                    }
                    return mine
                }
            }
            return await group.reduce(into: [Int]()) { $0 += $1 }
        }
        #expect(done.sorted() == Array(0..<10), "\(done)")
        var tally = try await store.taskTally(jobId: j.id, jobAttempt: 1, stage: "match")
        #expect(tally.done == 10 && tally.total == 10)
        let tasks = try await store.tasks(jobId: j.id)
        #expect(tasks.allSatisfy { $0.completions == 1 && $0.attempts == 1 && $0.runDirectory == "/shared/run" && $0.doneBy != nil })
        #expect(try await store.job(id: j.id)?.cpuSeconds == 5)
        // Fencing: a claim whose lease ran out is taken again; the first claimant can neither beat nor complete.
        try await store.addTasks(jobId: j.id, jobAttempt: 1, runDirectory: "/shared/run", stage: "fuse", tiles: [0])
        let stale = try #require(try await store.claimTasks(worker: "a", limit: 4, leaseUntil: Date().addingTimeInterval(-1), preferJob: nil).first)
        #expect(try await store.requeueExpiredTasks(now: Date(), maxAttempts: 3) == 1)
        let fresh = try #require(try await store.claimTasks(worker: "b", limit: 4, leaseUntil: lease, preferJob: nil).first)
        #expect(fresh.attempts == 2 && fresh.tile == 0)
        #expect(!(try await store.heartbeatTasks([stale], worker: "a", leaseUntil: lease)))
        #expect(try await store.completeTasks([stale], worker: "a", cpuSeconds: 1).isEmpty)
        #expect(try await store.heartbeatTasks([fresh], worker: "b", leaseUntil: lease))
        #expect(try await store.completeTasks([fresh], worker: "b", cpuSeconds: 1) == [0])
        #expect(try await store.tasks(jobId: j.id).first { $0.stage == "fuse" }?.completions == 1)
        // A tile failing at every attempt fails for good, with its reason; release does not count an attempt.
        try await store.addTasks(jobId: j.id, jobAttempt: 1, runDirectory: "/shared/run", stage: "ortho", tiles: [3])
        let given = try #require(try await store.claimTasks(worker: "c", limit: 1, leaseUntil: lease, preferJob: nil).first)
        try await store.releaseTasks([given], worker: "c")
        for _ in 0..<2 {
            let t = try #require(try await store.claimTasks(worker: "c", limit: 1, leaseUntil: lease, preferJob: nil).first)
            #expect(try await store.failTask(t, worker: "c", error: "disk full", cpuSeconds: 0.25, maxAttempts: 2))
        }
        tally = try await store.taskTally(jobId: j.id, jobAttempt: 1, stage: "ortho")
        #expect(tally.failed == 1 && tally.failure == "disk full" && tally.queued == 0, "\(tally)")
        // Fair order: bob's one job before alice's second while alice has a tile running.
        let (b, _) = try await store.createUser(name: "tib", role: .researcher, quota: Self.quota)
        let k = job(u.id, at: 2), m = job(b.id, at: 3)
        for x in [k, m] { try await store.createJob(x, inputBytes: [], quota: Self.quota, now: Date()) }
        for _ in 0..<2 { _ = try await store.claimJob(worker: "coord", leaseUntil: lease, now: Date()) }
        try await store.addTasks(jobId: k.id, jobAttempt: 1, runDirectory: "/k", stage: "match", tiles: [0, 1])
        try await store.addTasks(jobId: m.id, jobAttempt: 1, runDirectory: "/m", stage: "match", tiles: [0])
        #expect(try await store.claimTasks(worker: "x", limit: 1, leaseUntil: lease, preferJob: nil).first?.jobId == k.id)
        #expect(try await store.claimTasks(worker: "x", limit: 1, leaseUntil: lease, preferJob: nil).first?.jobId == m.id)
        #expect(try await store.claimTasks(worker: "x", limit: 5, leaseUntil: lease, preferJob: k.id).map(\.tile) == [1])
        // Cancelled: the job's running tiles lose their lease at the next beat, its queued ones are not handed out.
        try await store.addTasks(jobId: j.id, jobAttempt: 1, runDirectory: "/shared/run", stage: "ortho", tiles: [4, 5])
        let running = try await store.claimTasks(worker: "y", limit: 2, leaseUntil: lease, preferJob: j.id)
        #expect(running.map(\.tile) == [4, 5])
        _ = try await store.cancel(jobId: j.id, now: Date())
        #expect(!(try await store.heartbeatTasks(running, worker: "y", leaseUntil: lease)))
        #expect(try await store.claimTasks(worker: "y", limit: 5, leaseUntil: lease, preferJob: j.id).isEmpty)
        // CPU of every tile attempt charged to the job, the fenced-off one's too: 10 × 0.5 + 1 + 1 + 2 × 0.25.
        #expect(try await store.job(id: j.id)?.cpuSeconds == 7.5)
        // A new attempt of a job replaces the tasks of the earlier one; deleting the job deletes its tasks.
        try await store.addTasks(jobId: k.id, jobAttempt: 2, runDirectory: "/k2", stage: "match", tiles: [7])
        #expect(try await store.tasks(jobId: k.id).map(\.tile) == [7])
        try await store.delete(jobId: k.id)
        #expect(try await store.tasks(jobId: k.id).isEmpty)
    }

    /// OGC API – Processes' job list filters: the stores' SQL selects what `JobQuery.matches` says, and what
    /// each filter means, on jobs of two processes, two users and every state.
    @Test(arguments: StoreKind.allCases) func jobListFilters(kind: StoreKind) async throws {
        let (store, _tmp) = try await kind.make(); _ = _tmp
        let (u, _) = try await store.createUser(name: "ann", role: .researcher, quota: Self.quota)
        let (v, _) = try await store.createUser(name: "bob", role: .researcher, quota: Self.quota)
        var requests: [String: String] = [:]
        for i in 0..<6 {
            var j = job(i < 5 ? u.id : v.id, at: 1000 + Double(i))
            j.request = i % 2 == 1 ? #"{"process":"dsm-difference","dsms":[]}"# : #"{"images":[]}"#
            requests[j.id] = j.request
            try await store.createJob(j, inputBytes: [], quota: Self.quota, now: Date())
        }
        // Three claimed (the oldest first): one finished after 10 s, one failed after 300 s, one still running.
        var claimed: [Job] = []
        for (now, end) in [(2000.0, 2010.0), (2100, 2400), (2500, nil)] as [(Double, Double?)] {
            let c = try #require(try await store.claimJob(worker: "w", leaseUntil: Date(timeIntervalSince1970: now + 1e6), now: Date(timeIntervalSince1970: now)))
            claimed.append(c)
            if let end {
                #expect(try await store.finish(jobId: c.id, attempt: c.attempts, worker: "w", status: end < 2100 ? .successful : .failed, error: nil,
                                               cpuSeconds: 1, resultBytes: 0, finishedAt: Date(timeIntervalSince1970: end), purgeAt: nil))
            }
        }
        let everyJob = try await store.jobs(JobQuery(), limit: 100, offset: 0)
        let dismissed = try #require(everyJob.first { $0.status == .accepted && $0.userId == u.id })
        _ = try await store.cancel(jobId: dismissed.id, now: Date())
        let all = try await store.jobs(JobQuery(), limit: 100, offset: 0)
        #expect(all.count == 6 && Set(all.map(\.status)) == [.successful, .failed, .running, .accepted, .dismissed], "\(all.map(\.status))")
        func process(_ j: Job) -> String? { requests[j.id]!.contains("dsm-difference") ? "dsm-difference" : nil }
        func query(_ edit: (inout JobQuery) -> Void) -> JobQuery { var q = JobQuery(); q.now = Date(timeIntervalSince1970: 2600); edit(&q); return q }
        let queries: [(JobQuery, Set<String>)] = [
            (query { $0.statuses = [.successful, .failed] }, [claimed[0].id, claimed[1].id]),
            (query { $0.processIDs = ["dsm-difference"] }, Set(all.filter { process($0) != nil }.map(\.id))),
            (query { $0.processIDs = ["dsm-opt"]; $0.userId = u.id }, Set(all.filter { process($0) == nil && $0.userId == u.id }.map(\.id))),
            // Durations: 10 s, 300 s, and 100 s so far for the running one (at 2600); jobs not started are left out.
            (query { $0.minDuration = 100 }, [claimed[1].id, claimed[2].id]),
            (query { $0.maxDuration = 50 }, [claimed[0].id]),
            (query { $0.minDuration = 50; $0.maxDuration = 200 }, [claimed[2].id]),
            (query { $0.createdFrom = Date(timeIntervalSince1970: 1001); $0.createdTo = Date(timeIntervalSince1970: 1003) },
             Set(all.filter { (1001...1003).contains($0.createdAt.timeIntervalSince1970) }.map(\.id))),
            (query { $0.userId = v.id; $0.statuses = [.accepted, .running] }, Set(all.filter { $0.userId == v.id && [.accepted, .running].contains($0.status) }.map(\.id))),
        ]
        for (q, expected) in queries {
            let got = try await store.jobs(q, limit: 100, offset: 0)
            #expect(Set(got.map(\.id)) == expected && got.count == expected.count, "\(q)")
            #expect(Set(all.filter { q.matches($0, process: process($0)) }.map(\.id)) == expected, "matches: \(q)")
            #expect(try await store.countJobs(q) == expected.count, "count: \(q)")
        }
        #expect(try await store.jobs(query { $0.processIDs = ["dsm-difference"] }, limit: 100, offset: 0).count == 3)
        #expect(try await store.jobs(query { $0.createdFrom = Date(timeIntervalSince1970: 1001); $0.createdTo = Date(timeIntervalSince1970: 1003) }, limit: 100, offset: 0).count == 3)
    }
}
