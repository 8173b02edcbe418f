import ArgumentParser
import DSMCore
import Foundation
import GDALKit
import SensorIngest
import DSMPipeline
import JobService

@main
struct DSMOpt: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dsmopt",
        abstract: "Stereo-photogrammetry DSM service for Pléiades stereo pairs and tri-stereo triplets.",
        discussion: """
        Image coordinates on the command line follow GDAL (`gdaltransform -rpc`): the top-left corner of the \
        image is (0, 0), the centre of the first pixel (0.5, 0.5). Heights are metres above the WGS84 ellipsoid.
        """,
        subcommands: [Serve.self, Worker.self, Admin.self, Run.self, Diff.self, Coregister.self, Inspect.self, RPCCommand.self, Epipolar.self, Match.self, Synth.self, SynthChange.self, MakeDelivery.self, Parameters.self, CheckInputs.self, Describe.self, BenchQueue.self]
    )

    /// Runs the command; errors the user can act on are printed as one line with a specific exit code.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let e as CLIFailure {
            fail(e.message, code: e.code)
        } catch let e as IngestError {
            fail(e.description, code: ExitCodes.badInput)
        } catch let e as InspectionError {
            switch e {
            case .wrongImageCount: fail(e.description, code: ExitCodes.usage)
            case .noOverlap: fail(e.description, code: ExitCodes.geometry)
            }
        } catch let e as SensorModelError {
            fail(e.description, code: ExitCodes.geometry)
        } catch let e as GDALError {
            fail(e.description, code: ExitCodes.badInput)
        } catch let e as MatchingError {
            fail(e.description, code: ExitCodes.usage)
        } catch let e as PipelineError {
            switch e {
            case .outputNotWritable, .workFolder: fail(e.description, code: ExitCodes.badInput)
            case .noPairSelected, .nothingMatched, .aoiOutsideFootprint: fail(e.description, code: ExitCodes.geometry)
            default: fail(e.description, code: ExitCodes.usage)
            }
        } catch let e as FinishingError {
            fail(e.description, code: ExitCodes.badInput)
        } catch let e as DifferenceError {
            switch e {
            case .input: fail(e.description, code: ExitCodes.badInput)
            case .noOverlap, .coregistration: fail(e.description, code: ExitCodes.geometry)
            }
        } catch let e as PresetError {
            fail(e.description, code: ExitCodes.usage)
        } catch let e as EpipolarError {
            fail(e.description, code: ExitCodes.geometry)
        } catch let e as ConfigurationError {
            fail(e.description, code: ExitCodes.usage)
        } catch let e as StoreError {
            fail(e.description, code: ExitCodes.usage)
        } catch {
            RunEvents.emit(.failed(code: "internal", message: "\(error)", cpuSeconds: ProcessUsage.cpuSeconds()))
            exit(withError: error)
        }
    }

    static func fail(_ message: String, code: Int32) -> Never {
        RunEvents.reportFailure(message, code: code)
        Foundation.exit(code)
    }
}

enum ExitCodes {
    static let usage: Int32 = 2
    static let badInput: Int32 = 3
    static let geometry: Int32 = 4
    static let limit: Int32 = 5

    /// The error code of a failed event (`dsmopt run --events`).
    static func name(_ code: Int32) -> String {
        switch code {
        case usage: return "invalid-parameters"
        case badInput: return "bad-input"
        case geometry: return "geometry"
        case limit: return "limit-reached"
        default: return "internal"
        }
    }
}

struct CLIFailure: Error {
    let message: String
    let code: Int32
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read 2 or 3 images (or a DIMAP product folder) and print their geometry and the stereo pairs to match, as JSON.")

    @Argument(help: "Images with RPC (GeoTIFF tags, .RPB, _RPC.TXT or Pléiades RPC_*.XML), or DIMAP product folders.")
    var inputs: [String] = []

    func run() throws {
        // The inspector expands product folders and checks the image count (exit 2 on a wrong count).
        let report = try StereoInspector().inspect(inputs)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        print(String(decoding: try encoder.encode(report), as: UTF8.self))
    }
}

struct RPCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rpc", abstract: "Evaluate an image's RPC camera model.",
        subcommands: [Project.self, Localize.self])

    /// Parses numbers given positionally (negative values included, which look like options).
    static func numbers(_ raw: [String], names: [String]) throws -> [Double] {
        guard raw.count == names.count else {
            throw CLIFailure(message: "expected \(names.joined(separator: " ")), got \(raw.count) value(s)", code: ExitCodes.usage)
        }
        return try zip(raw, names).map { s, n in
            guard let v = Double(s), v.isFinite else { throw CLIFailure(message: "\(n) is not a number: '\(s)'", code: ExitCodes.usage) }
            return v
        }
    }

    struct Project: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ground point → image: prints COL ROW (GDAL pixel convention).")
        @Argument(help: "Image with an RPC model.") var image: String
        @Argument(parsing: .allUnrecognized, help: "LON LAT HEIGHT (degrees, degrees, metres above WGS84).")
        var values: [String] = []

        func run() throws {
            let v = try RPCCommand.numbers(values, names: ["LON", "LAT", "HEIGHT"])
            if let why = AreaOfInterest.problem(longitude: v[0], latitude: v[1]) { throw CLIFailure(message: why, code: ExitCodes.usage) }
            let img = try SensorImage.open(image)
            let p = img.model.project(longitude: v[0], latitude: v[1], height: v[2])
            print(String(format: "%.6f %.6f", p.column + 0.5, p.row + 0.5))
        }
    }

    struct Localize: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Image point and height → ground: prints LON LAT (degrees).")
        @Argument(help: "Image with an RPC model.") var image: String
        @Argument(parsing: .allUnrecognized, help: "COL ROW HEIGHT (GDAL pixel convention, metres above WGS84).")
        var values: [String] = []

        func run() throws {
            let v = try RPCCommand.numbers(values, names: ["COL", "ROW", "HEIGHT"])
            let img = try SensorImage.open(image)
            let g = try img.model.localize(column: v[0] - 0.5, row: v[1] - 0.5, height: v[2])
            print(String(format: "%.10f %.10f", g.longitude, g.latitude))
        }
    }
}

/// What the job service learns about a job's images before it queues the job, read in a process of its
/// own (a parser crash or a hostile file cannot take the API down; CPU-limited): each image's size and
/// GSD, their overlap, the ROI's bounds and the AOI's window. Prints JSON; exits 0 even when it found problems.
struct CheckInputs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-inputs", abstract: "Check a job file's images (used by the job service).",
                                                    shouldDisplay: false)
    @Option(help: "Job file (JSON).") var job: String
    @Option(name: .customLong("cpu-seconds"), help: "CPU limit of the check.") var cpuSeconds = 60.0

    struct Report: Encodable {
        struct Image: Encodable { var width: Int; var height: Int; var gsd: Double }
        struct Problem: Encodable { var field: String; var message: String }
        var images: [Image?] = []
        var errors: [Problem] = []
        /// The first image's window the job covers (ROI, AOI's window, or the whole image).
        var area: [Int]?
    }

    func run() throws {
        RunEvents.limitCPU(seconds: cpuSeconds)
        guard let data = FileManager.default.contents(atPath: job) else { throw CLIFailure(message: "\(job): job file not found", code: ExitCodes.badInput) }
        let spec = try JSONDecoder().decode(JobSpec.self, from: data)
        var report = Report()
        var opened: [SensorImage] = []
        for (i, p) in spec.images.enumerated() {
            do {
                let img = try SensorImage.open(p)
                opened.append(img)
                let c = (Double(img.width - 1) / 2, Double(img.height - 1) / 2)
                let gsd = try img.model.groundSampling(column: c.0, row: c.1, height: img.model.heightNorm.offset).mean
                report.images.append(.init(width: img.width, height: img.height, gsd: gsd))
            } catch {
                report.images.append(nil)
                report.errors.append(.init(field: "images[\(i)]", message: "\(error)"))
            }
        }
        if opened.count == spec.images.count, (2...3).contains(opened.count) {
            do { _ = try StereoInspector().overlappingPairs(opened) } catch InspectionError.noOverlap(let a, let b) {
                report.errors.append(.init(field: "images", message: "\(a) and \(b) do not overlap on the ground"))
            }
            let first = opened[0]
            var area = [0, 0, first.width, first.height]
            if let r = spec.roi, r.count == 4 {
                if !PixelWindow(x: r[0], y: r[1], width: r[2], height: r[3]).isInside(imageWidth: first.width, imageHeight: first.height) {
                    report.errors.append(.init(field: "parameters.roi", message: "\(r) is not inside the \(first.width)×\(first.height) first image"))
                } else {
                    area = r
                }
            }
            if let aoi = spec.aoi {
                if let w = DSMPipelineRunner.roughWindow(of: aoi, in: first) { area = [w.x, w.y, w.width, w.height] } else {
                    report.errors.append(.init(field: "parameters.aoi", message: "lies outside the first image's footprint"))
                }
            }
            report.area = area
            // Files given with the job for the finishing steps, checked over the job's area on the ground.
            let h = first.model.heightNorm
            var lons: [Double] = [], lats: [Double] = []
            for (c, r) in [(area[0], area[1]), (area[0] + area[2], area[1]), (area[0], area[1] + area[3]), (area[0] + area[2], area[1] + area[3])] {
                for z in [h.offset - h.scale, h.offset + h.scale] {
                    if let g = try? first.model.localize(column: Double(c), row: Double(r), height: z) { lons.append(g.longitude); lats.append(g.latitude) }
                }
            }
            if let lo = lons.min(), let hi = lons.max(), let la = lats.min(), let lb = lats.max() {
                let ground = (lo, la, hi, lb)
                if let ref = spec.referenceDEM, spec.referenceIsServers != true {
                    do { try FinishingInputCheck.reference(ref, area: ground) } catch let e as FinishingError {
                        report.errors.append(.init(field: e.field, message: e.description))
                    }
                }
                if let mask = spec.waterMask {
                    do { try FinishingInputCheck.waterMask(mask, area: ground) } catch let e as FinishingError {
                        report.errors.append(.init(field: e.field, message: e.description))
                    }
                }
            }
            if let ms = spec.multispectral {
                do {
                    let img = try SensorImage.open(ms)
                    if img.bands < 4 { report.errors.append(.init(field: "multispectral", message: "\(img.bands) band(s): NDWI needs blue, green, red and near infrared")) }
                } catch {
                    report.errors.append(.init(field: "multispectral", message: "not a multispectral image with an RPC model: \(error)"))
                }
            }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        print(String(decoding: try enc.encode(report), as: UTF8.self))
    }
}

/// One image as the service reads it (used by the job service for GET /uploads/{id}).
struct Describe: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print what is read from one image (size, RPC, GSD, angles, footprint) as JSON.",
                                                    shouldDisplay: false)
    @Argument(help: "An image with RPC, or a DIMAP product folder.") var image: String
    @Option(name: .customLong("cpu-seconds"), help: "CPU limit.") var cpuSeconds = 30.0

    func run() throws {
        RunEvents.limitCPU(seconds: cpuSeconds)
        let paths = try ProductDiscovery.expand([image])
        guard paths.count == 1 else { throw CLIFailure(message: "\(image): \(paths.count) images, expected one", code: ExitCodes.usage) }
        let img = try SensorImage.open(paths[0])
        let report = try StereoInspector().report(img, height: img.model.heightNorm.offset)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        enc.dateEncodingStrategy = .iso8601
        print(String(decoding: try enc.encode(report), as: UTF8.self))
    }
}

/// Queue throughput of a store (Benchmarks/README.md): claim + heartbeat + finish per task.
struct BenchQueue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-queue", abstract: "Measure a job store's queue throughput (an empty scratch store only).",
                                                    shouldDisplay: false)
    @Option(help: "postgres://… URL, or a SQLite file path.") var store: String
    @Option var claimers = 32
    @Option var jobs = 2000
    @Option(help: "Tile tasks per job instead of whole jobs: the jobs are claimed by coordinators and their tiles queued.") var tiles: Int?
    @Option(help: "Tasks claimed at a time (with --tiles; a task of the service is a block of tiles).") var batch = 1

    func run() async throws {
        let s: any JobStore = store.hasPrefix("postgres") ? try await PostgresJobStore(url: store) : try SQLiteJobStore(path: store)
        if let tiles {
            let r = try await QueueBenchmark.runTiles(store: s, claimers: claimers, jobs: jobs, tiles: tiles, batch: batch)
            print(String(format: "bench-queue: %d tiles of %d jobs, %d claimers, batch %d, %.2f s, %.0f tiles/s (claim + heartbeat + complete), %d duplicates",
                         r.tasks, jobs, r.claimers, batch, r.seconds, r.tasksPerSecond, r.duplicates))
            return
        }
        let r = try await QueueBenchmark.run(store: s, claimers: claimers, jobs: jobs)
        print(String(format: "bench-queue: %d tasks, %d claimers, %.2f s, %.0f tasks/s (claim + heartbeat + finish), %d duplicates",
                     r.tasks, r.claimers, r.seconds, r.tasksPerSecond, r.duplicates))
    }
}

struct Parameters: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the parameter table (keys, types, ranges, defaults, help) that the CLI, the API, presets and the process description share.")
    @Flag(help: "A Markdown table (as in Presets/README.md) instead of JSON.") var markdown = false

    static var markdownTable: String {
        var out = "| key | group | rule | default | meaning |\n|---|---|---|---|---|\n"
        for s in JobParameterTable.specs {
            let d = s.defaultDisplay ?? ""
            out += "| `\(s.key)` | \(s.group.rawValue) | \(s.expected) | \(d) | \(s.help) |\n"
        }
        return out
    }

    func run() throws {
        if markdown { print(Self.markdownTable, terminator: ""); return }
        struct Row: Encodable { var key: String; var kind: String; var group: String; var expected: String; var minimum: Double?; var maximum: Double?; var defaultValue: Double?; var help: String }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try enc.encode(JobParameterTable.specs.map {
            Row(key: $0.key, kind: $0.kind.rawValue, group: $0.group.rawValue, expected: $0.expected, minimum: $0.minimum, maximum: $0.maximum, defaultValue: $0.defaultValue, help: $0.help)
        }), as: UTF8.self))
    }
}

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a synthetic stereo product with known truth (views with RPC, true DSM, scene.json).")

    @Option(help: "Output folder.") var out: String
    @Option(help: "Number of views: 2 (pair) or 3 (triplet).") var views = 2
    @Option(help: "Image size in pixels (square).") var size = 256
    @Option(help: "Ground sampling distance, metres.") var gsd = 0.5
    @Option(help: "Base-to-height ratio of the forward/backward pair.") var baseToHeight = 0.25
    @Option(help: "Height of the hills, metres.") var relief = 30.0
    @Option(help: "Random seed of the terrain and texture.") var seed: UInt64 = 1
    @Option(help: "Gaussian image noise, σ in digital numbers (texture ≈ 500–3500 DN; Pléiades-like: 10–20).") var noise = 0.0
    @Option(help: "Buildings: boxes 8–30 m wide and 6–20 m tall with vertical walls and weakly textured roofs (listed in scene.json).") var buildings = 0
    @Flag(help: "Add a lake (flat, untextured water), its outline lake.geojson and a 4-band multispectral image ms.tif.") var lake = false

    func validate() throws {
        guard (2...3).contains(views) else { throw ValidationError("--views must be 2 or 3") }
        guard (32...32768).contains(size) else { throw ValidationError("--size must be within 32–32768") }
        guard gsd > 0, gsd <= 100 else { throw ValidationError("--gsd must be within (0, 100] metres") }
        guard baseToHeight > 0, baseToHeight <= 1.5 else { throw ValidationError("--base-to-height must be within (0, 1.5]") }
        guard relief >= 0, relief <= 8000 else { throw ValidationError("--relief must be within 0–8000 metres") }
        guard noise >= 0, noise <= 1000 else { throw ValidationError("--noise must be within 0–1000 DN") }
        guard (0...10_000).contains(buildings) else { throw ValidationError("--buildings must be within 0–10000") }
    }

    func run() throws {
        var p = SyntheticProduct()
        p.views = views; p.size = size; p.gsd = gsd; p.baseToHeight = baseToHeight; p.relief = relief; p.seed = seed; p.lake = lake; p.noise = noise; p.buildings = buildings
        let d = try p.write(to: out)
        print("wrote \(d.views.joined(separator: ", ")), \(d.truthDSM) and scene.json to \(out)")
    }
}

struct SynthChange: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth-change",
        abstract: "Write two synthetic DSMs of two dates with a known change (a lava flow) and a known shift between them, and truth.json.")
    @Option(help: "Output folder.") var out: String
    @Option(help: "Size in cells (square, 1 m cells).") var size = 1200
    @Option(help: "Peak thickness of the flow, metres.") var thickness = 6.0
    @Option(help: "Height noise of each DSM, 1 σ in metres.") var noise = 0.25

    func validate() throws {
        guard (200...20_000).contains(size) else { throw ValidationError("--size must be within 200–20000 cells") }
        guard thickness > 0, thickness < 500, noise >= 0, noise < 50 else { throw ValidationError("--thickness must be within (0, 500) m and --noise within [0, 50) m") }
    }

    func run() throws {
        var c = SyntheticChange()
        c.size = size; c.flowThickness = thickness; c.noise = noise
        c.flowCentre = [Double(size) / 2, Double(size) * 0.54]
        let t = try c.write(to: out)
        print(String(format: "wrote dsm_a.tif, dsm_b.tif and truth.json to %@: flow volume %.0f m³, shift of B onto A %+.2f %+.2f %+.2f m; AOI %@",
                     out, t.volumeM3, t.shift[0], t.shift[1], t.shift[2], t.flowBoundingBox.map { String(format: "%.6f", $0) }.joined(separator: ",")))
    }
}

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Difference two DSMs of two dates: B coregistered on A on stable terrain, then B − A on A's grid and the volumes of change.",
        discussion: """
        Writes OUT/difference.tif (Float32 COG, nodata NaN), OUT/difference.png (coloured, with its legend), OUT/manifest.json         (coregistration, stable-terrain statistics, volumes gained, lost and net with their uncertainty, and the formula) and         OUT/item.json (STAC). Volumes are summed over --aoi (lon/lat bounding box or GeoJSON), else over the whole common area.
        """)
    @Argument(help: "The earlier DSM (its grid is the difference's).") var a: String
    @Argument(help: "The later DSM.") var b: String
    @Option(help: "Output folder.") var out: String
    @Option(help: "Area where volumes are summed: \"minLon,minLat,maxLon,maxLat\" or GeoJSON text (a Polygon or a Feature).") var aoi: String?
    @Option(name: .customLong("aoi-file"), help: "The area of interest as a GeoJSON file.") var aoiFile: String?
    @Option(name: .customLong("stable-mask"), help: "Stable terrain only: GeoJSON polygons or a raster whose non-zero cells are stable.") var stableMask: String?
    @Option(name: .customLong("changed-mask"), help: "What changed, never used as stable terrain: GeoJSON polygons or a raster (non-zero = changed).") var changedMask: String?
    @Option(help: "Append the run's events (progress, finished, failed) to FILE as JSON lines.") var events: String?
    @Option(name: .customLong("name-a"), help: "Name of A in messages and the manifest (default: its file name).") var nameA: String?
    @Option(name: .customLong("name-b"), help: "Name of B in messages and the manifest (default: its file name).") var nameB: String?
    @Flag(name: .customLong("user-files"), help: "The inputs are a user's files: open them with a few raster drivers (and GeoJSON for masks) only.") var userFiles = false

    func run() throws {
        if let events { try RunEvents.open(events) }
        RunEvents.stopWithParent()
        if aoi != nil && aoiFile != nil { throw CLIFailure(message: "give --aoi or --aoi-file, not both", code: ExitCodes.usage) }
        var o = DifferenceOptions(a: a, b: b, output: out)
        if let text = try aoiFile.map({ path -> String in
            guard let d = FileManager.default.contents(atPath: path) else { throw CLIFailure(message: "\(path): cannot be read", code: ExitCodes.badInput) }
            return String(decoding: d, as: UTF8.self)
        }) ?? aoi {
            o.aoi = try AreaOfInterest.parse(text)
        }
        o.stableMask = stableMask; o.changedMask = changedMask
        o.trusted = !userFiles; o.nameA = nameA; o.nameB = nameB
        for (what, path) in [("A", a), ("B", b), ("--stable-mask", stableMask), ("--changed-mask", changedMask)] {
            if let path, !FileManager.default.fileExists(atPath: path) { throw CLIFailure(message: "\(what): \(path): no such file", code: ExitCodes.badInput) }
        }
        let start = Date()
        let m = try DSMDifference.run(o) { f, message in
            FileHandle.standardError.write(Data(String(format: "[%3d%%] diff: %@\n", Int(f * 100), message).utf8))
            RunEvents.emit(.progress(percent: Int(f * 100), stage: f >= 1 ? "done" : "difference", message: message))
        }
        let cpu = ProcessUsage.cpuSeconds()
        RunEvents.emit(.finished(products: m.products.count, wallSeconds: Date().timeIntervalSince(start), cpuSeconds: cpu, peakMiB: 0))
        let v = m.volumes, c = m.coregistration
        print(String(format: "shift of B onto A: %+.3f m east, %+.3f m north, %+.3f m up; stable terrain NMAD %.3f m, correlation length %.1f m\n"
                     + "over %@ (%.0f m², %.1f %% covered): net %+.0f ± %.0f m³, gain %.0f ± %.0f m³, loss %.0f ± %.0f m³, changed area %.0f m² (changes found: |7×7 mean of B − A| > %.2f m)",
                     c.dx, c.dy, c.dz, m.stableTerrain.nmad, m.stableTerrain.correlationLengthM, v.region, v.regionAreaM2, v.coverage * 100,
                     v.netM3, v.netUncertaintyM3, v.gainM3, v.gainUncertaintyM3, v.lossM3, v.lossUncertaintyM3, v.changedAreaM2, v.thresholdM))
    }
}

struct MakeDelivery: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-delivery",
        abstract: "Repackage images with RPC as a Pléiades DIMAP V2 delivery (tiled JPEG2000 products, DIM/RPC XML, VOL_PHR.XML).")

    @Argument(help: "Images with RPC, one product each.") var images: [String] = []
    @Option(help: "Output folder (the delivery root).") var out: String
    @Option(help: "Tiles per product, ROWSxCOLUMNS.") var tiles = "2x2"

    func run() throws {
        let parts = tiles.lowercased().split(separator: "x").compactMap { Int($0) }
        guard parts.count == 2, (1...16).contains(parts[0]), (1...16).contains(parts[1]) else {
            throw CLIFailure(message: "--tiles must look like 2x2 (1–16 each)", code: ExitCodes.usage)
        }
        guard !images.isEmpty else { throw CLIFailure(message: "give at least one image", code: ExitCodes.usage) }
        var w = DIMAPDeliveryWriter()
        w.tileRows = parts[0]; w.tileColumns = parts[1]
        for d in try w.write(images: images, to: out) { print(d) }
    }
}

/// Expert matching parameters shared by the commands that match, declared once in
/// `MatchingParameters.specs` (names, ranges, defaults and help come from there). Each one, when given,
/// overrides the preset (`run`) or the DSM-OPT default (`match`). Values are read as given (negative ones
/// too) and checked against the table, so that an out-of-range value gets the table's message.
struct ExpertOptions: ParsableArguments {
    static func help(_ key: String) -> ArgumentHelp { ArgumentHelp(MatchingParameters.spec(key)!.optionHelp) }
    @Option(name: .customLong("window"), parsing: .unconditional, help: help("window")) var window: Double?
    @Option(name: .customLong("regularisation"), parsing: .unconditional, help: help("regularisation")) var regularisation: Double?
    @Option(name: .customLong("z-uncertainty"), parsing: .unconditional, help: help("z-uncertainty")) var zUncertainty: Double?
    @Option(name: .customLong("precision"), parsing: .unconditional, help: help("precision")) var precision: Double?
    @Option(name: .customLong("decorrelation-threshold"), parsing: .unconditional, help: help("decorrelation-threshold")) var decorrelationThreshold: Double?
    @Option(name: .customLong("left-right-tolerance"), parsing: .unconditional, help: help("left-right-tolerance")) var leftRightTolerance: Double?
    @Option(name: .customLong("jump-penalty-ratio"), parsing: .unconditional, help: help("jump-penalty-ratio")) var jumpPenaltyRatio: Double?
    @Option(name: .customLong("regularisation-adaptation"), parsing: .unconditional, help: help("regularisation-adaptation")) var regularisationAdaptation: Double?
    @Option(name: .customLong("uncertainty-threshold"), parsing: .unconditional, help: help("uncertainty-threshold")) var uncertaintyThreshold: Double?

    /// The options given, by the table's keys (every key of the table has its option above: a test checks it).
    var given: [String: Double] {
        let all: [(String, Double?)] = [("window", window), ("regularisation", regularisation), ("z-uncertainty", zUncertainty),
                                        ("precision", precision), ("decorrelation-threshold", decorrelationThreshold),
                                        ("left-right-tolerance", leftRightTolerance), ("jump-penalty-ratio", jumpPenaltyRatio),
                                        ("regularisation-adaptation", regularisationAdaptation), ("uncertainty-threshold", uncertaintyThreshold)]
        return Dictionary(uniqueKeysWithValues: all.compactMap { k, v in v.map { (k, $0) } })
    }

    var overrides: ParameterOverrides {
        var o = ParameterOverrides()
        for (k, v) in given { o[k] = v }
        return o
    }
}

struct Match: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Densely match an already rectified pair; writes the left disparity (x_right = x_left − d) as Float32 GeoTIFF, NaN where invalid.")

    @Option(help: "Left (reference) rectified image.") var left: String
    @Option(help: "Right rectified image.") var right: String
    @Option(name: .customLong("min-disparity"), parsing: .unconditional, help: "Smallest disparity searched, pixels.") var minDisparity: Double
    @Option(name: .customLong("max-disparity"), parsing: .unconditional, help: "Largest disparity searched, pixels.") var maxDisparity: Double
    @Option(help: "Output disparity GeoTIFF.") var out: String
    @Option(help: "Optional output correlation-score GeoTIFF (ZNCC of the chosen match).") var score: String?
    @Option(help: "Optional output status GeoTIFF (UInt8: 0 valid, 1 decorrelated, 2 occluded, 3 mismatch, 4 outside, 5 filled occlusion, 6 filled mismatch).")
    var status: String?
    @Flag(help: "Fill left/right-check failures (occlusions with the background, mismatches with the median); flagged in the status layer, never decorrelated pixels.")
    var fill = false
    @Option(name: .customLong("support-weights"),
            help: "Correlate over support weights that follow both images' edges instead of the square window, with γ in units of the image's standard deviation (e.g. 0.45; a number in (0, 4]). Experimental, see the README.")
    var supportWeights: Float?
    @Option(name: .customLong("revalidate-occlusions"),
            help: "Rounds of re-validating left/right-check failures called occluded whose own match continues a valid neighbour's disparity (an integer from 0 to 16; default 0, off). Experimental, see the README.")
    var revalidateOcclusions = 0
    @Flag(name: .customLong("surface-refinement"),
          help: "Refine sub-pixel disparities beside depth edges over the part of the window on the pixel's own surface (split from another at a gap of over 0.5 px of disparity). Experimental, see the README.")
    var surfaceRefinement = false
    @OptionGroup var expert: ExpertOptions

    func run() throws {
        let overrides = expert.overrides
        var problems = overrides.problems()
        let p = overrides.applied(to: .defaults)
        if problems.isEmpty { problems = p.validate() }
        if let g = supportWeights, !(g > 0 && g <= 4) {
            problems.append(ParameterProblem(field: "support-weights", value: "\(g)", expected: "a number in (0, 4]"))
        }
        if !(0...16).contains(revalidateOcclusions) {
            problems.append(ParameterProblem(field: "revalidate-occlusions", value: "\(revalidateOcclusions)", expected: "an integer from 0 to 16"))
        }
        guard problems.isEmpty else { throw MatchingError.invalidParameters(problems) }
        guard minDisparity <= maxDisparity else { throw MatchingError.invalidDisparityRange(min: minDisparity, max: maxDisparity) }
        let l = try readGrayImage(left), r = try readGrayImage(right)
        let clock = ContinuousClock()
        var result: (map: DisparityMap, report: MatchingReport)!
        let elapsed = try clock.measure {
            var matcher = DenseMatcher(parameters: p)
            matcher.fillInvalid = fill
            matcher.supportWeights = supportWeights.map { SupportWeights(intensityScale: $0) }
            matcher.occlusionRevalidationRounds = revalidateOcclusions
            matcher.surfaceRefinement = surfaceRefinement
            result = try matcher.matchWithReport(left: l, right: r, minDisparity: minDisparity, maxDisparity: maxDisparity)
        }
        let meta = [("DISPARITY_CONVENTION", "left x matches right x - d"),
                    ("SEARCHED_RANGE", "\(result.report.searchedRange.lowerBound) \(result.report.searchedRange.upperBound)")]
        try writeFloatRaster(out, width: l.width, height: l.height, values: result.map.disparity, metadata: meta)
        if let score { try writeFloatRaster(score, width: l.width, height: l.height, values: result.map.score) }
        if let status {
            try RasterWriter.write(path: status, width: l.width, height: l.height, bands: [result.map.status.map(Float.init)],
                                   type: .byte, options: [("COMPRESS", "DEFLATE")])
        }
        let valid = Double(result.map.validCount) / Double(l.width * l.height)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        FileHandle.standardError.write(Data(String(format: "match: %d×%d, range %.1f…%.1f, %.1f M cells, %.3f s, %.1f%% valid\n",
            l.width, l.height, result.report.searchedRange.lowerBound, result.report.searchedRange.upperBound,
            Double(result.report.cells) / 1e6, seconds, valid * 100).utf8))
    }
}

struct Epipolar: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Epipolar resampling of a stereo pair, tile by tile; prints each tile's geometry and measured residual as JSON.")

    @Argument(help: "The two images (the first is the reference).") var images: [String] = []
    @Option(parsing: .upToNextOption, help: "Region of the first image: COL ROW WIDTH HEIGHT (default: whole image).")
    var roi: [Int] = []
    @Option(help: "Tile size in pixels of the first image.") var tile = 512
    @Option(name: .customLong("z-uncertainty"), help: "Height margin around the coarse scene heights, share of their range, (0, 1].")
    var zUncertainty = MatchingParameters.defaults.zUncertainty
    @Option(help: "Folder for the rectified tiles (left_<i>.tif, right_<i>.tif) and tiles.json.") var out: String?
    @Flag(name: .customLong("no-pointing-correction"), help: "Do not correct the vertical parallax measured by matching.")
    var noPointingCorrection = false

    func run() throws {
        guard images.count == 2 else {
            throw CLIFailure(message: "epipolar needs exactly 2 images, got \(images.count)", code: ExitCodes.usage)
        }
        guard (64...4096).contains(tile) else { throw CLIFailure(message: "--tile must be within 64–4096", code: ExitCodes.usage) }
        guard zUncertainty > 0, zUncertainty <= 1 else { throw CLIFailure(message: "--z-uncertainty must be in (0, 1]", code: ExitCodes.usage) }
        let a = try SensorImage.open(images[0]), b = try SensorImage.open(images[1])
        let report = try StereoInspector().inspect([a, b])
        let window: PixelWindow
        if roi.isEmpty {
            window = PixelWindow(x: 0, y: 0, width: a.width, height: a.height)
        } else {
            guard roi.count == 4, PixelWindow(x: roi[0], y: roi[1], width: roi[2], height: roi[3]).isInside(imageWidth: a.width, imageHeight: a.height) else {
                throw CLIFailure(message: "--roi must be COL ROW WIDTH HEIGHT inside the \(a.width)×\(a.height) first image", code: ExitCodes.usage)
            }
            window = PixelWindow(x: roi[0], y: roi[1], width: roi[2], height: roi[3])
        }
        let s = report.sceneHeight
        let margin = max(20, zUncertainty * (s.high - s.low))
        let heights = (s.low - margin)...(s.high + margin)
        var rect = PairRectification(first: a, second: b)
        rect.correctPointing = !noPointingCorrection
        if let out { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) }
        var reports: [RectifiedTileReport] = []
        for (i, w) in PairRectification.tiles(window, size: tile).enumerated() {
            let t = try rect.rectify(w, heights: heights)
            reports.append(RectifiedTileReport(t))
            if let out {
                try writeFloatRaster("\(out)/left_\(i).tif", width: t.left.width, height: t.left.height, values: t.left.pixels)
                try writeFloatRaster("\(out)/right_\(i).tif", width: t.right.width, height: t.right.height, values: t.right.pixels)
            }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try enc.encode(reports)
        if let out { try json.write(to: URL(fileURLWithPath: "\(out)/tiles.json")) }
        print(String(decoding: json, as: UTF8.self))
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn 2 or 3 images into the DSM-OPT product set (DSM, hillshades, true orthos, ...).")

    static func help(_ key: String) -> ArgumentHelp { ArgumentHelp(JobParameterTable.spec(key)!.optionHelp) }

    @Argument(help: "2 or 3 images with RPC (or DIMAP product folders); the first is the reference for --roi.")
    var images: [String] = []
    @Option(help: "Output folder.") var out: String?
    @Option(help: "Job file (JSON): images, preset, parameters by the table's keys, roi or aoi, limits — the job service's contract. Excludes images and parameter options.")
    var job: String?
    @Option(help: "Append the run's events (progress, finished with CPU seconds, failed with an error code) to FILE as JSON lines.")
    var events: String?
    @Option(help: "Landscape preset (a file of Presets/): default, urban, mountain, forest, flat, snow-ice.")
    var preset: String?
    @OptionGroup var expert: ExpertOptions
    @Option(parsing: .unconditional, help: help("resolution")) var resolution: Double?
    @Option(name: .customLong("resolution-factor"), parsing: .unconditional, help: help("resolution-factor")) var resolutionFactor: Double?
    @Option(parsing: .unconditional, help: help("epsg")) var epsg: Double?
    @Option(parsing: .upToNextOption, help: "Region of the first image: COL ROW WIDTH HEIGHT.") var roi: [Int] = []
    @Option(parsing: .unconditional, help: "Area of interest: minLon,minLat,maxLon,maxLat (negative values included), or GeoJSON polygon text.")
    var aoi: String?
    @Option(name: .customLong("aoi-file"), help: "Area of interest read from a GeoJSON file.") var aoiFile: String?
    @Flag(name: .customLong("point-cloud"), help: help("point-cloud")) var pointCloud = false
    @Flag(name: .customLong("no-orthos"), help: "Skip the per-image true orthos.") var noOrthos = false
    @Flag(name: .customLong("no-mosaic"), help: "Skip the ortho-mosaic.") var noMosaic = false
    @Option(name: .customLong("tile-size"), help: "Ground tile size in DSM cells, the unit of parallel, resumable work (default: about 1024 pixels of the first image).")
    var tileSize: Int?
    @Option(name: .customLong("max-memory"), help: "Memory budget, e.g. 1.5G or 800M (default: half of the machine's RAM).")
    var maxMemory: String?
    @Option(help: "Resume the interrupted run whose output folder is DIR (recomputes only unfinished tiles).") var resume: String?
    @Option(help: "Run one step of a run spread over several processes (the job service's tile tasks), in this order: plan (with the images or --job, and --out), then with --resume DIR: match, offsets (triplets), fuse, ortho (each with --tiles), assemble.")
    var step: String?
    @Option(help: "Tiles of a match, fuse or ortho --step: indices in the plan, separated by commas.") var tiles: String?
    @Flag(help: help("coregister")) var coregister = false
    @Flag(name: .customLong("coregister-tilt"), help: help("coregister-tilt")) var coregisterTilt = false
    @Option(name: .customLong("reference-dem"), help: "Reference DEM for --coregister: a raster file, or a folder of DEM tiles (SRTM .hgt, GeoTIFF) read as one mosaic.")
    var referenceDEM: String?
    @Option(name: .customLong("reference-datum"), help: help("reference-datum")) var referenceDatum: String?
    @Flag(name: .customLong("mask-water"), help: help("mask-water")) var maskWater = false
    @Option(name: .customLong("water-mask"), help: "Water mask for --mask-water: GeoJSON polygons or a raster (non-zero = water).") var waterMask: String?
    @Option(help: "A multispectral image of the acquisition with RPC (blue, green, red, NIR): --mask-water uses its NDWI when no mask is given.")
    var multispectral: String?
    @Option(name: .customLong("ndwi-threshold"), parsing: .unconditional, help: help("ndwi-threshold")) var ndwiThreshold: Double?
    @Option(name: .customLong("water-layer"), help: "A water layer for --mask-water when no mask is given: a raster, a folder of raster tiles, or a vector file.")
    var waterLayer: String?
    @Option(name: .customLong("water-threshold"), help: "Raster water masks and layers: values at or above it are water (default 1; e.g. 50 for an occurrence in %).")
    var waterThreshold: Double?
    @Option(name: .customLong("water-fill"), help: help("water-fill")) var waterFill: String?
    @Option(name: .customLong("vertical-datum"), help: help("vertical-datum")) var verticalDatum: String?

    func validate() throws {
        if resume == nil && out == nil { throw ValidationError("--out DIR is required (or --resume DIR)") }
        if resume != nil && (!images.isEmpty || job != nil) { throw ValidationError("--resume takes no images and no job: the run's plan names them") }
        if job != nil {
            let given = !images.isEmpty || preset != nil || !expert.given.isEmpty || resolution != nil || resolutionFactor != nil || epsg != nil
                || !roi.isEmpty || aoi != nil || aoiFile != nil || pointCloud || noOrthos || noMosaic
                || coregister || coregisterTilt || referenceDEM != nil || referenceDatum != nil || maskWater || waterMask != nil || waterLayer != nil || multispectral != nil || ndwiThreshold != nil
                || waterThreshold != nil || waterFill != nil || verticalDatum != nil
            if given { throw ValidationError("--job FILE holds the images and parameters: give them there, not as options") }
        }
        if aoi != nil && aoiFile != nil { throw ValidationError("give --aoi or --aoi-file, not both") }
        if step != nil { _ = try runStep() }
        if tiles != nil && step == nil { throw ValidationError("--tiles goes with --step match, fuse or ortho") }
    }

    /// The `--step` asked for, checked against the other options.
    func runStep() throws -> DSMPipelineRunner.Step? {
        guard let step else { return nil }
        let list = try (tiles ?? "").split(separator: ",").map { t -> Int in
            guard let i = Int(t.trimmingCharacters(in: .whitespaces)), i >= 0 else { throw ValidationError("--tiles takes tile indices separated by commas, not '\(t)'") }
            return i
        }
        if step == "plan" {
            if resume != nil { throw ValidationError("--step plan starts a run: give the images or --job, and --out, not --resume") }
            return .plan
        }
        guard resume != nil else { throw ValidationError("--step \(step) continues a planned run: give --resume DIR") }
        switch step {
        case "offsets", "assemble":
            if tiles != nil { throw ValidationError("--step \(step) takes no --tiles") }
            return step == "offsets" ? .offsets : .assemble
        default:
            guard let stage = TileStage(rawValue: step) else { throw ValidationError("--step is one of plan, match, offsets, fuse, ortho, assemble") }
            guard !list.isEmpty else { throw ValidationError("--step \(step) needs --tiles") }
            return .tiles(stage, list)
        }
    }

    /// The job these options describe (the same type the service hands over as a file).
    func jobSpec() throws -> JobSpec {
        if let job {
            guard let data = FileManager.default.contents(atPath: job) else {
                throw CLIFailure(message: "\(job): job file not found", code: ExitCodes.badInput)
            }
            do { return try JSONDecoder().decode(JobSpec.self, from: data) } catch {
                throw CLIFailure(message: "\(job): not a valid job file: \(error)", code: ExitCodes.usage)
            }
        }
        var spec = JobSpec(images: images)
        spec.preset = preset ?? "default"
        for (k, v) in expert.given { spec.parameters[k] = .number(v) }
        for (k, v) in [("resolution", resolution), ("resolution-factor", resolutionFactor), ("epsg", epsg)] { if let v { spec.parameters[k] = .number(v) } }
        if pointCloud { spec.parameters["point-cloud"] = .bool(true) }
        if noOrthos { spec.parameters["orthos"] = .bool(false) }
        if noMosaic { spec.parameters["mosaic"] = .bool(false) }
        if coregister { spec.parameters["coregister"] = .bool(true) }
        if coregisterTilt { spec.parameters["coregister-tilt"] = .bool(true) }
        if maskWater { spec.parameters["mask-water"] = .bool(true) }
        for (k, v) in [("reference-datum", referenceDatum), ("water-fill", waterFill), ("vertical-datum", verticalDatum)] { if let v { spec.parameters[k] = .word(v) } }
        // Files named on this machine's command line are the caller's own: any GDAL format may open them.
        spec.referenceDEM = referenceDEM.map(absolute)
        spec.referenceIsServers = referenceDEM != nil ? true : nil
        spec.waterMask = waterMask.map(absolute)
        spec.multispectral = multispectral.map(absolute)
        if let ndwiThreshold { spec.parameters["ndwi-threshold"] = .number(ndwiThreshold) }
        spec.waterLayer = waterLayer.map(absolute)
        spec.waterLayerThreshold = waterThreshold
        if !roi.isEmpty {
            guard roi.count == 4 else { throw CLIFailure(message: "--roi takes COL ROW WIDTH HEIGHT", code: ExitCodes.usage) }
            spec.roi = roi
        }
        if let aoi { spec.aoi = try AreaOfInterest.parse(aoi) }
        if let aoiFile {
            guard let d = FileManager.default.contents(atPath: aoiFile) else { throw CLIFailure(message: "\(aoiFile): file not found", code: ExitCodes.badInput) }
            spec.aoi = try AreaOfInterest.parse(String(decoding: d, as: UTF8.self))
        }
        return spec
    }

    func run() throws {
        if let events { try RunEvents.open(events) }
        let out = resume ?? self.out!
        var o: PipelineOptions
        var limits: RunLimits?
        if resume != nil {
            o = PipelineOptions(images: [], output: out)
        } else {
            let spec = try jobSpec()
            o = try spec.options(output: out)
            limits = spec.limits
        }
        if let maxMemory {
            guard let b = MemoryBudget.parse(maxMemory) else {
                throw CLIFailure(message: "--max-memory must look like 1.5G, 800M or a number of bytes, at most 1 PiB", code: ExitCodes.usage)
            }
            o.memoryBudget = b
        }
        if let tileSize { o.tileSize = tileSize }
        if let cpu = limits?.cpuSeconds { RunEvents.limitCPU(seconds: cpu) }
        if let wall = limits?.wallSeconds { RunEvents.limitWallClock(seconds: wall) }
        RunEvents.stopWithParent()
        let clock = ContinuousClock()
        let start = clock.now
        let runner = DSMPipelineRunner(options: o) { e in
            FileHandle.standardError.write(Data(String(format: "[%3d%%] %@: %@\n", Int(e.fraction * 100), e.stage, e.message).utf8))
            RunEvents.emit(.progress(percent: Int(e.fraction * 100), stage: e.stage, message: e.message))
        }
        let products: Int
        if let step = try runStep() {
            products = try runner.run(step: step)?.products.count ?? 0
        } else {
            products = try runner.run(resume: resume != nil).products.count
        }
        let d = clock.now - start
        let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        let cpu = ProcessUsage.cpuSeconds()
        // The peak of this process's own address space: VmHWM (KiB). Not ru_maxrss: a child spawned with
        // vfork inherits in it the high-water RSS of its parent's address space up to exec.
        let hwm = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
            .flatMap { Double($0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") }
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        let peak = (hwm ?? Double(usage.ru_maxrss)) / 1024
        RunEvents.emit(.finished(products: products, wallSeconds: seconds, cpuSeconds: cpu, peakMiB: peak))
        FileHandle.standardError.write(Data(String(format: "run%@: %d products in %@ (%.1f s, cpu %.2f s, peak RSS %.0f MiB)\n",
                                                   step.map { " --step \($0)" } ?? "", products, out, seconds, cpu, peak).utf8))
    }
}

func absolute(_ path: String) -> String {
    URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
}

struct Coregister: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Coregister a DSM on a reference DEM (Nuth & Kääb) and print the shift as JSON.",
        discussion: """
        Writes OUT/dsm_coregistered.tif (the DSM's cells with the shift added to its georeferencing and dz to its heights),         OUT/coregistration.json (the shift, iterations, statistics before/after) and OUT/coregistration_difference.png.         dx, dy are metres east and north, dz metres up; dxPixels, dyPixels are reference pixels (columns, rows down).
        """)
    @Argument(help: "The DSM to coregister (any GDAL raster with a CRS).") var dsm: String
    @Argument(help: "The reference DEM: a raster, or a folder of DEM tiles.") var reference: String
    @Option(help: "Output folder.") var out: String
    @Option(name: .customLong("reference-datum"), help: "Vertical datum of the reference: egm96 (SRTM, most global DEMs) or ellipsoid.")
    var referenceDatum = "egm96"
    @Option(name: .customLong("dsm-datum"), help: "Vertical datum of the DSM: ellipsoid (dsmopt's default) or egm96.") var dsmDatum = "ellipsoid"
    @Option(name: .customLong("exclude-mask"), help: "A raster on the DSM's grid whose non-zero cells are not stable terrain (water, glaciers…).")
    var excludeMask: String?
    @Flag(help: "Also remove a tilt (a plane fitted to the differences left after the shift and the bias).") var tilt = false

    func run() throws {
        guard let rd = VerticalDatum(rawValue: referenceDatum), let dd = VerticalDatum(rawValue: dsmDatum) else {
            throw CLIFailure(message: "datums are one of \(VerticalDatum.allCases.map(\.rawValue).joined(separator: ", "))", code: ExitCodes.usage)
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let scratch = (out as NSString).appendingPathComponent(".coregistration-work")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let ref = try DEMCoregistration.referencePath(reference, scratch: scratch, area: nil)
        let c = try DEMCoregistration.estimate(dsm: dsm, dsmDatum: dd, reference: ref, referenceDatum: rd,
                                               referenceName: URL(fileURLWithPath: reference).lastPathComponent, excluded: excludeMask, tilt: tilt, scratch: scratch,
                                               differenceMap: (out as NSString).appendingPathComponent("coregistration_difference.png"))
        try DEMCoregistration.apply(c, dsm: dsm, to: (out as NSString).appendingPathComponent("dsm_coregistered.tif"))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try enc.encode(c)
        try data.write(to: URL(fileURLWithPath: (out as NSString).appendingPathComponent("coregistration.json")))
        print(String(decoding: data, as: UTF8.self))
        FileHandle.standardError.write(Data(String(format: "coregister: dx %+.3f m, dy %+.3f m, dz %+.3f m (%+.3f, %+.3f reference px) in %d iterations; NMAD %.3f → %.3f m\n",
                                                   c.dx, c.dy, c.dz, c.dxPixels, c.dyPixels, c.iterations, c.before.nmad, c.after.nmad).utf8))
    }
}

/// Options shared by the daemon commands.
struct DaemonOptions: ParsableArguments {
    @Option(help: "Data folder (database, uploads, jobs, presets). Env DSMOPT_DATA.") var data: String?
    @Option(help: "JSON configuration file (default DATA/dsmopt.json when present).") var config: String?
    @Option(name: [.customLong("workers"), .customLong("slots")], help: "Jobs run at the same time by this process (--slots is the same). Env DSMOPT_WORKERS.") var workers: Int?
    @Option(help: "Results retention, e.g. 21d, 12h, 300s. Env DSMOPT_RETENTION_SECONDS.") var retention: String?
    @Option(help: "Job store: postgres://user[:password]@host[:port]/database for several machines (default: SQLite in the data folder). Env DSMOPT_STORE.")
    var store: String?

    func configuration() throws -> ServiceConfiguration {
        let env = ProcessInfo.processInfo.environment
        guard let dir = data ?? env["DSMOPT_DATA"] else { throw CLIFailure(message: "--data DIR (or DSMOPT_DATA) is required", code: ExitCodes.usage) }
        // Absolute: the paths a daemon records in a job must mean the same to every worker.
        var c = try ServiceConfiguration.load(dataDirectory: absolute(dir), file: config, environment: env)
        if let workers { c.workers = workers }
        if let store { c.store = store }
        if let retention {
            guard let s = parseDuration(retention) else { throw CLIFailure(message: "--retention must look like 21d, 12h, 30m or 45s", code: ExitCodes.usage) }
            c.retentionSeconds = s
        }
        return c
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the job service: REST API and workers on the embedded SQLite store in the data folder.")
    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Listening address. Env DSMOPT_HOST.") var host: String?
    @Option(help: "Listening port (0: any free port, written to DATA/server.port). Env DSMOPT_PORT.") var port: Int?
    @Option(name: .customLong("max-upload-bytes"), help: "Largest accepted upload. Env DSMOPT_MAX_UPLOAD_BYTES.") var maxUploadBytes: Int64?
    @Option(name: .customLong("archive-root"), help: "Folder the catalogue may reference images in. Env DSMOPT_ARCHIVE_ROOT.") var archiveRoot: String?
    @Option(name: .customLong("public-url"), help: "Address clients reach the service at, with any path prefix a reverse proxy adds (https://host/prefix); every link starts with it. Default: each request's Host. Env DSMOPT_PUBLIC_URL.") var publicURL: String?
    @Flag(name: .customLong("check-config"), help: ArgumentHelp(checkConfigHelp)) var checkConfig = false

    func run() async throws {
        var c = try daemon.configuration()
        if let publicURL { c.publicURL = publicURL }
        if let host { c.host = host }
        if let port { c.port = port }
        if let maxUploadBytes { c.maxUploadBytes = maxUploadBytes }
        if let archiveRoot { c.archiveRoot = archiveRoot }
        if checkConfig { return FileHandle.standardOutput.write(try Daemon.check(c) + Data("\n".utf8)) }
        try await Daemon.serve(c)
    }
}

/// `--check-config` of `serve` and `worker`.
let checkConfigHelp = "Check the configuration (file, environment, flags) and the presets as a start would, print the settings in force as JSON and exit: 0 when a start would accept them, 2 with the reason otherwise. Nothing is created, written or connected to."

struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run workers only, on the data folder a `serve` process uses.")
    @OptionGroup var daemon: DaemonOptions

    @Flag(name: .customLong("check-config"), help: ArgumentHelp(checkConfigHelp)) var checkConfig = false

    func run() async throws {
        let c = try daemon.configuration()
        if checkConfig { return FileHandle.standardOutput.write(try Daemon.check(c) + Data("\n".utf8)) }
        try await Daemon.work(c)
    }
}

struct Admin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage users, tokens and quotas from the command line.",
        subcommands: [CreateUser.self, SetQuota.self, SetEmail.self, ListUsers.self, RotateToken.self, RevokeToken.self, Backup.self, TestMail.self])

    /// `--data` and friends may come before the subcommand (`dsmopt admin --data DIR create-user …`).
    @OptionGroup var daemon: DaemonOptions

    struct QuotaOptions: ParsableArguments {
        @Option(name: .customLong("max-concurrent-jobs")) var maxConcurrentJobs: Int?
        @Option(name: .customLong("cpu-seconds-per-month")) var cpuSecondsPerMonth: Double?
        @Option(name: .customLong("storage-bytes")) var storageBytes: Int64?
        @Option(name: .customLong("max-input-bytes")) var maxInputBytes: Int64?

        func apply(_ quota: Quota) throws -> Quota {
            let q = QuotaSettings(maxConcurrentJobs: maxConcurrentJobs, cpuSecondsPerMonth: cpuSecondsPerMonth,
                                  storageBytes: storageBytes, maxInputBytes: maxInputBytes).applied(to: quota)
            guard q.limitsAreNonNegative else {
                throw CLIFailure(message: "quota values must be non-negative", code: ExitCodes.usage)
            }
            return q
        }
    }

    struct CreateUser: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create-user", abstract: "Create a user; prints the new token alone on stdout.")
        @OptionGroup var daemon: DaemonOptions
        @Argument var name: String
        @Option(help: "researcher, operator, admin or catalogue.") var role: String = "researcher"
        @Option(help: "Where mail about the user's jobs goes (each job's end).") var email: String?
        @OptionGroup var quota: QuotaOptions

        func run() async throws {
            let c = try daemon.configuration()
            guard let r = Role(rawValue: role) else {
                throw CLIFailure(message: "unknown role '\(role)' (researcher, operator, admin, catalogue)", code: ExitCodes.usage)
            }
            if let problem = User.nameProblem(name) { throw CLIFailure(message: problem, code: ExitCodes.usage) }
            if let email, let problem = MailMessage.addressProblem(email) { throw CLIFailure(message: "--email: \(problem)", code: ExitCodes.usage) }
            let store = try await Daemon.prepare(c, checkingPresets: false)
            let (u, token) = try await store.createUser(name: name, role: r, quota: try quota.apply(c.defaultQuota))
            if let email { _ = try await store.setEmail(userId: u.id, email: email) }
            print(token)
        }
    }

    struct SetEmail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-email", abstract: "Set (or with --none remove) the address mail about a user's jobs goes to.")
        @OptionGroup var daemon: DaemonOptions
        @Argument var name: String
        @Argument var address: String?
        @Flag(help: "Remove the address: no more mail.") var none = false

        func run() async throws {
            guard (address == nil) == none else { throw CLIFailure(message: "give an address or --none", code: ExitCodes.usage) }
            if let address, let problem = MailMessage.addressProblem(address) { throw CLIFailure(message: problem, code: ExitCodes.usage) }
            let store = try await Daemon.prepare(try daemon.configuration(), checkingPresets: false)
            guard let u = try await store.user(name: name), try await store.setEmail(userId: u.id, email: address) else {
                throw CLIFailure(message: "unknown user '\(name)'", code: ExitCodes.usage)
            }
        }
    }

    struct TestMail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "test-mail", abstract: "Send a test mail through the configured mail server (smtpURL), to check the settings; exit 0 once the server has accepted it.")
        @OptionGroup var daemon: DaemonOptions
        @Argument(help: "The recipient.") var address: String

        func run() async throws {
            let c = try daemon.configuration()
            try c.validate()
            if let problem = MailMessage.addressProblem(address) { throw CLIFailure(message: problem, code: ExitCodes.usage) }
            guard let settings = try c.smtpSettings() else { throw CLIFailure(message: "no mail server is configured (smtpURL, DSMOPT_SMTP_URL)", code: ExitCodes.usage) }
            let message = MailMessage(from: c.mailSender, to: address, subject: "[dsmopt] test mail",
                                      body: "This is a test of the mail settings of the dsmopt service at \(c.publicURL ?? "\(c.host):\(c.port)").\nJob notifications will come from \(c.mailSender).",
                                      messageID: "test.\(UUID().uuidString.lowercased())@\(c.mailSender.split(separator: "@").last ?? "localhost")")
            do { try await SMTPClient.send(message, settings: settings) } catch {
                throw CLIFailure(message: "the test mail was not sent: \(error)", code: 1)
            }
            FileHandle.standardError.write(Data("dsmopt: the mail server accepted the test mail to \(address)\n".utf8))
        }
    }

    struct SetQuota: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-quota", abstract: "Change a user's quota.")
        @OptionGroup var daemon: DaemonOptions
        @Argument var name: String
        @OptionGroup var quota: QuotaOptions

        func run() async throws {
            let store = try await Daemon.prepare(try daemon.configuration(), checkingPresets: false)
            guard let u = try await store.user(name: name) else { throw CLIFailure(message: "unknown user '\(name)'", code: ExitCodes.usage) }
            _ = try await store.setQuota(userId: u.id, quota: try quota.apply(u.quota))
        }
    }

    struct RotateToken: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rotate-token", abstract: "Give a user a new token (printed alone on stdout); the old one is refused at once.")
        @OptionGroup var daemon: DaemonOptions
        @Argument var name: String

        func run() async throws {
            let store = try await Daemon.prepare(try daemon.configuration(), checkingPresets: false)
            guard let u = try await store.user(name: name), let token = try await store.rotateToken(userId: u.id) else {
                throw CLIFailure(message: "unknown user '\(name)'", code: ExitCodes.usage)
            }
            print(token)
        }
    }

    struct RevokeToken: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "revoke-token", abstract: "Revoke a user's token: every request with it is refused at once (rotate-token gives a new one).")
        @OptionGroup var daemon: DaemonOptions
        @Argument var name: String

        func run() async throws {
            let store = try await Daemon.prepare(try daemon.configuration(), checkingPresets: false)
            guard let u = try await store.user(name: name), try await store.revokeToken(userId: u.id) else {
                throw CLIFailure(message: "unknown user '\(name)'", code: ExitCodes.usage)
            }
        }
    }

    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy the embedded SQLite store to a new file while the service runs (consistent, integrity-checked); prints what it holds (JSON).",
            discussion: "Copy the rest of the data folder (uploads/, jobs/, catalogue/, presets/, dsmopt.json) after it, so that every job the copy records has its files. A PostgreSQL store is backed up with pg_dump.")
        @OptionGroup var daemon: DaemonOptions
        @Option(name: .customLong("to"), help: "The backup file to create (never overwritten).") var path: String

        func run() async throws {
            let c = try daemon.configuration()
            if let url = c.store, !url.isEmpty, url != "sqlite" {
                // The store's URL is not repeated: it may hold a password.
                throw CLIFailure(message: "the store is PostgreSQL: back it up with pg_dump, e.g. pg_dump --format=custom --file=BACKUP DATABASE-URL", code: ExitCodes.usage)
            }
            guard FileManager.default.fileExists(atPath: c.databasePath) else {
                throw CLIFailure(message: "no store at \(c.databasePath) (is --data the service's data folder?)", code: ExitCodes.usage)
            }
            let store = try SQLiteJobStore(path: c.databasePath)
            let summary = try store.backup(to: URL(fileURLWithPath: (path as NSString).expandingTildeInPath).standardizedFileURL.path)
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(summary), as: UTF8.self))
        }
    }

    struct ListUsers: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list-users", abstract: "Users with their role, quota and usage (JSON).")
        @OptionGroup var daemon: DaemonOptions

        func run() async throws {
            let store = try await Daemon.prepare(try daemon.configuration(), checkingPresets: false)
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            enc.dateEncodingStrategy = .iso8601
            struct Listed: Encodable { var id: String; var name: String; var role: String; var quota: Quota; var createdAt: Date; var usage: Usage; var email: String? }
            var rows: [Listed] = []
            for u in try await store.users() {
                rows.append(Listed(id: u.id, name: u.name, role: u.role.rawValue, quota: u.quota, createdAt: u.createdAt,
                                   usage: try await store.usage(userId: u.id, now: Date()), email: u.email))
            }
            print(String(decoding: try enc.encode(rows), as: UTF8.self))
        }
    }
}
