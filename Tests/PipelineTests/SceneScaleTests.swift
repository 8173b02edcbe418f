import DSMCore
import DSMPipeline
import Foundation
import GDALKit
import SensorIngest
import TestSupport
import Testing

/// The scene-scale pipeline: ground tiles that do not show in the DSM, runs that resume after a crash,
/// and a memory budget that holds. Speed and the scaling figures live in `Benchmarks/` (scene-scale.sh).
@Suite(.serialized) struct SceneScaleTests {
    static let presets = TestData.packageRoot.appendingPathComponent("Presets").path

    func options(_ images: [String], out: String) -> PipelineOptions {
        var o = PipelineOptions(images: images, output: out)
        o.presetFolder = Self.presets
        o.resolution = 0.5
        return o
    }

    func synthetic(_ folder: String, size: Int) throws {
        var p = SyntheticProduct()
        p.size = size
        p.baseToHeight = 0.25
        try p.write(to: folder)
    }

    func band(_ path: String, _ b: Int = 1) throws -> [Float] { try RasterDataset(path: path).read(band: b) }

    @Test func tilesLeaveNoSeams() throws {
        let tmp = try TemporaryFolder()
        try synthetic(tmp.path("scene"), size: 1024)
        var dsms: [[Float]] = []
        var grids: [GridDefinition] = []
        for t in [256, 1024] {
            var o = options([tmp.path("scene/view_1.tif"), tmp.path("scene/view_2.tif")], out: tmp.path("out\(t)"))
            o.tileSize = t
            o.orthoImages = false
            o.orthoMosaic = false
            let m = try DSMPipelineRunner(options: o).run()
            #expect(m.tiling?.tileSizeCells == t)
            dsms.append(try band(tmp.path("out\(t)/dsm.tif")))
            grids.append(m.grid)
        }
        #expect(grids[0] == grids[1])
        let g = grids[0]
        let plan = TilePlan(grid: g, tileSize: 256)
        #expect(plan.rows * plan.columns >= 16)
        var near = [Bool](repeating: false, count: g.count)
        for t in plan.tiles {
            for j in 0..<g.height {
                for i in 0..<g.width where (abs(i - t.cells.x) < 4 && t.cells.x > 0) || (abs(j - t.cells.y) < 4 && t.cells.y > 0) {
                    near[j * g.width + i] = true
                }
            }
        }
        var all: [Float] = [], border: [Float] = [], inside: [Float] = []
        var onlyOne = 0
        for c in 0..<g.count {
            let a = dsms[0][c], b = dsms[1][c]
            if a.isNaN != b.isNaN { onlyOne += 1 }
            guard !a.isNaN, !b.isNaN else { continue }
            all.append(a - b)
            if near[c] { border.append(abs(a - b)) } else { inside.append(abs(a - b)) }
        }
        let sorted = all.sorted()
        let med = sorted[sorted.count / 2]
        let nmad = 1.4826 * Double(all.map { abs($0 - med) }.sorted()[all.count / 2])
        let mb = Double(border.reduce(0, +)) / Double(border.count), mi = Double(inside.reduce(0, +)) / Double(inside.count)
        print(String(format: "tiles 256 vs 1024: difference NMAD %.4f m over %d cells; mean |d| %.4f m within 4 cells of the 256-cell tile borders, %.4f m elsewhere; %d cells valid in one only",
                     nmad, all.count, mb, mi, onlyOne))
        // Target: NMAD ≤ 0.02 m; borders no worse than inside. The 1024-cell run is one ground tile (the
        // grid is 1055 cells wide), so this compares against an untiled run.
        #expect(nmad <= 0.02)
        #expect(mb <= mi * 1.2 + 0.001)
        #expect(Double(onlyOne) / Double(all.count) < 0.002)
    }

    /// The job service's tasks: blocks of neighbouring tiles, each tile in exactly one task of its stage.
    @Test func taskGroupsCoverEveryTileOnce() {
        let plan = TilePlan(grid: GridDefinition(epsg: 32740, originX: 0, originY: 0, resolution: 0.5, width: 5000, height: 3500), tileSize: 1000)
        #expect(plan.rows == 4 && plan.columns == 5)
        for stage in TileStage.allCases {
            let groups = plan.taskGroups(stage)
            #expect(groups.flatMap { $0 }.sorted() == Array(0..<20), "\(stage): \(groups)")
            let (br, bc) = stage.taskBlock
            #expect(groups.count == ((4 + br - 1) / br) * ((5 + bc - 1) / bc))
            for g in groups {
                // A block: its tiles span at most taskBlock rows and columns, all of them neighbours.
                let rows = Set(g.map { $0 / 5 }), cols = Set(g.map { $0 % 5 })
                #expect(rows.count <= br && cols.count <= bc && g.count == rows.count * cols.count
                        && rows.max()! - rows.min()! == rows.count - 1 && cols.max()! - cols.min()! == cols.count - 1, "\(stage): \(g)")
            }
        }
        #expect(plan.taskGroups(.fuse)[0] == [0, 1, 2, 5, 6, 7, 10, 11, 12] && plan.taskGroups(.match)[2] == [4])
    }

    @Test func resumeAfterKillGivesTheSameProducts() throws {
        let tmp = try TemporaryFolder()
        let exe = try dsmoptExecutable()
        try synthetic(tmp.path("scene"), size: 768)
        let args = [tmp.path("scene/view_1.tif"), tmp.path("scene/view_2.tif"), "--resolution", "0.5", "--tile-size", "128", "--point-cloud"]
        let whole = try run(exe, ["run"] + args + ["--out", tmp.path("whole")], timeout: 300)
        #expect(whole.status == 0, "\(whole.stderr)")

        // The same run, killed (SIGKILL) once a third of its tiles are matched.
        let out = tmp.path("resumed")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["run"] + args + ["--out", out]
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let matchDir = out + "/.dsmopt-work/match"
        let deadline = Date().addingTimeInterval(120)
        var done = 0
        while p.isRunning && Date() < deadline {
            done = ((try? FileManager.default.contentsOfDirectory(atPath: matchDir)) ?? []).filter { $0.hasSuffix(".tile") }.count
            if done >= 12 { break }
            usleep(20_000)
        }
        #expect(p.isRunning, "the run ended before it could be interrupted")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(done >= 12 && done < 49, "killed after \(done) tiles")
        // Nothing that looks like a product; the finished tiles are kept.
        #expect(!FileManager.default.fileExists(atPath: out + "/dsm.tif"))
        #expect(FileManager.default.fileExists(atPath: out + "/.dsmopt-work/plan.json"))

        let resumed = try run(exe, ["run", "--resume", out], timeout: 300)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stderr.contains("tiles already done"), "\(resumed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out + "/.dsmopt-work"))
        for (file, bands) in [("dsm.tif", 1), ("dsm_raw.tif", 1), ("correlation_score.tif", 1), ("dsm_filled_mask.tif", 1),
                              ("hillshade.tif", 4), ("hillshade_multidirectional.tif", 4), ("ortho_mosaic.tif", 2),
                              ("ortho_1_forward.tif", 1), ("ortho_2_backward.tif", 1)] {
            for b in 1...bands {
                let a = try band(tmp.path("whole/\(file)"), b), r = try band(out + "/" + file, b)
                #expect(a.count == r.count && zip(a, r).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }, "\(file) band \(b) differs")
            }
        }
        let lasA = try Data(contentsOf: URL(fileURLWithPath: tmp.path("whole/pointcloud.las")))
        let lasB = try Data(contentsOf: URL(fileURLWithPath: out + "/pointcloud.las"))
        // Header bytes 90–93 hold the creation day and year; the points must be identical.
        #expect(lasA.count == lasB.count && lasA.suffix(from: 375) == lasB.suffix(from: 375))

        // Nothing to resume: a clear error.
        let none = try run(exe, ["run", "--resume", tmp.path("scene")])
        #expect(none.status == 2 && none.stderr.contains("no interrupted run to resume"), "\(none.stderr)")
    }

    /// A resumed step reads the images' pixels again only if their files changed since the run was planned
    /// (their sizes, recorded with their SHA-256 in the plan); a changed file stops it with one clear line.
    @Test func resumeRefusesInputsThatChanged() throws {
        let tmp = try TemporaryFolder()
        let exe = try dsmoptExecutable()
        try synthetic(tmp.path("scene"), size: 384)
        let a = tmp.path("scene/view_1.tif"), b = tmp.path("scene/view_2.tif"), out = tmp.path("run")
        let plan = try run(exe, ["run", a, b, "--resolution", "0.5", "--tile-size", "128", "--out", out, "--step", "plan"], timeout: 300)
        #expect(plan.status == 0, "\(plan.stderr)")
        let first = try run(exe, ["run", "--resume", out, "--step", "match", "--tiles", "0"], timeout: 300)
        #expect(first.status == 0, "\(first.stderr)")
        let matchDir = out + "/.dsmopt-work/match"
        let tiles = { ((try? FileManager.default.contentsOfDirectory(atPath: matchDir)) ?? []).filter { $0.hasSuffix(".tile") }.count }
        #expect(tiles() == 1)
        // One byte more at the end of the second image: still a readable TIFF, but not the file planned from.
        let h = try #require(FileHandle(forWritingAtPath: b))
        try h.seekToEnd()
        try h.write(contentsOf: Data([0]))
        try h.close()
        let changed = try run(exe, ["run", "--resume", out, "--step", "match", "--tiles", "1"], timeout: 300)
        #expect(changed.status != 0)
        #expect(changed.stderr.contains("view_2.tif") && changed.stderr.contains("changed since the run was planned"), "\(changed.stderr)")
        #expect(changed.stderr.split(separator: "\n").filter { $0.contains("error") }.count <= 1, "\(changed.stderr)")
        #expect(tiles() == 1, "no tile may come from the changed file")
    }

    /// A work folder planned by a version whose tiles are laid out otherwise (another `RunPlan.formatVersion`)
    /// is not resumed: `--resume` says so in one line, and the job service starts such a job again
    /// (`WorkFolder.holdsResumablePlan`). Without this a run resumed across the change of the match tiles'
    /// bands would read one pair's bands as another's.
    @Test func resumeRefusesAPlanOfAnotherFormat() throws {
        let tmp = try TemporaryFolder()
        let exe = try dsmoptExecutable()
        try synthetic(tmp.path("scene"), size: 384)
        let out = tmp.path("run")
        let plan = try run(exe, ["run", tmp.path("scene/view_1.tif"), tmp.path("scene/view_2.tif"), "--resolution", "0.5",
                                 "--tile-size", "128", "--out", out, "--step", "plan"], timeout: 300)
        #expect(plan.status == 0, "\(plan.stderr)")
        let work = WorkFolder(output: out)
        #expect(work.holdsResumablePlan)
        let text = try String(contentsOfFile: work.planPath, encoding: .utf8)
        let key = "\"formatVersion\":\(RunPlan.formatVersion)"
        #expect(text.replacingOccurrences(of: " ", with: "").contains(key), "the plan's format version is not where expected")
        let older = text.replacingOccurrences(of: #""formatVersion"\s*:\s*[0-9]+"#, with: "\"formatVersion\": \(RunPlan.formatVersion - 1)",
                                              options: .regularExpression)
        try older.write(toFile: work.planPath, atomically: true, encoding: .utf8)
        #expect(!work.holdsResumablePlan)
        let resumed = try run(exe, ["run", "--resume", out, "--step", "match", "--tiles", "0"], timeout: 300)
        #expect(resumed.status != 0)
        #expect(resumed.stderr.contains("another version of dsmopt") && resumed.stderr.contains("without --resume"), "\(resumed.stderr)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: work.path("match"))) ?? []).filter { $0.hasSuffix(".tile") }.isEmpty)
    }

    @Test func memoryBudgetBoundsThePeak() throws {
        let tmp = try TemporaryFolder()
        let exe = try dsmoptExecutable()
        let synth = try run(exe, ["synth", "--out", tmp.path("scene"), "--size", "4096"], timeout: 300)
        #expect(synth.status == 0, "\(synth.stderr)")
        let budget = 400
        let r = try run(exe, ["run", tmp.path("scene/view_1.tif"), tmp.path("scene/view_2.tif"), "--resolution", "0.5",
                              "--no-orthos", "--max-memory", "\(budget)M", "--out", tmp.path("out")], timeout: 900)
        #expect(r.status == 0, "\(r.stderr)")
        // The child reports its own peak (VmHWM of its address space) on its last line.
        let line = try #require(r.stderr.split(separator: "\n").last { $0.hasPrefix("run:") })
        let peak = try #require(line.range(of: #"peak RSS ([0-9]+) MiB"#, options: .regularExpression).flatMap {
            Int(line[$0].split(separator: " ")[2])
        })
        print("4096² pair under --max-memory \(budget)M: \(line)")
        #expect(peak <= budget, "peak \(peak) MiB over the \(budget) MiB budget")
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: URL(fileURLWithPath: tmp.path("out/manifest.json"))))
        #expect(try #require(manifest.tiling).tiles >= 16)
        let dsm = try RasterDataset(path: tmp.path("out/dsm.tif"))
        #expect(dsm.width > 4000 && dsm.metadata(domain: "IMAGE_STRUCTURE")["LAYOUT"] == "COG")
    }

    /// A disk that fills during a run (here: a file-size limit, so that the tile files of the fuse stage
    /// cannot be written while the smaller match tiles can): a clear error, no product, the finished
    /// tiles kept, and `--resume` on a disk with room finishes the run.
    @Test func fullDiskKeepsTheFinishedTiles() throws {
        let tmp = try TemporaryFolder()
        let exe = try dsmoptExecutable()
        try synthetic(tmp.path("scene"), size: 512)
        let out = tmp.path("out")
        // The grid (~540 cells) cut into 5 × 5 tiles of ~108 cells: match tiles ~140 KiB, fuse tiles ~330 KiB,
        // so a 200 KiB limit stops the run at fusion.
        let r = try run("/bin/bash", ["-c", "ulimit -f 200; trap '' XFSZ; exec \"$0\" \"$@\"", exe, "run",
                                      tmp.path("scene/view_1.tif"), tmp.path("scene/view_2.tif"), "--resolution", "0.5",
                                      "--tile-size", "108", "--out", out])
        #expect(r.status == 3, "\(r.status): \(r.stderr)")
        let line = r.stderr.split(separator: "\n").last.map(String.init) ?? ""
        #expect(line.hasPrefix("dsmopt: error:") && line.contains("cannot be written") && line.contains("/fuse/"), "\(line)")
        let left = try FileManager.default.contentsOfDirectory(atPath: out)
        #expect(left == [WorkFolder.name], "output holds \(left)")
        let matched = try FileManager.default.contentsOfDirectory(atPath: out + "/\(WorkFolder.name)/match")
        #expect(matched.count == 25 && matched.allSatisfy { $0.hasSuffix(".tile") }, "\(matched)")
        let resumed = try run(exe, ["run", "--resume", out], timeout: 300)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stderr.contains("25/25 tiles already done"), "\(resumed.stderr)")
        #expect(FileManager.default.fileExists(atPath: out + "/dsm.tif"))
    }

    @Test func deliveryGivesTheSameDSMAsItsSourceImages() throws {
        let tmp = try TemporaryFolder()
        let sources = [try TestData.path("pleiades/reunion-pair/img_01.tif"), try TestData.path("pleiades/reunion-pair/img_02.tif")]
        try DIMAPDeliveryWriter().write(images: sources, to: tmp.path("delivery"))
        var bands: [[Float]] = []
        for (name, inputs) in [("source", sources), ("delivery", [tmp.path("delivery")])] {
            var o = options(inputs, out: tmp.path(name))
            o.roi = PixelWindow(x: 250, y: 250, width: 500, height: 500)
            o.orthoImages = false
            let m = try DSMPipelineRunner(options: o).run()
            #expect(m.parameters.pairs == [[0, 1]])
            bands.append(try band(tmp.path("\(name)/dsm.tif")))
        }
        #expect(bands[0].count == bands[1].count && bands[0].contains { !$0.isNaN })
        #expect(zip(bands[0], bands[1]).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }, "the delivery's DSM differs from its source images'")
    }

    @Test func badResumeAndBudgetAreRefused() throws {
        let exe = try dsmoptExecutable()
        let tmp = try TemporaryFolder()
        let a = TestData.fixture("synthetic-pair/view_1.tif"), b = TestData.fixture("synthetic-pair/view_2.tif")
        let tiny = try run(exe, ["run", a, b, "--max-memory", "10M", "--out", tmp.path("o")])
        #expect(tiny.status == 2 && tiny.stderr.contains("max-memory"), "\(tiny.stderr)")
        let junk = try run(exe, ["run", a, b, "--max-memory", "lots", "--out", tmp.path("o")])
        #expect(junk.status == 2 && junk.stderr.contains("--max-memory"), "\(junk.stderr)")
        let both = try run(exe, ["run", a, b, "--resume", tmp.path("o")])
        #expect(both.status != 0 && both.stderr.contains("--resume takes no images"), "\(both.stderr)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: tmp.path("o"))) ?? []).isEmpty)
    }
}
