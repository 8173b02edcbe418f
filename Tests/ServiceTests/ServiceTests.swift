import Crypto
import DSMPipeline
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TestSupport
import Testing

/// The job service over real HTTP on loopback: a real `dsmopt serve` with a temporary data folder.
@Suite(.serialized) struct ServiceTests {
    let img1: String
    let img2: String

    init() throws {
        img1 = try TestData.path("pleiades/reunion-pair/img_01.tif")
        img2 = try TestData.path("pleiades/reunion-pair/img_02.tif")
    }

    func submit(_ s: ServerProcess, token: String, uploads: [String], roi: [Int] = [350, 350, 300, 300], extra: [String: Any] = [:]) async throws -> HTTPResult {
        var params: [String: Any] = ["roi": roi, "resolution": 1.0, "orthos": false]
        for (k, v) in extra { params[k] = v }
        return try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                              body: json(["name": "test", "images": uploads.map { ["upload": $0] }, "preset": "default", "parameters": params]),
                              headers: ["Content-Type": "application/json"])
    }

    @Test func fullJobFromUploadToDownload() async throws {
        let s = try ServerProcess(workers: 1)
        let token = try s.user("alice")
        // Uploads stream to disk and report size and SHA-256.
        let r1 = try await http("POST", "\(s.base)/uploads?name=img_01.tif", token: token, body: try Data(contentsOf: URL(fileURLWithPath: img1)))
        #expect(r1.status == 201)
        let expected = SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: img1))).map { String(format: "%02x", $0) }.joined()
        #expect(r1.json?["sha256"] as? String == expected)
        #expect((r1.json?["size"] as? Int) == (try FileManager.default.attributesOfItem(atPath: img1)[.size] as? Int))
        let u1 = try #require(r1.json?["id"] as? String)
        let u2 = try await upload(s, token: token, path: img2, name: "img_02.tif")
        // The whole pair at 0.5 m (4 tiles), so that there is progress to see.
        // Progress is visible while it runs, then the job succeeds. Polled by a process of its own, started
        // before the submission: in this test process the suites run in parallel on a 2-thread cooperative
        // pool that the pipeline tests keep busy, so this test may only resume once the job is over.
        let pollerOutput = Pipe()
        let poller = Process()
        poller.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        poller.arguments = ["-c", """
            import json, sys, time, urllib.request
            url, token = sys.argv[1], sys.argv[2]
            seen, final, t0 = [], None, time.time()
            while time.time() - t0 < 180:
                page = json.load(urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer " + token}), timeout=30))
                if page["jobs"]:
                    j = page["jobs"][0]
                    if isinstance(j.get("progress"), int) and j["progress"] not in seen: seen.append(j["progress"])
                    if j.get("status") in ("successful", "failed"): final = j; break
                time.sleep(0.05)
            print(json.dumps({"seen": seen, "final": final}))
            """, "\(s.base)/jobs", token]
        poller.standardOutput = pollerOutput
        try poller.run()
        let created = try await submit(s, token: token, uploads: [u1, u2], roi: [0, 0, 1024, 1024], extra: ["point-cloud": true, "resolution": 0.5, "orthos": true])
        #expect(created.status == 201, "\(created.text)")
        let id = try #require(created.json?["jobID"] as? String)
        // Links and Location are absolute: the address the client used (no public URL configured).
        #expect(created.headers["location"] == "\(s.base)/jobs/\(id)")
        let pollerData = pollerOutput.fileHandleForReading.readDataToEndOfFile()
        poller.waitUntilExit()
        let poll = (stdout: String(decoding: pollerData, as: UTF8.self), stderr: "poller exit \(poller.terminationStatus)")
        let polled = try #require(try JSONSerialization.jsonObject(with: Data(poll.stdout.utf8)) as? [String: Any], "\(poll.stderr)")
        let seen = Set((polled["seen"] as? [Int]) ?? [])
        let final = (polled["final"] as? [String: Any]) ?? [:]
        #expect(final["status"] as? String == "successful" && final["jobID"] as? String == id, "\(final)")
        #expect(final["progress"] as? Int == 100 && seen.count >= 2, "progress values seen while polling: \(seen.sorted())")
        #expect((final["cpuSeconds"] as? Double ?? 0) > 0)
        let purge = ISO8601DateFormatter().date(from: final["purgeDate"] as? String ?? "")
        let finished = ISO8601DateFormatter().date(from: final["finished"] as? String ?? "")
        #expect(purge != nil && finished != nil && abs(purge!.timeIntervalSince(finished!) - 21 * 86400) < 2)
        // Results: the results document (output name → link), the manifest with each product's link and size,
        // downloads with and without Range.
        let document = try #require(try await http("GET", "\(s.base)/jobs/\(id)/results", token: token).json)
        #expect((document["dsm"] as? [String: Any])?["href"] as? String == "\(s.base)/jobs/\(id)/results/dsm.tif", "\(document)")
        #expect((document["pointcloud"] as? [String: Any])?["type"] as? String == "application/vnd.las", "\(document)")
        #expect((document["orthos"] as? [[String: Any]])?.compactMap { $0["href"] as? String }
                == ["\(s.base)/jobs/\(id)/results/ortho_1_forward.tif", "\(s.base)/jobs/\(id)/results/ortho_2_backward.tif"], "\(document)")
        let manifest = try await http("GET", "\(s.base)/jobs/\(id)/results/manifest.json", token: token)
        let products = try #require(manifest.json?["products"] as? [[String: Any]], "\(manifest.text)")
        #expect(manifest.json?["jobID"] as? String == id && manifest.json?["purgeDate"] is String)
        #expect(products.contains { $0["file"] as? String == "dsm.tif" && $0["href"] as? String == "\(s.base)/jobs/\(id)/results/dsm.tif" && ($0["bytes"] as? Int ?? 0) > 1000 })
        #expect(products.contains { $0["code"] as? String == "D1" })
        // The manifest is built per request, with a validator of its bytes.
        let manifestTag = try #require(manifest.headers["etag"])
        #expect(try await http("HEAD", "\(s.base)/jobs/\(id)/results/manifest.json", token: token).headers["etag"] == manifestTag)
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/results/manifest.json", token: token, headers: ["If-None-Match": manifestTag]).status == 304)
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/results/manifest.json", token: token, headers: ["If-None-Match": "\"other\""]).status == 200)
        let full = try await http("GET", "\(s.base)/jobs/\(id)/results/dsm.tif", token: token)
        #expect(full.status == 200 && full.body.prefix(2) == Data("II".utf8) && full.headers["content-type"] == STACItem.cogType)
        let part = try await http("GET", "\(s.base)/jobs/\(id)/results/dsm.tif", token: token, headers: ["Range": "bytes=100-199"])
        #expect(part.status == 206 && part.body == full.body.subdata(in: 100..<200))
        #expect(part.headers["content-range"] == "bytes 100-199/\(full.body.count)")
        let bad = try await http("GET", "\(s.base)/jobs/\(id)/results/dsm.tif", token: token, headers: ["Range": "bytes=\(full.body.count + 10)-"])
        #expect(bad.status == 416)
        // HEAD, validators and conditional requests (what /vsicurl/ and QGIS send).
        let head = try await http("HEAD", "\(s.base)/jobs/\(id)/results/dsm.tif", token: token)
        let etag = try #require(head.headers["etag"])
        #expect(head.status == 200 && head.body.isEmpty && head.headers["content-length"] == "\(full.body.count)"
                && head.headers["accept-ranges"] == "bytes" && full.headers["etag"] == etag, "\(head.headers)")
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/results/dsm.tif", token: token, headers: ["If-None-Match": etag]).status == 304)
        let stale = try await http("GET", "\(s.base)/jobs/\(id)/results/dsm.tif", token: token, headers: ["Range": "bytes=0-9", "If-Range": "\"other\""])
        #expect(stale.status == 200 && stale.body.count == full.body.count)
        let fresh = try await http("GET", "\(s.base)/jobs/\(id)/results/dsm.tif", token: token, headers: ["Range": "bytes=0-9", "If-Range": etag])
        #expect(fresh.status == 206 && fresh.body.count == 10)
        // Every result in one zip, linked from the job: the results document's files under dsmopt-{id}/, each
        // the bytes of its own download (Python's zipfile checks the CRCs); resumable like a product.
        let status = try await http("GET", "\(s.base)/jobs/\(id)", token: token).json
        #expect(((status?["links"] as? [[String: String]]) ?? []).contains { $0["rel"] == "enclosure" && $0["href"] == "\(s.base)/jobs/\(id)/results.zip" && $0["type"] == "application/zip" }, "\(status ?? [:])")
        let zip = try await http("GET", "\(s.base)/jobs/\(id)/results.zip", token: token)
        #expect(zip.status == 200 && zip.headers["content-type"] == "application/zip" && zip.headers["content-length"] == "\(zip.body.count)"
                && zip.headers["content-disposition"] == "attachment; filename=\"dsmopt-\(id).zip\"", "\(zip.status) \(zip.headers)")
        let zipFolder = try TemporaryFolder()
        try zip.body.write(to: URL(fileURLWithPath: zipFolder.path("r.zip")))
        let listed = try run("/usr/bin/python3", ["-c", """
            import hashlib, json, sys, zipfile
            z = zipfile.ZipFile(sys.argv[1])
            print(json.dumps({"bad": z.testzip(), "files": {i.filename: hashlib.sha256(z.read(i)).hexdigest() for i in z.infolist()}}))
            """, zipFolder.path("r.zip")])
        let zipped = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any], "\(listed.stderr)")
        let members = (zipped["files"] as? [String: String]) ?? [:]
        var documented = Set(document.values.flatMap { ($0 as? [[String: Any]]) ?? [$0 as? [String: Any] ?? [:]] }.compactMap { ($0["href"] as? String)?.components(separatedBy: "/").last })
        documented.formUnion(["manifest.json", "item.json"])
        #expect(zipped["bad"] is NSNull && Set(members.keys) == Set(documented.map { "dsmopt-\(id)/\($0)" }), "\(zipped) \(documented)")
        #expect(members["dsmopt-\(id)/dsm.tif"] == SHA256.hash(data: full.body).map { String(format: "%02x", $0) }.joined())
        #expect(members["dsmopt-\(id)/pointcloud.las"] != nil && members["dsmopt-\(id)/ortho_2_backward.tif"] != nil, "\(members.keys.sorted())")
        let zipTag = try #require(zip.headers["etag"])
        let zipPart = try await http("GET", "\(s.base)/jobs/\(id)/results.zip", token: token, headers: ["Range": "bytes=1000-", "If-Range": zipTag])
        #expect(zipPart.status == 206 && zipPart.body == zip.body.subdata(in: 1000..<zip.body.count)
                && zipPart.headers["content-range"] == "bytes 1000-\(zip.body.count - 1)/\(zip.body.count)", "\(zipPart.status) \(zipPart.headers)")
        let zipHead = try await http("HEAD", "\(s.base)/jobs/\(id)/results.zip", token: token)
        #expect(zipHead.status == 200 && zipHead.headers["etag"] == zipTag && zipHead.headers["content-length"] == "\(zip.body.count)" && zipHead.body.isEmpty)
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/results.zip", token: token, headers: ["If-None-Match": zipTag]).status == 304)
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/results.zip").status == 401)
        // GDAL streams the COG over HTTP with the bearer token (GDAL_HTTP_HEADERS), HEAD included
        // (CPL_VSIL_CURL_USE_HEAD defaults to YES); without the token it is refused.
        let url = "/vsicurl/\(s.base)/jobs/\(id)/results/dsm.tif"
        let streamed = try run("/usr/bin/env", ["GDAL_HTTP_HEADERS=Authorization: Bearer \(token)", "GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR",
                                                "/usr/bin/gdalinfo", "-json", url])
        let layout = streamed.stdout.replacingOccurrences(of: " ", with: "")
        #expect(streamed.status == 0 && layout.contains("\"LAYOUT\":\"COG\""), "\(streamed.stderr)")
        let refused = try run("/usr/bin/env", ["GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR", "/usr/bin/gdalinfo", url])
        #expect(refused.status != 0)
        let anonymous = try await http("HEAD", "\(s.base)/jobs/\(id)/results/dsm.tif")
        #expect(anonymous.status == 401 && anonymous.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
        // The scheme name is case-insensitive.
        #expect(try await http("GET", "\(s.base)/me", headers: ["Authorization": "bearer \(token)"]).status == 200)
        let logs = try await http("GET", "\(s.base)/jobs/\(id)/logs", token: token)
        #expect(logs.status == 200 && logs.text.contains("] match:"))
        let me = try await http("GET", "\(s.base)/me", token: token).json
        let usage = try #require(me?["usage"] as? [String: Any])
        #expect((usage["cpuSecondsThisMonth"] as? Double ?? 0) > 0 && (usage["storageBytes"] as? Int ?? 0) > 4_000_000)
        // The metrics show the finished job and the HTTP latencies — to operators and admins only.
        #expect(try await http("GET", "\(s.base)/metrics").status == 401)
        #expect(try await http("GET", "\(s.base)/metrics", token: token).status == 403)
        let ops = try s.user("oscar", role: "operator")
        let metrics = try await http("GET", "\(s.base)/metrics", token: ops).text
        #expect(metrics.contains("dsmopt_jobs{state=\"successful\"} 1") && metrics.contains("dsmopt_http_request_duration_seconds_bucket"))
        #expect(metrics.contains("dsmopt_stage_seconds_sum{stage=\"match\"}"))
        // Labels are route patterns, never ids or unknown paths.
        #expect(metrics.contains("route=\"/jobs/{id}/results/{file}\"") && !metrics.contains(id), "\(metrics)")
        // The map: layers from the products, Web Mercator tiles rendered from the COGs, legends, point values.
        let map = try #require(try await http("GET", "\(s.base)/jobs/\(id)/map", token: token).json)
        let layers = (map["layers"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(Set(["dsm", "hillshade", "hillshade_multidirectional", "correlation_score", "ortho_mosaic"]).isSubset(of: Set(layers)), "\(layers)")
        let bounds = try #require(map["bounds"] as? [Double])
        let lon = (bounds[0] + bounds[2]) / 2, lat = (bounds[1] + bounds[3]) / 2
        let z = 17, n = Double(1 << z)
        let tx = Int((lon + 180) / 360 * n), ty = Int((1 - asinh(tan(lat * .pi / 180)) / .pi) / 2 * n)
        for layer in ["hillshade", "dsm", "correlation_score", "ortho_mosaic"] {
            let tile = try await http("GET", "\(s.base)/jobs/\(id)/tiles/\(layer)/\(z)/\(tx)/\(ty).png", token: token)
            #expect(tile.status == 200 && tile.headers["content-type"] == "image/png" && tile.body.starts(with: [0x89, 0x50, 0x4E, 0x47]), "\(layer): \(tile.status)")
            // Decoded by GDAL: 256×256 RGBA with opaque cells that are not all one colour.
            let png = FileManager.default.temporaryDirectory.appendingPathComponent("tile-\(UUID().uuidString).png")
            try tile.body.write(to: png)
            defer { try? FileManager.default.removeItem(at: png) }
            let info = try run("/usr/bin/python3", ["-c", "from osgeo import gdal; import sys; d = gdal.Open(sys.argv[1]); a = d.ReadAsArray(); m = a[3] > 0; print(d.RasterCount, d.RasterXSize, int(m.sum()), float(a[0][m].std()) if m.any() else 0)", png.path])
            let f = info.stdout.split(separator: " ").compactMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            #expect(f.count == 4 && f[0] == 4 && f[1] == 256 && f[2] > 1000 && f[3] > 1, "\(layer) tile: \(info.stdout) \(info.stderr)")
        }
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/tiles/dsm/3/1/1.png", token: token).status == 204)
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/tiles/dsm_filled_mask/\(z)/\(tx)/\(ty).png", token: token).status == 404)
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/tiles/dsm/30/0/0.png", token: token).status == 404)
        let legend = try #require(try await http("GET", "\(s.base)/jobs/\(id)/tiles/dsm/legend", token: token).json)
        let lo = try #require(legend["minimum"] as? Double), hi = try #require(legend["maximum"] as? Double)
        #expect(lo > 2000 && hi < 2600 && lo < hi, "La Réunion's heights: \(lo)…\(hi)")
        let probe = try #require(try await http("GET", "\(s.base)/jobs/\(id)/probe?lon=\(lon)&lat=\(lat)", token: token).json)
        let h = try #require(probe["height"] as? Double)
        #expect(h > lo - 50 && h < hi + 50, "height \(h) at the centre")
        let stranger = try s.user("mallory")
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/tiles/dsm/\(z)/\(tx)/\(ty).png", token: stranger).status == 404)
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/map").status == 401)
        // A damaged manifest on disk: the results document, the served manifest and the map answer alike — a 500
        // with a request id (no server path), the operator's log naming the job and the file — and the daemon
        // serves on; restored, they answer again.
        let manifestPath = s.data.path("jobs/\(id)/attempt-1/out/manifest.json")
        let original = try Data(contentsOf: URL(fileURLWithPath: manifestPath))
        try Data("{\"products\": [".utf8).write(to: URL(fileURLWithPath: manifestPath))
        for route in ["results", "results/manifest.json", "map"] {
            let r = try await http("GET", "\(s.base)/jobs/\(id)/\(route)", token: token)
            #expect(r.status == 500 && r.text.contains("request id") && !r.text.contains(s.data.path("")), "\(route): \(r.status) \(r.text)")
        }
        let daemonLog = try String(contentsOfFile: s.logPath, encoding: .utf8)
        #expect(daemonLog.contains("the results of job \(id) are damaged: manifest.json (14 bytes) is not a JSON object"), "\(daemonLog.suffix(600))")
        #expect(try await http("GET", "\(s.base)/health").status == 200)
        // Changed, the manifest's validator changes; restored, it is the first one again.
        var changed = try #require(try JSONSerialization.jsonObject(with: original) as? [String: Any])
        changed["note"] = "changed"
        try JSONSerialization.data(withJSONObject: changed).write(to: URL(fileURLWithPath: manifestPath))
        let after = try await http("GET", "\(s.base)/jobs/\(id)/results/manifest.json", token: token, headers: ["If-None-Match": manifestTag])
        #expect(after.status == 200 && after.headers["etag"] != nil && after.headers["etag"] != manifestTag && after.json?["note"] as? String == "changed")
        try original.write(to: URL(fileURLWithPath: manifestPath))
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/map", token: token).status == 200)
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/results/manifest.json", token: token, headers: ["If-None-Match": manifestTag]).status == 304)
        // Deleting a finished job removes it and its results.
        let del = try await http("DELETE", "\(s.base)/jobs/\(id)", token: token)
        #expect(del.status == 200)
        let answer0 = try await http("GET", "\(s.base)/jobs/\(id)", token: token)
        #expect(answer0.status == 404)
    }

    /// A second daemon on a port already in use fails at once with one clear line (it used to spin at
    /// ~95 % CPU forever, ignoring SIGTERM: its worker loops never ended once cancelled).
    @Test func busyPortFailsAtOnce() async throws {
        let first = try ServerProcess(workers: 1)
        let port = try #require(URLComponents(string: first.base)?.port)
        let data = try TemporaryFolder()
        let started = Date()
        let r = try run(try dsmoptExecutable(), ["serve", "--data", data.url.path, "--port", "\(port)", "--workers", "2"], timeout: 30)
        let seconds = Date().timeIntervalSince(started)
        #expect(r.status != 0 && r.status != 15, "exit \(r.status) after \(seconds) s: \(r.stderr)")
        #expect(r.stderr.contains("cannot listen on 127.0.0.1:\(port): address already in use"), "\(r.stderr)")
        // A fence, not a target: it returns in well under a second here; the bug never returned.
        #expect(seconds < 20)
        // The first daemon still answers.
        #expect(try await http("GET", "\(first.base)/health").status == 200)
    }

    /// SIGTERM ends a daemon whose workers are idle promptly (every loop ends on cancellation).
    @Test func sigtermStopsTheDaemonPromptly() async throws {
        let s = try ServerProcess(workers: 3)
        let p = try #require(s.process)
        let started = Date()
        kill(p.processIdentifier, SIGTERM)
        while p.isRunning && Date().timeIntervalSince(started) < 20 { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(!p.isRunning, "still running 20 s after SIGTERM")
        #expect(Date().timeIntervalSince(started) < 20)
    }

    @Test func daemonStartedThroughPATHRunsJobs() async throws {
        // Found through PATH, argv[0] is a bare "dsmopt": workers must still find the executable.
        let s = try ServerProcess(workers: 1, throughPATH: true)
        let token = try s.user("alice")
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let id = try #require(try await submit(s, token: token, uploads: [u1, u2]).json?["jobID"] as? String)
        let j = try await waitFor(s, token: token, job: id, states: ["successful", "failed"])
        #expect(j["status"] as? String == "successful", "\(j)")
    }

    @Test func zippedProductsAreAccepted() async throws {
        let s = try ServerProcess(workers: 1)
        let token = try s.user("alice")
        // A zipped product: the synthetic view 2 with its .RPB sidecar, in a folder.
        let tmp = try TemporaryFolder()
        let f = TestData.fixture("synthetic-pair")
        let zip = tmp.path("view_2.zip")
        let z = try run("/usr/bin/python3", ["-c", """
            import zipfile; z = zipfile.ZipFile("\(zip)", "w")
            z.write("\(f)/view_2.tif", "PRODUCT/view_2.tif"); z.write("\(f)/view_2.RPB", "PRODUCT/view_2.RPB"); z.close()
            """])
        #expect(z.status == 0, "\(z.stderr)")
        let zipped = try await upload(s, token: token, path: zip, name: "view_2.zip")
        let plain = try await upload(s, token: token, path: "\(f)/view_1.tif", name: "view_1.tif")
        let r = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                               body: json(["images": [["upload": plain], ["upload": zipped]], "parameters": ["resolution": 1.0]]))
        #expect(r.status == 201, "\(r.text)")
        let id = try #require(r.json?["jobID"] as? String)
        let j = try await waitFor(s, token: token, job: id, states: ["successful", "failed"])
        #expect(j["status"] as? String == "successful", "\(j)")
        // A corrupt archive is refused and leaves nothing behind.
        try (Data([0x50, 0x4B, 0x03, 0x04]) + Data(" this is not a zip".utf8)).write(to: URL(fileURLWithPath: tmp.path("bad.zip")))
        let bad = try await http("POST", "\(s.base)/uploads?name=bad.zip", token: token, body: try Data(contentsOf: URL(fileURLWithPath: tmp.path("bad.zip"))))
        #expect(bad.status == 422 && bad.text.contains("not a valid zip"), "\(bad.text)")
    }

    /// A whole stereo delivery in one zip (two products): `{"upload": id}` stands for both views, `"image": n`
    /// for one of them; what was read from each view is listed; wrong indices and repeats are named.
    @Test func zippedDeliveryStandsForItsViews() async throws {
        let s = try ServerProcess(workers: 1)
        let token = try s.user("alice")
        let tmp = try TemporaryFolder()
        let zip = tmp.path("delivery.zip")
        let z = try run("/usr/bin/python3", ["-c", """
            import zipfile; z = zipfile.ZipFile("\(zip)", "w")
            z.write("\(img1)", "DELIVERY/PROD_01/img_01.tif"); z.write("\(img2)", "DELIVERY/PROD_02/img_02.tif"); z.close()
            """])
        #expect(z.status == 0, "\(z.stderr)")
        let delivery = try await upload(s, token: token, path: zip, name: "delivery.zip")
        let described = try #require(try await http("GET", "\(s.base)/uploads/\(delivery)", token: token).json)
        let views = try #require(described["images"] as? [[String: Any]], "\(described)")
        #expect(views.count == 2 && described["image"] == nil)
        #expect(views.allSatisfy { ($0["acquisitionTime"] as? String ?? "").hasPrefix("2013-06-29") && $0["gsd"] as? Double != nil }, "\(views)")
        // Inspection and a job from the one upload.
        let inspected = try await http("POST", "\(s.base)/processes/dsm-opt/inspection", token: token, body: json(["images": [["upload": delivery]]]))
        #expect(inspected.status == 200 && (inspected.json?["pairs"] as? [Any])?.count == 1, "\(inspected.text)")
        #expect(inspected.text.contains("delivery.zip image 2") && !inspected.text.contains(s.data.url.path), "\(inspected.text.prefix(600))")
        let r = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                               body: json(["images": [["upload": delivery]], "parameters": ["roi": [350, 350, 300, 300], "resolution": 1.0, "orthos": false]]))
        #expect(r.status == 201, "\(r.text)")
        let id = try #require(r.json?["jobID"] as? String)
        let inputs = (r.json?["inputs"] as? [[String: Any]] ?? []).compactMap { $0["fileName"] as? String }
        #expect(inputs == ["delivery.zip image 1", "delivery.zip image 2"], "\(inputs)")
        let j = try await waitFor(s, token: token, job: id, states: ["successful", "failed"])
        #expect(j["status"] as? String == "successful", "\(j)")
        // One view by its index, with a plain upload of the other.
        let plain = try await upload(s, token: token, path: img2, name: "img_02.tif")
        let picked = try await http("POST", "\(s.base)/processes/dsm-opt/inspection", token: token,
                                    body: json(["images": [["upload": delivery, "image": 1], ["upload": plain]]]))
        #expect(picked.status == 200, "\(picked.text)")
        // Errors name the field.
        func refused(_ images: [[String: Any]]) async throws -> [String: String] {
            let r = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token, body: json(["images": images]))
            #expect(r.status == 422, "\(images): \(r.status) \(r.text)")
            var out: [String: String] = [:]
            for e in r.json?["errors"] as? [[String: Any]] ?? [] { out[e["field"] as? String ?? ""] = e["message"] as? String }
            return out
        }
        #expect(try await refused([["upload": delivery, "image": 3], ["upload": plain]])["images[0].image"]?.contains("holds 2 image(s)") == true)
        #expect(try await refused([["upload": delivery, "image": 1], ["upload": delivery, "image": 1]])["images[1].upload"]?.contains("the same upload") == true)
        #expect(try await refused([["upload": delivery], ["upload": delivery]])["images[1].upload"]?.contains("the same upload") == true)
        #expect(try await refused([["upload": delivery], ["upload": delivery, "image": 2]])["images[1].upload"]?.contains("the same image as images[0] image 2") == true)
        #expect(try await refused([["upload": plain]])["images"]?.contains("got 1") == true)
        #expect(try await refused([["upload": plain, "image": 2], ["upload": delivery, "image": 1]])["images[0].image"]?.contains("holds 1 image(s)") == true)
        #expect(try await refused([["upload": plain, "image": 0], ["upload": delivery, "image": 1]])["images[0].image"] != nil)
    }

    /// The monthly CPU budget holds while a job runs: a job that would use more is stopped, with a clear
    /// error, and charged the CPU it measurably used (not its wall time, not the whole run).
    @Test func cpuBudgetIsEnforcedWhileRunning() async throws {
        let s = try ServerProcess(workers: 1)
        let token = try s.user("fred", quota: ["--cpu-seconds-per-month", "1.5"])
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        // The whole pair at 0.5 m takes ~6 CPU-seconds here.
        let created = try await submit(s, token: token, uploads: [u1, u2], roi: [0, 0, 1024, 1024], extra: ["resolution": 0.5])
        #expect(created.status == 201, "\(created.text)")
        let id = try #require(created.json?["jobID"] as? String)
        let j = try await waitFor(s, token: token, job: id, states: ["successful", "failed"])
        let cpu = j["cpuSeconds"] as? Double ?? 0
        #expect(j["status"] as? String == "failed" && (j["error"] as? String ?? "").contains("CPU-seconds left of this month's budget"), "\(j)")
        // Stopped within a heartbeat (2 s) of crossing the budget, on 2 cores: at most ~1.5 + 4 CPU-s.
        #expect(cpu >= 1.5 && cpu < 5.5, "charged \(cpu) CPU-s")
        let usage = try #require(try await http("GET", "\(s.base)/me", token: token).json?["usage"] as? [String: Any])
        let shown = try #require(usage["cpuSecondsThisMonth"] as? Double)
        #expect(abs(shown - cpu) < 0.011 && (shown * 100).rounded() / 100 == shown, "\(usage)")
        // The stopped attempt's output is gone (its log stays).
        #expect(!FileManager.default.fileExists(atPath: s.data.path("jobs/\(id)/attempt-1/out")))
        #expect(FileManager.default.fileExists(atPath: s.data.path("jobs/\(id)/attempt-1/log.txt")))
        // Nothing is left of the budget: the next submission is refused up front.
        let next = try await submit(s, token: token, uploads: [u1, u2])
        #expect(next.status == 403 && next.json?["limit"] as? String == "cpuSecondsPerMonth", "\(next.text)")
    }

    @Test func quotasAreEnforced() async throws {
        // No worker: jobs stay accepted, so the concurrency limit is deterministic.
        let s = try ServerProcess(workers: 0)
        let token = try s.user("carol", quota: ["--max-concurrent-jobs", "1"])
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let answer1 = try await submit(s, token: token, uploads: [u1, u2])
        #expect(answer1.status == 201)
        let second = try await submit(s, token: token, uploads: [u1, u2])
        #expect(second.status == 429 && second.json?["limit"] as? String == "maxConcurrentJobs", "\(second.text)")
        #expect(second.headers["content-type"]?.hasPrefix("application/problem+json") == true && second.headers["retry-after"] == "30")
        // Compute budget.
        let dave = try s.user("dave", quota: ["--cpu-seconds-per-month", "0"])
        let d1 = try await upload(s, token: dave, path: img1, name: "a.tif"), d2 = try await upload(s, token: dave, path: img2, name: "b.tif")
        let budget = try await submit(s, token: dave, uploads: [d1, d2])
        #expect(budget.status == 403 && budget.json?["limit"] as? String == "cpuSecondsPerMonth", "\(budget.text)")
        // Storage: the second upload would exceed 3 MB.
        let erin = try s.user("erin", quota: ["--storage-bytes", "3000000"])
        _ = try await upload(s, token: erin, path: img1, name: "a.tif")
        let full = try await http("POST", "\(s.base)/uploads?name=b.tif", token: erin, body: try Data(contentsOf: URL(fileURLWithPath: img2)))
        #expect(full.status == 403 && full.json?["limit"] as? String == "storageBytes", "\(full.text)")
        // Results count in storage: a job whose results would not fit in what is left is refused up front
        // (24 B per DSM cell estimated); a small one fits.
        let hana = try s.user("hana", quota: ["--storage-bytes", "6000000"])
        let g1 = try await upload(s, token: hana, path: img1, name: "a.tif"), g2 = try await upload(s, token: hana, path: img2, name: "b.tif")
        let large = try await submit(s, token: hana, uploads: [g1, g2], roi: [0, 0, 1024, 1024], extra: ["resolution": 0.5])
        #expect(large.status == 403 && large.json?["limit"] as? String == "storageBytes" && large.text.contains("results need about"), "\(large.text)")
        let small = try await submit(s, token: hana, uploads: [g1, g2], roi: [350, 350, 300, 300], extra: ["resolution": 1.0])
        #expect(small.status == 201, "\(small.text)")
        // Largest input.
        let fred = try s.user("fred", quota: ["--max-input-bytes", "1000000"])
        let big = try await http("POST", "\(s.base)/uploads?name=a.tif", token: fred, body: try Data(contentsOf: URL(fileURLWithPath: img1)))
        #expect(big.status == 413 && big.json?["limit"] as? String == "maxInputBytes")
        // An admin changes a quota over REST; the user sees it in /me.
        let admin = try s.user("root", role: "admin")
        let users = try await http("GET", "\(s.base)/admin/users", token: admin)
        let carolId = try #require((try JSONSerialization.jsonObject(with: users.body) as? [[String: Any]])?.first { $0["name"] as? String == "carol" }?["id"] as? String)
        let q = try await http("PUT", "\(s.base)/admin/users/\(carolId)/quota", token: admin,
                               body: json(["maxConcurrentJobs": 3, "cpuSecondsPerMonth": 100, "storageBytes": 1 << 30, "maxInputBytes": 1 << 28]))
        #expect(q.status == 200)
        let me = try await http("GET", "\(s.base)/me", token: token).json
        #expect((me?["quota"] as? [String: Any])?["maxConcurrentJobs"] as? Int == 3)
        let answer2 = try await submit(s, token: token, uploads: [u1, u2])
        #expect(answer2.status == 201)
        // Partial updates keep the other fields; unknown or negative fields are refused.
        let partial = try await http("PUT", "\(s.base)/admin/users/\(carolId)/quota", token: admin, body: json(["cpuSecondsPerMonth": 250]))
        let pq = partial.json?["quota"] as? [String: Any]
        #expect(partial.status == 200 && pq?["cpuSecondsPerMonth"] as? Double == 250 && pq?["maxConcurrentJobs"] as? Int == 3, "\(partial.text)")
        #expect(try await http("PUT", "\(s.base)/admin/users/\(carolId)/quota", token: admin, body: json(["cpuSecondz": 1])).status == 422)
        #expect(try await http("PUT", "\(s.base)/admin/users/\(carolId)/quota", token: admin, body: json(["storageBytes": -1])).status == 422)
        // `admin list-users` shows usage too.
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(try s.admin(["list-users"]).utf8)) as? [[String: Any]])
        let carol = try #require(listed.first { $0["name"] as? String == "carol" })
        #expect((carol["usage"] as? [String: Any])?["activeJobs"] as? Int == 2, "\(carol)")
        // Only admins manage users.
        let answer3 = try await http("GET", "\(s.base)/admin/users", token: token)
        #expect(answer3.status == 403)
        let created = try await http("POST", "\(s.base)/admin/users", token: admin, body: json(["name": "gina", "role": "researcher"]))
        let ginaToken = try #require(created.json?["token"] as? String)
        let answer4 = try await http("GET", "\(s.base)/me", token: ginaToken)
        #expect(created.status == 201 && answer4.status == 200)
        // A name that would forge a log line, or that no one types: refused by the API and by `admin create-user`
        // alike, and no user is created.
        for (name, why) in [("eve\n2026-11-26 admin logged in", "control characters"), (String(repeating: "é", count: 101), "at most 100 characters")] {
            let refused = try await http("POST", "\(s.base)/admin/users", token: admin, body: json(["name": name, "role": "researcher"]))
            #expect(refused.status == 422 && refused.text.contains(why), "\(refused.text)")
            #expect(throws: ServerError.self) { _ = try s.admin(["create-user", name]) }
        }
        let names = try #require(try JSONSerialization.jsonObject(with: Data(try s.admin(["list-users"]).utf8)) as? [[String: Any]]).compactMap { $0["name"] as? String }
        #expect(!names.contains { $0.hasPrefix("eve") || $0.hasPrefix("é") }, "\(names)")
    }

    @Test func usersAreIsolated() async throws {
        let s = try ServerProcess(workers: 0)
        let alice = try s.user("alice"), bob = try s.user("bob")
        let u1 = try await upload(s, token: alice, path: img1, name: "a.tif"), u2 = try await upload(s, token: alice, path: img2, name: "b.tif")
        let submitted0 = try await submit(s, token: alice, uploads: [u1, u2])
        let id = try #require(submitted0.json?["jobID"] as? String)
        // Every job document names its owner, the submission's answer too.
        #expect(submitted0.json?["owner"] as? String != nil && submitted0.json?["ownerName"] as? String == "alice", "\(submitted0.text)")
        let answer5 = try await http("GET", "\(s.base)/jobs/\(id)", token: bob)
        #expect(answer5.status == 404)
        let answer6 = try await http("GET", "\(s.base)/jobs/\(id)/logs", token: bob)
        #expect(answer6.status == 404)
        let answer7 = try await http("GET", "\(s.base)/jobs/\(id)/results/dsm.tif", token: bob)
        #expect(answer7.status == 404)
        let answer8 = try await http("DELETE", "\(s.base)/jobs/\(id)", token: bob)
        #expect(answer8.status == 404)
        let list = try await http("GET", "\(s.base)/jobs", token: bob).json
        #expect((list?["jobs"] as? [Any])?.isEmpty == true)
        // Mail asked for where the service sends none (no smtpURL): refused, naming the field.
        let noMail = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: alice,
                                    body: json(["images": [["upload": u1], ["upload": u2]], "mail": true]))
        #expect(noMail.status == 422 && noMail.text.contains("sends no mail"), "\(noMail.text)")
        // Bob cannot use Alice's uploads.
        let stolen = try await submit(s, token: bob, uploads: [u1, u2])
        #expect(stolen.status == 422 && stolen.text.contains("unknown upload"))
        // An operator sees every job; unauthenticated calls are refused.
        let op = try s.user("olga", role: "operator")
        let answer9 = try await http("GET", "\(s.base)/jobs/\(id)", token: op)
        #expect(answer9.status == 200)
        let answer10 = try await http("GET", "\(s.base)/jobs")
        #expect(answer10.status == 401)
        let answer11 = try await http("GET", "\(s.base)/jobs", token: "dso_forged")
        #expect(answer11.status == 401)
        // Uploads: only their owner deletes them, and not while a queued job needs them.
        let bobDelete = try await http("DELETE", "\(s.base)/uploads/\(u1)", token: bob)
        #expect(bobDelete.status == 404)
        let inUse = try await http("DELETE", "\(s.base)/uploads/\(u1)", token: alice)
        #expect(inUse.status == 409 && inUse.text.contains(id), "\(inUse.text)")
        let spare = try await upload(s, token: alice, path: img1, name: "spare.tif")
        let before = try await http("GET", "\(s.base)/me", token: alice)
        let gone = try await http("DELETE", "\(s.base)/uploads/\(spare)", token: alice)
        #expect(gone.status == 204)
        let after = try await http("GET", "\(s.base)/me", token: alice)
        let b = (before.json?["usage"] as? [String: Any])?["storageBytes"] as? Int ?? 0, a = (after.json?["usage"] as? [String: Any])?["storageBytes"] as? Int ?? 0
        #expect(b - a == (try FileManager.default.attributesOfItem(atPath: img1)[.size] as? Int))
        // Alice's job is still queued and intact.
        let answer12 = try await http("GET", "\(s.base)/jobs/\(id)", token: alice)
        #expect(answer12.json?["status"] as? String == "accepted")
        // An upload deleted while a submission reading it is being checked (the images are read by a child
        // process, a fraction of a second): either the deletion waits for the queued job and is refused, or
        // the submission is refused and names it. Never both: no job is queued without its input.
        let third = try await upload(s, token: alice, path: img2, name: "c.tif")
        async let submitted = submit(s, token: alice, uploads: [u1, third])
        try await Task.sleep(for: .milliseconds(20))
        let deletion = try await http("DELETE", "\(s.base)/uploads/\(third)", token: alice)
        let raced = try await submitted
        #expect([204, 409].contains(deletion.status), "\(deletion.text)")
        #expect((raced.status == 201) == (deletion.status == 409), "submission \(raced.status), deletion \(deletion.status)")
        if deletion.status == 204 {
            #expect(raced.status == 422 && raced.text.contains("images[1].upload") && raced.text.contains("c.tif") && raced.text.contains("was deleted while the job was being submitted"), "\(raced.text)")
        }
        let uploadsLeft = try await http("GET", "\(s.base)/uploads", token: alice).text
        #expect(uploadsLeft.contains(third) == (raced.status == 201))
        // An admin cancels Alice's queued job: the answer names her, not the admin, as its owner.
        let admin = try s.user("ada", role: "admin")
        let cancelled = try await http("DELETE", "\(s.base)/jobs/\(id)", token: admin)
        #expect(cancelled.status == 202 && cancelled.json?["status"] as? String == "dismissed" && cancelled.json?["ownerName"] as? String == "alice", "\(cancelled.text)")
    }

    @Test func jobSurvivesKillMinusNine() async throws {
        let s = try ServerProcess(workers: 1, config: #"{"leaseSeconds": 3}"#)
        let token = try s.user("alice")
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let id = try #require(try await submit(s, token: token, uploads: [u1, u2], roi: [100, 100, 800, 800]).json?["jobID"] as? String)
        _ = try await waitFor(s, token: token, job: id, states: ["running"])
        try await Task.sleep(nanoseconds: 1_000_000_000)
        s.stop(signal: SIGKILL)
        try s.start()
        let j = try await waitFor(s, token: token, job: id, states: ["successful", "failed"], timeout: 240)
        #expect(j["status"] as? String == "successful", "\(j)")
        // The results are complete (a manifest and the DSM), from the second run.
        let results = try await http("GET", "\(s.base)/jobs/\(id)/results", token: token)
        #expect(results.status == 200 && results.json?["dsm"] != nil && results.json?["manifest"] != nil, "\(results.text)")
        let manifest = try await http("GET", "\(s.base)/jobs/\(id)/results/manifest.json", token: token)
        #expect((manifest.json?["products"] as? [Any])?.isEmpty == false, "\(manifest.text)")
        let log = try await http("GET", "\(s.base)/jobs/\(id)/logs", token: token).text
        #expect(log.contains("] done:"))
    }

    @Test func cancellationStopsARunningJob() async throws {
        let s = try ServerProcess(workers: 1)
        let token = try s.user("alice")
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let id = try #require(try await submit(s, token: token, uploads: [u1, u2], roi: [0, 0, 1024, 1024]).json?["jobID"] as? String)
        _ = try await waitFor(s, token: token, job: id, states: ["running"])
        // Results asked for while it runs: OGC API – Processes' result-not-ready exception.
        let early = try await http("GET", "\(s.base)/jobs/\(id)/results", token: token)
        #expect(early.status == 404 && early.json?["type"] as? String == "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/result-not-ready", "\(early.text)")
        let del = try await http("DELETE", "\(s.base)/jobs/\(id)", token: token)
        #expect(del.status == 202)
        let start = Date()
        let j = try await waitFor(s, token: token, job: id, states: ["dismissed", "successful", "failed"], timeout: 30)
        #expect(j["status"] as? String == "dismissed")
        #expect(Date().timeIntervalSince(start) < 10)
        #expect(!FileManager.default.fileExists(atPath: s.data.path("jobs/\(id)/attempt-1/out/dsm.tif")))
        // A queued job is dismissed at once.
        let queued = try #require(try await submit(s, token: token, uploads: [u1, u2]).json?["jobID"] as? String)
        let q = try await http("DELETE", "\(s.base)/jobs/\(queued)", token: token)
        #expect(q.status == 202 && ["dismissed", "running"].contains(q.json?["status"] as? String ?? ""))
        // A filtered list's pages keep the filter.
        let first = try await http("GET", "\(s.base)/jobs?limit=1&processID=dsm-opt", token: token)
        let next = try #require(((first.json?["links"] as? [[String: String]]) ?? []).first { $0["rel"] == "next" }?["href"], "\(first.text)")
        #expect(first.json?["total"] as? Int == 2 && next.contains("processID=dsm-opt"), "\(next)")
        #expect(next.hasPrefix("\(s.base)/jobs?"), "\(next)")
        let second = try await http("GET", next, token: token)
        let ids = [first, second].flatMap { (($0.json?["jobs"] as? [[String: Any]]) ?? []).compactMap { $0["jobID"] as? String } }
        #expect(Set(ids) == [id, queued], "\(ids)")
    }

    @Test func resultsArePurgedAfterRetention() async throws {
        let s = try ServerProcess(workers: 1, extra: ["--retention", "3s"])
        let token = try s.user("alice")
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let id = try #require(try await submit(s, token: token, uploads: [u1, u2]).json?["jobID"] as? String)
        let j = try await waitFor(s, token: token, job: id, states: ["successful", "failed"])
        #expect(j["status"] as? String == "successful")
        let answer13 = try await http("GET", "\(s.base)/jobs/\(id)/results", token: token)
        #expect(answer13.status == 200)
        try await Task.sleep(nanoseconds: 6_000_000_000)
        let answer14 = try await http("GET", "\(s.base)/jobs/\(id)/results", token: token)
        #expect(answer14.status == 410)
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/results.zip", token: token).status == 410)
        let answer15 = try await http("GET", "\(s.base)/jobs/\(id)", token: token)
        #expect(answer15.json?["resultsPurged"] as? Bool == true)
        #expect(!FileManager.default.fileExists(atPath: s.data.path("jobs/\(id)/attempt-1/out")))
    }

    @Test func badRequestsGetSpecificErrors() async throws {
        let s = try ServerProcess(workers: 0, extra: ["--max-upload-bytes", "3000000"])
        let token = try s.user("alice")
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let url = "\(s.base)/processes/dsm-opt/execution"
        let malformed = try await http("POST", url, token: token, body: Data("{not json".utf8))
        #expect(malformed.status == 422 && malformed.headers["content-type"]?.hasPrefix("application/problem+json") == true)
        // Wrong types and ranges: every bad field is listed.
        let wrong = try await http("POST", url, token: token, body: json([
            "images": [["upload": u1], ["upload": u2]], "preset": "lunar",
            "parameters": ["window": "five", "regularisation": 3, "roi": [1, 2], "point-cloud": "yes", "colour": 1]]))
        #expect(wrong.status == 422)
        let fields = Set(((wrong.json?["errors"] as? [[String: Any]]) ?? []).compactMap { $0["field"] as? String })
        #expect(fields.isSuperset(of: ["preset", "parameters.window", "parameters.regularisation", "parameters.roi", "parameters.point-cloud", "parameters.colour"]), "\(fields)")
        let one = try await http("POST", url, token: token, body: json(["images": [["upload": u1]]]))
        #expect(one.status == 422 && one.text.contains("2 or 3 images"))
        // An image without RPC is refused at submission, naming the image.
        let plain = TestData.fixture("synthetic-pair/truth_dsm.tif")
        let noRPC = try await upload(s, token: token, path: plain, name: "plain.tif")
        let r = try await http("POST", url, token: token, body: json(["images": [["upload": u1], ["upload": noRPC]]]))
        #expect(r.status == 422 && r.text.contains("images[1]") && r.text.contains("no RPC camera model"), "\(r.text)")
        // Checked at submission, not in the worker (422 naming the field, no server path in the answer).
        func refusal(_ body: [String: Any]) async throws -> (Int, Set<String>, String) {
            let a = try await http("POST", url, token: token, body: json(body))
            return (a.status, Set(((a.json?["errors"] as? [[String: Any]]) ?? []).compactMap { $0["field"] as? String }), a.text)
        }
        let twice = try await refusal(["images": [["upload": u1], ["upload": u1]]])
        #expect(twice.0 == 422 && twice.1 == ["images[1].upload"], "\(twice.2)")
        let roi = try await refusal(["images": [["upload": u1], ["upload": u2]], "parameters": ["roi": [900, 0, 300, 300]]])
        #expect(roi.0 == 422 && roi.1 == ["parameters.roi"] && roi.2.contains("1024×1024"), "\(roi.2)")
        let aoi = try await refusal(["images": [["upload": u1], ["upload": u2]], "parameters": ["aoi": "5.0,43.0,5.1,43.1"]])
        #expect(aoi.0 == 422 && aoi.1 == ["parameters.aoi"], "\(aoi.2)")
        // A position that is no longitude and latitude is refused as such, before the images are read (it
        // had stopped the input check, whose answer then blamed the images).
        let polar = try await refusal(["images": [["upload": u1], ["upload": u2]],
                                       "parameters": ["aoi": ["type": "Polygon", "coordinates": [[[5.0, 43.0], [1e300, 43.0], [5.1, 43.1], [5.0, 43.0]]]]]])
        #expect(polar.0 == 422 && polar.1 == ["parameters.aoi"] && polar.2.contains("longitude 1e+300 outside −180…180"), "\(polar.2)")
        // An output CRS that cannot hold a grid in metres: refused at submission, and the portal's CRS lookup says why.
        let geographic = try await refusal(["images": [["upload": u1], ["upload": u2]], "parameters": ["epsg": 4326]])
        #expect(geographic.0 == 422 && geographic.1 == ["parameters.epsg"] && geographic.2.contains("geographic, in degrees"), "\(geographic.2)")
        let crs = try await http("GET", "\(s.base)/crs/4326", token: token), utm = try await http("GET", "\(s.base)/crs/32740", token: token)
        #expect((crs.json?["gridProblem"] as? String)?.contains("projected in metres") == true, "\(crs.text)")
        #expect(utm.status == 200 && utm.json?["gridProblem"] == nil, "\(utm.text)")
        let far = try await upload(s, token: token, path: try TestData.path("pleiades/marseille-triplet/img_01.tif"), name: "marseille.tif")
        let apart = try await refusal(["images": [["upload": u1], ["upload": far]]])
        #expect(apart.0 == 422 && apart.1 == ["images"] && apart.2.contains("do not overlap") && !apart.2.contains(s.data.url.path), "\(apart.2)")
        // What cannot be an image is refused at upload (415), e.g. a multipart form instead of the file.
        let form = try await http("POST", "\(s.base)/uploads?name=a.tif", token: token,
                                  body: Data("--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nII*\r\n--xyz--\r\n".utf8))
        #expect(form.status == 415, "\(form.text)")
        // Oversize upload: 413 and nothing stored.
        let big = try await http("POST", "\(s.base)/uploads?name=big.tif", token: token, body: Data(count: 3_500_000))
        #expect(big.status == 413 && big.json?["limit"] as? String == "maxUploadBytes")
        // A truncated upload (the client goes away mid-body) registers nothing.
        let before = try await http("GET", "\(s.base)/me", token: token).json?["usage"] as? [String: Any]
        let port = String(s.base.split(separator: ":").last!)
        _ = try run("/usr/bin/python3", ["-c", """
            import socket; s = socket.create_connection(("127.0.0.1", \(port)))
            s.sendall(b"POST /uploads?name=cut.tif HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer \(token)\\r\\nContent-Length: 100000\\r\\n\\r\\n" + b"x" * 5000)
            s.close()
            """])
        try await Task.sleep(nanoseconds: 500_000_000)
        let after = try await http("GET", "\(s.base)/me", token: token).json?["usage"] as? [String: Any]
        #expect(before?["storageBytes"] as? Int == after?["storageBytes"] as? Int)
        let leftovers = try FileManager.default.subpathsOfDirectory(atPath: s.data.path("uploads")).filter { $0.hasSuffix("cut.tif") || $0.hasSuffix(".part") }
        #expect(leftovers.isEmpty, "\(leftovers)")
        // A path in the file name is refused (400 naming the rule), and nothing is stored.
        let tiffBytes = Data([0x49, 0x49, 0x2A, 0]) + Data("x".utf8)
        let uploadsBefore = try FileManager.default.contentsOfDirectory(atPath: s.data.path("uploads")).count
        let sneaky = try await http("POST", "\(s.base)/uploads?name=../../etc/passwd", token: token, body: tiffBytes)
        #expect(sneaky.status == 400 && sneaky.text.contains("letters, digits"), "\(sneaky.text)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.data.path("uploads")).count == uploadsBefore)
        let bad = try await http("POST", "\(s.base)/uploads?name=%24%28rm%29.tif", token: token, body: tiffBytes)
        #expect(bad.status == 400)
        let answer16 = try await http("GET", "\(s.base)/nowhere", token: token)
        #expect(answer16.status == 404)
    }

    @Test func presetsAndProcessDescription() async throws {
        let s = try ServerProcess(workers: 0)
        let op = try s.user("olga", role: "operator"), researcher = try s.user("rita")
        let list = try await http("GET", "\(s.base)/presets")
        let names = Set(((try JSONSerialization.jsonObject(with: list.body) as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String })
        #expect(names.isSuperset(of: ["default", "urban", "mountain", "forest", "flat", "snow-ice"]))
        let preset: [String: Any] = ["description": "steep glaciers", "resolution-factor": 2, "parameters": ["window": 9, "regularisation": 0.06]]
        let answer17 = try await http("PUT", "\(s.base)/presets/glacier", token: researcher, body: json(preset))
        #expect(answer17.status == 403)
        let created = try await http("PUT", "\(s.base)/presets/glacier", token: op, body: json(preset))
        #expect(created.status == 201, "\(created.text)")
        let answer18 = try await http("GET", "\(s.base)/presets/glacier")
        #expect((answer18.json?["parameters"] as? [String: Any])?["window"] as? Int == 9)
        let invalid = try await http("PUT", "\(s.base)/presets/glacier", token: op,
                                     body: json(["description": "x", "resolution-factor": 2, "parameters": ["window": 4]]))
        #expect(invalid.status == 422 && invalid.text.contains("window"))
        // A field a preset does not have (the camelCase earlier preset files used included) is named, with those it has.
        let unknown = try await http("PUT", "\(s.base)/presets/glacier", token: op,
                                     body: json(["description": "x", "resolutionFactor": 2, "parameters": ["window": 9]]))
        #expect(unknown.status == 422 && unknown.text.contains("unknown field resolutionFactor (a preset has description, name, options, parameters, resolution-factor)"), "\(unknown.text)")
        let answer19 = try await http("GET", "\(s.base)/presets/glacier")
        #expect((answer19.json?["parameters"] as? [String: Any])?["window"] as? Int == 9)
        let process = try await http("GET", "\(s.base)/processes/dsm-opt").json
        let params = (process?["parameters"] as? [[String: Any]]) ?? []
        #expect(params.contains { $0["name"] as? String == "window" && $0["default"] as? String == "5" })
        #expect((process?["presets"] as? [Any])?.count ?? 0 >= 7)

        // A preset file an operator breaks by hand while the daemon runs: that preset is unavailable (503, the
        // reason given; a job naming it refused), the others stay usable; a daemon starting on the folder refuses.
        let urban = s.data.path("presets/urban.json")
        try #"{"name": "urban", "description": "dense city", "resolutionfactor": 1}"#.write(toFile: urban, atomically: true, encoding: .utf8)
        let listed = try await http("GET", "\(s.base)/presets")
        let left = Set(((try? JSONSerialization.jsonObject(with: listed.body) as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String })
        #expect(listed.status == 200 && left.contains("default") && left.contains("glacier") && !left.contains("urban"), "\(listed.status): \(left)")
        let broken = try await http("GET", "\(s.base)/presets/urban")
        #expect(broken.status == 503 && broken.text.contains("unknown field(s) resolutionfactor") && !broken.text.contains(s.data.url.path), "\(broken.status): \(broken.text)")
        #expect(try await http("GET", "\(s.base)/processes/dsm-opt").status == 200)
        let submitted = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: researcher,
                                       body: json(["images": [["upload": "nothing-1"], ["upload": "nothing-2"]], "preset": "urban"]))
        let presetErrors = ((submitted.json?["errors"] as? [[String: Any]]) ?? []).filter { $0["field"] as? String == "preset" }
        #expect(submitted.status == 422 && (presetErrors.first?["message"] as? String ?? "").contains("preset 'urban' is unavailable: its file is invalid"), "\(submitted.text)")
        let restarted = try run(try dsmoptExecutable(), ["serve", "--data", s.data.url.path, "--port", "0"], timeout: 30)
        #expect(restarted.status != 0 && restarted.stderr.contains("urban.json: invalid preset: unknown field(s) resolutionfactor"), "exit \(restarted.status): \(restarted.stderr)")
        // The admin commands, which use no preset, still work; /metrics names it, for an alert.
        let admin = try run(try dsmoptExecutable(), ["admin", "--data", s.data.url.path, "list-users"], timeout: 30)
        #expect(admin.status == 0 && admin.stdout.contains("olga"), "exit \(admin.status): \(admin.stderr)")
        let flagged = try await http("GET", "\(s.base)/metrics", token: op).text
        #expect(flagged.contains("dsmopt_presets_invalid 1\n") && flagged.contains("dsmopt_preset_invalid{preset=\"urban\"} 1\n"), "\(flagged.prefix(600))")
        // An operator mends it through the API: it replaces the broken file (200) and is served again.
        let mended = try await http("PUT", "\(s.base)/presets/urban", token: op, body: json(["description": "dense city", "resolution-factor": 1]))
        #expect(mended.status == 200, "\(mended.text)")
        #expect(try await http("GET", "\(s.base)/presets/urban").json?["resolution-factor"] as? Double == 1)
        let cleared = try await http("GET", "\(s.base)/metrics", token: op).text
        #expect(cleared.contains("dsmopt_presets_invalid 0\n") && !cleared.contains("dsmopt_preset_invalid{"), "\(cleared.prefix(600))")
    }

    /// What an OGC API – Processes client reads and sends: process descriptions whose inputs and outputs carry a
    /// JSON Schema, and the standard execute request (`{"inputs": …}`), which runs like the flat form.
    @Test func ogcProcessesClientsDescribeAndExecute() async throws {
        let s = try ServerProcess(workers: 1)
        let token = try s.user("olivia")
        let list = try #require(try await http("GET", "\(s.base)/processes").json?["processes"] as? [[String: Any]])
        #expect(list.count == 2 && list.allSatisfy { ($0["jobControlOptions"] as? [String])?.contains("async-execute") == true }, "\(list)")
        for (process, required) in [("dsm-opt", "images"), ("dsm-difference", "dsms")] {
            let d = try #require(try await http("GET", "\(s.base)/processes/\(process)").json)
            #expect(d["id"] as? String == process && d["version"] as? String != nil)
            let inputs = try #require(d["inputs"] as? [String: [String: Any]], "\(process): inputs is a map of input descriptions")
            for (name, input) in inputs {
                #expect(input["schema"] is [String: Any] && input["title"] is String && input["minOccurs"] is Int, "\(process) input \(name): \(input)")
                #expect((input["minOccurs"] as? Int == 1) == (name == required), "\(process) input \(name)")
            }
            let outputs = try #require(d["outputs"] as? [String: [String: Any]], "\(process): outputs is a map of output descriptions")
            #expect(!outputs.isEmpty && outputs.values.allSatisfy { ($0["schema"] as? [String: Any])?["type"] as? String == "string" })
        }
        let dsmOpt = try #require(try await http("GET", "\(s.base)/processes/dsm-opt").json)
        #expect(((dsmOpt["outputs"] as? [String: [String: Any]])?["dsm"])?["file"] as? String == "dsm.tif")
        // The parameters input's schema is the table's, resolved (no reference into the OpenAPI document).
        let window = ((((dsmOpt["inputs"] as? [String: [String: Any]])?["parameters"])?["schema"] as? [String: Any])?["properties"] as? [String: Any])?["window"] as? [String: Any]
        #expect(window?["type"] as? String == "integer", "\(String(describing: window))")

        let u1 = try await upload(s, token: token, path: img1, name: "img_01.tif")
        let u2 = try await upload(s, token: token, path: img2, name: "img_02.tif")
        // An input may be its value or a qualified value ({"value": …}).
        let execute: [String: Any] = [
            "inputs": ["name": "ogc", "images": [["upload": u1], ["upload": u2]],
                       "parameters": ["value": ["roi": [350, 350, 300, 300], "resolution": 1.0, "orthos": false, "window": 7]]],
            "outputs": ["dsm": ["transmissionMode": "reference"]], "response": "document"]
        let r = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token, body: json(execute), headers: ["Prefer": "respond-async"])
        #expect(r.status == 201 && r.headers["location"]?.hasPrefix("\(s.base)/jobs/") == true, "\(r.text)")
        let id = try #require(r.json?["jobID"] as? String)
        #expect(r.json?["status"] as? String == "accepted" && r.json?["type"] as? String == "process")
        let j = try await waitFor(s, token: token, job: id, states: ["successful", "failed"])
        #expect(j["status"] as? String == "successful" && j["name"] as? String == "ogc", "\(j)")
        #expect((j["parameters"] as? [String: Any])?["window"] as? Int == 7, "\(j)")
        // The results document: each output the run made, by the name the description gives it, linked to its
        // file, which is served with that media type.
        let described = try #require(dsmOpt["outputs"] as? [String: [String: Any]])
        let results = try #require(try await http("GET", "\(s.base)/jobs/\(id)/results", token: token).json)
        #expect(Set(results.keys).isSubset(of: described.keys) && results.keys.contains("manifest") && results["orthos"] == nil,
                "outputs not described: \(Set(results.keys).subtracting(described.keys))")
        let manifest = try #require(try await http("GET", "\(s.base)/jobs/\(id)/results/manifest.json", token: token).json)
        let files = ((manifest["products"] as? [[String: Any]]) ?? []).compactMap { $0["file"] as? String }
        let linked = results.values.compactMap { ($0 as? [String: Any])?["href"] as? String }
        #expect(files.count >= 8 && files.allSatisfy { linked.contains("\(s.base)/jobs/\(id)/results/\($0)") }, "\(files) against \(linked)")
        for (name, value) in results {
            let link = try #require(value as? [String: Any], "\(name): one link")
            let head = try await http("HEAD", link["href"] as? String ?? "", token: token)
            let mediaType = (described[name]?["schema"] as? [String: Any])?["contentMediaType"] as? String
            #expect(head.status == 200 && head.headers["content-type"] == link["type"] as? String && link["type"] as? String == mediaType,
                    "\(name): \(link) served as \(head.status) \(head.headers["content-type"] ?? "-"), described as \(mediaType ?? "-")")
        }
        // The job list's filters (OGC job-list conformance class), and its refusals.
        func listed(_ query: String) async throws -> [String] {
            let page = try await http("GET", "\(s.base)/jobs?\(query)", token: token)
            #expect(page.status == 200, "\(query): \(page.text)")
            return ((page.json?["jobs"] as? [[String: Any]]) ?? []).compactMap { $0["jobID"] as? String }
        }
        let created = try #require(j["created"] as? String)
        #expect(try await listed("status=successful&processID=dsm-opt&type=process&minDuration=0") == [id])
        #expect(try await listed("status=accepted,running,failed,dismissed").isEmpty)
        #expect(try await listed("status=failed&status=successful") == [id])
        #expect(try await listed("processID=dsm-difference").isEmpty)
        #expect(try await listed("datetime=\(created)/..") == [id])
        #expect(try await listed("datetime=../2020-01-01T00:00:00Z").isEmpty)
        #expect(try await listed("maxDuration=3600") == [id])
        #expect(try await listed("minDuration=3600").isEmpty)
        for (query, field) in [("status=done", "status done"), ("type=job", "type job"), ("minDuration=-1", "minDuration"),
                               ("datetime=yesterday", "datetime yesterday"), ("maxDuration=1&maxDuration=2", "maxDuration")] {
            let refused = try await http("GET", "\(s.base)/jobs?\(query)", token: token)
            #expect(refused.status == 400 && refused.json?["detail"] as? String ?? "" != "" && refused.text.contains(field), "\(query): \(refused.text)")
        }
        // The standard's exception types for an unknown job and an unknown process.
        let ogcException = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
        let noJob = try await http("GET", "\(s.base)/jobs/no-such-id/results", token: token)
        #expect(noJob.status == 404 && noJob.json?["type"] as? String == ogcException + "no-such-job", "\(noJob.text)")
        for (method, path) in [("GET", "/processes/dsm-ortho"), ("POST", "/processes/dsm-ortho/execution")] {
            let noProcess = try await http(method, "\(s.base)\(path)", token: token, body: method == "POST" ? json(execute) : nil)
            #expect(noProcess.status == 404 && noProcess.json?["type"] as? String == ogcException + "no-such-process", "\(path): \(noProcess.text)")
        }

        // What the service does not offer is named, with the fields a flat request would have put at the top (a
        // subscriber is offered: CallbackTests).
        let refused = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token, body: json([
            "inputs": ["images": [["upload": u1], ["upload": u2]]], "response": "raw", "subscriber": ["successUri": "http://example.org/"],
            "preset": "default", "outputs": ["dsm": ["transmissionMode": "value"]]]))
        let fields = Set(((refused.json?["errors"] as? [[String: Any]]) ?? []).compactMap { $0["field"] as? String })
        #expect(refused.status == 422 && fields == ["response", "preset", "outputs.dsm.transmissionMode"], "\(refused.text)")
        let notObject = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: token, body: json(["inputs": [1, 2]]))
        #expect(notObject.status == 422 && notObject.text.contains("\"inputs\""), "\(notObject.text)")
        // The standard form's inputs are validated as the flat form's fields are.
        let badInput = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                                      body: json(["inputs": ["images": [["upload": u1], ["upload": u2]], "parameters": ["window": 4]]]))
        #expect(badInput.status == 422 && badInput.text.contains("parameters.window"), "\(badInput.text)")
    }

    /// The README's REST session, as the script it points to, runs as written against a daemon started the way
    /// `scripts/run.sh` starts it (its admin token in a file).
    @Test func readmeSessionScriptRunsAsWritten() async throws {
        let s = try ServerProcess(workers: 1)
        let tokenFile = s.data.path("admin.token")
        try s.user("admin", role: "admin").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let out = try TemporaryFolder()
        let script = TestData.packageRoot.appendingPathComponent("scripts/api-session.sh").path
        let r = try run("/usr/bin/env", ["DSMOPT_URL=\(s.base)", "DSMOPT_ADMIN_TOKEN_FILE=\(tokenFile)", "DSMOPT_TEST_DATA=\(TestData.root.path)",
                                         "OUT=\(out.url.path)", "bash", script], timeout: 300)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("pair B/H 0.26, selected") && r.stderr.contains("successful, 100 %"), "\(r.stderr)")
        #expect(r.stderr.contains("session: results.zip: ") && r.stderr.contains(" files, "), "\(r.stderr)")
        let dsm = try Data(contentsOf: URL(fileURLWithPath: out.path("dsm.tif")))
        #expect(dsm.count > 10_000 && dsm.prefix(4) == Data([0x49, 0x49, 0x2A, 0x00]), "a little-endian TIFF")
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == out.path("dsm.tif"))
    }

    @Test func openAPIDescribesTheServedRoutes() async throws {
        let s = try ServerProcess(workers: 0)
        let admin = try s.user("root", role: "admin")
        let doc = try #require(try await http("GET", "\(s.base)/openapi.json").json)
        #expect(doc["openapi"] as? String == "3.1.0")
        let paths = try #require(doc["paths"] as? [String: [String: Any]])
        #expect(paths.count >= 17)
        for (path, ops) in paths {
            for method in ops.keys {
                let concrete = path.replacingOccurrences(of: "{id}", with: "00000000-0000-0000-0000-000000000000")
                    .replacingOccurrences(of: "{name}", with: "default").replacingOccurrences(of: "{file}", with: "dsm.tif")
                let r = try await http(method.uppercased(), "\(s.base)\(concrete)", token: admin, body: method == "get" ? nil : Data("{}".utf8))
                // A documented route exists: never the router's generic "Not Found".
                #expect(!(r.status == 404 && (r.json?["detail"] as? String) == "Not Found"), "\(method) \(path) is documented but not served")
            }
        }
    }

    @Test func catalogueForwardsJobsForNamedUsers() async throws {
        // A small HTTP server on loopback plays the catalogue's image store (allowed by the operator's
        // allow-list; any other internal address is refused); /moved redirects, which is refused too.
        let dir = try TestData.path("pleiades/reunion-pair")
        let port = 18000 + Int.random(in: 0..<2000)
        let web = try pythonServer("""
            import functools, http.server
            class H(http.server.SimpleHTTPRequestHandler):
                def do_GET(self):
                    if self.path == "/moved":
                        self.send_response(302); self.send_header("Location", "/img_01.tif"); self.end_headers(); return
                    super().do_GET()
                def log_message(self, *a): pass
            http.server.ThreadingHTTPServer(("127.0.0.1", \(port)), functools.partial(H, directory="\(dir)")).serve_forever()
            """)
        defer { stopServer(web) }
        try await Task.sleep(nanoseconds: 800_000_000)
        // The archive: the La Réunion pair, and a DIMAP delivery of the synthetic view 2 (a product whose
        // RPC and metadata are separate files that must travel with it).
        let archive = try TemporaryFolder()
        // (Copied, not linked: the archive root confines paths after resolving links.)
        try FileManager.default.copyItem(atPath: dir, toPath: archive.path("reunion-pair"))
        let f = TestData.fixture("synthetic-pair")
        let made = try run(try dsmoptExecutable(), ["make-delivery", "\(f)/view_2.tif", "--out", archive.path("deliv"), "--tiles", "2x2"])
        #expect(made.status == 0, "\(made.stderr)")
        try FileManager.default.copyItem(atPath: "\(f)/view_1.tif", toPath: archive.path("view_1.tif"))
        let dim = try #require(FileManager.default.subpaths(atPath: archive.path("deliv"))?.first { $0.contains("DIM_") })
        let s = try ServerProcess(workers: 1, extra: ["--archive-root", archive.url.path], config: #"{"catalogueAllowedHosts": ["127.0.0.1"]}"#)
        let catalogue = try s.user("dinamis", role: "catalogue"), alice = try s.user("alice")
        let body: [String: Any] = ["user": "alice", "name": "from the catalogue",
                                   "images": [["url": "http://127.0.0.1:\(port)/img_01.tif"], ["path": "reunion-pair/img_02.tif"]],
                                   "parameters": ["roi": [350, 350, 300, 300], "resolution": 1.0, "orthos": false]]
        let answer20 = try await http("POST", "\(s.base)/catalogue/jobs", token: alice, body: json(body))
        #expect(answer20.status == 403)
        let r = try await http("POST", "\(s.base)/catalogue/jobs", token: catalogue, body: json(body))
        #expect(r.status == 201, "\(r.text)")
        let id = try #require(r.json?["jobID"] as? String)
        // A DIMAP product by path: the whole product is copied (its tiles, RPC and DIM), so the job runs.
        let product = try await http("POST", "\(s.base)/catalogue/jobs", token: catalogue, body: json([
            "user": "alice", "images": [["path": "view_1.tif"], ["path": "deliv/\(dim)"]], "parameters": ["resolution": 1.0, "orthos": false]]))
        #expect(product.status == 201, "\(product.text)")
        // The job belongs to Alice and runs under her quota.
        let j = try await waitFor(s, token: alice, job: id, states: ["successful", "failed"])
        #expect(j["status"] as? String == "successful", "\(j)")
        if let pid = product.json?["jobID"] as? String {
            let pj = try await waitFor(s, token: alice, job: pid, states: ["successful", "failed"])
            #expect(pj["status"] as? String == "successful", "\(pj)")
        }
        // The catalogue account reads what it forwarded (status and results, to report back), never more:
        // it cannot cancel or delete it, and another catalogue account does not see it.
        let answer21 = try await http("GET", "\(s.base)/jobs/\(id)", token: catalogue)
        #expect(answer21.status == 200 && answer21.json?["status"] as? String == "successful", "\(answer21.text)")
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/results", token: catalogue).status == 200)
        #expect(try await http("DELETE", "\(s.base)/jobs/\(id)", token: catalogue).status == 404)
        let listed = try await http("GET", "\(s.base)/jobs", token: catalogue)
        let listedIDs = Set(((listed.json?["jobs"] as? [[String: Any]]) ?? []).compactMap { $0["jobID"] as? String })
        #expect(listedIDs.contains(id) && listed.json?["total"] as? Int == listedIDs.count, "\(listed.text)")
        let otherCatalogue = try s.user("other-catalogue", role: "catalogue")
        #expect(try await http("GET", "\(s.base)/jobs/\(id)", token: otherCatalogue).status == 404)
        var unknown = body
        unknown["user"] = "nobody"
        let u = try await http("POST", "\(s.base)/catalogue/jobs", token: catalogue, body: json(unknown))
        #expect(u.status == 422 && u.text.contains("unknown user"))
        let uploadsBefore = try FileManager.default.contentsOfDirectory(atPath: s.data.path("uploads")).count
        // Refused, each with its reason, leaving nothing behind: a path escaping the archive, an internal
        // address not on the allow-list, a redirect.
        for (images, fragment) in [([["path": "../../../etc/passwd"], ["path": "reunion-pair/img_02.tif"]], "outside the archive"),
                                   ([["url": "http://localhost:\(port)/img_01.tif"], ["path": "reunion-pair/img_02.tif"]], "internal address"),
                                   ([["url": "http://169.254.169.254/latest/meta-data"], ["path": "reunion-pair/img_02.tif"]], "internal address"),
                                   ([["url": "http://127.0.0.1:\(port)/moved"], ["path": "reunion-pair/img_02.tif"]], "redirect")] {
            var refused = body
            refused["images"] = images
            let e = try await http("POST", "\(s.base)/catalogue/jobs", token: catalogue, body: json(refused))
            #expect(e.status == 422 && e.text.contains(fragment), "\(images): \(e.text)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.data.path("uploads")).count == uploadsBefore)
    }
}
