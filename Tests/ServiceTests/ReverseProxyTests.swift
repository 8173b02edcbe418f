import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TestSupport
import Testing

/// The service behind a reverse proxy under a path prefix (nginx, `ReverseProxy`), with `--public-url`: a
/// client that knows only the public address finds everything by following the links the API gives.
@Suite(.serialized) struct ReverseProxyTests {
    @Test func linksLeadThroughAReverseProxyUnderAPathPrefix() async throws {
        let img1 = try TestData.path("pleiades/reunion-pair/img_01.tif"), img2 = try TestData.path("pleiades/reunion-pair/img_02.tif")
        let port = try ReverseProxy.freeLoopbackPort()
        let pub = ReverseProxy.publicURL(port: port)
        let server = try ServerProcess(workers: 1, extra: ["--public-url", pub + "/"])
        defer { server.stop() }
        let proxy = try ReverseProxy(port: port, backend: server.base)
        defer { proxy.stop() }
        let token = try server.user("alice")
        func links(_ object: [String: Any]?) -> [String: String] {
            Dictionary(((object?["links"] as? [[String: Any]]) ?? []).compactMap { l in (l["rel"] as? String).flatMap { r in (l["href"] as? String).map { (r, $0) } } },
                       uniquingKeysWith: { a, _ in a })
        }

        // The landing page through the proxy: every link is under the public address (the trailing slash given
        // to --public-url dropped), none under the daemon's own.
        let landing = try await http("GET", "\(pub)/", headers: ["Accept": "application/json"])
        let top = links(landing.json)
        #expect(landing.status == 200 && top.count == 7 && top.values.allSatisfy { $0.hasPrefix(pub + "/") }, "\(landing.text)")
        // The same asked of the daemon directly: the configured address, not the request's.
        let direct = links(try await http("GET", "\(server.base)/", headers: ["Accept": "application/json"]).json)
        #expect(direct == top, "\(direct)")
        // The OpenAPI document names the public address as its server, so that clients resolve its paths there.
        let openAPI = try await http("GET", "\(pub)/openapi.json")
        #expect(((openAPI.json?["servers"] as? [[String: Any]])?.first?["url"] as? String) == pub, "\(openAPI.text.prefix(300))")

        // Process list → execute link.
        let processes = try await http("GET", try #require(top["http://www.opengis.net/def/rel/ogc/1.0/processes"]))
        let dsmOpt = try #require((processes.json?["processes"] as? [[String: Any]])?.first { $0["id"] as? String == "dsm-opt" }, "\(processes.text)")
        let execute = try #require(links(dsmOpt)["http://www.opengis.net/def/rel/ogc/1.0/execute"])
        #expect(execute == "\(pub)/processes/dsm-opt/execution")
        // The process description (its self link) carries the same links.
        let description = try await http("GET", try #require(links(dsmOpt)["self"]))
        #expect(links(description.json)["http://www.opengis.net/def/rel/ogc/1.0/execute"] == execute && links(description.json)["self"] == "\(pub)/processes/dsm-opt",
                "\(description.text.prefix(300))")

        // Uploads through the proxy (streamed, unbuffered): Location and the upload's self link.
        var uploads: [String] = []
        for (path, name) in [(img1, "img_01.tif"), (img2, "img_02.tif")] {
            let r = try await http("POST", "\(pub)/uploads?name=\(name)", token: token, body: try Data(contentsOf: URL(fileURLWithPath: path)))
            let location = try #require(r.headers["location"], "\(r.status) \(r.text)")
            #expect(r.status == 201 && location.hasPrefix("\(pub)/uploads/"), "\(location)")
            let view = try await http("GET", location, token: token)
            #expect(view.status == 200 && links(view.json)["self"] == location, "\(view.text.prefix(500))")
            uploads.append(try #require(r.json?["id"] as? String))
        }

        // A job: created at the execute link, followed by its Location to the end, then its results by links.
        let created = try await http("POST", execute, token: token, body: json([
            "name": "behind a proxy", "images": uploads.map { ["upload": $0] },
            "parameters": ["roi": [350, 350, 300, 300], "resolution": 1.0, "orthos": false, "mosaic": false]]))
        let location = try #require(created.headers["location"], "\(created.status) \(created.text)")
        let id = try #require(created.json?["jobID"] as? String)
        #expect(created.status == 201 && location == "\(pub)/jobs/\(id)" && links(created.json)["self"] == location, "\(created.text)")
        var job: [String: Any] = [:]
        let deadline = Date().addingTimeInterval(240)
        while Date() < deadline {
            job = try await http("GET", location, token: token).json ?? [:]
            if ["successful", "failed", "dismissed"].contains(job["status"] as? String ?? "") { break }
            try await Task.sleep(nanoseconds: 300_000_000)
        }
        try #require(job["status"] as? String == "successful", "\(job)")
        let log = try await http("GET", try #require(links(job)["log"]), token: token)
        #expect(log.status == 200 && log.text.contains("==> attempt 1"), "\(log.text.prefix(300))")
        let results = try await http("GET", try #require(links(job)["http://www.opengis.net/def/rel/ogc/1.0/results"], "\(job)"), token: token)
        let dsm = try #require((results.json?["dsm"] as? [String: Any])?["href"] as? String, "\(results.text)")
        #expect(dsm == "\(pub)/jobs/\(id)/results/dsm.tif")
        // The product through the proxy, a range of it (how GDAL's /vsicurl/ reads a COG).
        let head = try await http("GET", dsm, token: token, headers: ["Range": "bytes=0-3"])
        #expect(head.status == 206 && [UInt8](head.body) == [0x49, 0x49, 0x2A, 0x00], "\(head.status) \(head.headers)")
        // The served manifest's products link under the public address too, each one served.
        let manifest = try await http("GET", try #require((results.json?["manifest"] as? [String: Any])?["href"] as? String), token: token)
        let hrefs = ((manifest.json?["products"] as? [[String: Any]]) ?? []).compactMap { $0["href"] as? String }
        #expect(hrefs.count >= 5 && hrefs.allSatisfy { $0.hasPrefix("\(pub)/jobs/\(id)/results/") }, "\(hrefs)")
        for href in hrefs { #expect(try await http("HEAD", href, token: token).status == 200, "\(href)") }
        // The job list's own links: the job's self link as in its status.
        let list = try await http("GET", try #require(top["http://www.opengis.net/def/rel/ogc/1.0/job-list"]), token: token)
        #expect(((list.json?["jobs"] as? [[String: Any]])?.first.map { links($0) })?["self"] == location, "\(list.text.prefix(500))")

        // Published: the STAC item's links and assets under the public address, its assets served through it.
        let published = try await http("POST", "\(pub)/jobs/\(id)/publish", token: token)
        let itemURL = try #require(published.headers["location"], "\(published.status) \(published.text)")
        // The catalogue is found from the landing page too.
        let stac = try await http("GET", try #require(top["data"]), token: token)
        #expect(stac.status == 200 && links(stac.json)["self"] == "\(pub)/stac", "\(stac.text.prefix(300))")
        #expect(published.status == 201 && itemURL == "\(pub)/stac/collections/dsm-opt/items/\(id)")
        let item = try await http("GET", itemURL, token: token)
        #expect(links(item.json)["self"] == itemURL && links(item.json)["root"] == "\(pub)/stac", "\(item.text.prefix(600))")
        let assets = ((item.json?["assets"] as? [String: [String: Any]]) ?? [:]).compactMap { $0.value["href"] as? String }
        #expect(!assets.isEmpty && assets.allSatisfy { $0.hasPrefix("\(pub)/stac/collections/dsm-opt/items/\(id)/assets/") }, "\(assets)")
        for href in assets { #expect(try await http("HEAD", href, token: token).status == 200, "\(href)") }

        // Every request above went through nginx under the prefix (its access log), none around it but the one
        // direct landing page.
        let access = (try? String(contentsOfFile: proxy.folder.path("access.log"), encoding: .utf8)) ?? ""
        #expect(access.contains("\"POST /dsm/processes/dsm-opt/execution HTTP/1.1\" 201") && access.contains("\"GET /dsm/jobs/\(id)/results/dsm.tif HTTP/1.1\" 206"),
                "\(access.suffix(2000))")
    }

    /// A public URL that is not one is refused at start, with the reason.
    @Test func aPublicURLThatIsNotOneIsRefusedAtStart() throws {
        let data = try TemporaryFolder()
        for bad in ["ftp://example.org/dsm", "dsm.example.org", "https://example.org/dsm?x=1", "https://user:pw@example.org"] {
            let r = try run(try dsmoptExecutable(), ["serve", "--data", data.url.path, "--port", "0", "--public-url", bad], timeout: 30)
            #expect(r.status != 0 && r.stderr.contains("publicURL") && r.stderr.contains(bad), "\(bad): \(r.status) \(r.stderr)")
        }
    }
}
