import ArgumentParser
import DSMCore
import Foundation
import GDALKit
import SensorIngest

@main
struct DSMOpt: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dsmopt",
        abstract: "Stereo-photogrammetry DSM service for Pléiades stereo pairs and tri-stereo triplets.",
        discussion: """
        Image coordinates on the command line follow GDAL (`gdaltransform -rpc`): the top-left corner of the \
        image is (0, 0), the centre of the first pixel (0.5, 0.5). Heights are metres above the WGS84 ellipsoid.
        """,
        subcommands: [Inspect.self, RPCCommand.self, Epipolar.self, Match.self, Synth.self]
    )

    /// Runs the command; errors the user can act on are printed as one line with a specific exit code.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
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
        } catch {
            exit(withError: error)
        }
    }

    static func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("dsmopt: error: \(message)\n".utf8))
        Foundation.exit(code)
    }
}

enum ExitCodes {
    static let usage: Int32 = 2
    static let badInput: Int32 = 3
    static let geometry: Int32 = 4
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
        let paths = try ProductDiscovery.expand(inputs)
        guard (2...3).contains(paths.count) else {
            throw CLIFailure(message: InspectionError.wrongImageCount(paths.count, paths).description, code: ExitCodes.usage)
        }
        let report = try StereoInspector().inspect(paths)
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

    func validate() throws {
        guard (2...3).contains(views) else { throw ValidationError("--views must be 2 or 3") }
        guard (32...8192).contains(size) else { throw ValidationError("--size must be within 32–8192") }
        guard gsd > 0, gsd <= 100 else { throw ValidationError("--gsd must be within (0, 100] metres") }
        guard baseToHeight > 0, baseToHeight <= 1.5 else { throw ValidationError("--base-to-height must be within (0, 1.5]") }
    }

    func run() throws {
        var p = SyntheticProduct()
        p.views = views; p.size = size; p.gsd = gsd; p.baseToHeight = baseToHeight; p.relief = relief; p.seed = seed
        let d = try p.write(to: out)
        print("wrote \(d.views.joined(separator: ", ")), \(d.truthDSM) and scene.json to \(out)")
    }
}

/// Expert matching parameters shared by the commands that match (same names as the API).
struct ExpertOptions: ParsableArguments {
    @Option(help: "Correlation window size, odd, 3–15.") var window = MatchingParameters.defaults.window
    @Option(help: "Regularisation factor, 0–1: penalty on disparity changes relative to the correlation cost.")
    var regularisation = MatchingParameters.defaults.regularisation
    @Option(name: .customLong("z-uncertainty"), help: "Search interval around the coarse estimate, share of the range, (0, 1].")
    var zUncertainty = MatchingParameters.defaults.zUncertainty
    @Option(help: "Potential-precision threshold: quantisation step of the search, 0.05–1 px.")
    var precision = MatchingParameters.defaults.precision
    @Option(name: .customLong("decorrelation-threshold"), help: "Pixels whose correlation falls below it are left empty, [0, 1).")
    var decorrelationThreshold = MatchingParameters.defaults.decorrelationThreshold
    @Option(name: .customLong("left-right-tolerance"), help: "Left/right consistency tolerance, pixels.")
    var leftRightTolerance = MatchingParameters.defaults.leftRightTolerance

    var parameters: MatchingParameters {
        var p = MatchingParameters()
        p.window = window
        p.regularisation = regularisation
        p.zUncertainty = zUncertainty
        p.precision = precision
        p.decorrelationThreshold = decorrelationThreshold
        p.leftRightTolerance = leftRightTolerance
        return p
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
    @OptionGroup var expert: ExpertOptions

    func run() throws {
        let p = expert.parameters
        let problems = p.validate()
        guard problems.isEmpty else { throw MatchingError.invalidParameters(problems) }
        guard minDisparity <= maxDisparity else { throw MatchingError.invalidDisparityRange(min: minDisparity, max: maxDisparity) }
        let l = try readGrayImage(left), r = try readGrayImage(right)
        let clock = ContinuousClock()
        var result: (map: DisparityMap, report: MatchingReport)!
        let elapsed = try clock.measure {
            var matcher = DenseMatcher(parameters: p)
            matcher.fillInvalid = fill
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
            guard roi.count == 4, roi[2] > 0, roi[3] > 0, roi[0] >= 0, roi[1] >= 0,
                  roi[0] + roi[2] <= a.width, roi[1] + roi[3] <= a.height else {
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
