import Foundation
import TestSupport
import Testing

/// The web portal in a real browser: Chromium driven by Selenium (`Tests/Portal/portal_browser.py`) against
/// a real daemon on loopback. Needs `chromium`, `chromium-driver` and a Python with `selenium`
/// (`scripts/setup.sh --test` installs them; `DSMOPT_TEST_PYTHON` names the Python, default
/// `.build/portal-venv/bin/python`). Missing tools fail the test, never skip it.
@Suite(.serialized) struct PortalBrowserTests {
    @Test func researcherOperatorAndAdministratorPathsInChromium() async throws {
        let python = ProcessInfo.processInfo.environment["DSMOPT_TEST_PYTHON"] ?? TestData.packageRoot.appendingPathComponent(".build/portal-venv/bin/python").path
        try #require(FileManager.default.isExecutableFile(atPath: python), "no Python with selenium at \(python): run scripts/setup.sh --test (or set DSMOPT_TEST_PYTHON)")
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver"), "chromium-driver is not installed: run scripts/setup.sh --test")
        let server = try ServerProcess(workers: 1)
        defer { server.stop() }
        let alice = try server.user("alice")
        let bob = try server.user("bob")
        let carol = try server.user("carol", quota: ["--cpu-seconds-per-month", "0"])
        let admin = try server.user("root", role: "admin")
        // Screenshots of every step stay after the run (a test artefact), next to the build products.
        let artefacts = TestData.packageRoot.appendingPathComponent(".build/test-artefacts/portal").path
        try? FileManager.default.removeItem(atPath: artefacts)
        let script = TestData.packageRoot.appendingPathComponent("Tests/Portal/portal_browser.py").path
        let r = try run(python, [script, "--url", server.base, "--alice", alice, "--bob", bob, "--carol", carol, "--admin", admin,
                                 "--data", TestData.root.path, "--artefacts", artefacts], timeout: 600)
        print(r.stdout)
        if r.status != 0 { print(r.stderr) }
        #expect(r.status == 0, "the browser test failed: \(r.stderr.suffix(3000))")
        #expect(r.stdout.contains("portal: all checks passed"))
        // Every step left a screenshot.
        let shots = (try? FileManager.default.contentsOfDirectory(atPath: artefacts).filter { $0.hasSuffix(".png") }) ?? []
        #expect(shots.count >= 12, "screenshots: \(shots.sorted())")
    }
}
