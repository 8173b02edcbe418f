import Foundation
import TestSupport
import Testing

/// The web portal in a real browser: Chromium driven by Selenium (`Tests/Portal/portal_browser.py`) against
/// a real daemon on loopback. Needs `chromium`, `chromium-driver` and a Python with `selenium`
/// (`scripts/setup.sh --test` installs them; `DSMOPT_TEST_PYTHON` names the Python, default
/// `.build/portal-venv/bin/python`, with `aiosmtpd` for the daemon's mail server). Missing tools fail the
/// test, never skip it.
@Suite(.serialized) struct PortalBrowserTests {
    @Test func researcherOperatorAndAdministratorPathsInChromium() async throws {
        let smtpPort = try ReverseProxy.freeLoopbackPort()
        let server = try ServerProcess(workers: 1, config: "{\"smtpURL\": \"smtp://127.0.0.1:\(smtpPort)\"}")
        defer { server.stop() }
        try runPortalScript(server: server, url: server.base, smtpPort: smtpPort, artefacts: "portal")
    }

    /// The same paths with the portal served by nginx under a path prefix (`ReverseProxy`; the public URL
    /// from the daemon's config file, `ReverseProxyTests` gives it as a flag): the portal finds the API, the
    /// map's tiles and the downloads under the prefix.
    @Test func thePortalBehindAReverseProxyUnderAPathPrefix() async throws {
        let port = try ReverseProxy.freeLoopbackPort(), smtpPort = try ReverseProxy.freeLoopbackPort()
        let server = try ServerProcess(workers: 1, config: "{\"publicURL\": \"\(ReverseProxy.publicURL(port: port))\", \"smtpURL\": \"smtp://127.0.0.1:\(smtpPort)\"}")
        defer { server.stop() }
        let proxy = try ReverseProxy(port: port, backend: server.base)
        defer { proxy.stop() }
        let landing = try await http("GET", "\(proxy.base)/", headers: ["Accept": "application/json"])
        let hrefs = ((landing.json?["links"] as? [[String: Any]]) ?? []).compactMap { $0["href"] as? String }
        #expect(!hrefs.isEmpty && hrefs.allSatisfy { $0.hasPrefix(proxy.base + "/") }, "the config file's publicURL: \(hrefs)")
        try runPortalScript(server: server, url: proxy.base, smtpPort: smtpPort, artefacts: "portal-proxied")
        // The browser's requests went through the proxy under the prefix: the portal's files, the API, tiles.
        let access = (try? String(contentsOfFile: proxy.folder.path("access.log"), encoding: .utf8)) ?? ""
        for request in ["GET /dsm/portal/portal.js", "POST /dsm/uploads?name=", "POST /dsm/processes/dsm-opt/execution", "GET /dsm/jobs/"] {
            #expect(access.contains(request), "\(request) not in nginx's access log: \(access.suffix(1500))")
        }
        #expect(access.contains("/tiles/") && access.contains("/results/"), "no tile or download through the proxy: \(access.suffix(1500))")
    }

    /// `smtpPort`: the daemon's mail server (`smtpURL`), which the script runs (aiosmtpd) and reads back.
    func runPortalScript(server: ServerProcess, url: String, smtpPort: Int, artefacts folder: String) throws {
        let python = ProcessInfo.processInfo.environment["DSMOPT_TEST_PYTHON"] ?? TestData.packageRoot.appendingPathComponent(".build/portal-venv/bin/python").path
        try #require(FileManager.default.isExecutableFile(atPath: python), "no Python with selenium at \(python): run scripts/setup.sh --test (or set DSMOPT_TEST_PYTHON)")
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver"), "chromium-driver is not installed: run scripts/setup.sh --test")
        let alice = try server.user("alice")
        let bob = try server.user("bob")
        let carol = try server.user("carol", quota: ["--cpu-seconds-per-month", "0"])
        let admin = try server.user("root", role: "admin")
        // Screenshots of every step stay after the run (a test artefact), next to the build products.
        let artefacts = TestData.packageRoot.appendingPathComponent(".build/test-artefacts/\(folder)").path
        try? FileManager.default.removeItem(atPath: artefacts)
        let script = TestData.packageRoot.appendingPathComponent("Tests/Portal/portal_browser.py").path
        let r = try run(python, [script, "--url", url, "--alice", alice, "--bob", bob, "--carol", carol, "--admin", admin,
                                 "--data", TestData.root.path, "--artefacts", artefacts, "--smtp-port", String(smtpPort)], timeout: 600)
        print(r.stdout)
        if r.status != 0 { print(r.stderr) }
        #expect(r.status == 0, "the browser test failed (\(url)): \(r.stderr.suffix(3000))")
        #expect(r.stdout.contains("portal: all checks passed"))
        // Every step left a screenshot.
        let shots = (try? FileManager.default.contentsOfDirectory(atPath: artefacts).filter { $0.hasSuffix(".png") }) ?? []
        #expect(shots.count >= 12, "screenshots: \(shots.sorted())")
    }
}
