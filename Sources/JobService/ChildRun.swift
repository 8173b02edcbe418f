import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A `dsmopt` child process (a job's run, a tile step, the API's image checks), started with `posix_spawn` and
/// reaped by its owner with `wait4`: its stderr goes to a log, its events to a JSON-lines file that
/// `newEvents()` reads incrementally.
///
/// Not `Foundation.Process`: on Linux it learns that a child ended from a socket the child inherits closing,
/// on one shared manager thread, so a child's end can go unseen (a descendant holding the socket) and its
/// exit status only exists once that thread has run; and its children kept the spawning thread's signal
/// mask — the daemon's threads block nearly every signal, SIGTERM and SIGXCPU among them (measured: a run's
/// SigBlk fffffffe3bfbea27) — so `terminate()` did nothing and only the SIGKILL three seconds later stopped a
/// run. Here the worker's own `wait4` sees the end, with the child's exact CPU time, and the child starts
/// with no signal blocked, default dispositions, in a process group of its own.
final class ChildRun: @unchecked Sendable {
    let pid: pid_t
    let eventsPath: String?
    private var offset: UInt64 = 0
    private var pending = Data()
    private let lock = NSLock()
    private var end: (status: Int32, cpuSeconds: Double)?
    private var stopAsked: Date?

    /// `log` receives the child's stderr, `output` its stdout (default: discarded); `events` is the file its
    /// `--events` go to, read by `newEvents()`.
    init(executable: String, arguments: [String], environment: [String: String], log: String, events: String?, output: String? = nil) throws {
        if let events { _ = FileManager.default.createFile(atPath: events, contents: nil) }
        eventsPath = events
        func openForWriting(_ path: String) throws -> Int32 {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw ChildStartError(path: path, errno: errno) }
            return fd
        }
        let logFD = try openForWriting(log)
        defer { close(logFD) }
        let outFD = try openForWriting(output ?? "/dev/null")
        defer { close(outFD) }
        let nullFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard nullFD >= 0 else { throw ChildStartError(path: "/dev/null", errno: errno) }
        defer { close(nullFD) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, nullFD, 0)
        posix_spawn_file_actions_adddup2(&actions, outFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        // Nothing else of the daemon's (its sockets, the store's files) reaches the child.
        if let closeFrom = Self.addCloseFrom {
            _ = closeFrom(&actions, 3)
        } else {
            let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap(Int32.init) ?? []
            for fd in open where fd > 2 && ![logFD, outFD, nullFD].contains(fd) { posix_spawn_file_actions_addclose(&actions, fd) }
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child = pid_t()
        let rc = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw ChildStartError(path: executable, errno: rc) }
        pid = child
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later; not in Swift's Glibc module).
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let f = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(f, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// Whether the child is still running; reaps it (without waiting) once it has ended.
    var isRunning: Bool {
        lock.withLock {
            if end == nil {
                var status: Int32 = 0
                var usage = rusage()
                if wait4(pid, &status, WNOHANG, &usage) == pid {
                    let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6
                    let signal = status & 0x7f
                    end = (signal == 0 ? (status >> 8) & 0xff : signal, cpu)
                }
            }
            return end == nil
        }
    }

    /// How long a child may go on after it reported its end (a `finished` or `failed` event) before it is killed.
    static let endGraceSeconds = 10.0

    /// How a supervised child ended.
    enum Ending: Equatable {
        /// By itself (or stopped with `stop()`).
        case exited
        /// Killed `endGraceSeconds` after it reported its end, still there.
        case stuckAfterItsEnd
        /// Killed after using no CPU for the stall limit.
        case stalled

        /// The line the run's log gets when the worker killed it.
        func logLine(stallSeconds: Double) -> String? {
            switch self {
            case .exited: return nil
            case .stuckAfterItsEnd: return "dsmopt worker: the run reported its end but had not exited \(Int(ChildRun.endGraceSeconds)) s later; killed\n"
            case .stalled: return "dsmopt worker: \(ChildRun.stalledMessage(stallSeconds)); killed\n"
            }
        }
    }

    /// Polls until the child has ended, calling `poll` (which reads its events and says whether it reported its
    /// end) every `interval` seconds. A child still there 3 s after `stop()` gets SIGKILL; so does one still there
    /// `endGraceSeconds` after reporting its end, and one that used no CPU for `stallSeconds` — a run stuck
    /// (on its way out, in a deadlock) must not hold a worker slot, nor its job, for ever.
    func runToEnd(stallSeconds: Double, every interval: Double = 0.25, _ poll: () async -> Bool) async -> Ending {
        var reportedAt: Date?
        var ending = Ending.exited
        var lastCPU = -1.0, lastCPUChange = Date()
        while isRunning {
            if await poll(), reportedAt == nil { reportedAt = Date() }
            let now = Date()
            if let cpu = cpuSeconds(), cpu > lastCPU + 0.005 { lastCPU = cpu; lastCPUChange = now }
            if ending == .exited, let t = reportedAt, now.timeIntervalSince(t) > Self.endGraceSeconds {
                signal(SIGKILL)
                ending = .stuckAfterItsEnd
            } else if ending == .exited, now.timeIntervalSince(lastCPUChange) > stallSeconds {
                signal(SIGKILL)
                ending = .stalled
            }
            if let t = lock.withLock({ stopAsked }), now.timeIntervalSince(t) > 3 { signal(SIGKILL) }
            // A cancelled task's sleep returns at once: then sleep the thread, briefly, rather than spin.
            if Task.isCancelled { usleep(100_000) } else { try? await Task.sleep(nanoseconds: UInt64(interval * 1e9)) }
        }
        return ending
    }

    static func stalledMessage(_ seconds: Double) -> String {
        "stopped: the run used no CPU for \(seconds >= 120 ? "\(Int(seconds / 60)) min" : "\(Int(seconds)) s") (stalled)"
    }

    /// The exit code, or the signal that ended the child (as `Process.terminationStatus`); nil while it runs.
    var terminationStatus: Int32? { _ = isRunning; return lock.withLock { end?.status } }

    /// CPU seconds (user + system) the child has used, with the children it waited for: from /proc while it
    /// runs, from `wait4` once it has ended (then exact, whatever stopped it).
    func cpuSeconds() -> Double? {
        if !isRunning { return lock.withLock { end?.cpuSeconds } }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command name: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 15, let u = Double(fields[11]), let s = Double(fields[12]), let cu = Double(fields[13]), let cs = Double(fields[14]) else { return nil }
        return (u + s + cu + cs) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The events written since the last call (complete lines only).
    func newEvents() -> [ChildEvent] {
        guard let eventsPath, let h = FileHandle(forReadingAtPath: eventsPath) else { return [] }
        defer { try? h.close() }
        guard (try? h.seek(toOffset: offset)) != nil, let data = try? h.readToEnd(), !data.isEmpty else { return [] }
        offset += UInt64(data.count)
        pending.append(data)
        var out: [ChildEvent] = []
        while let nl = pending.firstIndex(of: 0x0A) {
            let line = pending[pending.startIndex..<nl]
            pending.removeSubrange(pending.startIndex...nl)
            if let e = try? JSONDecoder().decode(ChildEvent.self, from: Data(line)) { out.append(e) }
        }
        return out
    }

    /// Sends `signal` to the child's process group (the run and any tool it started), while the child has
    /// not been reaped: until then its pid, and so its group's id, cannot name another process.
    func signal(_ signal: Int32) {
        lock.withLock { if end == nil { _ = kill(-pid, signal) } }
    }

    /// SIGTERM now; `runToEnd` sends SIGKILL three seconds later if the child is still there.
    func stop() {
        guard isRunning else { return }
        lock.withLock { if stopAsked == nil { stopAsked = Date() } }
        signal(SIGTERM)
    }
}

/// A child could not be started (its log not writable, the executable missing…).
struct ChildStartError: Error, CustomStringConvertible {
    let path: String
    let errno: Int32
    var description: String { "\(path): \(String(cString: strerror(errno)))" }
}

/// One line of `dsmopt run --events`.
struct ChildEvent: Decodable {
    var event: String
    var percent: Int?
    var stage: String?
    var message: String?
    var cpuSeconds: Double?
    var code: String?
    /// When the run wrote it (seconds since 1970): stage durations come from these, not from when the
    /// worker happened to read the events (a short run's stages arrive together).
    var time: Double?
}
