import Crypto
import DSMPipeline
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TestSupport
import Testing

/// The DSM catalogue (STAC API, publish and withdraw, storage after the purge) and the `dsm-difference`
/// process, over real HTTP with a real daemon and real jobs.
@Suite(.serialized) struct CatalogueTests {
    let img1: String
    let img2: String

    init() throws {
        img1 = try TestData.path("pleiades/reunion-pair/img_01.tif")
        img2 = try TestData.path("pleiades/reunion-pair/img_02.tif")
    }

    func submit(_ s: ServerProcess, token: String, uploads: [String], roi: [Int], publish: Bool? = nil) async throws -> String {
        var body: [String: Any] = ["name": "roi \(roi)", "images": uploads.map { ["upload": $0] },
                                   "parameters": ["roi": roi, "resolution": 1.0, "orthos": false, "mosaic": false]]
        if let publish { body["publish"] = publish }
        let r = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token, body: json(body), headers: ["Content-Type": "application/json"])
        #expect(r.status == 201, "\(r.text)")
        return try #require(r.json?["jobID"] as? String)
    }

    func write(_ object: Any, _ path: String) throws {
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
    }

    func ids(_ r: HTTPResult) -> [String] { (r.json?["features"] as? [[String: Any]])?.compactMap { $0["id"] as? String } ?? [] }

    @Test func publishedJobsFormASearchableCatalogue() async throws {
        let s = try ServerProcess(workers: 1, extra: ["--retention", "40s"])
        let alice = try s.user("alice"), bob = try s.user("bob"), dinamis = try s.user("dinamis", role: "catalogue")
        let tmp = try TemporaryFolder()
        let a1 = try await upload(s, token: alice, path: img1, name: "a.tif"), a2 = try await upload(s, token: alice, path: img2, name: "b.tif")
        let b1 = try await upload(s, token: bob, path: img1, name: "a.tif"), b2 = try await upload(s, token: bob, path: img2, name: "b.tif")
        // Alice: one job published at submission (NW corner), one she publishes later (SE corner); Bob: one never published.
        let jobA = try await submit(s, token: alice, uploads: [a1, a2], roi: [100, 100, 220, 220], publish: true)
        let jobC = try await submit(s, token: alice, uploads: [a1, a2], roi: [700, 700, 220, 220])
        let jobB = try await submit(s, token: bob, uploads: [b1, b2], roi: [100, 100, 220, 220])
        for (id, token) in [(jobA, alice), (jobC, alice), (jobB, bob)] {
            let j = try await waitFor(s, token: token, job: id, states: ["successful", "failed"])
            #expect(j["status"] as? String == "successful", "\(j)")
        }
        // A fourth over A's area (Alice's quota runs two at a time), for the difference below.
        let jobD = try await submit(s, token: alice, uploads: [a1, a2], roi: [100, 100, 220, 220])
        #expect(try await waitFor(s, token: alice, job: jobD, states: ["successful", "failed"])["status"] as? String == "successful")
        // Jobs as inputs of a difference: their footprints (from their STAC items) are checked at submission.
        let apart = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: alice,
                                   body: json(["dsms": [["job": jobA], ["job": jobC]]]), headers: ["Content-Type": "application/json"])
        #expect(apart.status == 422 && apart.text.contains("do not overlap") && apart.text.contains("job \(jobA) dsm.tif"), "\(apart.text)")
        let twice = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: alice,
                                   body: json(["dsms": [["job": jobA], ["job": jobA]]]), headers: ["Content-Type": "application/json"])
        #expect(twice.status == 422 && twice.text.contains("the same DSM"), "\(twice.text)")
        let notYours = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: alice,
                                      body: json(["dsms": [["job": jobA], ["job": jobB]]]), headers: ["Content-Type": "application/json"])
        #expect(notYours.status == 422 && notYours.text.contains("dsms[1].job"), "\(notYours.text)")
        // "publish": true at submission: the item exists once the job has succeeded.
        var itemA = try await http("GET", "\(s.base)/stac/collections/dsm-opt/items/\(jobA)", token: bob)
        for _ in 0..<50 where itemA.status != 200 {
            try await Task.sleep(nanoseconds: 100_000_000)
            itemA = try await http("GET", "\(s.base)/stac/collections/dsm-opt/items/\(jobA)", token: bob)
        }
        #expect(itemA.status == 200 && itemA.headers["content-type"] == "application/geo+json", "\(itemA.status) \(itemA.text)")
        // A difference keeps the DSMs it reads: job D is deleted as soon as the difference that reads it is
        // queued, and the difference still runs on D's DSM and A's item, each dated by its STAC item.
        let diff = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: alice,
                                  body: json(["dsms": [["item": jobA], ["job": jobD]]]), headers: ["Content-Type": "application/json"])
        let diffId = try #require(diff.json?["jobID"] as? String, "\(diff.status) \(diff.text)")
        let deleted = try await http("DELETE", "\(s.base)/jobs/\(jobD)", token: alice)
        #expect(deleted.status == 200 && !FileManager.default.fileExists(atPath: s.data.path("jobs/\(jobD)")), "\(deleted.status) \(deleted.text)")
        let dj = try await waitFor(s, token: alice, job: diffId, states: ["successful", "failed"])
        #expect(dj["status"] as? String == "successful", "\(dj)")
        let dm = try await http("GET", "\(s.base)/jobs/\(diffId)/results/manifest.json", token: alice).json
        let dInputs = (dm?["inputs"] as? [[String: Any]]) ?? []
        #expect(dInputs.map { $0["file"] as? String } == ["item \(jobA) dsm.tif", "job \(jobD) dsm.tif"]
                && dInputs.allSatisfy { ($0["datetime"] as? String)?.hasPrefix("2013-06-29") == true }, "\(dInputs)")
        // The links are removed once it has ended; the sources are untouched.
        var linked = true
        for _ in 0..<50 where linked {
            linked = FileManager.default.fileExists(atPath: s.data.path("jobs/\(diffId)/inputs"))
            if linked { try await Task.sleep(nanoseconds: 100_000_000) }
        }
        #expect(!linked, "the inputs folder of the ended difference job is still there")
        #expect(FileManager.default.fileExists(atPath: s.data.path("catalogue/\(jobA)/dsm.tif")))
        // Publishing: only the owner (or an operator); twice is harmless; another user's job is not found.
        #expect(try await http("POST", "\(s.base)/jobs/\(jobC)/publish", token: bob).status == 404)
        let pubC = try await http("POST", "\(s.base)/jobs/\(jobC)/publish", token: alice)
        #expect(pubC.status == 201 && pubC.headers["location"]?.hasSuffix("/stac/collections/dsm-opt/items/\(jobC)") == true, "\(pubC.status) \(pubC.text)")
        #expect(try await http("POST", "\(s.base)/jobs/\(jobC)/publish", token: alice).status == 200)
        // Bob's unpublished job is never served nor listed.
        #expect(try await http("GET", "\(s.base)/stac/collections/dsm-opt/items/\(jobB)", token: bob).status == 404)
        // Operators publish and withdraw any user's job.
        let ops = try s.user("ops", role: "operator")
        #expect(try await http("POST", "\(s.base)/jobs/\(jobB)/publish", token: ops).status == 201)
        #expect(try await http("GET", "\(s.base)/stac/collections/dsm-opt/items/\(jobB)", token: alice).status == 200)
        #expect(try await http("DELETE", "\(s.base)/jobs/\(jobB)/publish", token: ops).status == 204)
        #expect(try await http("GET", "\(s.base)/stac/collections/dsm-opt/items/\(jobB)", token: alice).status == 404)

        // Every item, the collection and the landing page pass stac-validator (official schemas).
        let itemC = try await http("GET", "\(s.base)/stac/collections/dsm-opt/items/\(jobC)", token: dinamis)
        let coll = try await http("GET", "\(s.base)/stac/collections/dsm-opt", token: dinamis)
        let landing = try await http("GET", "\(s.base)/stac", token: alice)
        try itemA.body.write(to: tmp.url.appendingPathComponent("a.json")); try itemC.body.write(to: tmp.url.appendingPathComponent("c.json"))
        try coll.body.write(to: tmp.url.appendingPathComponent("collection.json")); try landing.body.write(to: tmp.url.appendingPathComponent("landing.json"))
        let (valid, report) = try STACValidation.validate([tmp.path("a.json"), tmp.path("c.json"), tmp.path("collection.json"), tmp.path("landing.json")])
        #expect(valid, "\(report)")
        let c = try #require(coll.json)
        #expect(c["license"] as? String == "CC-BY-NC-4.0" && (c["providers"] as? [Any])?.count == 2)
        let extent = try #require(((c["extent"] as? [String: Any])?["spatial"] as? [String: Any])?["bbox"] as? [[Double]])
        let boxA = try #require(itemA.json?["bbox"] as? [Double]), boxC = try #require(itemC.json?["bbox"] as? [Double])
        #expect(extent[0][0] <= min(boxA[0], boxC[0]) && extent[0][2] >= max(boxA[2], boxC[2]), "collection extent \(extent) vs \(boxA) \(boxC)")
        #expect(boxA[2] < boxC[0] || boxA[3] < boxC[1], "the two items must not overlap for this test: \(boxA) \(boxC)")
        // The item: acquisition times, B/H, licence, assets with COG media types and roles, absolute links.
        let pa = try #require(itemA.json?["properties"] as? [String: Any]), assets = try #require(itemA.json?["assets"] as? [String: [String: Any]])
        #expect((pa["start_datetime"] as? String)?.hasPrefix("2013-06-29") == true && pa["license"] as? String == "CC-BY-NC-4.0")
        #expect((pa["dsmopt:pairs"] as? [[String: Any]])?.first?["base_to_height"] as? Double ?? 0 > 0.2)
        #expect(assets["dsm"]?["type"] as? String == STACItem.cogType && (assets["dsm"]?["roles"] as? [String]) == ["data"])
        #expect((assets["preview"]?["roles"] as? [String])?.contains("thumbnail") == true && (assets["manifest"]?["roles"] as? [String]) == ["metadata"])
        let dsmHref = try #require(assets["dsm"]?["href"] as? String)
        #expect(dsmHref.hasPrefix(s.base + "/stac/collections/dsm-opt/items/\(jobA)/assets/"))

        // Search by bbox: exactly the published items inside; GET and POST alike.
        let all = "\(min(boxA[0], boxC[0]) - 0.01),\(min(boxA[1], boxC[1]) - 0.01),\(max(boxA[2], boxC[2]) + 0.01),\(max(boxA[3], boxC[3]) + 0.01)"
        #expect(Set(ids(try await http("GET", "\(s.base)/stac/search?bbox=\(all)", token: bob))) == [jobA, jobC])
        let onlyA = "\(boxA[0]),\(boxA[1]),\(boxA[2]),\(boxA[3])"
        #expect(ids(try await http("GET", "\(s.base)/stac/search?bbox=\(onlyA)", token: bob)) == [jobA])
        let post = try await http("POST", "\(s.base)/stac/search", token: dinamis, body: json(["bbox": boxC, "collections": ["dsm-opt"]]), headers: ["Content-Type": "application/json"])
        #expect(ids(post) == [jobC], "\(post.text)")
        // intersects (a polygon inside A's footprint), datetime, ids.
        let mx = (boxA[0] + boxA[2]) / 2, my = (boxA[1] + boxA[3]) / 2, d = 0.0002
        let poly: [String: Any] = ["type": "Polygon", "coordinates": [[[mx - d, my - d], [mx + d, my - d], [mx + d, my + d], [mx - d, my + d], [mx - d, my - d]]]]
        #expect(ids(try await http("POST", "\(s.base)/stac/search", token: bob, body: json(["intersects": poly]), headers: ["Content-Type": "application/json"])) == [jobA])
        #expect(Set(ids(try await http("GET", "\(s.base)/stac/search?datetime=2013-06-29T00:00:00Z/2013-06-30T00:00:00Z", token: bob))) == [jobA, jobC])
        #expect(ids(try await http("GET", "\(s.base)/stac/search?datetime=2020-01-01T00:00:00Z/..", token: bob)).isEmpty)
        #expect(ids(try await http("GET", "\(s.base)/stac/search?ids=\(jobC),\(jobB)", token: bob)) == [jobC])
        #expect(ids(try await http("GET", "\(s.base)/stac/search?collections=other", token: bob)).isEmpty)
        // Paging: limit 1, then the next link, then no next.
        let p1 = try await http("GET", "\(s.base)/stac/search?limit=1", token: bob)
        let next = try #require((p1.json?["links"] as? [[String: Any]])?.first { $0["rel"] as? String == "next" }?["href"] as? String)
        let p2 = try await http("GET", next, token: bob)
        #expect(ids(p1).count == 1 && ids(p2).count == 1 && Set(ids(p1) + ids(p2)) == [jobA, jobC], "\(p1.text) \(p2.text)")
        #expect((p2.json?["links"] as? [[String: Any]])?.contains { $0["rel"] as? String == "next" } == false)
        // Bad searches get specific 400s.
        for (q, words) in [("bbox=1,2,3", "bbox"), ("datetime=yesterday", "RFC 3339"), ("limit=0", "limit"), ("bbox=0,0,1,1&intersects=%7B%7D", "intersects"), ("colour=red", "unknown")] {
            let r = try await http("GET", "\(s.base)/stac/search?\(q)", token: bob)
            #expect(r.status == 400 && r.text.contains(words), "\(q): \(r.status) \(r.text)")
        }
        #expect(try await http("GET", "\(s.base)/stac/search").status == 401)

        // Assets: Range requests (COG streaming) and GDAL's /vsicurl/ with a bearer header.
        let range = try await http("GET", dsmHref, token: dinamis, headers: ["Range": "bytes=0-15"])
        #expect(range.status == 206 && range.body.count == 16 && range.headers["content-type"] == STACItem.cogType, "\(range.status)")
        #expect(range.body.prefix(2) == Data("II".utf8))
        let info = try run("/usr/bin/gdalinfo", ["--config", "GDAL_HTTP_HEADERS", "Authorization: Bearer \(dinamis)", "--config", "GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR",
                                                 "/vsicurl/\(dsmHref)"])
        #expect(info.status == 0 && info.stdout.contains("LAYOUT=COG") && info.stdout.contains("Type=Float32"), "\(info.stdout) \(info.stderr)")

        // Storage: the published bytes count against Alice's quota (once).
        let me = try await http("GET", "\(s.base)/me", token: alice)
        let used = try #require((me.json?["usage"] as? [String: Any])?["storageBytes"] as? Int)
        #expect(used > 0)

        // The purge date passes: the job's results are gone, the item and its assets are still served.
        var purged = false
        for _ in 0..<90 where !purged {
            try await Task.sleep(nanoseconds: 1_000_000_000)
            let a = try await http("GET", "\(s.base)/jobs/\(jobA)/results", token: alice).status
            let b = try await http("GET", "\(s.base)/jobs/\(jobB)/results", token: bob).status
            purged = a == 410 && b == 410
        }
        #expect(purged, "jobs A and B's results were not purged within the wait")
        #expect(try await http("GET", "\(s.base)/stac/collections/dsm-opt/items/\(jobA)", token: bob).status == 200)
        let afterPurge = try await http("GET", dsmHref, token: bob)
        #expect(afterPurge.status == 200 && afterPurge.body.count > 1000)
        // Every asset and the item in one zip, linked from the item, served after the purge too.
        let zipHref = "\(s.base)/stac/collections/dsm-opt/items/\(jobA)/assets.zip"
        #expect(((itemA.json?["links"] as? [[String: Any]]) ?? []).contains { $0["rel"] as? String == "enclosure" && $0["href"] as? String == zipHref })
        // The job's CRC index came with the linked files at publication: the item's zip reads the assets' CRCs
        // from it (the zip's own check below says they are right).
        let itemIndex = s.data.path("catalogue/\(jobA)/.results-zip.json")
        let carried = ((try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: itemIndex)))) as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        let assetFiles = assets.values.compactMap { ($0["href"] as? String)?.components(separatedBy: "/").last }
        #expect(!assetFiles.isEmpty && Set(assetFiles).isSubset(of: Set(carried)), "index \(carried), assets \(assetFiles)")
        let zip = try await http("GET", zipHref, token: bob)
        #expect(zip.status == 200 && zip.headers["content-type"] == "application/zip" && zip.headers["content-length"] == "\(zip.body.count)", "\(zip.status)")
        try zip.body.write(to: URL(fileURLWithPath: tmp.path("item.zip")))
        let listed = try run("/usr/bin/python3", ["-c", """
            import hashlib, json, sys, zipfile
            z = zipfile.ZipFile(sys.argv[1])
            print(json.dumps({"bad": z.testzip(), "files": {i.filename: hashlib.sha256(z.read(i)).hexdigest() for i in z.infolist()}}))
            """, tmp.path("item.zip")])
        let zipped = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any], "\(listed.stderr)")
        let files = Set(((zipped["files"] as? [String: String]) ?? [:]).keys)
        let expected = Set(assets.values.compactMap { ($0["href"] as? String)?.components(separatedBy: "/").last }.map { "dsmopt-\(jobA)/\($0)" } + ["dsmopt-\(jobA)/item.json"])
        #expect(zipped["bad"] is NSNull && files == expected, "\(zipped) vs \(expected)")
        #expect((zipped["files"] as? [String: String])?[dsmHref.components(separatedBy: "/").last.map { "dsmopt-\(jobA)/\($0)" } ?? ""]
                == SHA256.hash(data: afterPurge.body).map { String(format: "%02x", $0) }.joined())
        let me2 = try await http("GET", "\(s.base)/me", token: alice)
        #expect(((me2.json?["usage"] as? [String: Any])?["storageBytes"] as? Int ?? 0) > 0, "published bytes still count after the purge")

        // A job whose results were purged can no longer be published (410).
        let late = try await http("POST", "\(s.base)/jobs/\(jobB)/publish", token: bob)
        #expect(late.status == 410 && late.text.contains("purged"), "\(late.status) \(late.text)")
        // Withdraw: not by another user; by the owner → gone from the item route, the search and the disk.
        #expect(try await http("DELETE", "\(s.base)/jobs/\(jobA)/publish", token: bob).status == 404)
        #expect(try await http("DELETE", "\(s.base)/jobs/\(jobA)/publish", token: alice).status == 204)
        #expect(try await http("GET", "\(s.base)/stac/collections/dsm-opt/items/\(jobA)", token: bob).status == 404)
        #expect(try await http("GET", dsmHref, token: bob).status == 404)
        #expect(try await http("GET", zipHref, token: bob).status == 404)
        #expect(ids(try await http("GET", "\(s.base)/stac/search?bbox=\(all)", token: bob)) == [jobC])
        #expect(!FileManager.default.fileExists(atPath: s.data.path("catalogue/\(jobA)")))
    }

    @Test func differenceJobMeasuresALavaFlow() async throws {
        let s = try ServerProcess(workers: 1)
        let alice = try s.user("alice"), bob = try s.user("bob")
        let tmp = try TemporaryFolder()
        let truth = try writeChangePair(to: tmp.path("scenes"), size: 700, flowCentre: [350, 380], flowAxes: [160, 70])
        let ua = try await upload(s, token: alice, path: tmp.path("scenes/dsm_a.tif"), name: "dsm_2019.tif")
        let ub = try await upload(s, token: alice, path: tmp.path("scenes/dsm_b.tif"), name: "dsm_2021.tif")
        let bb = truth.flowBoundingBox
        let r = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: alice,
                               body: json(["name": "lava flow", "dsms": [["upload": ua], ["upload": ub]], "aoi": "\(bb[0]),\(bb[1]),\(bb[2]),\(bb[3])", "publish": true]),
                               headers: ["Content-Type": "application/json"])
        #expect(r.status == 201 && r.json?["processID"] as? String == "dsm-difference", "\(r.status) \(r.text)")
        let id = try #require(r.json?["jobID"] as? String)
        let j = try await waitFor(s, token: alice, job: id, states: ["successful", "failed"])
        #expect(j["status"] as? String == "successful", "\(j)")
        #expect((j["cpuSeconds"] as? Double ?? 0) > 0, "CPU charged")
        // The volume within 3 % and the shift recovered, from the results' manifest.
        let outputs = try #require(try await http("GET", "\(s.base)/jobs/\(id)/results", token: alice).json)
        #expect(Set(outputs.keys) == ["difference", "difference_map", "manifest", "item"], "\(outputs.keys.sorted())")
        let res = try #require(try await http("GET", "\(s.base)/jobs/\(id)/results/manifest.json", token: alice).json)
        let v = try #require(res["volumes"] as? [String: Any]), c = try #require(res["coregistration"] as? [String: Any])
        let net = try #require(v["netM3"] as? Double)
        #expect(abs(net - truth.volumeM3) / truth.volumeM3 < 0.03, "net \(net) vs \(truth.volumeM3)")
        #expect(abs((c["dx"] as? Double ?? 0) - truth.shift[0]) < 0.05 && abs((c["dy"] as? Double ?? 0) - truth.shift[1]) < 0.05, "\(c)")
        #expect((v["netUncertaintyM3"] as? Double ?? 0) > 0)
        #expect((res["inputs"] as? [[String: Any]])?.map { $0["file"] as? String } == ["dsm_2019.tif", "dsm_2021.tif"])
        // A map layer: blue–white–red, symmetric legend, tiles, and the difference under the cursor.
        let map = try #require(try await http("GET", "\(s.base)/jobs/\(id)/map", token: alice).json)
        #expect((map["layers"] as? [[String: Any]])?.contains { $0["name"] as? String == "difference" && $0["kind"] as? String == "difference" } == true, "\(map)")
        let legend = try #require(try await http("GET", "\(s.base)/jobs/\(id)/tiles/difference/legend", token: alice).json)
        #expect((legend["minimum"] as? Double ?? 0) == -(legend["maximum"] as? Double ?? 0) && (legend["maximum"] as? Double ?? 0) > 1, "\(legend)")
        let probe = try #require(try await http("GET", "\(s.base)/jobs/\(id)/probe?lon=\((bb[0] + bb[2]) / 2)&lat=\((bb[1] + bb[3]) / 2)", token: alice).json)
        #expect((probe["difference"] as? Double ?? 0) > 2, "the flow's centre: \(probe)")
        // Published at submission: a valid STAC item, searchable by everyone.
        var item = try await http("GET", "\(s.base)/stac/collections/dsm-opt/items/\(id)", token: bob)
        for _ in 0..<50 where item.status != 200 {
            try await Task.sleep(nanoseconds: 100_000_000)
            item = try await http("GET", "\(s.base)/stac/collections/dsm-opt/items/\(id)", token: bob)
        }
        try item.body.write(to: tmp.url.appendingPathComponent("item.json"))
        let (valid, report) = try STACValidation.validate([tmp.path("item.json")])
        #expect(item.status == 200 && valid, "\(report)")
        // The same DSM twice, and a published item without a DSM (a difference's): refused, each named.
        let r2 = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: alice,
                                body: json(["dsms": [["upload": ua], ["upload": ua]]]), headers: ["Content-Type": "application/json"])
        #expect(r2.status == 422 && r2.text.contains("the same DSM"), "\(r2.text)")
        let r2b = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: bob,
                                 body: json(["dsms": [["item": id], ["upload": ub]]]), headers: ["Content-Type": "application/json"])
        #expect(r2b.status == 422 && r2b.text.contains("dsms[0].item") && r2b.text.contains("dsms[1].upload"), "\(r2b.text)")
        // Invalid requests: every field named.
        let bad = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: alice,
                                 body: json(["dsms": [["job": "nope"]], "aoi": "1,2", "colour": 1]), headers: ["Content-Type": "application/json"])
        let fields = Set(((bad.json?["errors"] as? [[String: Any]]) ?? []).compactMap { $0["field"] as? String })
        #expect(bad.status == 422 && fields.isSuperset(of: ["dsms", "aoi", "colour"]), "\(bad.text)")
        #expect(try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: bob,
                               body: json(["dsms": [["upload": ua], ["upload": ub]]]), headers: ["Content-Type": "application/json"]).status == 422)
        // DSMs that do not overlap: the job fails with a message naming both.
        let far = tmp.path("far.tif")
        let farRun = try run("/usr/bin/gdal_translate", ["-a_ullr", "400000", "7600000", "400660", "7599340", tmp.path("scenes/dsm_b.tif"), far])
        #expect(farRun.status == 0, "\(farRun.stderr)")
        let uf = try await upload(s, token: alice, path: far, name: "elsewhere.tif")
        let r3 = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: alice,
                                body: json(["dsms": [["upload": ua], ["upload": uf]]]), headers: ["Content-Type": "application/json"])
        let id3 = try #require(r3.json?["jobID"] as? String)
        let j3 = try await waitFor(s, token: alice, job: id3, states: ["successful", "failed"])
        #expect(j3["status"] as? String == "failed" && (j3["error"] as? String ?? "").contains("dsm_2019.tif") && (j3["error"] as? String ?? "").contains("elsewhere.tif")
                && (j3["error"] as? String ?? "").contains("do not overlap"), "\(j3)")
    }
}
