import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import DSMPipeline
import JobService
import TestSupport
import Testing

/// A real `dsmopt serve` process on loopback with its own data folder.
final class ServerProcess: @unchecked Sendable {
    let data: TemporaryFolder
    var arguments: [String]
    var process: Process?
    var base = ""
    /// The daemon's stderr (beside the data folder, not in it), shown when a test waits for a job in vain.
    let logs: TemporaryFolder
    var logPath: String { logs.path("daemon.log") }

    /// Start through `/usr/bin/env dsmopt` with PATH, as a user typing `dsmopt serve` does (argv[0] is a bare name).
    let throughPATH: Bool

    /// `sharing`: another daemon's data folder (two processes on one store, as two machines would be).
    init(workers: Int = 1, extra: [String] = [], config: String? = nil, throughPATH: Bool = false, sharing: TemporaryFolder? = nil) throws {
        self.throughPATH = throughPATH
        data = try sharing ?? TemporaryFolder()
        logs = try TemporaryFolder()
        if let config { try config.write(toFile: data.path("dsmopt.json"), atomically: true, encoding: .utf8) }
        arguments = ["serve", "--data", data.url.path, "--port", "0", "--workers", "\(workers)"] + extra
        try start()
    }

    func start() throws {
        try? FileManager.default.removeItem(atPath: data.path("server.port"))
        let p = Process()
        let exe = try dsmoptExecutable()
        if throughPATH {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["dsmopt"] + arguments
            var env = ProcessInfo.processInfo.environment
            env["PATH"] = URL(fileURLWithPath: exe).deletingLastPathComponent().path + ":" + (env["PATH"] ?? "/usr/bin:/bin")
            p.environment = env
        } else {
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = arguments
        }
        p.standardOutput = FileHandle.nullDevice
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = FileHandle(forWritingAtPath: logPath)
        _ = try log?.seekToEnd()
        p.standardError = log
        try p.run()
        try? log?.close()
        process = p
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let s = try? String(contentsOfFile: data.path("server.port"), encoding: .utf8), let port = Int(s.trimmingCharacters(in: .whitespacesAndNewlines)) {
                base = "http://127.0.0.1:\(port)"
                return
            }
            usleep(50_000)
        }
        throw ServerError(message: "dsmopt serve did not start within 30 s")
    }

    /// Stops the daemon with a signal (SIGTERM: graceful; SIGKILL: crash) and waits for it.
    func stop(signal: Int32 = SIGTERM) {
        guard let p = process, p.isRunning else { return }
        kill(p.processIdentifier, signal)
        p.waitUntilExit()
        process = nil
    }

    deinit { stop(signal: SIGKILL) }

    /// Creates a user with `dsmopt admin create-user` and returns the token it prints.
    func user(_ name: String, role: String = "researcher", quota: [String] = []) throws -> String {
        try admin(["create-user", name, "--role", role] + quota)
    }

    func admin(_ args: [String]) throws -> String {
        let r = try run(try dsmoptExecutable(), ["admin", "--data", data.url.path] + args)
        guard r.status == 0 else { throw ServerError(message: "admin failed: \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

struct HTTPResult {
    var status: Int
    var headers: [String: String]
    var body: Data
    var json: [String: Any]? { try? JSONSerialization.jsonObject(with: body) as? [String: Any] }
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// Plain HTTP through URLSession (no cookies, no cache).
func http(_ method: String, _ url: String, token: String? = nil, body: Data? = nil, headers: [String: String] = [:]) async throws -> HTTPResult {
    var r = URLRequest(url: URL(string: url)!)
    r.httpMethod = method
    r.httpBody = body
    r.timeoutInterval = 60
    if let token { r.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
    for (k, v) in headers { r.setValue(v, forHTTPHeaderField: k) }
    let (data, response) = try await URLSession.shared.data(for: r)
    let h = response as! HTTPURLResponse
    var hs: [String: String] = [:]
    for (k, v) in h.allHeaderFields { hs[String(describing: k).lowercased()] = String(describing: v) }
    return HTTPResult(status: h.statusCode, headers: hs, body: data)
}

/// Starts a Python script that serves HTTP on loopback (a catalogue's image store, a callback receiver), its
/// output discarded. Stop it with `stopServer`.
func pythonServer(_ script: String, arguments: [String] = []) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    p.arguments = ["-c", script] + arguments
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    return p
}

/// Stops a process a test started, with SIGKILL: this test process starts its children with SIGTERM blocked
/// (they inherit the mask), so `terminate()` alone may not stop them.
/// The records a test's receiver (an HTTP or SMTP server in Python) wrote so far, one JSON object a line.
func jsonLines(_ path: String) -> [[String: Any]] {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
}

/// Polls the job until its callback (mail) is no longer pending, and returns that part of its status.
func deliverySettled(_ channel: DeliveryChannel, _ s: ServerProcess, token: String, job: String, timeout: Double = 60) async throws -> [String: Any] {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        let j = try await http("GET", "\(s.base)/jobs/\(job)", token: token).json ?? [:]
        if let d = j[channel.rawValue] as? [String: Any], d["state"] as? String != "pending" { return d }
        try await Task.sleep(nanoseconds: 250_000_000)
    }
    Issue.record("the \(channel.rawValue) of job \(job) is still pending after \(timeout) s; daemon's log: \(((try? String(contentsOfFile: s.logPath, encoding: .utf8)) ?? "").suffix(1500))")
    return [:]
}

func stopServer(_ p: Process) {
    kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
}

/// Two DSMs of two dates with a lava flow between them (`SyntheticChange`: `size` cells, the flow's centre and
/// semi-axes in metres), written to `folder` as dsm_a.tif and dsm_b.tif.
@discardableResult
func writeChangePair(to folder: String, size: Int, flowCentre: [Double], flowAxes: [Double]) throws -> SyntheticChange.Truth {
    var change = SyntheticChange()
    change.size = size
    change.flowCentre = flowCentre; change.flowAxes = flowAxes
    return try change.write(to: folder)
}

func json(_ object: Any) -> Data { try! JSONSerialization.data(withJSONObject: object) }

/// Uploads a file; returns its id.
func upload(_ server: ServerProcess, token: String, path: String, name: String) async throws -> String {
    let r = try await http("POST", "\(server.base)/uploads?name=\(name)", token: token, body: try Data(contentsOf: URL(fileURLWithPath: path)))
    #expect(r.status == 201, "upload: \(r.status) \(r.text)")
    return try #require(r.json?["id"] as? String)
}

/// Polls a job until it reaches one of `states`. In vain, the issue it records says where the job stood: its
/// record, its log, the daemon's log and the daemon's child processes.
func waitFor(_ server: ServerProcess, token: String, job: String, states: Set<String>, timeout: Double = 180) async throws -> [String: Any] {
    let deadline = Date().addingTimeInterval(timeout)
    var last = ""
    while Date() < deadline {
        let r = try await http("GET", "\(server.base)/jobs/\(job)", token: token)
        if let j = r.json, let s = j["status"] as? String, states.contains(s) { return j }
        last = r.text
        try await Task.sleep(nanoseconds: 200_000_000)
    }
    let log = (try? await http("GET", "\(server.base)/jobs/\(job)/logs", token: token).text) ?? ""
    let daemon = (try? String(contentsOfFile: server.logPath, encoding: .utf8)) ?? ""
    let children = server.process.map { (try? run("/bin/ps", ["-o", "pid,ppid,stat,time,etime,args", "--ppid", "\($0.processIdentifier)"]))?.stdout ?? "" } ?? ""
    Issue.record("""
        job \(job) did not reach \(states) within \(timeout) s
        last record: \(last.prefix(1500))
        its log (end): \(log.suffix(2000))
        daemon's log (end): \(daemon.suffix(2000))
        daemon's children: \(children)
        """)
    return [:]
}

struct ServerError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
