import Foundation

/// Shared helpers of the test targets (not shipped in the `dsmopt` binary).
public enum TestData {
    /// The package root (two levels above this file's folder).
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `$DSMOPT_TEST_DATA`, or `../shared/data` beside the package root.
    public static var root: URL {
        if let env = ProcessInfo.processInfo.environment["DSMOPT_TEST_DATA"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data")
    }

    /// Path of a shared data file; the test fails (never skips) when it is missing.
    public static func path(_ relative: String) throws -> String {
        let p = root.appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: p) else {
            throw MissingTestData(path: p)
        }
        return p
    }

    public static func fixture(_ relative: String) -> String {
        packageRoot.appendingPathComponent("Fixtures").appendingPathComponent(relative).path
    }

    public struct MissingTestData: Error, CustomStringConvertible {
        public let path: String
        public var description: String { "test data missing: \(path) (set DSMOPT_TEST_DATA or provide ../shared/data)" }
    }
}

/// A fresh temporary folder, removed when the value is released.
public final class TemporaryFolder: @unchecked Sendable {
    public let url: URL
    public init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("dsmopt-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    public func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// Runs a program and captures its exit code and output.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

public func run(_ executable: String, _ arguments: [String], timeout: TimeInterval = 120) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Both pipes are drained on their own threads while the timeout is enforced, so that a child writing
    // much to either cannot block, and a child that hangs is stopped.
    let o = PipeReader(out.fileHandleForReading), e = PipeReader(err.fileHandleForReading)
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(10_000) }
    if p.isRunning {
        p.terminate()
        usleep(500_000)
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    }
    p.waitUntilExit()
    return ProcessResult(status: p.terminationStatus, stdout: String(decoding: o.wait(), as: UTF8.self),
                         stderr: String(decoding: e.wait(), as: UTF8.self))
}

/// The normalised median absolute deviation of `v` (not empty): 1.4826 × the median of |v − median(v)|, each
/// median the upper middle value.
public func nmad(_ v: [Double]) -> Double {
    let m = v.sorted()[v.count / 2]
    return 1.4826 * v.map { abs($0 - m) }.sorted()[v.count / 2]
}

/// The built `dsmopt` executable: `$DSMOPT_BIN`, or the one beside the running test bundle.
public func dsmoptExecutable() throws -> String {
    if let env = ProcessInfo.processInfo.environment["DSMOPT_BIN"], !env.isEmpty { return env }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("dsmopt").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    let fallback = TestData.packageRoot.appendingPathComponent(".build/debug/dsmopt").path
    guard FileManager.default.isExecutableFile(atPath: fallback) else {
        throw TestData.MissingTestData(path: "dsmopt executable (build it with `swift build` or set DSMOPT_BIN)")
    }
    return fallback
}

/// Reads a pipe to its end on a thread of its own.
final class PipeReader: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)
    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }
    func wait() -> Data {
        done.wait()
        return data
    }
}

/// STAC validation of JSON files by `stac-validator` (PyPI) with the official schemas kept in
/// `Tests/STAC/schemas` (`Tests/STAC/validate.sh`). A missing validator fails the test, never skips it.
public enum STACValidation {
    /// Validates files (items or collections; `itemCollection` for a search or items page) and returns the
    /// validator's report; throws when it cannot run. `valid` is false when any file is invalid.
    public static func validate(_ files: [String], itemCollection: Bool = false) throws -> (valid: Bool, report: String) {
        let script = TestData.packageRoot.appendingPathComponent("Tests/STAC/validate.sh").path
        let r = try run("/bin/bash", [script] + (itemCollection ? ["--item-collection"] : []) + files, timeout: 300)
        if r.status == 2 { throw TestData.MissingTestData(path: "stac-validator (scripts/setup.sh --test installs it): \(r.stderr)") }
        let invalid = r.stdout.contains("\"valid_stac\": false")
        let validCount = r.stdout.components(separatedBy: "\"valid_stac\": true").count - 1
        return (r.status == 0 && !invalid && validCount >= files.count, r.stdout + r.stderr)
    }
}
