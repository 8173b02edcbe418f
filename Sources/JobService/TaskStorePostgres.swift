import Foundation
import PostgresNIO

/// Tile tasks on PostgreSQL: workers on any machine claim tiles with `FOR UPDATE SKIP LOCKED`; every
/// update a worker makes is fenced by the task's attempt number (and the job's coordinating attempt).
extension PostgresJobStore {
    static func task(_ r: PostgresRandomAccessRow) throws -> TileTask {
        TileTask(jobId: try r["job_id"].decode(String.self), jobAttempt: Int(try r["job_attempt"].decode(Int32.self)),
                 stage: try r["stage"].decode(String.self), tile: Int(try r["tile"].decode(Int32.self)),
                 state: TileTask.State(rawValue: try r["state"].decode(String.self)) ?? .failed,
                 attempts: Int(try r["attempts"].decode(Int32.self)), worker: try r["worker"].decode(String?.self),
                 runDirectory: try r["run_dir"].decode(String.self), completions: Int(try r["completions"].decode(Int32.self)),
                 doneBy: try r["done_by"].decode(String?.self), cpuSeconds: try r["cpu_seconds"].decode(Double.self),
                 error: try r["error"].decode(String?.self))
    }

    public func addTasks(jobId: String, jobAttempt: Int, runDirectory: String, stage: String, tiles: [Int]) async throws {
        let a = Int32(jobAttempt), list = tiles.map { Int32($0) }
        try await transaction { c in
            try await c.query("DELETE FROM tasks WHERE job_id = \(jobId) AND job_attempt <> \(a)", logger: logger)
            try await c.query("""
                INSERT INTO tasks (job_id, job_attempt, stage, tile, state, run_dir)
                SELECT \(jobId), \(a), \(stage), t, 'queued', \(runDirectory) FROM unnest(\(list)::integer[]) AS t
                ON CONFLICT (job_id, stage, tile) DO NOTHING
                """, logger: logger)
        }
    }

    public func claimTasks(worker: String, limit: Int, leaseUntil: Date, preferJob: String?) async throws -> [TileTask] {
        // One stage of one job per claim (one child process runs it): the job is chosen without locks among
        // the running jobs with queued tiles (preferred job, then the user with the fewest running tasks, then
        // the oldest job; the cost grows with running jobs, not with queued tiles), its queued tiles
        // are locked with SKIP LOCKED, so concurrent claimers take different tiles and never wait.
        try await rows("""
            WITH running AS (SELECT j.user_id, COUNT(*) AS n FROM tasks t JOIN jobs j ON j.id = t.job_id
                             WHERE t.state = 'running' GROUP BY j.user_id),
            choice AS (SELECT j.id AS job_id,
                              (SELECT t.stage FROM tasks t WHERE t.job_id = j.id AND t.state = 'queued' AND t.job_attempt = j.attempts LIMIT 1) AS stage
                       FROM jobs j LEFT JOIN running r ON r.user_id = j.user_id
                       WHERE j.status = 'running' AND NOT j.cancel_requested
                         AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.state = 'queued' AND t.job_attempt = j.attempts)
                       ORDER BY CASE WHEN j.id = \(preferJob ?? "") THEN 0 ELSE 1 END, COALESCE(r.n, 0), j.created_at, j.id
                       LIMIT 1),
            pick AS (SELECT t.job_id, t.stage, t.tile FROM tasks t JOIN choice ON choice.job_id = t.job_id AND choice.stage = t.stage
                     WHERE t.state = 'queued' ORDER BY t.tile
                     LIMIT \(Int32(max(1, limit)))
                     FOR UPDATE OF t SKIP LOCKED)
            UPDATE tasks SET state = 'running', worker = \(worker), lease_until = \(leaseUntil.timeIntervalSince1970),
                attempts = tasks.attempts + 1, error = NULL
            FROM pick WHERE tasks.job_id = pick.job_id AND tasks.stage = pick.stage AND tasks.tile = pick.tile AND tasks.state = 'queued'
            RETURNING tasks.*
            """).map(Self.task).sorted { $0.tile < $1.tile }
    }

    public func heartbeatTasks(_ tasks: [TileTask], worker: String, leaseUntil: Date) async throws -> Bool {
        guard let first = tasks.first else { return true }
        let tiles = tasks.map { Int32($0.tile) }, attempts = tasks.map { Int32($0.attempts) }
        let n = try await rows("""
            UPDATE tasks SET lease_until = \(leaseUntil.timeIntervalSince1970)
            FROM unnest(\(tiles)::integer[], \(attempts)::integer[]) AS f(tile, attempts)
            WHERE tasks.job_id = \(first.jobId) AND tasks.stage = \(first.stage) AND tasks.tile = f.tile AND tasks.attempts = f.attempts
              AND tasks.job_attempt = \(Int32(first.jobAttempt)) AND tasks.worker = \(worker) AND tasks.state = 'running'
              AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = tasks.job_id AND j.status = 'running' AND NOT j.cancel_requested AND j.attempts = tasks.job_attempt)
            RETURNING tasks.tile
            """).count
        return n == tasks.count
    }

    public func completeTasks(_ tasks: [TileTask], worker: String, cpuSeconds: Double) async throws -> [Int] {
        guard let first = tasks.first else { return [] }
        let tiles = tasks.map { Int32($0.tile) }, attempts = tasks.map { Int32($0.attempts) }
        let share = cpuSeconds / Double(tasks.count)
        return try await transaction { c in
            try await c.query("UPDATE jobs SET cpu_seconds = cpu_seconds + \(cpuSeconds) WHERE id = \(first.jobId)", logger: logger)
            return try await rows("""
                UPDATE tasks SET state = 'done', completions = tasks.completions + 1, done_by = tasks.worker, worker = NULL, lease_until = NULL,
                    cpu_seconds = tasks.cpu_seconds + \(share)
                FROM unnest(\(tiles)::integer[], \(attempts)::integer[]) AS f(tile, attempts)
                WHERE tasks.job_id = \(first.jobId) AND tasks.stage = \(first.stage) AND tasks.tile = f.tile AND tasks.attempts = f.attempts
                  AND tasks.job_attempt = \(Int32(first.jobAttempt)) AND tasks.worker = \(worker) AND tasks.state = 'running'
                RETURNING tasks.tile
                """, on: c).map { Int(try $0["tile"].decode(Int32.self)) }.sorted()
        }
    }

    public func failTask(_ task: TileTask, worker: String, error: String, cpuSeconds: Double, maxAttempts: Int) async throws -> Bool {
        try await transaction { c in
            try await c.query("UPDATE jobs SET cpu_seconds = cpu_seconds + \(cpuSeconds) WHERE id = \(task.jobId)", logger: logger)
            return !(try await rows("""
                UPDATE tasks SET state = CASE WHEN attempts >= \(Int32(maxAttempts)) THEN 'failed' ELSE 'queued' END, error = \(error),
                    worker = NULL, lease_until = NULL, cpu_seconds = cpu_seconds + \(cpuSeconds)
                WHERE job_id = \(task.jobId) AND stage = \(task.stage) AND tile = \(Int32(task.tile)) AND job_attempt = \(Int32(task.jobAttempt))
                  AND worker = \(worker) AND attempts = \(Int32(task.attempts)) AND state = 'running' RETURNING tile
                """, on: c).isEmpty)
        }
    }

    public func releaseTasks(_ tasks: [TileTask], worker: String) async throws {
        for t in tasks {
            try await client.query("""
                UPDATE tasks SET state = 'queued', worker = NULL, lease_until = NULL, attempts = attempts - 1
                WHERE job_id = \(t.jobId) AND stage = \(t.stage) AND tile = \(Int32(t.tile)) AND job_attempt = \(Int32(t.jobAttempt))
                  AND worker = \(worker) AND attempts = \(Int32(t.attempts)) AND state = 'running'
                """, logger: logger)
        }
    }

    public func taskTally(jobId: String, jobAttempt: Int, stage: String) async throws -> TaskTally {
        var tally = TaskTally()
        for r in try await rows("""
            SELECT state, COUNT(*)::integer AS n, MIN(CASE WHEN state = 'failed' THEN error END) AS failure FROM tasks
            WHERE job_id = \(jobId) AND job_attempt = \(Int32(jobAttempt)) AND stage = \(stage) GROUP BY state
            """) {
            let n = Int(try r["n"].decode(Int32.self))
            switch TileTask.State(rawValue: try r["state"].decode(String.self)) {
            case .queued: tally.queued = n
            case .running: tally.running = n
            case .done: tally.done = n
            case .failed: tally.failed = n; tally.failure = try r["failure"].decode(String?.self)
            case nil: break
            }
        }
        return tally
    }

    public func tasks(jobId: String) async throws -> [TileTask] {
        try await rows("SELECT * FROM tasks WHERE job_id = \(jobId) ORDER BY stage, tile").map(Self.task)
    }

    public func requeueExpiredTasks(now: Date, maxAttempts: Int) async throws -> Int {
        let t = now.timeIntervalSince1970, m = Int32(maxAttempts)
        return try await rows("""
            UPDATE tasks SET state = CASE WHEN attempts >= \(m) THEN 'failed' ELSE 'queued' END,
                error = CASE WHEN attempts >= \(m) THEN 'the tile was started ' || attempts || ' times and its worker stopped responding each time' ELSE error END,
                worker = NULL, lease_until = NULL
            WHERE state = 'running' AND lease_until < \(t) RETURNING tile
            """).count
    }
}
