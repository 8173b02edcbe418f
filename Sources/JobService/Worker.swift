import DSMPipeline
import Foundation
import ServiceLifecycle

/// A `dsmopt run` child process: its stderr lines as an async stream.
final class ChildRun: @unchecked Sendable {
    let process = Process()
    let lines: AsyncStream<String>

    init(executable: String, arguments: [String], environment: [String: String], log: String) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = FileHandle.nullDevice
        FileManager.default.createFile(atPath: log, contents: nil)
        let logHandle = FileHandle(forWritingAtPath: log)
        let handle = pipe.fileHandleForReading
        var continuation: AsyncStream<String>.Continuation!
        lines = AsyncStream { continuation = $0 }
        let cont = continuation!
        try process.run()
        DispatchQueue.global().async {
            var buffer = Data()
            while true {
                let d = handle.availableData
                if d.isEmpty { break }
                // The throwing write: a full disk loses log lines, never the daemon.
                try? logHandle?.write(contentsOf: d)
                buffer.append(d)
                while let nl = buffer.firstIndex(of: 0x0A) {
                    cont.yield(String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self))
                    buffer.removeSubrange(buffer.startIndex...nl)
                }
            }
            if !buffer.isEmpty { cont.yield(String(decoding: buffer, as: UTF8.self)) }
            try? logHandle?.close()
            cont.finish()
        }
    }

    /// CPU seconds (user + system) the child has used so far, from /proc (Linux); nil once it is gone.
    func cpuSeconds() -> Double? {
        guard process.isRunning, let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let pid = process.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + 3) { [process] in
            if process.isRunning { kill(pid, SIGKILL) }
        }
    }
}

/// Runs queued jobs: `workers` concurrent loops claim jobs with a lease, run them as child processes,
/// heart-beat progress into the store, honour cancellation, and give their jobs back on shutdown.
public final class WorkerPool: Service, @unchecked Sendable {
    let store: JobStore
    let config: ServiceConfiguration
    let metrics: ServiceMetrics
    let name: String
    private let lock = NSLock()
    private var children: [String: ChildRun] = [:]
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
                group.addTask { await self.maintenance() }
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

    func maintenance() async {
        while !isStopping {
            let now = Date()
            if let ids = try? await store.requeueExpired(now: now), !ids.isEmpty {
                FileHandle.standardError.write(Data("dsmopt: re-queued \(ids.count) job(s) whose worker stopped: \(ids.joined(separator: ", "))\n".utf8))
            }
            for job in (try? await store.jobsToPurge(now: now)) ?? [] {
                try? FileManager.default.removeItem(atPath: config.resultsDirectory(job.id))
                try? await store.markPurged(jobId: job.id)
            }
            await sleep(1)
        }
    }

    func loop(worker: String) async {
        while !isStopping {
            let lease = Date().addingTimeInterval(config.leaseSeconds)
            guard let job = try? await store.claimJob(worker: worker, leaseUntil: lease, now: Date()) else {
                await sleep(0.3)
                continue
            }
            await execute(job, worker: worker)
        }
    }

    func arguments(for job: Job) throws -> [String] {
        // A job re-queued after its worker died resumes from the tiles it had finished.
        if Self.canResume(config.resultsDirectory(job.id)) { return ["run", "--resume", config.resultsDirectory(job.id)] }
        let request = try JSONDecoder().decode(ExecutionRequest.self, from: Data(job.request.utf8))
        var args = ["run"] + request.resolvedImagePaths + ["--out", config.resultsDirectory(job.id), "--preset", request.preset ?? "default"]
        args += request.parameters?.commandLine ?? []
        return args
    }

    /// An interrupted run left its plan and finished tiles in the job's result folder.
    static func canResume(_ resultDir: String) -> Bool {
        FileManager.default.fileExists(atPath: resultDir + "/" + WorkFolder.name + "/plan.json")
    }

    func execute(_ job: Job, worker: String) async {
        let resultDir = config.resultsDirectory(job.id)
        if !Self.canResume(resultDir) { try? FileManager.default.removeItem(atPath: resultDir) }
        try? FileManager.default.createDirectory(atPath: config.jobDirectory(job.id), withIntermediateDirectories: true)
        let exe = config.executable ?? currentExecutable()
        var env = ProcessInfo.processInfo.environment
        env["DSMOPT_PRESETS"] = config.presetsDirectory
        env["DSMOPT_PARENT_PID"] = "\(ProcessInfo.processInfo.processIdentifier)"
        var cpu: Double = 0
        var lastError: String?
        var stageStarted = Date()
        var stage = "queued"
        // What is left of the owner's CPU budget this month when the job starts (its own charge comes at the end).
        var budget = Double.infinity
        if let owner = try? await store.user(id: job.userId), let used = try? await store.usage(userId: job.userId, now: Date()) {
            budget = max(0, owner.quota.cpuSecondsPerMonth - used.cpuSecondsThisMonth)
        }
        let metered = CPUMeter()
        do {
            let child = try ChildRun(executable: exe, arguments: try arguments(for: job), environment: env, log: config.logPath(job.id))
            lock.withLock { children[job.id] = child }
            defer { _ = lock.withLock { children.removeValue(forKey: job.id) } }
            // Heart-beat, CPU metering and cancellation check, independent of the child's output.
            let beat = Task {
                while !Task.isCancelled {
                    await sleep(min(2, config.leaseSeconds / 3))
                    if let used = child.cpuSeconds() {
                        metered.record(used)
                        // The budget is enforced while the job runs, not only at submission.
                        if used > budget { metered.exhaust(); child.stop(); return }
                    }
                    let owned = (try? await store.heartbeat(jobId: job.id, worker: worker, progress: nil, stage: nil, message: nil,
                                                            leaseUntil: Date().addingTimeInterval(config.leaseSeconds))) ?? true
                    let current = try? await store.job(id: job.id)
                    if !owned || current?.cancelRequested == true { child.cpuSeconds().map(metered.record); child.stop(); return }
                }
            }
            var progress = 0
            for await line in child.lines {
                if let p = ProgressLine(line) {
                    if p.stage != stage {
                        metrics.observeStage(stage, seconds: Date().timeIntervalSince(stageStarted))
                        stage = p.stage; stageStarted = Date()
                    }
                    progress = min(99, p.percent)
                    // Server paths stay private: the last line names the output folder.
                    let message = p.stage == "done" ? "products ready" : p.message
                    _ = try? await store.heartbeat(jobId: job.id, worker: worker, progress: progress, stage: p.stage, message: message,
                                                   leaseUntil: Date().addingTimeInterval(config.leaseSeconds))
                } else if line.hasPrefix("dsmopt: error:") {
                    lastError = String(line.dropFirst("dsmopt: error: ".count))
                } else if let r = line.range(of: #"cpu ([0-9.]+) s"#, options: .regularExpression) {
                    cpu = Double(line[r].dropFirst(4).dropLast(2)) ?? cpu
                }
            }
            child.process.waitUntilExit()
            beat.cancel()
            metrics.observeStage(stage, seconds: Date().timeIntervalSince(stageStarted))
            // Charged: the child's own getrusage figure when it could report it, else (stopped, cancelled,
            // killed) the CPU time read from /proc at the last heartbeat — measured CPU, never wall time.
            cpu = max(cpu, metered.seconds)
            let current = try? await store.job(id: job.id)
            let now = Date()
            if metered.exhausted {
                try? FileManager.default.removeItem(atPath: resultDir)
                try? await store.finish(jobId: job.id, worker: worker, status: .failed,
                                        error: String(format: "stopped: the job used the %.1f CPU-seconds left of this month's budget", budget),
                                        cpuSeconds: cpu, resultBytes: 0, finishedAt: now, purgeAt: nil)
            } else if current?.cancelRequested == true {
                try? FileManager.default.removeItem(atPath: resultDir)
                try? await store.finish(jobId: job.id, worker: worker, status: .dismissed, error: "cancelled by the user",
                                        cpuSeconds: cpu, resultBytes: 0, finishedAt: now, purgeAt: nil)
            } else if isStopping && child.process.terminationStatus != 0 {
                // Shutdown: the job goes back to the queue and runs again on the next start.
                try? await store.release(worker: worker)
            } else if child.process.terminationStatus == 0 {
                try? await store.finish(jobId: job.id, worker: worker, status: .successful, error: nil, cpuSeconds: cpu,
                                        resultBytes: directorySize(resultDir), finishedAt: now,
                                        purgeAt: now.addingTimeInterval(config.retentionSeconds))
            } else {
                try? FileManager.default.removeItem(atPath: resultDir)
                try? await store.finish(jobId: job.id, worker: worker, status: .failed,
                                        error: lastError ?? "the pipeline stopped with status \(child.process.terminationStatus)",
                                        cpuSeconds: cpu, resultBytes: 0, finishedAt: now, purgeAt: nil)
            }
        } catch {
            try? await store.finish(jobId: job.id, worker: worker, status: .failed, error: "cannot start the pipeline: \(error)",
                                    cpuSeconds: 0, resultBytes: 0, finishedAt: Date(), purgeAt: nil)
        }
    }
}

/// "[ 35%] match: pair [0, 1]: tile 2/4 …" progress lines of `dsmopt run`.
struct ProgressLine {
    var percent: Int
    var stage: String
    var message: String

    init?(_ line: String) {
        guard line.hasPrefix("["), let close = line.firstIndex(of: "]") else { return nil }
        let pct = line[line.index(after: line.startIndex)..<close].trimmingCharacters(in: .whitespaces).dropLast()
        guard let p = Int(pct) else { return nil }
        let rest = line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)
        guard let colon = rest.firstIndex(of: ":") else { return nil }
        percent = p
        stage = String(rest[..<colon])
        message = rest[rest.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
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
