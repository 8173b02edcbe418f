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
        subcommands: [Inspect.self, RPCCommand.self, Synth.self]
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
