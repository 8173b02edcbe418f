import Foundation
import GDALKit
import TestSupport
import Testing

/// The `dsmopt` executable, run as a user would: exit codes and one-line messages.
@Suite struct CLITests {
    let reunion1: String
    let reunion2: String

    init() throws {
        reunion1 = try TestData.path("pleiades/reunion-pair/img_01.tif")
        reunion2 = try TestData.path("pleiades/reunion-pair/img_02.tif")
    }

    func dsmopt(_ args: String...) throws -> ProcessResult { try run(try dsmoptExecutable(), args, timeout: 120) }

    /// A failure: the expected exit code and exactly one line on stderr that contains every fragment.
    func expectFailure(_ r: ProcessResult, code: Int32, _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == code, "exit \(r.status), stderr: \(r.stderr)", sourceLocation: sourceLocation)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "expected one line, got: \(r.stderr)", sourceLocation: sourceLocation)
        for f in fragments { #expect(r.stderr.contains(f), "'\(f)' not in: \(r.stderr)", sourceLocation: sourceLocation) }
        #expect(r.stdout.isEmpty, sourceLocation: sourceLocation)
    }

    @Test func inspectPrintsPairJSON() throws {
        let r = try dsmopt("inspect", reunion1, reunion2)
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let images = try #require(json["images"] as? [[String: Any]])
        #expect(images.count == 2)
        for key in ["path", "width", "height", "bands", "dataType", "gsd", "incidenceDeg", "azimuthDeg", "acquisitionTime", "footprint"] {
            #expect(images[0][key] != nil, "images[0].\(key) missing")
        }
        let pairs = try #require(json["pairs"] as? [[String: Any]])
        for key in ["images", "baseToHeight", "convergenceDeg", "overlap", "score"] { #expect(pairs[0][key] != nil) }
        let bh = try #require(pairs[0]["baseToHeight"] as? Double)
        #expect((0.2...0.35).contains(bh))
        #expect((json["selected"] as? [[Int]]) == [[0, 1]])
    }

    @Test func rpcSubcommandsMatchGDAL() throws {
        let gdal = try GDALRPCTransformer(rpcMetadata: try RasterDataset(path: reunion1).metadataItems(domain: "RPC"))
        let ground = try #require(gdal.localize([(col: 300.25, row: 700.75, h: 2300)])[0])
        let p = try dsmopt("rpc", "project", reunion1, String(ground.lon), String(ground.lat), "2300")
        #expect(p.status == 0, "\(p.stderr)")
        let cr = p.stdout.split(separator: " ").compactMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(cr.count == 2 && abs(cr[0] - 300.25) < 1e-4 && abs(cr[1] - 700.75) < 1e-4)
        let l = try dsmopt("rpc", "localize", reunion1, "300.25", "700.75", "2300")
        #expect(l.status == 0, "\(l.stderr)")
        let ll = l.stdout.split(separator: " ").compactMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(ll.count == 2 && abs(ll[0] - ground.lon) < 1e-8 && abs(ll[1] - ground.lat) < 1e-8)
    }

    @Test func rpcSubcommandRejectsBadNumbers() throws {
        expectFailure(try dsmopt("rpc", "project", reunion1, "55.6", "abc", "2300"), code: 2, "LAT is not a number")
        expectFailure(try dsmopt("rpc", "localize", reunion1, "1", "2"), code: 2, "expected COL ROW HEIGHT")
    }

    @Test func fileThatIsNotAnImage() throws {
        let tmp = try TemporaryFolder()
        let path = tmp.path("notes.tif")
        try "this is a text file, not a TIFF\n".write(toFile: path, atomically: true, encoding: .utf8)
        expectFailure(try dsmopt("inspect", path, reunion2), code: 3, path, "not a raster image")
    }

    @Test func truncatedTIFF() throws {
        let tmp = try TemporaryFolder()
        let path = tmp.path("truncated.tif")
        let data = try Data(contentsOf: URL(fileURLWithPath: reunion1))
        try data.prefix(data.count * 6 / 10).write(to: URL(fileURLWithPath: path))
        expectFailure(try dsmopt("inspect", path, reunion2), code: 3, path, "truncated or corrupt")
        // A TIFF whose directory comes first (as GDAL writes them) opens, then fails while reading pixels.
        let front = tmp.path("front.tif")
        try RasterWriter.write(path: front, width: 512, height: 512, bands: [(0..<(512 * 512)).map { Float($0 % 251) }],
                               type: .uint16, metadata: ["RPC": try RasterDataset(path: reunion1).metadataItems(domain: "RPC")])
        let full = try Data(contentsOf: URL(fileURLWithPath: front))
        try full.prefix(full.count / 2).write(to: URL(fileURLWithPath: front))
        expectFailure(try dsmopt("inspect", front, reunion2), code: 3, front, "truncated or corrupt")
    }

    @Test func imageWithoutRPC() throws {
        let tmp = try TemporaryFolder()
        let path = tmp.path("plain.tif")
        try RasterWriter.write(path: path, width: 64, height: 64, bands: [[Float](repeating: 7, count: 4096)], type: .byte)
        expectFailure(try dsmopt("inspect", path, reunion2), code: 3, path, "no RPC camera model found")
    }

    /// An _RPC.TXT sidecar written by GDAL, then damaged.
    func damagedSidecar(_ transform: (String) -> String) throws -> (TemporaryFolder, String, String) {
        let tmp = try TemporaryFolder()
        let path = tmp.path("img.tif")
        try RasterWriter.write(path: path, width: 64, height: 64, bands: [[Float](repeating: 7, count: 4096)], type: .uint16,
                               metadata: ["RPC": try RasterDataset(path: reunion1).metadataItems(domain: "RPC")],
                               options: [("PROFILE", "BASELINE"), ("RPCTXT", "YES")])
        let sidecar = tmp.path("img_RPC.TXT")
        try transform(try String(contentsOfFile: sidecar, encoding: .utf8)).write(toFile: sidecar, atomically: true, encoding: .utf8)
        return (tmp, path, sidecar)
    }

    @Test func rpcWithMissingCoefficient() throws {
        let (tmp, path, sidecar) = try damagedSidecar { $0.split(separator: "\n").filter { !$0.hasPrefix("LINE_DEN_COEFF_12:") }.joined(separator: "\n") }
        expectFailure(try dsmopt("inspect", path, reunion2), code: 3, sidecar, "LINE_DEN_COEFF_12 is missing")
        _ = tmp
    }

    @Test func rpcWithNonNumericCoefficient() throws {
        let (tmp, path, sidecar) = try damagedSidecar { text in
            text.split(separator: "\n").map { $0.hasPrefix("LAT_OFF:") ? "LAT_OFF: twenty" : String($0) }.joined(separator: "\n")
        }
        expectFailure(try dsmopt("inspect", path, reunion2), code: 3, sidecar, "LAT_OFF is not a number")
        _ = tmp
    }

    @Test func oneImage() throws {
        expectFailure(try dsmopt("inspect", reunion1), code: 2, "2 or 3 images, got 1")
    }

    @Test func fourImages() throws {
        expectFailure(try dsmopt("inspect", reunion1, reunion2, reunion1, reunion2), code: 2, "2 or 3 images, got 4")
    }

    @Test func imagesThatDoNotOverlap() throws {
        let other = try TestData.path("pleiades/marseille-triplet/img_01.tif")
        expectFailure(try dsmopt("inspect", reunion1, other), code: 4, reunion1, other, "do not overlap")
    }

    @Test func missingFile() throws {
        expectFailure(try dsmopt("inspect", "/nonexistent/a.tif", reunion2), code: 3, "/nonexistent/a.tif", "no such file")
    }
}

/// `dsmopt match` and `dsmopt epipolar` as a user runs them.
@Suite struct StereoCLITests {
    func dsmopt(_ args: String...) throws -> ProcessResult { try run(try dsmoptExecutable(), args, timeout: 300) }

    @Test func matchWritesDisparityScoreAndStatus() throws {
        let tmp = try TemporaryFolder()
        let l = try TestData.path("middlebury-cones/Cones_LEFT.tif"), r = try TestData.path("middlebury-cones/Cones_RIGHT.tif")
        let res = try dsmopt("match", "--left", l, "--right", r, "--min-disparity", "0", "--max-disparity", "64",
                             "--out", tmp.path("d.tif"), "--score", tmp.path("s.tif"), "--status", tmp.path("st.tif"))
        #expect(res.status == 0, "\(res.stderr)")
        let d = try RasterDataset(path: tmp.path("d.tif"))
        #expect(d.width == 450 && d.height == 375 && d.dataType() == .float32)
        #expect(d.noDataValue()?.isNaN == true)
        let values = try d.read()
        let valid = values.filter { !$0.isNaN }
        #expect(valid.count > values.count * 8 / 10)
        #expect(valid.allSatisfy { (0...64).contains($0) })
        let score = try RasterDataset(path: tmp.path("s.tif")).read()
        // The score exists exactly where the disparity does, and is a correlation above the threshold.
        for i in values.indices where !values[i].isNaN { #expect(score[i] >= 0.2 && score[i] <= 1.0001) }
        #expect(zip(values, score).allSatisfy { $0.isNaN == $1.isNaN })
        let status = try RasterDataset(path: tmp.path("st.tif")).read()
        #expect(zip(values, status).allSatisfy { ($0.isNaN) == ($1 != 0) })
    }

    @Test func negativeDisparitiesAreAccepted() throws {
        let tmp = try TemporaryFolder()
        let l = try TestData.path("middlebury-cones/Cones_LEFT.tif")
        // The same image on both sides: every disparity is 0, inside a range that starts below zero.
        let res = try dsmopt("match", "--left", l, "--right", l, "--min-disparity", "-8", "--max-disparity", "8",
                             "--out", tmp.path("d.tif"), "--precision", "1")
        #expect(res.status == 0, "\(res.stderr)")
        let v = try RasterDataset(path: tmp.path("d.tif")).read().filter { !$0.isNaN }.sorted()
        // Every pixel lands on the zero label; the sub-pixel parabola keeps it within half a step, and
        // the median is zero.
        #expect(v.count > 100_000 && v.allSatisfy { abs($0) <= 0.5 })
        #expect(abs(v[v.count / 2]) < 0.05)
    }

    @Test func invalidExpertParametersAreAllListed() throws {
        let tmp = try TemporaryFolder()
        let l = try TestData.path("middlebury-cones/Cones_LEFT.tif")
        let res = try dsmopt("match", "--left", l, "--right", l, "--min-disparity", "0", "--max-disparity", "8",
                             "--out", tmp.path("d.tif"), "--window", "4", "--regularisation", "2", "--precision", "0.01",
                             "--decorrelation-threshold", "1.5", "--z-uncertainty", "0")
        #expect(res.status == 2)
        #expect(res.stderr.split(separator: "\n").count == 1, "\(res.stderr)")
        for field in ["window = 4", "regularisation = 2", "precision = 0.01", "decorrelation-threshold = 1.5", "z-uncertainty = 0"] {
            #expect(res.stderr.contains(field), "\(field) missing from: \(res.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: tmp.path("d.tif")), "nothing written on invalid parameters")
        let reversed = try dsmopt("match", "--left", l, "--right", l, "--min-disparity", "9", "--max-disparity", "1", "--out", tmp.path("d.tif"))
        #expect(reversed.status == 2 && reversed.stderr.contains("invalid disparity range"))
        let notImage = try dsmopt("match", "--left", "/nonexistent.tif", "--right", l, "--min-disparity", "0", "--max-disparity", "1", "--out", tmp.path("d.tif"))
        #expect(notImage.status == 3 && notImage.stderr.contains("/nonexistent.tif"))
    }

    @Test func epipolarReportsResidualsAndWritesTiles() throws {
        let tmp = try TemporaryFolder()
        let a = try TestData.path("pleiades/reunion-pair/img_01.tif"), b = try TestData.path("pleiades/reunion-pair/img_02.tif")
        let res = try dsmopt("epipolar", a, b, "--roi", "300", "300", "400", "400", "--out", tmp.url.path)
        #expect(res.status == 0, "\(res.stderr)")
        let tiles = try #require(try JSONSerialization.jsonObject(with: Data(res.stdout.utf8)) as? [[String: Any]])
        #expect(tiles.count == 1)
        let residual = try #require(tiles[0]["medianAbsoluteRowResidualPx"] as? Double)
        #expect(residual < 0.3)
        let range = try #require(tiles[0]["disparityRange"] as? [Double])
        // The rectified tiles match with the reported range.
        let m = try dsmopt("match", "--left", tmp.path("left_0.tif"), "--right", tmp.path("right_0.tif"),
                           "--min-disparity", String(range[0]), "--max-disparity", String(range[1]), "--out", tmp.path("d.tif"))
        #expect(m.status == 0, "\(m.stderr)")
        let bad = try dsmopt("epipolar", a, b, "--roi", "900", "900", "400", "400")
        #expect(bad.status == 2 && bad.stderr.contains("--roi"))
    }
}

/// `dsmopt run` as a user runs it: progress lines, products, one-line errors and nothing half-written.
@Suite struct RunCLITests {
    func dsmopt(_ args: String...) throws -> ProcessResult { try run(try dsmoptExecutable(), args, timeout: 600) }

    @Test func runOnTheBundledSyntheticTriplet() throws {
        let tmp = try TemporaryFolder()
        let f = TestData.fixture("synthetic-triplet")
        let r = try dsmopt("run", "\(f)/view_1.tif", "\(f)/view_2.tif", "\(f)/view_3.tif", "--out", tmp.path("out"),
                           "--resolution", "0.5", "--point-cloud", "--preset", "flat", "--window", "7")
        #expect(r.status == 0, "\(r.stderr)")
        // Progress per stage on stderr, tiles done / total with an ETA, and the run's figures at the end.
        for stage in ["inspect", "orient", "plan", "match", "fuse", "ortho", "products", "done"] {
            #expect(r.stderr.contains("] \(stage):"), "no progress line for \(stage)")
        }
        #expect(r.stderr.range(of: #"\] match: tile [0-9]+/[0-9]+"#, options: .regularExpression) != nil)
        #expect(r.stderr.range(of: #"cpu [0-9.]+ s, peak RSS [0-9]+ MiB"#, options: .regularExpression) != nil)
        let percents = r.stderr.split(separator: "\n").compactMap { l -> Int? in
            guard l.hasPrefix("["), let e = l.firstIndex(of: "%") else { return nil }
            return Int(l[l.index(after: l.startIndex)..<e].trimmingCharacters(in: .whitespaces))
        }
        #expect(percents == percents.sorted(), "progress went backwards: \(percents)")
        let m = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tmp.path("out/manifest.json")))) as? [String: Any]
        let products = try #require(m?["products"] as? [[String: Any]])
        #expect(Set(products.compactMap { $0["code"] as? String }).isSuperset(of: ["A1", "A2", "A3", "B2", "B4", "C1", "C2", "C3", "C4", "D1"]))
        // The preset and the override both show in the resolved parameters.
        let p = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tmp.path("out/parameters.json")))) as? [String: Any]
        let matching = try #require(p?["matching"] as? [String: Any])
        #expect(p?["preset"] as? String == "flat" && matching["window"] as? Int == 7 && matching["regularisation"] as? Double == 0.08)
    }

    @Test func runRefusesBadInputWithOneLine() throws {
        let tmp = try TemporaryFolder()
        let a = try TestData.path("pleiades/reunion-pair/img_01.tif"), b = try TestData.path("pleiades/reunion-pair/img_02.tif")
        let cases: [([String], Int32, String)] = [
            (["run", a, b, "--out", tmp.path("o1"), "--preset", "lunar"], 2, "unknown preset 'lunar'"),
            (["run", a, b, "--out", tmp.path("o2"), "--window", "16"], 2, "window = 16"),
            (["run", a, b, "--out", tmp.path("o3"), "--aoi", "10,10,10.01,10.01"], 4, "outside the first image's footprint"),
            (["run", a, b, "--out", tmp.path("o4"), "--roi", "900", "900", "400", "400"], 2, "invalid region of interest"),
            (["run", a, try TestData.path("pleiades/marseille-triplet/img_01.tif"), "--out", tmp.path("o5")], 4, "do not overlap"),
            (["run", a, "--out", tmp.path("o6")], 2, "2 or 3 images, got 1"),
        ]
        for (args, code, fragment) in cases {
            let r = try run(try dsmoptExecutable(), args, timeout: 300)
            #expect(r.status == code, "\(args): exit \(r.status): \(r.stderr)")
            let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("dsmopt: error:") }
            #expect(errors.count == 1 && errors[0].contains(fragment), "\(args): \(r.stderr)")
            let out = args[args.firstIndex(of: "--out")! + 1]
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).isEmpty, "\(out) is not empty")
        }
        // An unwritable output folder: below a regular file.
        let file = tmp.path("file")
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try dsmopt("run", a, b, "--out", file + "/out")
        #expect(r.status == 3 && r.stderr.contains("output folder is not writable"))
    }
}

/// The typed contract between the job service and the pipeline: `dsmopt run --job job.json --events FILE`.
@Suite struct RunContractTests {
    func events(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    func write(_ job: [String: Any], to path: String) throws {
        try JSONSerialization.data(withJSONObject: job).write(to: URL(fileURLWithPath: path))
    }

    @Test func jobFileInEventsOut() throws {
        let tmp = try TemporaryFolder()
        let f = TestData.fixture("synthetic-pair")
        try write(["images": ["\(f)/view_1.tif", "\(f)/view_2.tif"], "preset": "default",
                   "parameters": ["resolution": 1.0, "left-right-tolerance": 2, "orthos": false, "mosaic": false]], to: tmp.path("job.json"))
        let r = try run(try dsmoptExecutable(), ["run", "--job", tmp.path("job.json"), "--out", tmp.path("out"), "--events", tmp.path("ev.jsonl")], timeout: 300)
        #expect(r.status == 0, "\(r.stderr)")
        let ev = try events(tmp.path("ev.jsonl"))
        let progress = ev.filter { $0["event"] as? String == "progress" }
        #expect(progress.count >= 5 && progress.allSatisfy { $0["stage"] is String && $0["percent"] is Int })
        let last = try #require(ev.last)
        #expect(last["event"] as? String == "finished" && (last["cpuSeconds"] as? Double ?? 0) > 0.1 && last["products"] as? Int ?? 0 >= 6, "\(last)")
        // Every parameter of the table reaches the pipeline: the tolerance the CLI used to ignore included.
        let p = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tmp.path("out/parameters.json")))) as? [String: Any]
        let matching = try #require(p?["matching"] as? [String: Any])
        #expect(matching["left-right-tolerance"] as? Double == 2, "\(matching)")
        #expect(!FileManager.default.fileExists(atPath: tmp.path("out/ortho_mosaic.tif")))
    }

    @Test func failuresAreTypedEvents() throws {
        let tmp = try TemporaryFolder()
        let f = TestData.fixture("synthetic-pair")
        let exe = try dsmoptExecutable()
        // (job, exit code, event code, fragment of the message)
        let cases: [([String: Any], Int32, String, String)] = [
            (["images": ["\(f)/view_1.tif", tmp.path("missing.tif")]], 3, "bad-input", "missing.tif"),
            (["images": ["\(f)/view_1.tif", "\(f)/view_2.tif"], "parameters": ["window": 4, "colour": 1]], 2, "invalid-parameters", "window = 4"),
            (["images": ["\(f)/view_1.tif", "\(f)/view_2.tif"], "aoi": ["bbox": [-61.5, 16, -61.4, 16.1]]], 4, "geometry", "outside the first image's footprint"),
            (["images": ["\(f)/view_1.tif", "\(f)/view_2.tif"], "parameters": ["resolution": 0.5], "limits": ["cpuSeconds": 0.3]], 5, "limit-reached", "0.3 CPU-seconds"),
        ]
        for (i, (job, code, event, fragment)) in cases.enumerated() {
            try write(job, to: tmp.path("job\(i).json"))
            let r = try run(exe, ["run", "--job", tmp.path("job\(i).json"), "--out", tmp.path("out\(i)"), "--events", tmp.path("ev\(i).jsonl")], timeout: 120)
            #expect(r.status == code, "case \(i): exit \(r.status): \(r.stderr)")
            let last = try #require(try events(tmp.path("ev\(i).jsonl")).last)
            #expect(last["event"] as? String == "failed" && last["code"] as? String == event, "case \(i): \(last)")
            #expect((last["message"] as? String ?? "").contains(fragment), "case \(i): \(last)")
            #expect(last["cpuSeconds"] is Double)
        }
        // An events file that cannot be written (a full disk) loses the events, not the run, and says so once.
        let full = try run(exe, ["run", "--job", tmp.path("job0.json"), "--out", tmp.path("full"), "--events", "/dev/full"], timeout: 120)
        #expect(full.status == 3 && full.stderr.contains("missing.tif"), "\(full.stderr)")
        #expect(full.stderr.components(separatedBy: "cannot append to the events file").count == 2, "\(full.stderr)")
        // A job file with an unknown field is refused as a whole.
        try #"{"images": ["a.tif", "b.tif"], "prest": "urban"}"#.write(toFile: tmp.path("typo.json"), atomically: true, encoding: .utf8)
        let r = try run(exe, ["run", "--job", tmp.path("typo.json"), "--out", tmp.path("typo")])
        #expect(r.status == 2 && r.stderr.contains("unknown field(s): prest"), "\(r.stderr)")
    }

    /// `dsmopt synth` refuses a scene it cannot render with a line naming the option (a relief of 1e300 m had
    /// ended in "RPC localisation did not converge", NaN in "RPC model is singular"), and writes nothing.
    @Test func synthRefusesImpossibleScenes() throws {
        let tmp = try TemporaryFolder()
        let exe = try dsmoptExecutable()
        for (args, fragment) in [(["--relief", "1e300"], "--relief"), (["--relief", "nan"], "--relief"), (["--relief=-5"], "--relief"),
                                 (["--gsd", "0"], "--gsd"), (["--size", "8"], "--size"), (["--noise", "inf"], "--noise")] {
            let r = try run(exe, ["synth", "--out", tmp.path("scene")] + args)
            #expect(r.status == 64 && r.stderr.contains(fragment), "\(args): exit \(r.status): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: tmp.path("scene")), "\(args)")
        }
    }

    /// AOIs: negative longitudes (everything west of Greenwich) are values, not options; text is never
    /// read as a file name; files only through --aoi-file.
    @Test func areasOfInterestAreValuesNotPaths() throws {
        let tmp = try TemporaryFolder()
        let f = TestData.fixture("synthetic-pair")
        let exe = try dsmoptExecutable()
        let west = try run(exe, ["run", "\(f)/view_1.tif", "\(f)/view_2.tif", "--out", tmp.path("o1"), "--aoi", "-61.5,16,-61.4,16.1"])
        #expect(west.status == 4 && west.stderr.contains("outside the first image's footprint"), "\(west.stderr)")
        let geojson = #"{"type":"Polygon","coordinates":[[[-61.5,16],[-61.4,16],[-61.4,16.1],[-61.5,16]]]}"#
        try geojson.write(toFile: tmp.path("aoi.json"), atomically: true, encoding: .utf8)
        let path = try run(exe, ["run", "\(f)/view_1.tif", "\(f)/view_2.tif", "--out", tmp.path("o2"), "--aoi", tmp.path("aoi.json")])
        #expect(path.status != 0 && path.stderr.contains("neither a lon/lat bounding box nor GeoJSON text"), "\(path.stderr)")
        let file = try run(exe, ["run", "\(f)/view_1.tif", "\(f)/view_2.tif", "--out", tmp.path("o3"), "--aoi-file", tmp.path("aoi.json")])
        #expect(file.status == 4 && file.stderr.contains("outside the first image's footprint"), "\(file.stderr)")
    }

    /// One declaration of each parameter: every key of the table is a `dsmopt run` option, and the presets'
    /// documentation is the table as generated.
    @Test func oneParameterTable() throws {
        let exe = try dsmoptExecutable()
        let table = try run(exe, ["parameters"])
        let specs = try #require(try JSONSerialization.jsonObject(with: Data(table.stdout.utf8)) as? [[String: Any]])
        let keys = specs.compactMap { $0["key"] as? String }
        #expect(keys.count >= 13 && keys.contains("left-right-tolerance") && keys.contains("z-uncertainty"))
        let help = try run(exe, ["run", "--help"]).stdout
        let flagNames = ["orthos": "--no-orthos", "mosaic": "--no-mosaic"]
        for k in keys { #expect(help.contains(flagNames[k] ?? "--\(k)"), "`dsmopt run` has no option for \(k)") }
        let markdown = try run(exe, ["parameters", "--markdown"]).stdout
        let readme = try String(contentsOf: TestData.packageRoot.appendingPathComponent("Presets/README.md"), encoding: .utf8)
        #expect(readme.contains(markdown), "Presets/README.md is not the current table: regenerate it with `dsmopt parameters --markdown`")
        // The presets use the table's spelling.
        for name in try FileManager.default.contentsOfDirectory(atPath: TestData.packageRoot.appendingPathComponent("Presets").path) where name.hasSuffix(".json") {
            let text = try String(contentsOf: TestData.packageRoot.appendingPathComponent("Presets/\(name)"), encoding: .utf8)
            #expect(!text.contains("zUncertainty") && !text.contains("resolutionFactor") && !text.contains("decorrelationThreshold"), "\(name)")
        }
    }
}
