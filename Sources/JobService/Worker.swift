import DSMPipeline
import Foundation
import ServiceLifecycle

/// Runs queued jobs: `workers` concurrent loops claim jobs with a lease, run them as child processes,
/// heart-beat progress into the store, honour cancellation, and give their jobs back on shutdown.
public final class WorkerPool: Service, @unchecked Sendable {
    let store: JobStore
    let config: ServiceConfiguration
    let metrics: ServiceMetrics
    let name: String
    let lock = NSLock()
    var children: [String: ChildRun] = [:]
    private var stopping = false

    public init(store: JobStore, config: ServiceConfiguration, metrics: ServiceMetrics) {
        self.store = store
        self.config = config
        self.metrics = metrics
        name = "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))"
    }

    /// Stopping: asked to shut down, or the task running the loops was cancelled (a cancelled sleep
    /// returns at once, so a loop that only watched `stopping` would spin forever).
    var isStopping: Bool { Task.isCancelled || lock.withLock { stopping } }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<config.workers { group.addTask { await self.loop(worker: "\(self.name)-\(i)") } }
                try await group.waitForAll()
            }
        } onGracefulShutdown: {
            self.shutdown()
        }
    }

    /// Stops claiming, stops running children; their jobs go back to the queue.
    public func shutdown() {
        let running: [ChildRun] = lock.withLock {
            stopping = true
            return Array(children.values)
        }
        for c in running { c.stop() }
    }

    func sleep(_ seconds: Double) async { try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9)) }

    func loop(worker: String) async {
        while !isStopping {
            // A full disk: leave the queue alone rather than start a job that cannot write its products.
            if let free = freeBytes(config.dataDirectory), free < config.minFreeBytes {
                await sleep(5)
                continue
            }
            let tiles = await claimTiles(worker: worker)
            if !tiles.isEmpty {
                await runTasks(tiles, worker: worker)
                continue
            }
            let lease = Date().addingTimeInterval(config.leaseSeconds)
            guard let job = try? await store.claimJob(worker: worker, leaseUntil: lease, now: Date()) else {
                await sleep(0.3)
                continue
            }
            await execute(job, worker: worker)
        }
    }

    /// Tiles of running jobs are claimed before new jobs are started: started jobs finish first.
    func claimTiles(worker: String, preferJob: String? = nil) async -> [TileTask] {
        guard config.spreadsTiles else { return [] }
        let perSlot = max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, config.workers))
        return (try? await store.claimTasks(worker: worker, limit: perSlot, leaseUntil: Date().addingTimeInterval(config.leaseSeconds),
                                            preferJob: preferJob)) ?? []
    }

    /// The job file of an attempt: the validated request, typed, with the limits this attempt runs under.
    func jobSpec(for job: Job, cpuBudget: Double) throws -> JobSpec {
        let request = try JSONDecoder().decode(ExecutionRequest.self, from: Data(job.request.utf8))
        var spec = JobSpec(images: request.resolvedImagePaths)
        spec.preset = request.preset ?? "default"
        spec.parameters = request.parameters?.values ?? [:]
        spec.roi = request.parameters?.roi
        spec.aoi = request.parameters?.aoi
        spec.limits = RunLimits(cpuSeconds: cpuBudget.isFinite ? max(1, cpuBudget) : nil, wallSeconds: config.maxJobWallSeconds,
                                memoryBytes: config.jobMemoryBytes)
        // Finishing steps: the files given with the job, else the operator's reference DEM and water layer.
        if let ref = request.resolvedReferenceDem {
            spec.referenceDEM = ref
        } else if spec.flag("coregister") == true, let ref = config.referenceDEM {
            spec.referenceDEM = ref
            spec.referenceIsServers = true
            spec.parameters["reference-datum"] = .word(config.referenceDEMVerticalDatum.rawValue)
        }
        spec.waterMask = request.resolvedWaterMask
        spec.multispectral = request.resolvedMultispectral
        spec.waterLayer = config.waterLayer
        spec.waterLayerThreshold = request.resolvedWaterMask == nil ? config.waterLayerThreshold : nil
        spec.tileSize = config.tileCells
        return spec
    }

    /// An interrupted run of this plan format left its plan and finished tiles in this folder.
    static func canResume(_ runDir: String) -> Bool {
        WorkFolder(output: runDir).holdsResumablePlan
    }

    /// Makes this attempt's run folder resumable from an earlier attempt's finished tiles: hard links to
    /// the earlier work files (written once, atomically, never changed in place), so that the earlier
    /// attempt — were it still alive — can never touch this attempt's folder, nor this one its.
    func inheritWork(job: Job, attempt: Int) -> Bool {
        let mine = config.runDirectory(job.id, attempt)
        if Self.canResume(mine) { return true }  // this attempt number was released at shutdown and runs again
        guard attempt > 1, let source = (1..<attempt).reversed().map({ config.runDirectory(job.id, $0) }).first(where: Self.canResume) else { return false }
        let fm = FileManager.default
        let from = source + "/" + WorkFolder.name, to = mine + "/" + WorkFolder.name
        do {
            try? fm.removeItem(atPath: mine)
            for sub in try fm.subpathsOfDirectory(atPath: from) {
                let a = from + "/" + sub, b = to + "/" + sub
                var isDir: ObjCBool = false
                guard fm.fileExists(atPath: a, isDirectory: &isDir) else { continue }
                if isDir.boolValue { try fm.createDirectory(atPath: b, withIntermediateDirectories: true); continue }
                if sub.hasSuffix(".tmp") || sub.contains(".tmp.") || sub.contains(".part-") { continue }
                try fm.createDirectory(atPath: (b as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                if link(a, b) != 0 { try fm.copyItem(atPath: a, toPath: b) }
            }
            return Self.canResume(mine)
        } catch {
            try? fm.removeItem(atPath: mine)
            return false
        }
    }

    /// A message for users: no server path (inputs by their file names, the data folder hidden).
    func userFacing(_ message: String, job: Job) -> String {
        var m = message
        if let r = try? JSONDecoder().decode(ExecutionRequest.self, from: Data(job.request.utf8)) {
            for p in r.resolvedImagePaths { m = m.replacingOccurrences(of: p, with: (p as NSString).lastPathComponent) }
        }
        return m.replacingOccurrences(of: config.dataDirectory + "/", with: "").replacingOccurrences(of: config.dataDirectory, with: "")
    }

    /// Why this worker must not run a job: another `dsmopt` version accepted it, or the shared data folder's
    /// files are not visible here (a machine without the shared filesystem, or mounted elsewhere).
    func refusal(_ job: Job) -> String? {
        guard let r = try? JSONDecoder().decode(ExecutionRequest.self, from: Data(job.request.utf8)) else { return nil }
        let here = SoftwareStamp.current
        if let v = r.acceptedBy, v != here {
            return "refused by worker \(ProcessInfo.processInfo.hostName): the job was accepted by dsmopt \(v.version) (job format \(v.jobFormat)) and this worker runs dsmopt \(here.version) (job format \(here.jobFormat)); run workers of the API's version"
        }
        // The job's files are under the data folder of the daemon that accepted it; this worker writes the
        // job's products under its own. Both must be the one shared folder, at the same path.
        let root = URL(fileURLWithPath: config.dataDirectory).standardizedFileURL.path
        let d = r.difference
        let files = (r.resolvedImagePaths + (d?.resolvedDSMs ?? [])
                     + [r.resolvedReferenceDem, r.resolvedWaterMask, r.resolvedMultispectral, d?.resolvedStableMask, d?.resolvedChangedMask].compactMap { $0 })
            .map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        if let missing = files.first(where: { !$0.hasPrefix(root + "/") || !FileManager.default.fileExists(atPath: $0) }) {
            FileHandle.standardError.write(Data("dsmopt worker: job \(job.id): its input \(missing) is not visible in this worker's data folder \(root)\n".utf8))
            // The user reads where in the data folder; the worker's log names the full paths for the operator.
            let inFolder = missing.range(of: "/uploads/").map { "uploads/" + missing[$0.upperBound...] } ?? (missing as NSString).lastPathComponent
            return "worker \(ProcessInfo.processInfo.hostName) cannot see the job's input \(inFolder) in its data folder: every machine must mount the shared data folder at the same path and give it as --data"
        }
        return nil
    }

    func execute(_ job: Job, worker: String) async {
        let attempt = job.attempts
        let fm = FileManager.default
        if let why = refusal(job) {
            _ = try? await store.finish(jobId: job.id, attempt: attempt, worker: worker, status: .failed, error: why,
                                        cpuSeconds: 0, resultBytes: 0, finishedAt: Date(), purgeAt: nil)
            return
        }
        let attemptDir = config.attemptDirectory(job.id, attempt), runDir = config.runDirectory(job.id, attempt)
        try? fm.createDirectory(atPath: attemptDir, withIntermediateDirectories: true)
        let exe = config.executable ?? currentExecutable()
        var env = ProcessInfo.processInfo.environment
        env["DSMOPT_PRESETS"] = config.presetsDirectory
        env["DSMOPT_PARENT_PID"] = "\(ProcessInfo.processInfo.processIdentifier)"
        var stageStarted = Date()
        var stage = "queued"
        // What is left of the owner's CPU budget this month when the attempt starts (its charge comes at the end).
        var budget = Double.infinity
        if let owner = try? await store.user(id: job.userId), let used = try? await store.usage(userId: job.userId, now: Date()) {
            budget = max(0, owner.quota.cpuSecondsPerMonth - used.cpuSecondsThisMonth)
        }
        let request = try? JSONDecoder().decode(ExecutionRequest.self, from: Data(job.request.utf8))
        if config.spreadsTiles && request?.process != "dsm-difference" {
            // The job's tiles become tile tasks that every worker of the store may claim.
            await coordinate(job, worker: worker, request: request, budget: budget)
            return
        }
        let metered = CPUMeter()
        let events = (attemptDir as NSString).appendingPathComponent("events.jsonl")
        var args: [String]
        do {
            if request?.process == "dsm-difference", let d = request?.difference, d.resolvedDSMs.count == 2 {
                // A difference is short: each attempt runs it whole.
                try? fm.removeItem(atPath: runDir)
                args = ["diff", d.resolvedDSMs[0], d.resolvedDSMs[1], "--out", runDir, "--events", events, "--user-files",
                        "--name-a", d.names.first ?? "A", "--name-b", d.names.last ?? "B"]
                if let aoi = d.aoi { args += ["--aoi", aoi.geoJSONPolygon] }
                if let m = d.resolvedStableMask { args += ["--stable-mask", m] }
                if let m = d.resolvedChangedMask { args += ["--changed-mask", m] }
            } else if inheritWork(job: job, attempt: attempt) {
                args = ["run", "--resume", runDir, "--events", events]
            } else {
                let jobFile = (attemptDir as NSString).appendingPathComponent("job.json")
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                try enc.encode(try jobSpec(for: job, cpuBudget: budget)).write(to: URL(fileURLWithPath: jobFile), options: .atomic)
                args = ["run", "--job", jobFile, "--out", runDir, "--events", events]
            }
        } catch {
            _ = try? await store.finish(jobId: job.id, attempt: attempt, worker: worker, status: .failed, error: "cannot prepare the job: \(userFacing("\(error)", job: job))",
                                        cpuSeconds: 0, resultBytes: 0, finishedAt: Date(), purgeAt: nil)
            return
        }
        let child: ChildRun
        do {
            child = try ChildRun(executable: exe, arguments: args, environment: env, log: config.logPath(job.id, attempt), events: events)
        } catch {
            FileHandle.standardError.write(Data("dsmopt worker: job \(job.id): cannot start \(exe): \(error)\n".utf8))
            _ = try? await store.finish(jobId: job.id, attempt: attempt, worker: worker, status: .failed, error: "cannot start the pipeline",
                                        cpuSeconds: 0, resultBytes: 0, finishedAt: Date(), purgeAt: nil)
            return
        }
        lock.withLock { children[job.id] = child }
        defer { _ = lock.withLock { children.removeValue(forKey: job.id) } }
        let lost = Flag()
        let cpuLeft = budget
        // Heart-beat (fenced by the attempt number), CPU metering and cancellation check.
        let beat = Task {
            while !Task.isCancelled {
                await sleep(min(2, config.leaseSeconds / 3))
                if let used = child.cpuSeconds() {
                    metered.record(used)
                    // The budget is enforced while the job runs, not only at submission.
                    if used >= cpuLeft { metered.exhaust(); child.stop(); return }
                }
                let owned = (try? await store.heartbeat(jobId: job.id, attempt: attempt, worker: worker, progress: nil, stage: nil, message: nil,
                                                        leaseUntil: Date().addingTimeInterval(config.leaseSeconds))) ?? true
                if !owned { lost.set(); child.stop(); return }
                if (try? await store.job(id: job.id))?.cancelRequested == true { child.cpuSeconds().map(metered.record); child.stop(); return }
            }
        }
        var reportedCPU: Double?
        var failure: ChildEvent?
        var finished = false
        func drain() async {
            for e in child.newEvents() {
                switch e.event {
                case "progress":
                    let s = e.stage ?? stage
                    if s != stage {
                        let at = e.time.map { Date(timeIntervalSince1970: $0) } ?? Date()
                        metrics.observeStage(stage, seconds: max(0, at.timeIntervalSince(stageStarted)))
                        stage = s; stageStarted = at
                    }
                    let message = s == "done" ? "products ready" : e.message.map { userFacing($0, job: job) }
                    if !lost.isSet {
                        let owned = (try? await store.heartbeat(jobId: job.id, attempt: attempt, worker: worker, progress: min(99, e.percent ?? 0), stage: s,
                                                                message: message, leaseUntil: Date().addingTimeInterval(config.leaseSeconds))) ?? true
                        if !owned { lost.set(); child.stop() }
                    }
                case "finished":
                    finished = true; reportedCPU = e.cpuSeconds
                    // The last stage ends when the run says it finished.
                    if stage != "done", let t = e.time { metrics.observeStage(stage, seconds: max(0, Date(timeIntervalSince1970: t).timeIntervalSince(stageStarted))); stage = "done"; stageStarted = Date() }
                case "failed": failure = e; reportedCPU = e.cpuSeconds
                default: break
                }
            }
        }
        let ending = await child.runToEnd(stallSeconds: config.stallSeconds) { await drain(); return finished || failure != nil }
        await drain()
        beat.cancel()
        let stuck = ending == .stuckAfterItsEnd
        if let line = ending.logLine(stallSeconds: config.stallSeconds) { try? appendLog(job.id, attempt, line) }
        if stage != "done" { metrics.observeStage(stage, seconds: Date().timeIntervalSince(stageStarted)) }
        // Charged: the CPU seconds the run used, measured — what it reported (itself and the tools it ran),
        // the kernel's account when it was reaped (whatever stopped it), the last reading from /proc —
        // never wall time.
        let cpu = max(reportedCPU ?? 0, metered.seconds, child.cpuSeconds() ?? 0)
        if lost.isSet {
            // Another attempt owns the job now: change nothing, delete nothing; the maintenance removes this
            // attempt's folder once the job has ended.
            FileHandle.standardError.write(Data("dsmopt: attempt \(attempt) of job \(job.id) lost its lease; its work is left to attempt \(attempt + 1)\n".utf8))
            return
        }
        let current = try? await store.job(id: job.id)
        let status = child.terminationStatus ?? -1
        var ended: JobStatus = .failed
        var error: String?
        if ending == .stalled {
            error = ChildRun.stalledMessage(config.stallSeconds)
        } else if metered.exhausted || failure?.code == "limit-reached" && budget.isFinite && cpu >= budget - 1 {
            error = String(format: "stopped: the job used the %.1f CPU-seconds left of this month's budget", budget)
        } else if current?.cancelRequested == true {
            ended = .dismissed; error = "cancelled by the user"
        } else if isStopping && status != 0 && !finished {
            // Shutdown: the job goes back to the queue and this attempt runs again (resuming) on the next start.
            try? await store.release(jobId: job.id, attempt: attempt, worker: worker)
            return
        } else if finished && (status == 0 || stuck) {
            // A run stuck after it reported its end had written every product before it said so.
            ended = .successful
        } else {
            error = failure.map { userFacing($0.message ?? "", job: job) } ?? "the pipeline stopped with status \(status)"
        }
        await conclude(job, worker: worker, status: ended, error: error, cpuSeconds: cpu, runDir: runDir, publish: request?.publish == true)
    }

    /// Records the end of an attempt (fenced), cleans up a failed attempt's folder and publishes the
    /// products when the request asked for it.
    func conclude(_ job: Job, worker: String, status ended: JobStatus, error: String?, cpuSeconds cpu: Double, runDir: String, publish: Bool) async {
        let attempt = job.attempts, now = Date()
        let bytes = ended == .successful ? directorySize(runDir) : 0
        // The store may be busy or briefly unreachable: the finish is retried (it is fenced, so a retry after
        // a lost answer is harmless) rather than leaving the job running to be run again.
        var owned = false
        for retry in 0..<8 {
            do {
                owned = try await store.finish(jobId: job.id, attempt: attempt, worker: worker, status: ended, error: error, cpuSeconds: cpu,
                                               resultBytes: bytes, finishedAt: now,
                                               purgeAt: ended == .successful ? now.addingTimeInterval(config.retentionSeconds) : nil)
                break
            } catch {
                FileHandle.standardError.write(Data("dsmopt: recording the end of job \(job.id) failed (\(error)); retrying\n".utf8))
                await sleep(min(8, 0.5 * Double(1 << retry)))
            }
        }
        // Only an attempt that still owned the job cleans up after itself, and never the promoted results.
        if owned && ended != .successful { try? FileManager.default.removeItem(atPath: runDir) }
        // The job has ended: the inputs linked for it are read no more.
        if owned { try? FileManager.default.removeItem(atPath: config.inputsDirectory(job.id)) }
        // The results' zip is laid out from the files' CRC-32s: computed now, while the files are fresh in the
        // page cache, so that the first download of a scene's archive starts at once (a download computes
        // what the index lacks; a damaged manifest is the results routes' to report).
        if owned && ended == .successful,
           let manifest = FileManager.default.contents(atPath: (runDir as NSString).appendingPathComponent("manifest.json")),
           let products = ((try? JSONSerialization.jsonObject(with: manifest)) as? [String: Any])?["products"] as? [[String: Any]] {
            let started = Date()
            if let members = try? await ResultsArchive.indexed(folder: runDir, files: ServiceAPI.resultsFiles(folder: runDir, products: products)) {
                try? appendLog(job.id, attempt, String(format: "results' zip index: %d files, %.2f GB, CRC-32s in %.1f s\n", members.count,
                                                       Double(members.reduce(0) { $0 + $1.size }) / 1e9, Date().timeIntervalSince(started)))
            }
        }
        // Asked at submission: the products go to the DSM catalogue (a failure is logged; the job stays successful
        // and its owner can publish it later).
        if owned && ended == .successful && publish, let done = try? await store.job(id: job.id),
           let owner = try? await store.user(id: job.userId) {
            do {
                _ = try await Catalogue(store: store, config: config).publish(job: done, by: owner)
                try? appendLog(job.id, attempt, "published in the DSM catalogue as item \(job.id)\n")
            } catch {
                FileHandle.standardError.write(Data("dsmopt: job \(job.id) could not be published: \(error)\n".utf8))
                try? appendLog(job.id, attempt, "not published in the DSM catalogue: \(userFacing("\(error)", job: job))\n")
            }
        }
    }
}

extension WorkerPool {
    /// Appends a line to an attempt's log (the job's log the owner reads).
    func appendLog(_ id: String, _ attempt: Int, _ text: String) throws {
        try appendLog(path: config.logPath(id, attempt), text)
    }

    func appendLog(path: String, _ text: String) throws {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let h = FileHandle(forWritingAtPath: path) else { return }
        defer { try? h.close() }
        _ = try h.seekToEnd()
        try h.write(contentsOf: Data(text.utf8))
    }
}

/// A flag set from one task and read from another.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// Bytes available to unprivileged users on the file system of `path`.
func freeBytes(_ path: String) -> Int64? {
    var s = statvfs()
    guard statvfs(path, &s) == 0 else { return nil }
    return Int64(s.f_bavail) * Int64(s.f_frsize)
}

/// A hard link to `src` at `dst` (the data folder's files are written once, so a link is a copy that costs
/// nothing); a copy where no link can be made (another filesystem).
func linkOrCopy(_ src: String, _ dst: String) throws {
    if link(src, dst) != 0 { try FileManager.default.copyItem(atPath: src, toPath: dst) }
}

func directorySize(_ path: String) -> Int64 {
    guard let e = FileManager.default.enumerator(atPath: path) else { return 0 }
    var total: Int64 = 0
    while let f = e.nextObject() as? String {
        let attrs = try? FileManager.default.attributesOfItem(atPath: (path as NSString).appendingPathComponent(f))
        total += (attrs?[.size] as? NSNumber)?.int64Value ?? 0
    }
    return total
}

/// Absolute path of the running executable (argv[0] may be a bare name found through PATH).
func currentExecutable() -> String {
    if let p = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return p }
    if let p = Bundle.main.executablePath { return p }
    return CommandLine.arguments[0]
}

/// The CPU time of a running child as last read, and whether it went over its budget.
final class CPUMeter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0.0
    private var over = false
    func record(_ s: Double) { lock.lock(); value = max(value, s); lock.unlock() }
    func exhaust() { lock.lock(); over = true; lock.unlock() }
    var seconds: Double { lock.lock(); defer { lock.unlock() }; return value }
    var exhausted: Bool { lock.lock(); defer { lock.unlock() }; return over }
}
