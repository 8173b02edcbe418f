import DSMPipeline
import Foundation

/// One job over many workers: the worker that claims a DSM job coordinates it — it plans the run (the
/// whole-scene first pass), queues each stage's tiles as tile tasks in the store, works on tiles like any
/// other worker while the stage is in flight, runs the whole-scene steps between stages (the triplet's
/// vertical offsets) and, when every tile is done, assembles the products. Every other worker claims tile
/// tasks (of running jobs, before starting new jobs). All of it on the shared data folder: the run folder
/// of the coordinating attempt holds the plan and the finished tiles, each written once, complete.
extension WorkerPool {
    /// The end of one step's child process.
    struct StepOutcome {
        var status: Int32
        var finished: ChildEvent?
        var failure: ChildEvent?
        /// CPU seconds the child reported (itself and the tools it ran), else the last reading from /proc.
        var cpuSeconds: Double
        /// Stopped by the watcher (lease lost, cancelled, budget spent, shutdown).
        var stopped: Bool
        var succeeded: Bool { status == 0 && finished != nil && !stopped }
    }

    /// Runs `dsmopt ARGS` to its end; `watch` is called every heartbeat interval and stops the child when
    /// it returns false.
    func runStep(_ args: [String], key: String, log: String, events: String,
                 watch: @escaping @Sendable (_ cpuSoFar: Double) async -> Bool) async -> StepOutcome {
        var env = ProcessInfo.processInfo.environment
        env["DSMOPT_PRESETS"] = config.presetsDirectory
        env["DSMOPT_PARENT_PID"] = "\(ProcessInfo.processInfo.processIdentifier)"
        let child: ChildRun
        do {
            try FileManager.default.createDirectory(atPath: (log as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            child = try ChildRun(executable: config.executable ?? currentExecutable(), arguments: args + ["--events", events],
                                 environment: env, log: log, events: events)
        } catch {
            return StepOutcome(status: -1, failure: nil, cpuSeconds: 0, stopped: false)
        }
        lock.withLock { children[key] = child }
        defer { _ = lock.withLock { children.removeValue(forKey: key) } }
        let metered = CPUMeter(), stopped = Flag()
        let watcher = Task {
            while !Task.isCancelled {
                await sleep(min(2, config.leaseSeconds / 3))
                if Task.isCancelled { return }
                if let used = child.cpuSeconds() { metered.record(used) }
                if !(await watch(metered.seconds)) { stopped.set(); child.stop(); return }
            }
        }
        var outcome = StepOutcome(status: 0, cpuSeconds: 0, stopped: false)
        func drain() {
            for e in child.newEvents() {
                if e.event == "finished" { outcome.finished = e }
                if e.event == "failed" { outcome.failure = e }
            }
        }
        let ending = await child.runToEnd(stallSeconds: config.stallSeconds) { drain(); return outcome.finished != nil || outcome.failure != nil }
        drain()
        watcher.cancel()
        let stuck = ending == .stuckAfterItsEnd
        if let line = ending.logLine(stallSeconds: config.stallSeconds) { try? appendLog(path: log, line) }
        if ending == .stalled { outcome.failure = ChildEvent(event: "failed", message: ChildRun.stalledMessage(config.stallSeconds), code: "stalled") }
        // A step stuck after it reported its end had written its outputs before it said so.
        outcome.status = stuck && outcome.finished != nil ? 0 : child.terminationStatus ?? -1
        outcome.stopped = stopped.isSet || isStopping
        outcome.cpuSeconds = max(outcome.finished?.cpuSeconds ?? outcome.failure?.cpuSeconds ?? 0, metered.seconds, child.cpuSeconds() ?? 0)
        return outcome
    }

    /// Runs claimed tiles (one stage of one job) in one child process, heart-beating their leases; records
    /// each tile done, failed (queued again until its attempts are spent) or given back at shutdown.
    /// `abort` lets a coordinator stop the child when its own job is gone.
    func runTasks(_ tasks: [TileTask], worker: String, abort: (@Sendable () -> Bool)? = nil) async {
        guard let first = tasks.first else { return }
        let share = { (cpu: Double) in cpu / Double(tasks.count) }
        func failAll(_ why: String, cpu: Double) async {
            for t in tasks {
                _ = try? await store.failTask(t, worker: worker, error: why, cpuSeconds: share(cpu), maxAttempts: config.maxAttempts)
            }
        }
        guard let job = try? await store.job(id: first.jobId) else { return }
        if let why = refusal(job) { await failAll(why, cpu: 0); return }
        // The run folder is on the shared data folder; a worker that does not see it fails the tiles with
        // the path rather than computing them somewhere nobody reads.
        let plan = (first.runDirectory as NSString).appendingPathComponent(WorkFolder.name + "/plan.json")
        guard FileManager.default.fileExists(atPath: plan) else {
            let rel = first.runDirectory.replacingOccurrences(of: URL(fileURLWithPath: config.dataDirectory).standardizedFileURL.path + "/", with: "")
            FileHandle.standardError.write(Data("dsmopt worker: job \(job.id): the run's plan \(plan) is not visible in this worker's data folder \(config.dataDirectory)\n".utf8))
            await failAll("worker \(ProcessInfo.processInfo.hostName) cannot see the job's run folder \(rel) in its data folder: every machine must mount the shared data folder at the same path and give it as --data", cpu: 0)
            return
        }
        // Each task is a block of neighbouring tiles, as the plan cuts the stage (`TilePlan.taskGroups`).
        guard let stage = TileStage(rawValue: first.stage),
              let runPlan = (try? WorkFolder(output: first.runDirectory).readJSON(RunPlan.self, from: plan)) ?? nil else {
            await failAll("the run's plan \(plan) cannot be read, or names no stage \(first.stage)", cpu: 0)
            return
        }
        let groups = runPlan.tiles.taskGroups(stage)
        guard tasks.allSatisfy({ groups.indices.contains($0.tile) }) else {
            await failAll("task \(tasks.map(\.tile)) of stage \(first.stage) is not among the plan's \(groups.count) tasks", cpu: 0)
            return
        }
        let tileList = tasks.flatMap { groups[$0.tile] }
        let tiles = tileList.map(String.init).joined(separator: ",")
        let name = "\(first.stage)-\(tasks.map { String($0.tile) }.joined(separator: "_"))-attempt\(first.attempts)-\(worker)"
        let dir = config.taskLogDirectory(first.jobId, first.jobAttempt)
        let lease = config.leaseSeconds
        let began = Date()
        let outcome = await runStep(["run", "--resume", first.runDirectory, "--step", first.stage, "--tiles", tiles],
                                    key: "task-\(name)", log: (dir as NSString).appendingPathComponent(name + ".log"),
                                    events: (dir as NSString).appendingPathComponent(name + ".events.jsonl")) { _ in
            if abort?() == true { return false }
            return (try? await self.store.heartbeatTasks(tasks, worker: worker, leaseUntil: Date().addingTimeInterval(lease))) ?? true
        }
        metrics.observeStage(first.stage, seconds: Date().timeIntervalSince(began))
        if outcome.succeeded {
            let recorded = (try? await store.completeTasks(tasks, worker: worker, cpuSeconds: outcome.cpuSeconds)) ?? []
            metrics.observeTiles(first.stage, count: tasks.filter { recorded.contains($0.tile) }.reduce(0) { $0 + groups[$1.tile].count },
                                 cpuSeconds: outcome.cpuSeconds)
        } else if isStopping && outcome.finished == nil {
            try? await store.releaseTasks(tasks, worker: worker)
        } else if outcome.stopped {
            // Lease lost or job cancelled: the tiles are someone else's now (or nobody's); only the CPU is charged.
            for t in tasks { _ = try? await store.failTask(t, worker: worker, error: "stopped", cpuSeconds: share(outcome.cpuSeconds), maxAttempts: config.maxAttempts) }
        } else {
            let why = outcome.failure.map { userFacing($0.message ?? "", job: job) } ?? "the pipeline stopped with status \(outcome.status)"
            await failAll("\(first.stage) of tile\(tileList.count > 1 ? "s" : "") \(tiles): \(why)", cpu: outcome.cpuSeconds)
        }
    }

    /// Coordinates one attempt of a DSM job whose tiles are spread over the store's workers.
    func coordinate(_ job: Job, worker: String, request: ExecutionRequest?, budget: Double) async {
        let attempt = job.attempts
        let attemptDir = config.attemptDirectory(job.id, attempt), runDir = config.runDirectory(job.id, attempt)
        // Each step's own log, appended to the attempt's log (the job's log its owner reads) when it ends.
        let stepLog = { (name: String) in (attemptDir as NSString).appendingPathComponent("log-\(name).txt") }
        let lost = Flag(), cancelled = Flag(), exhausted = Flag()
        let ownCPU = CPUMeter()
        // The job's lease, cancellation and CPU budget, watched for the whole attempt (tiles charge their
        // CPU to the job as they finish; the coordinator's own steps are added while they run).
        let store = self.store, lease = config.leaseSeconds
        let beat = Task {
            while !Task.isCancelled {
                let owned = (try? await store.heartbeat(jobId: job.id, attempt: attempt, worker: worker, progress: nil, stage: nil, message: nil,
                                                        leaseUntil: Date().addingTimeInterval(lease))) ?? true
                if !owned { lost.set() }
                if let j = try? await store.job(id: job.id) {
                    if j.cancelRequested { cancelled.set() }
                    if j.cpuSeconds - job.cpuSeconds + ownCPU.seconds > budget { exhausted.set() }
                }
                if lost.isSet || cancelled.isSet || exhausted.isSet { return }
                await sleep(min(2, lease / 3))
            }
        }
        defer { beat.cancel() }
        let halted: @Sendable () -> Bool = { lost.isSet || cancelled.isSet || exhausted.isSet }
        var stepCPU = 0.0
        /// One whole-run step in this process's child; nil when it succeeded, else the job's error.
        func step(_ args: [String], _ name: String) async -> String?? {
            let base = stepCPU, began = Date()
            let outcome = await runStep(args, key: "job-\(job.id)-\(name)", log: stepLog(name),
                                        events: (attemptDir as NSString).appendingPathComponent("events-\(name).jsonl")) { cpu in
                ownCPU.record(base + cpu)
                return !halted()
            }
            stepCPU += outcome.cpuSeconds
            ownCPU.record(stepCPU)
            metrics.observeStage(name == "assemble" ? "products" : name, seconds: Date().timeIntervalSince(began))
            if let text = try? String(contentsOfFile: stepLog(name), encoding: .utf8) { try? appendLog(job.id, attempt, text) }
            if outcome.succeeded { return nil }
            if outcome.stopped || halted() { return .some(nil) }
            return .some(outcome.failure.map { userFacing($0.message ?? "", job: job) } ?? "the pipeline stopped with status \(outcome.status)")
        }
        var error: String?
        var stoppedEarly = false
        // 1. The plan (unless an earlier attempt left one with finished tiles to start from).
        if !inheritWork(job: job, attempt: attempt) {
            let jobFile = (attemptDir as NSString).appendingPathComponent("job.json")
            do {
                try FileManager.default.createDirectory(atPath: attemptDir, withIntermediateDirectories: true)
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                var spec = try jobSpec(for: job, cpuBudget: budget)
                spec.limits?.cpuSeconds = nil  // spread over processes: the budget is watched here, on the job's total
                try enc.encode(spec).write(to: URL(fileURLWithPath: jobFile), options: .atomic)
            } catch {
                await conclude(job, worker: worker, status: .failed, error: "cannot prepare the job: \(userFacing("\(error)", job: job))",
                               cpuSeconds: 0, runDir: runDir, publish: false)
                return
            }
            _ = await heartbeat(job, worker, progress: 1, stage: "plan", message: "planning the tiles (whole-scene first pass)")
            if let r = await step(["run", "--job", jobFile, "--out", runDir, "--step", "plan"], "plan") {
                if let e = r { error = e } else { stoppedEarly = true }
            }
        }
        let work = WorkFolder(output: runDir)
        var plan: RunPlan?
        if error == nil && !stoppedEarly {
            plan = (try? work.readJSON(RunPlan.self, from: work.planPath)) ?? nil
            if plan == nil { error = "the run's plan is missing from its folder" }
        }
        // 2. The tile stages, each spread over every worker; the whole-scene steps between them.
        if let plan, error == nil, !stoppedEarly {
            let tiles = plan.tiles.tiles
            var stages: [(TileStage, ClosedRange<Double>)] = [(.match, 0.05...0.75), (.fuse, 0.75...0.85)]
            if plan.orthoImages || plan.orthoMosaic { stages.append((.ortho, 0.85...0.92)) }
            try? appendLog(job.id, attempt, "dsmopt worker \(worker): \(tiles.count) tiles of \(plan.tiles.largestTile.width)×\(plan.tiles.largestTile.height) cells, spread over the workers as tile tasks\n")
            stageLoop: for (stage, range) in stages {
                if stage == .fuse && plan.pairs.count > 1 {
                    if let r = await step(["run", "--resume", runDir, "--step", "offsets"], "offsets") {
                        if let e = r { error = e } else { stoppedEarly = true }
                        break stageLoop
                    }
                }
                // Tasks: blocks of neighbouring tiles; those with a tile left to do are queued.
                let groups = plan.tiles.taskGroups(stage)
                let todo = groups.indices.filter { groups[$0].contains { !work.isDone(stage, tiles[$0]) } }
                do {
                    try await store.addTasks(jobId: job.id, jobAttempt: attempt, runDirectory: runDir, stage: stage.rawValue, tiles: todo)
                } catch {
                    stoppedEarly = true  // the store is unreachable: the lease runs out and the job is re-queued
                    break stageLoop
                }
                var reported = -1
                let started = Date()
                while true {
                    if halted() { stoppedEarly = true; break stageLoop }
                    guard let tally = try? await store.taskTally(jobId: job.id, jobAttempt: attempt, stage: stage.rawValue) else {
                        await sleep(1); continue
                    }
                    if tally.failed > 0 {
                        error = "tile \(stage.rawValue) failed \(config.maxAttempts) time(s): \(tally.failure ?? "no reason given")"
                        break stageLoop
                    }
                    if tally.done != reported {
                        reported = tally.done
                        let done = tiles.filter { work.isDone(stage, $0) }.count
                        let rate = tally.done > 0 ? Date().timeIntervalSince(started) / Double(tally.done) : nil
                        let eta = rate.map { ", ETA \(DSMPipelineRunner.duration($0 * Double(tally.total - tally.done)))" } ?? ""
                        let p = range.lowerBound + (range.upperBound - range.lowerBound) * Double(done) / Double(max(1, tiles.count))
                        _ = await heartbeat(job, worker, progress: Int(p * 100), stage: stage.rawValue,
                                            message: "tile \(done)/\(tiles.count)\(eta) (\(tally.running) of \(tally.total) task\(tally.total == 1 ? "" : "s") running on the workers)")
                    }
                    if tally.done == tally.total { break }
                    // Work on tiles meanwhile, this job's first.
                    let mine = await claimTiles(worker: worker, preferJob: job.id)
                    if mine.isEmpty { await sleep(0.5) } else { await runTasks(mine, worker: worker, abort: halted) }
                }
            }
            // 3. The products.
            if error == nil && !stoppedEarly && !halted() {
                _ = await heartbeat(job, worker, progress: 92, stage: "products", message: "assembling the products from \(tiles.count) tiles")
                if let r = await step(["run", "--resume", runDir, "--step", "assemble"], "assemble") {
                    if let e = r { error = e } else { stoppedEarly = true }
                }
            }
        }
        beat.cancel()
        if lost.isSet {
            FileHandle.standardError.write(Data("dsmopt: attempt \(attempt) of job \(job.id) lost its lease; its work is left to attempt \(attempt + 1)\n".utf8))
            return
        }
        var ended: JobStatus = error == nil ? .successful : .failed
        if exhausted.isSet {
            ended = .failed
            error = String(format: "stopped: the job used the %.1f CPU-seconds left of this month's budget", budget)
        }
        let cancelRequested = (try? await store.job(id: job.id))?.cancelRequested == true
        if exhausted.isSet {
        } else if cancelled.isSet || cancelRequested {
            ended = .dismissed; error = "cancelled by the user"
        } else if stoppedEarly || (isStopping && error != nil) {
            // Shutdown (or the store went away): the job goes back to the queue and resumes from its tiles.
            try? await store.release(jobId: job.id, attempt: attempt, worker: worker)
            return
        }
        await conclude(job, worker: worker, status: ended, error: error, cpuSeconds: stepCPU, runDir: runDir, publish: request?.publish == true)
    }

    func heartbeat(_ job: Job, _ worker: String, progress: Int, stage: String, message: String) async -> Bool {
        (try? await store.heartbeat(jobId: job.id, attempt: job.attempts, worker: worker, progress: min(99, progress), stage: stage,
                                    message: message, leaseUntil: Date().addingTimeInterval(config.leaseSeconds))) ?? true
    }
}
