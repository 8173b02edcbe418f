import Foundation
import TestSupport
import Testing

/// The OpenAPI document against the running daemon: Schemathesis (PyPI) generates requests from the
/// request schemas (valid and invalid ones, stateful sequences following the responses) and checks every
/// answer with `--checks all`: no server error, only documented status codes and media types, responses
/// that match their schemas, invalid requests refused, valid ones accepted, authentication required where
/// declared. What `Tests/API/schemathesis.toml` sets, it says why. A fixed seed keeps the run reproducible.
@Suite struct OpenAPIContractTests {
    @Test func schemathesisFindsNoFailure() async throws {
        let venv = ProcessInfo.processInfo.environment["DSMOPT_TEST_PYTHON"].map { URL(fileURLWithPath: $0).deletingLastPathComponent().path }
            ?? TestData.packageRoot.appendingPathComponent(".build/portal-venv/bin").path
        let st = (venv as NSString).appendingPathComponent("schemathesis")
        try #require(FileManager.default.isExecutableFile(atPath: st), "no schemathesis at \(st): run scripts/setup.sh --test")
        let s = try ServerProcess(workers: 0)
        let admin = try s.user("root", role: "admin")
        let config = TestData.packageRoot.appendingPathComponent("Tests/API/schemathesis.toml").path
        let r = try run(st, ["--no-color", "--config-file", config, "run", "\(s.base)/openapi.json", "--checks", "all", "-H", "Authorization: Bearer \(admin)",
                             "--max-examples", "100", "--workers", "2", "--seed", "20261122"], timeout: 900)
        let summary = r.stdout.split(separator: "\n").filter { $0.contains("generated") || $0.contains("passed") || $0.contains("failure") }
        print("schemathesis: \(summary.joined(separator: " | "))")
        #expect(r.status == 0, "schemathesis found failures:\n\(r.stdout.suffix(6000))\n\(r.stderr.suffix(2000))")
        // It did test: thousands of cases over every documented operation but the token rotations.
        let generated = r.stdout.range(of: #"(\d+) generated, (\d+) passed"#, options: .regularExpression).map { String(r.stdout[$0]) } ?? ""
        let counts = generated.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .punctuationCharacters)) }
        #expect(counts.count == 2 && counts[0] > 1000 && counts[0] == counts[1], "\(generated)")
    }
}
