import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import GDALKit
import TestSupport
import Testing

/// Coregistration, water masking and the vertical datum through the REST API: parameters (camelCase read),
/// files uploaded with the job, the operator's reference DEM, checks at submission (422 naming the field).
@Suite(.serialized) struct FinishingServiceTests {
    let img1: String
    let img2: String

    init() throws {
        img1 = try TestData.path("pleiades/reunion-pair/img_01.tif")
        img2 = try TestData.path("pleiades/reunion-pair/img_02.tif")
    }

    /// CARS's DSM of the pair moved by (+1.5 m, −1.0 m) and raised by 2 m, as a GeoTIFF to upload.
    static func movedReference(in folder: TemporaryFolder) throws -> String {
        let cars = try RasterDataset(path: try TestData.path("pleiades/reunion-pair/reference_dsm_cars.tif"))
        var gt = try #require(cars.geoTransform)
        gt[0] += 1.5; gt[3] -= 1.0
        let nd = Float(try #require(cars.noDataValue()))
        let path = folder.path("moved_cars.tif")
        try RasterWriter.write(path: path, width: cars.width, height: cars.height, bands: [try cars.read().map { $0 == nd ? .nan : $0 + 2 }],
                               type: .float32, noData: .nan, geoTransform: gt, projectionWKT: cars.projectionWKT)
        return path
    }

    @Test func finishingOptionsThroughTheAPI() async throws {
        let tmp = try TemporaryFolder()
        let s = try ServerProcess(workers: 1)
        let token = try s.user("alice")
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let ref = try await upload(s, token: token, path: try Self.movedReference(in: tmp), name: "moved_cars.tif")
        let srtm = try await upload(s, token: token, path: try TestData.path("dem-coregistration/srtm_ref.tif"), name: "srtm.tif")
        // Water: a 20 m square inside the area (a user may declare any polygon water); another far away.
        func square(_ lon: Double, _ lat: Double, _ d: Double) -> Data {
            json(["type": "FeatureCollection", "features": [["type": "Feature", "properties": [:] as [String: Any],
                  "geometry": ["type": "Polygon", "coordinates": [[[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]]]]]])
        }
        let centre = try GDALRPCTransformer(rpcMetadata: try RasterDataset(path: img1).metadataItems(domain: "RPC")).localize([(col: 512, row: 512, h: 2300)])[0]!
        let lake = try await http("POST", "\(s.base)/uploads?name=lake.geojson", token: token, body: square(centre.lon, centre.lat, 0.0002))
        // The answer says what the file is (the portal lists it as a water mask, not an image to tick).
        #expect(lake.status == 201 && lake.json?["kind"] as? String == "geojson", "\(lake.text)")
        let lakeID = try #require(lake.json?["id"] as? String)
        let farLake = try await http("POST", "\(s.base)/uploads?name=far.geojson", token: token, body: square(10, 10, 0.01))
        let farID = try #require(farLake.json?["id"] as? String)
        // A JSON upload that is not GeoJSON-looking text is refused at upload.
        #expect(try await http("POST", "\(s.base)/uploads?name=x.geojson", token: token, body: Data("hello".utf8)).status == 415)

        let url = "\(s.base)/processes/dsm-opt/execution"
        func body(_ params: [String: Any], _ files: [String: String] = [:]) -> Data {
            var b: [String: Any] = ["name": "finishing", "images": [["upload": u1], ["upload": u2]],
                                    "parameters": ["roi": [350, 350, 300, 300], "resolution": 0.5, "orthos": false].merging(params) { $1 }]
            for (k, v) in files { b[k] = ["upload": v] }
            return json(b)
        }
        func refusal(_ params: [String: Any], _ files: [String: String] = [:]) async throws -> (Int, Set<String>, String) {
            let a = try await http("POST", url, token: token, body: body(params, files))
            return (a.status, Set(((a.json?["errors"] as? [[String: Any]]) ?? []).compactMap { $0["field"] as? String }), a.text)
        }
        // Checked at submission, each naming its field; never a server path.
        let noRef = try await refusal(["coregister": true])
        #expect(noRef.0 == 422 && noRef.1 == ["parameters.coregister"], "\(noRef.2)")
        let noMask = try await refusal(["maskWater": true])
        #expect(noMask.0 == 422 && noMask.1 == ["parameters.mask-water"], "\(noMask.2)")
        let datum = try await refusal(["verticalDatum": "geoid"])
        #expect(datum.0 == 422 && datum.1 == ["parameters.verticalDatum"] && datum.2.contains("ellipsoid, egm96"), "\(datum.2)")
        let outside = try await refusal(["coregister": true], ["referenceDem": srtm])
        #expect(outside.0 == 422 && outside.1 == ["referenceDem"] && outside.2.contains("does not cover") && !outside.2.contains(s.data.url.path), "\(outside.2)")
        let far = try await refusal(["maskWater": true], ["waterMask": farID])
        #expect(far.0 == 422 && far.1 == ["waterMask"] && far.2.contains("no overlap"), "\(far.2)")
        let unused = try await refusal([:], ["referenceDem": ref])
        #expect(unused.0 == 422 && unused.1 == ["referenceDem"], "\(unused.2)")

        // The job: coregistered on the uploaded reference, water masked flat, EGM96 heights.
        let created = try await http("POST", url, token: token, body: body(
            ["coregister": true, "referenceDatum": "ellipsoid", "maskWater": true, "waterFill": "flat", "verticalDatum": "egm96"],
            ["referenceDem": ref, "waterMask": lakeID]))
        #expect(created.status == 201, "\(created.text)")
        let id = try #require(created.json?["jobID"] as? String)
        let final = try await waitFor(s, token: token, job: id, states: ["successful", "failed"], timeout: 240)
        #expect(final["status"] as? String == "successful", "\(final)")
        // Each optional product is an output of the results document, by the name the process description gives it.
        let results = try await http("GET", "\(s.base)/jobs/\(id)/results", token: token).json ?? [:]
        let files = Set(results.values.compactMap { (($0 as? [String: Any])?["href"] as? String).map { ($0 as NSString).lastPathComponent } })
        #expect(files.isSuperset(of: ["dsm.tif", "dsm_uncoregistered.tif", "water_mask.tif", "coregistration_difference.png"]), "\(files)")
        #expect(["dsm_uncoregistered", "water_mask", "coregistration_difference"].allSatisfy { results[$0] != nil }, "\(results.keys.sorted())")
        let manifest = try await http("GET", "\(s.base)/jobs/\(id)/results/manifest.json", token: token).json ?? [:]
        let c = try #require(manifest["coregistration"] as? [String: Any])
        let dx = c["dx"] as? Double ?? 0, dy = c["dy"] as? Double ?? 0, dz = c["dz"] as? Double ?? 0
        #expect(abs(dx - 1.5) < 0.15 && abs(dy + 1.0) < 0.15 && abs(dz - 2.0) < 0.15, "\(c)")
        #expect(manifest["verticalDatum"] as? String == "egm96")
        let water = try #require(manifest["waterMask"] as? [String: Any])
        #expect((water["waterCells"] as? Int ?? 0) > 100 && (water["source"] as? String ?? "").contains("lake.geojson"), "\(water)")
        #expect(!(water["source"] as? String ?? "").contains(s.data.url.path))
        // The job record: parameters under the table's spelling, every input with its SHA-256, no server path.
        let record = try await http("GET", "\(s.base)/jobs/\(id)", token: token)
        let given = (record.json?["parameters"] as? [String: Any]) ?? [:]
        #expect(given["mask-water"] as? Bool == true && given["vertical-datum"] as? String == "egm96" && given["maskWater"] == nil, "\(given)")
        let inputs = (record.json?["inputs"] as? [[String: Any]]) ?? []
        #expect(Set(inputs.compactMap { $0["field"] as? String }) == ["images[0]", "images[1]", "referenceDem", "waterMask"], "\(inputs)")
        let lakeSum = lake.json?["sha256"] as? String
        #expect(inputs.contains { $0["field"] as? String == "waterMask" && $0["sha256"] as? String == lakeSum && $0["fileName"] as? String == "lake.geojson" })
        #expect(!record.text.contains(s.data.url.path))
        // The manifest's provenance names the same files.
        let prov = try #require(manifest["provenance"] as? [String: Any])
        let roles = ((prov["inputs"] as? [[String: Any]]) ?? []).compactMap { $0["role"] as? String }
        #expect(roles == ["image 1", "image 2", "reference DEM", "water mask"], "\(roles)")
        // The process description lists the options with their defaults.
        let process = try await http("GET", "\(s.base)/processes/dsm-opt").json ?? [:]
        let params = (process["parameters"] as? [[String: Any]]) ?? []
        for (name, d) in [("coregister", "false"), ("mask-water", "false"), ("water-fill", "nodata"), ("vertical-datum", "ellipsoid"), ("reference-datum", "egm96")] {
            #expect(params.contains { $0["name"] as? String == name && $0["default"] as? String == d }, "\(name)")
        }
    }

    /// The operator's reference DEM (configuration `referenceDEM`, a folder of tiles read as one mosaic):
    /// `coregister` alone then works, and the manifest names the operator's reference.
    @Test func serversReferenceDEMIsUsedWhenTheJobGivesNone() async throws {
        let tmp = try TemporaryFolder()
        let folder = tmp.path("dem")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: try Self.movedReference(in: tmp), toPath: folder + "/S22E055_moved_cars.tif")
        let s = try ServerProcess(workers: 1, config: #"{"referenceDEM": "\#(folder)", "referenceDEMVerticalDatum": "ellipsoid"}"#)
        let token = try s.user("bob")
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let created = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token, body: json([
            "images": [["upload": u1], ["upload": u2]], "parameters": ["roi": [350, 350, 300, 300], "resolution": 0.5, "orthos": false, "coregister": true]]))
        #expect(created.status == 201, "\(created.text)")
        let id = try #require(created.json?["jobID"] as? String)
        let final = try await waitFor(s, token: token, job: id, states: ["successful", "failed"], timeout: 240)
        #expect(final["status"] as? String == "successful", "\(final)")
        let manifest = try await http("GET", "\(s.base)/jobs/\(id)/results/manifest.json", token: token).json ?? [:]
        let c = try #require(manifest["coregistration"] as? [String: Any])
        #expect(c["reference"] as? String == "dem" && c["referenceVerticalDatum"] as? String == "ellipsoid", "\(c)")
        #expect(abs((c["dx"] as? Double ?? 0) - 1.5) < 0.15 && abs((c["dz"] as? Double ?? 0) - 2.0) < 0.15, "\(c)")
        // Stage durations of this one-tile job come from the run's own event times, not from when the worker
        // read them (its stages arrive within one poll, which would give them all 0 s but the last): each stage
        // the run went through is recorded once with a positive duration, and together they take no more than
        // the run. (No bound on how long a stage took: that is the machine's, not the service's.)
        let ops = try s.user("otto", role: "operator")
        let metrics = try await http("GET", "\(s.base)/metrics", token: ops).text
        func value(_ name: String, _ stage: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix("dsmopt_stage_seconds_\(name){stage=\"\(stage)\"}") }
                .flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        let stages = ["inspect", "orient", "plan", "match", "fuse", "products"]
        for stage in stages {
            #expect(value("count", stage) == 1, "\(stage): \(metrics)")
            #expect((value("sum", stage) ?? 0) > 0, "\(stage): \(metrics)")
        }
        let started = ISO8601DateFormatter().date(from: final["started"] as? String ?? ""), ended = ISO8601DateFormatter().date(from: final["finished"] as? String ?? "")
        let total = stages.compactMap { value("sum", $0) }.reduce(0, +)
        if let started, let ended { #expect(total <= ended.timeIntervalSince(started) + 2, "\(metrics)") } else { Issue.record("no start or end time: \(final)") }
    }
}

/// Seeing before spending quota: the uploads and what was read from them, and the pairs as `inspect` sees them.
@Suite struct InspectionServiceTests {
    @Test func uploadsAndInspectionWithoutAJob() async throws {
        let s = try ServerProcess(workers: 0)
        let token = try s.user("carol"), other = try s.user("dave")
        let img1 = try TestData.path("pleiades/reunion-pair/img_01.tif"), img2 = try TestData.path("pleiades/reunion-pair/img_02.tif")
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let plain = try await upload(s, token: token, path: TestData.fixture("synthetic-pair/truth_dsm.tif"), name: "plain.tif")
        // One upload, described once: size, angles, acquisition, footprint; no server path.
        let one = try await http("GET", "\(s.base)/uploads/\(u1)", token: token)
        #expect(one.status == 200, "\(one.text)")
        let image = try #require(one.json?["image"] as? [String: Any], "\(one.text)")
        #expect(image["width"] as? Int == 1024 && (image["acquisitionTime"] as? String)?.hasPrefix("2013-06-29") == true)
        #expect(abs((image["incidenceDeg"] as? Double ?? 0) - 8.8) < 0.1 && (image["footprint"] as? [Any])?.count == 5)
        #expect(!one.text.contains(s.data.url.path))
        let unreadable = try await http("GET", "\(s.base)/uploads/\(plain)", token: token)
        #expect(unreadable.status == 200 && unreadable.json?["image"] == nil && unreadable.json?["readError"] != nil, "\(unreadable.text)")
        // The list: every upload of the caller, newest first, with what was read so far; nobody else's.
        let list = try await http("GET", "\(s.base)/uploads", token: token)
        let uploads = (list.json?["uploads"] as? [[String: Any]]) ?? []
        #expect(uploads.compactMap { $0["id"] as? String } == [plain, u2, u1], "\(list.text)")
        #expect(uploads.last?["image"] != nil && uploads[1]["image"] == nil)
        #expect(uploads.map { $0["kind"] as? String } == ["tiff", "tiff", "tiff"], "\(list.text)")
        #expect(((try await http("GET", "\(s.base)/uploads", token: other)).json?["uploads"] as? [Any])?.isEmpty == true)
        #expect(try await http("GET", "\(s.base)/uploads/\(u1)", token: other).status == 404)
        // Inspection: the pair as `dsmopt inspect` sees it, with upload names, without a job.
        let inspected = try await http("POST", "\(s.base)/processes/dsm-opt/inspection", token: token,
                                       body: json(["images": [["upload": u1], ["upload": u2]]]))
        #expect(inspected.status == 200, "\(inspected.text)")
        let pairs = (inspected.json?["pairs"] as? [[String: Any]]) ?? []
        #expect((inspected.json?["selected"] as? [[Int]]) == [[0, 1]] && (0.2...0.35).contains(pairs.first?["baseToHeight"] as? Double ?? 0))
        #expect(((inspected.json?["images"] as? [[String: Any]]) ?? []).compactMap { $0["path"] as? String } == ["a.tif", "b.tif"])
        #expect(!inspected.text.contains(s.data.url.path))
        let jobs = try await http("GET", "\(s.base)/jobs", token: token)
        let listed = jobs.json?["jobs"] as? [Any]
        #expect(listed?.isEmpty == true, "inspection queues nothing: \(jobs.text.prefix(300))")
        let bad = try await http("POST", "\(s.base)/processes/dsm-opt/inspection", token: token, body: json(["images": [["upload": u1], ["upload": plain]]]))
        #expect(bad.status == 422, "\(bad.text)")
        let unknown = try await http("POST", "\(s.base)/processes/dsm-opt/inspection", token: token, body: json(["images": [["upload": u1], ["upload": "nope"]]]))
        #expect(unknown.status == 422 && unknown.text.contains("images[1].upload"))
    }
}

/// A known path with a method it does not serve: 405 with Allow, not 404 (issue 15, item 7).
@Suite struct MethodNotAllowedTests {
    @Test func wrongMethodsGet405WithAllow() async throws {
        let s = try ServerProcess(workers: 0)
        let token = try s.user("erin")
        for (method, path, allow) in [("PUT", "/jobs", "GET"), ("DELETE", "/processes/dsm-opt", "GET"), ("PATCH", "/uploads", "POST, GET"),
                                      ("POST", "/jobs/abc/results/dsm.tif", "GET, HEAD"), ("GET", "/processes/dsm-opt/execution", "POST")] {
            let r = try await http(method, "\(s.base)\(path)", token: token)
            #expect(r.status == 405 && r.headers["allow"] == allow && r.headers["content-type"]?.hasPrefix("application/problem+json") == true,
                    "\(method) \(path): \(r.status) \(r.headers)")
        }
        #expect(try await http("GET", "\(s.base)/nowhere", token: token).status == 404)
        #expect(try await http("GET", "\(s.base)/jobs/unknown", token: token).status == 404)
    }
}
