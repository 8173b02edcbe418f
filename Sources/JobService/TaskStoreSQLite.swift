import Foundation
import GRDB

/// Tile tasks in SQLite (one machine: several worker processes may share the file).
extension SQLiteJobStore {
    static func task(_ r: Row) -> TileTask {
        TileTask(jobId: r["job_id"], jobAttempt: r["job_attempt"], stage: r["stage"], tile: r["tile"],
                 state: TileTask.State(rawValue: r["state"]) ?? .failed, attempts: r["attempts"], worker: r["worker"],
                 runDirectory: r["run_dir"], completions: r["completions"], doneBy: r["done_by"], cpuSeconds: r["cpu_seconds"], error: r["error"])
    }

    /// The fence of every update a worker makes to a task it claimed.
    static let fence = "job_id = ? AND stage = ? AND tile = ? AND job_attempt = ? AND worker = ? AND attempts = ? AND state = 'running'"
    static func fenceArguments(_ t: TileTask, _ worker: String) -> StatementArguments {
        [t.jobId, t.stage, t.tile, t.jobAttempt, worker, t.attempts]
    }

    public func addTasks(jobId: String, jobAttempt: Int, runDirectory: String, stage: String, tiles: [Int]) async throws {
        try await db.write { db in
            try db.execute(sql: "DELETE FROM tasks WHERE job_id = ? AND job_attempt <> ?", arguments: [jobId, jobAttempt])
            for t in tiles {
                try db.execute(sql: """
                    INSERT INTO tasks (job_id, job_attempt, stage, tile, state, run_dir) VALUES (?, ?, ?, ?, 'queued', ?)
                    ON CONFLICT (job_id, stage, tile) DO NOTHING
                    """, arguments: [jobId, jobAttempt, stage, t, runDirectory])
            }
        }
    }

    public func claimTasks(worker: String, limit: Int, leaseUntil: Date, preferJob: String?) async throws -> [TileTask] {
        try await db.write { db in
            guard let pick = try Row.fetchOne(db, sql: """
                WITH running AS (SELECT j.user_id, COUNT(*) AS n FROM tasks t JOIN jobs j ON j.id = t.job_id
                                 WHERE t.state = 'running' GROUP BY j.user_id)
                SELECT j.id AS job_id,
                       (SELECT t.stage FROM tasks t WHERE t.job_id = j.id AND t.state = 'queued' AND t.job_attempt = j.attempts LIMIT 1) AS stage
                FROM jobs j LEFT JOIN running r ON r.user_id = j.user_id
                WHERE j.status = 'running' AND j.cancel_requested = 0
                  AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.state = 'queued' AND t.job_attempt = j.attempts)
                ORDER BY CASE WHEN j.id = ? THEN 0 ELSE 1 END, COALESCE(r.n, 0), j.created_at, j.id
                LIMIT 1
                """, arguments: [preferJob ?? ""]) else { return [] }
            let job: String = pick["job_id"], stage: String = pick["stage"]
            let tiles = try Int.fetchAll(db, sql: "SELECT tile FROM tasks WHERE job_id = ? AND stage = ? AND state = 'queued' ORDER BY tile LIMIT ?",
                                         arguments: [job, stage, max(1, limit)])
            var out: [TileTask] = []
            for tile in tiles {
                try db.execute(sql: """
                    UPDATE tasks SET state = 'running', worker = ?, lease_until = ?, attempts = attempts + 1, error = NULL
                    WHERE job_id = ? AND stage = ? AND tile = ? AND state = 'queued'
                    """, arguments: [worker, leaseUntil.timeIntervalSince1970, job, stage, tile])
                if let r = try Row.fetchOne(db, sql: "SELECT * FROM tasks WHERE job_id = ? AND stage = ? AND tile = ?", arguments: [job, stage, tile]) {
                    out.append(Self.task(r))
                }
            }
            return out
        }
    }

    public func heartbeatTasks(_ tasks: [TileTask], worker: String, leaseUntil: Date) async throws -> Bool {
        try await db.write { db in
            var all = true
            for t in tasks {
                try db.execute(sql: """
                    UPDATE tasks SET lease_until = ? WHERE \(Self.fence)
                    AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = tasks.job_id AND j.status = 'running' AND j.cancel_requested = 0 AND j.attempts = tasks.job_attempt)
                    """, arguments: [leaseUntil.timeIntervalSince1970] + Self.fenceArguments(t, worker))
                if db.changesCount != 1 { all = false }
            }
            return all
        }
    }

    public func completeTasks(_ tasks: [TileTask], worker: String, cpuSeconds: Double) async throws -> [Int] {
        guard let first = tasks.first else { return [] }
        let share = cpuSeconds / Double(tasks.count)
        return try await db.write { db in
            try db.execute(sql: "UPDATE jobs SET cpu_seconds = cpu_seconds + ? WHERE id = ?", arguments: [cpuSeconds, first.jobId])
            var recorded: [Int] = []
            for t in tasks {
                try db.execute(sql: """
                    UPDATE tasks SET state = 'done', completions = completions + 1, done_by = worker, worker = NULL, lease_until = NULL,
                        cpu_seconds = cpu_seconds + ? WHERE \(Self.fence)
                    """, arguments: [share] + Self.fenceArguments(t, worker))
                if db.changesCount == 1 { recorded.append(t.tile) }
            }
            return recorded
        }
    }

    public func failTask(_ task: TileTask, worker: String, error: String, cpuSeconds: Double, maxAttempts: Int) async throws -> Bool {
        try await db.write { db in
            try db.execute(sql: "UPDATE jobs SET cpu_seconds = cpu_seconds + ? WHERE id = ?", arguments: [cpuSeconds, task.jobId])
            try db.execute(sql: """
                UPDATE tasks SET state = CASE WHEN attempts >= ? THEN 'failed' ELSE 'queued' END, error = ?, worker = NULL, lease_until = NULL,
                    cpu_seconds = cpu_seconds + ? WHERE \(Self.fence)
                """, arguments: [maxAttempts, error, cpuSeconds] + Self.fenceArguments(task, worker))
            return db.changesCount == 1
        }
    }

    public func releaseTasks(_ tasks: [TileTask], worker: String) async throws {
        try await db.write { db in
            for t in tasks {
                try db.execute(sql: "UPDATE tasks SET state = 'queued', worker = NULL, lease_until = NULL, attempts = attempts - 1 WHERE \(Self.fence)",
                               arguments: Self.fenceArguments(t, worker))
            }
        }
    }

    public func taskTally(jobId: String, jobAttempt: Int, stage: String) async throws -> TaskTally {
        try await db.read { db in
            var tally = TaskTally()
            for r in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM tasks WHERE job_id = ? AND job_attempt = ? AND stage = ? GROUP BY state",
                                      arguments: [jobId, jobAttempt, stage]) {
                let n: Int = r["n"]
                switch TileTask.State(rawValue: r["state"]) {
                case .queued: tally.queued = n
                case .running: tally.running = n
                case .done: tally.done = n
                case .failed: tally.failed = n
                case nil: break
                }
            }
            tally.failure = try String.fetchOne(db, sql: "SELECT error FROM tasks WHERE job_id = ? AND job_attempt = ? AND stage = ? AND state = 'failed' ORDER BY tile LIMIT 1",
                                                arguments: [jobId, jobAttempt, stage])
            return tally
        }
    }

    public func tasks(jobId: String) async throws -> [TileTask] {
        try await db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM tasks WHERE job_id = ? ORDER BY stage, tile", arguments: [jobId]).map(Self.task)
        }
    }

    public func requeueExpiredTasks(now: Date, maxAttempts: Int) async throws -> Int {
        try await db.write { db in
            let expired = try Row.fetchAll(db, sql: "SELECT job_id, stage, tile, attempts FROM tasks WHERE state = 'running' AND lease_until < ?",
                                           arguments: [now.timeIntervalSince1970])
            for r in expired {
                let attempts: Int = r["attempts"]
                try db.execute(sql: """
                    UPDATE tasks SET state = CASE WHEN attempts >= ? THEN 'failed' ELSE 'queued' END,
                        error = CASE WHEN attempts >= ? THEN ? ELSE error END, worker = NULL, lease_until = NULL
                    WHERE job_id = ? AND stage = ? AND tile = ? AND state = 'running'
                    """, arguments: [maxAttempts, maxAttempts, TileTask.expired(attempts: attempts), r["job_id"] as String, r["stage"] as String, r["tile"] as Int])
            }
            return expired.count
        }
    }
}
