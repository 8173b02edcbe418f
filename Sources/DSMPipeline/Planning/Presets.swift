import DSMCore
import Foundation

/// A landscape preset: expert parameters and a DSM resolution factor.
public struct Preset: Sendable, Codable, Equatable {
    public var name: String
    public var description: String
    public var resolutionFactor: Double
    public var parameters: MatchingParameters
    /// Standard options the preset sets (e.g. a coastal preset: `mask-water`, `water-fill`); a job's own
    /// value wins.
    public var options: [String: ParameterValue] = [:]
    /// The standard options a preset may set.
    public static let optionKeys = ["mask-water", "water-fill", "ndwi-threshold", "vertical-datum", "coregister"]

    /// The table's spelling (`resolution-factor`); the camelCase of earlier presets is read, never written.
    enum CodingKeys: String, CodingKey, CaseIterable { case name, description, resolutionFactor = "resolution-factor", parameters, options }
    enum LegacyKeys: String, CodingKey { case resolutionFactor }
    /// The fields of a preset, as written (`PUT /presets/{name}` takes these only).
    public static var fieldNames: [String] { CodingKeys.allCases.map(\.rawValue) }

    /// Absent fields take their defaults; an unknown one is an error (a misspelt field must not be ignored,
    /// as `PUT /presets/{name}` and job files refuse it too).
    public init(from decoder: Decoder) throws {
        let known = Set(CodingKeys.allCases.map(\.rawValue) + [LegacyKeys.resolutionFactor.rawValue])
        let unknown = try decoder.container(keyedBy: JobSpec.AnyKey.self).allKeys.map(\.stringValue).filter { !known.contains($0) }
        if !unknown.isEmpty {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription:
                "unknown field(s) \(unknown.sorted().joined(separator: ", ")) (a preset has \(CodingKeys.allCases.map(\.rawValue).joined(separator: ", ")))"))
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        description = try c.decode(String.self, forKey: .description)
        let legacy = try decoder.container(keyedBy: LegacyKeys.self)
        resolutionFactor = try c.decodeIfPresent(Double.self, forKey: .resolutionFactor)
            ?? legacy.decodeIfPresent(Double.self, forKey: .resolutionFactor)
            ?? JobParameterTable.spec("resolution-factor")!.defaultValue!
        parameters = try c.decodeIfPresent(MatchingParameters.self, forKey: .parameters) ?? .defaults
        options = try c.decodeIfPresent([String: ParameterValue].self, forKey: .options) ?? [:]
    }

    /// Problems of the preset's standard options: unknown keys, wrong types or values.
    public func optionProblems() -> [ParameterProblem] {
        options.sorted { $0.key < $1.key }.compactMap { key, value in
            guard Self.optionKeys.contains(key), let spec = JobParameterTable.spec(key), spec.key == key else {
                return ParameterProblem(field: "options.\(key)", value: value.text, expected: "one of \(Self.optionKeys.joined(separator: ", "))")
            }
            return value.problem(for: spec)
        }
    }
}

public enum PresetError: Error, Equatable, CustomStringConvertible {
    case unknown(String, available: [String])
    case invalid(file: String, reason: String)
    case folderMissing(String)

    public var description: String {
        switch self {
        case .unknown(let n, let a): return "unknown preset '\(n)' (available: \(a.joined(separator: ", ")))"
        case .invalid(let f, let r): return "\(f): invalid preset: \(r)"
        case .folderMissing(let f): return "preset folder \(f) not found (set DSMOPT_PRESETS)"
        }
    }
}

/// The presets of a folder (`Presets/` of the project, `$DSMOPT_PRESETS`, or the installed copy).
public struct PresetLibrary: Sendable {
    public let folder: String
    /// The valid presets, by name.
    public let presets: [String: Preset]
    /// The invalid files, by the preset name their file gives (`NAME.json`): one file an operator broke
    /// leaves the others usable; `preset(NAME)` reports it, `requireValid()` refuses the folder.
    public let problems: [String: PresetError]

    /// Loads and validates every `*.json` of a folder.
    public init(folder: String) throws {
        self.folder = folder
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { throw PresetError.folderMissing(folder) }
        var out: [String: Preset] = [:], problems: [String: PresetError] = [:]
        for name in names.sorted() where name.hasSuffix(".json") {
            let path = (folder as NSString).appendingPathComponent(name)
            do { let p = try Self.load(path, fileName: name); out[p.name] = p } catch let e as PresetError {
                problems[String(name.dropLast(5))] = e
            }
        }
        presets = out
        self.problems = problems
    }

    static func load(_ path: String, fileName name: String) throws -> Preset {
        let p: Preset
        do { p = try JSONDecoder().decode(Preset.self, from: Data(contentsOf: URL(fileURLWithPath: path))) } catch let e as DecodingError {
            throw PresetError.invalid(file: path, reason: e.plainDescription)
        } catch {
            throw PresetError.invalid(file: path, reason: (error as NSError).localizedDescription)
        }
        let problems = p.parameters.validate() + p.optionProblems()
        guard problems.isEmpty else { throw PresetError.invalid(file: path, reason: problems.map(\.description).joined(separator: "; ")) }
        if let problem = JobParameterTable.spec("resolution-factor")!.problem(p.resolutionFactor) {
            throw PresetError.invalid(file: path, reason: problem.description)
        }
        guard p.name + ".json" == name else { throw PresetError.invalid(file: path, reason: "name '\(p.name)' does not match the file name") }
        return p
    }

    /// Refuses a folder with any invalid file (the first by name): what a daemon checks when it starts.
    public func requireValid() throws {
        if let first = problems.keys.min() { throw problems[first]! }
    }

    public func preset(_ name: String) throws -> Preset {
        if let problem = problems[name] { throw problem }
        guard let p = presets[name] else { throw PresetError.unknown(name, available: presets.keys.sorted()) }
        return p
    }

    /// `$DSMOPT_PRESETS`, else `share/dsmopt/presets` beside the executable, else the source tree's
    /// `Presets/`, else `/usr/share/dsmopt/presets`.
    public static func defaultFolder() -> String {
        if let env = ProcessInfo.processInfo.environment["DSMOPT_PRESETS"], !env.isEmpty { return env }
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let candidates = [exe.appendingPathComponent("../share/dsmopt/presets").standardized.path,
                          URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../Presets").standardized.path,
                          "/usr/share/dsmopt/presets"]
        return candidates.first { FileManager.default.fileExists(atPath: $0) } ?? candidates[1]
    }
}
