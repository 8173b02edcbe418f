import DSMPipeline
import Foundation

/// One event of `dsmopt run --events FILE`: a JSON object per line. What the job service reads back from a
/// run (progress, the CPU seconds it is billed, the error), instead of parsing human-readable logs.
enum RunEvent: Encodable {
    case progress(percent: Int, stage: String, message: String)
    case finished(products: Int, wallSeconds: Double, cpuSeconds: Double, peakMiB: Double)
    case failed(code: String, message: String, cpuSeconds: Double)

    enum Keys: String, CodingKey { case event, percent, stage, message, products, wallSeconds, cpuSeconds, peakMiB, code, time }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(Date().timeIntervalSince1970, forKey: .time)
        switch self {
        case .progress(let p, let s, let m):
            try c.encode("progress", forKey: .event); try c.encode(p, forKey: .percent); try c.encode(s, forKey: .stage); try c.encode(m, forKey: .message)
        case .finished(let n, let w, let cpu, let peak):
            try c.encode("finished", forKey: .event); try c.encode(n, forKey: .products); try c.encode(w, forKey: .wallSeconds)
            try c.encode(cpu, forKey: .cpuSeconds); try c.encode(peak, forKey: .peakMiB)
        case .failed(let code, let m, let cpu):
            try c.encode("failed", forKey: .event); try c.encode(code, forKey: .code); try c.encode(m, forKey: .message); try c.encode(cpu, forKey: .cpuSeconds)
        }
    }
}

/// The process's event file and its self-imposed limits.
enum RunEvents {
    nonisolated(unsafe) private static var handle: FileHandle?
    nonisolated(unsafe) private static var path = ""
    nonisolated(unsafe) private static var warned = false
    private static let lock = NSLock()

    static func open(_ path: String) throws {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let h = FileHandle(forWritingAtPath: path) else {
            throw CLIFailure(message: "\(path): cannot write the events file", code: ExitCodes.badInput)
        }
        _ = try? h.seekToEnd()
        lock.withLock { handle = h; Self.path = path }
    }

    /// Appends one event (one write of one line); a full disk loses the event, never the run (the first
    /// lost event is reported once on stderr, so that a missing event is not taken for a run that stopped
    /// without one). A `failed`
    /// event is the last: the process is exiting, and other threads' progress events that would land after
    /// it (a limit's watch fails the run while the stages go on until `exit`) are dropped.
    static func emit(_ event: RunEvent) {
        lock.withLock {
            guard let h = handle, var data = try? JSONEncoder().encode(event) else { return }
            data.append(0x0A)
            do {
                try h.write(contentsOf: data)
            } catch {
                if !warned {
                    warned = true
                    FileHandle.standardError.write(Data("dsmopt: \(path): cannot append to the events file (\((error as NSError).localizedFailureReason ?? error.localizedDescription)); this and later events are lost, the run goes on\n".utf8))
                }
            }
            if case .failed = event { handle = nil }
        }
    }


    /// Stops the run (exit 5, a `limit-reached` event) once it has used `seconds` of CPU; the kernel's
    /// RLIMIT_CPU, 30 s later, backs the watch up.
    static func limitCPU(seconds: Double) {
        var r = rlimit(rlim_cur: rlim_t(seconds.rounded(.up) + 30), rlim_max: rlim_t(seconds.rounded(.up) + 35))
        setrlimit(__rlimit_resource_t(RLIMIT_CPU.rawValue), &r)
        Thread.detachNewThread {
            while ProcessUsage.cpuSeconds() < seconds { usleep(250_000) }
            stop(String(format: "the run used its %.1f CPU-seconds limit", seconds), code: ExitCodes.limit)
        }
    }

    static func limitWallClock(seconds: Double) {
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: seconds)
            stop(String(format: "the run reached its %.0f s wall-clock limit", seconds), code: ExitCodes.limit)
        }
    }

    /// Run by a service worker (`DSMOPT_PARENT_PID`): stops the run as soon as the worker's process is gone
    /// (kill -9), so that the job, queued again, does not go on running here too (a stalled but living
    /// worker is fenced off instead).
    static func stopWithParent() {
        guard let parent = ProcessInfo.processInfo.environment["DSMOPT_PARENT_PID"].flatMap(Int32.init) else { return }
        Thread.detachNewThread {
            while getppid() == parent { usleep(200_000) }
            FileHandle.standardError.write(Data("dsmopt: the worker that started this run is gone; stopping\n".utf8))
            _exit(75)
        }
    }

    /// Ends the process from a watch thread while the stages' threads go on: the message and the `failed`
    /// event are written (unbuffered), then `_exit`. Not `exit`: it would run the libraries' exit handlers
    /// (GDAL's driver manager teardown, OpenBLAS's thread shutdown) under threads still working inside
    /// them, where a lock held by a stage can keep the process from ever ending.
    static func stop(_ message: String, code: Int32) -> Never {
        reportFailure(message, code: code)
        fflush(nil)
        _exit(code)
    }

    /// The error line on stderr and the `failed` event: how every failure of a command is reported.
    static func reportFailure(_ message: String, code: Int32) {
        FileHandle.standardError.write(Data("dsmopt: error: \(message)\n".utf8))
        emit(.failed(code: ExitCodes.name(code), message: message, cpuSeconds: ProcessUsage.cpuSeconds()))
    }
}
