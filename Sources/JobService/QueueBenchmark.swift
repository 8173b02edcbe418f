import Foundation

/// Queue throughput: `jobs` jobs claimed, heart-beaten once and finished by `claimers` concurrent workers
/// (`dsmopt bench-queue`, Benchmarks/README.md). Only on an empty store: it writes a user and jobs.
public enum QueueBenchmark {
    public struct Result: Sendable, Encodable {
        public var claimers: Int
        public var tasks: Int
        public var seconds: Double
        public var tasksPerSecond: Double
        public var duplicates: Int
    }

    public static func run(store: any JobStore, claimers: Int, jobs: Int) async throws -> Result {
        guard try await store.countJobs(userId: nil) == 0, try await store.users().isEmpty else {
            throw ConfigurationError.invalid("bench-queue writes test jobs: give it an empty store (a scratch database or data folder)")
        }
        var q = Quota(); q.maxConcurrentJobs = jobs + 1; q.cpuSecondsPerMonth = 1e15; q.storageBytes = 1 << 60
        let quota = q
        let (u, _) = try await store.createUser(name: "bench-queue", role: .researcher, quota: quota)
        for i in 0..<jobs {
            try await store.createJob(Job(id: UUID().uuidString.lowercased(), userId: u.id, name: "bench", request: "{}",
                                          createdAt: Date(timeIntervalSince1970: Double(i))), inputBytes: [], quota: quota, now: Date())
        }
        let start = Date()
        let done = await withTaskGroup(of: [String].self) { group in
            for w in 0..<claimers {
                group.addTask {
                    var mine: [String] = []
                    while let j = try? await store.claimJob(worker: "bench-\(w)", leaseUntil: Date().addingTimeInterval(60), now: Date()) {
                        _ = try? await store.heartbeat(jobId: j.id, attempt: j.attempts, worker: "bench-\(w)", progress: 50, stage: "bench", message: nil,
                                                       leaseUntil: Date().addingTimeInterval(60))
                        if (try? await store.finish(jobId: j.id, attempt: j.attempts, worker: "bench-\(w)", status: .successful, error: nil,
                                                    cpuSeconds: 0, resultBytes: 0, finishedAt: Date(), purgeAt: nil)) == true { mine.append(j.id) }
                    }
                    return mine
                }
            }
            return await group.reduce(into: [String]()) { $0 += $1 }
        }
        let seconds = Date().timeIntervalSince(start)
        return Result(claimers: claimers, tasks: done.count, seconds: seconds, tasksPerSecond: Double(done.count) / seconds,
                      duplicates: done.count - Set(done).count)
    }

    /// Tile tasks: `tiles` tiles of one stage of `jobs` running jobs, claimed `batch` at a time by `claimers`
    /// concurrent workers, each claim heart-beaten once, each tile completed (fenced). Returns tiles/s.
    public static func runTiles(store: any JobStore, claimers: Int, jobs: Int, tiles: Int, batch: Int) async throws -> Result {
        guard try await store.countJobs(userId: nil) == 0, try await store.users().isEmpty else {
            throw ConfigurationError.invalid("bench-queue writes test jobs: give it an empty store (a scratch database or data folder)")
        }
        var q = Quota(); q.maxConcurrentJobs = jobs + 1; q.cpuSecondsPerMonth = 1e15; q.storageBytes = 1 << 60
        let quota = q
        let (u, _) = try await store.createUser(name: "bench-queue", role: .researcher, quota: quota)
        for i in 0..<jobs {
            let id = UUID().uuidString.lowercased()
            try await store.createJob(Job(id: id, userId: u.id, name: "bench", request: "{}", createdAt: Date(timeIntervalSince1970: Double(i))),
                                      inputBytes: [], quota: quota, now: Date())
        }
        for i in 0..<jobs {
            guard let j = try await store.claimJob(worker: "coordinator-\(i)", leaseUntil: Date().addingTimeInterval(3600), now: Date()) else { break }
            try await store.addTasks(jobId: j.id, jobAttempt: j.attempts, runDirectory: "/bench", stage: "match", tiles: Array(0..<tiles))
        }
        let start = Date()
        let done = await withTaskGroup(of: [String].self) { group in
            for w in 0..<claimers {
                group.addTask {
                    var mine: [String] = []
                    while let claim = try? await store.claimTasks(worker: "bench-\(w)", limit: batch, leaseUntil: Date().addingTimeInterval(60), preferJob: nil),
                          !claim.isEmpty {
                        _ = try? await store.heartbeatTasks(claim, worker: "bench-\(w)", leaseUntil: Date().addingTimeInterval(60))
                        for tile in (try? await store.completeTasks(claim, worker: "bench-\(w)", cpuSeconds: 0)) ?? [] {
                            mine.append("\(claim[0].jobId)/\(tile)")
                        }
                    }
                    return mine
                }
            }
            return await group.reduce(into: [String]()) { $0 += $1 }
        }
        let seconds = Date().timeIntervalSince(start)
        return Result(claimers: claimers, tasks: done.count, seconds: seconds, tasksPerSecond: Double(done.count) / seconds,
                      duplicates: done.count - Set(done).count)
    }
}
