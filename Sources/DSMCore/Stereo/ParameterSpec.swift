import Foundation

/// The one declaration of a tunable parameter: its key (the only spelling — command-line option
/// `--key`, API field `parameters.key`, preset key), type, range, default and help. Validation, the CLI's
/// options and help, the process description, the OpenAPI schema and the presets' documentation are all
/// derived from these declarations (`MatchingParameters.specs`, `JobParameterTable.specs`).
public struct ParameterSpec: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable {
        case integer, oddInteger = "odd-integer", number, boolean
        /// One word of `choices` (e.g. a vertical datum).
        case choice
    }
    public enum Group: String, Sendable, Codable { case standard, expert }

    public var key: String
    public var kind: Kind
    public var group: Group
    public var minimum: Double?
    public var minimumExclusive = false
    public var maximum: Double?
    public var maximumExclusive = false
    /// nil: computed at run time (e.g. the output CRS from the scene) — `defaultText` says how.
    public var defaultValue: Double?
    public var defaultText: String?
    public var help: String
    public var unit: String?
    /// The words a `.choice` accepts; the first is the default.
    public var choices: [String] = []

    public init(_ key: String, _ kind: Kind, _ group: Group, minimum: Double? = nil, minimumExclusive: Bool = false,
                maximum: Double? = nil, maximumExclusive: Bool = false, default d: Double? = nil, defaultText: String? = nil,
                unit: String? = nil, help: String) {
        self.key = key; self.kind = kind; self.group = group
        self.minimum = minimum; self.minimumExclusive = minimumExclusive
        self.maximum = maximum; self.maximumExclusive = maximumExclusive
        defaultValue = d; self.defaultText = defaultText; self.unit = unit; self.help = help
    }

    /// A choice among words; the first is the default.
    public init(_ key: String, choices: [String], _ group: Group, help: String) {
        self.init(key, .choice, group, help: help)
        self.choices = choices
        defaultText = choices.first
    }

    /// The default as shown to people ("true", "5", "ellipsoid", or how it is computed).
    public var defaultDisplay: String? {
        defaultValue.map { kind == .boolean ? ($0 != 0 ? "true" : "false") : Self.number($0) } ?? defaultText
    }

    /// The problem with a word given to a `.choice`, or nil when it is one of the choices.
    public func problem(_ word: String) -> ParameterProblem? {
        kind == .choice && choices.contains(word) ? nil : ParameterProblem(field: key, value: word, expected: expected)
    }

    public static func number(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v)
    }

    /// "an odd integer from 3 to 15", "a number in (0, 1]".
    public var expected: String {
        let noun: String = switch kind {
        case .integer: "an integer"
        case .oddInteger: "an odd integer"
        case .number: "a number"
        case .boolean: "true or false"
        case .choice: "one of " + choices.joined(separator: ", ")
        }
        guard kind != .boolean && kind != .choice else { return noun }
        let u = unit.map { " \($0)" } ?? ""
        switch (minimum, maximum) {
        case let (lo?, hi?) where !minimumExclusive && !maximumExclusive:
            return "\(noun) from \(Self.number(lo)) to \(Self.number(hi))\(u)"
        case let (lo?, hi?):
            return "\(noun) in \(minimumExclusive ? "(" : "[")\(Self.number(lo)), \(Self.number(hi))\(maximumExclusive ? ")" : "]")\(u)"
        case let (lo?, nil): return "\(noun) \(minimumExclusive ? ">" : "≥") \(Self.number(lo))\(u)"
        case let (nil, hi?): return "\(noun) \(maximumExclusive ? "<" : "≤") \(Self.number(hi))\(u)"
        case (nil, nil): return noun
        }
    }

    /// The problem with a value, or nil when it is acceptable.
    public func problem(_ v: Double) -> ParameterProblem? {
        var ok = v.isFinite && kind != .choice
        if kind == .integer || kind == .oddInteger { ok = ok && v == v.rounded() && abs(v) < 1e9 }
        if kind == .oddInteger { ok = ok && Int(v) % 2 != 0 }
        if let lo = minimum { ok = ok && (minimumExclusive ? v > lo : v >= lo) }
        if let hi = maximum { ok = ok && (maximumExclusive ? v < hi : v <= hi) }
        return ok ? nil : ParameterProblem(field: key, value: Self.number(v), expected: expected)
    }

    /// The help line of the command-line option: what it does, its range and default.
    public var optionHelp: String {
        var s = "\(help) (\(expected)"
        if defaultValue != nil || kind == .choice { s += "; default \(defaultDisplay ?? "")" }
        else if let t = defaultText { s += "; default: \(t)" }
        return s + ")."
    }
}

extension MatchingParameters {
    /// The expert parameters of the matcher, with DSM-OPT's defaults.
    public static let specs: [ParameterSpec] = [
        ParameterSpec("window", .oddInteger, .expert, minimum: 3, maximum: 15, default: 5, unit: "pixels",
                      help: "Correlation window size; larger windows are more robust on low texture and blur relief edges"),
        ParameterSpec("regularisation", .number, .expert, minimum: 0, maximum: 1, default: 0.025,
                      help: "Penalty on disparity changes between neighbours, relative to the correlation cost 1 − ZNCC; 0 disables regularisation"),
        ParameterSpec("z-uncertainty", .number, .expert, minimum: 0, minimumExclusive: true, maximum: 1, default: 0.1,
                      help: "Search interval around the coarse estimate, as a share of the initial disparity range"),
        ParameterSpec("precision", .number, .expert, minimum: 0.05, maximum: 1, default: 0.4, unit: "pixels",
                      help: "Potential-precision threshold: quantisation step of the disparity search (sub-pixel steps match a resampled image)"),
        ParameterSpec("decorrelation-threshold", .number, .expert, minimum: 0, maximum: 1, maximumExclusive: true, default: 0.2,
                      help: "Pixels whose correlation (ZNCC) falls below it are left empty"),
        ParameterSpec("left-right-tolerance", .number, .expert, minimum: 0.25, maximum: 8, default: 1, unit: "pixels",
                      help: "Left/right consistency tolerance: a match whose reverse match lands farther away is rejected"),
        ParameterSpec("jump-penalty-ratio", .number, .expert, minimum: 1, maximum: 64, default: 16,
                      help: "Ratio of the large-jump penalty to the one-step penalty (higher: flatter surfaces, fewer steps)"),
        ParameterSpec("regularisation-adaptation", .number, .expert, minimum: 1, maximum: 8, default: 8,
                      help: "Largest factor by which a run raises the regularisation of a pair whose matches are noisy (their median 1 − ZNCC ÷ 0.01, see parameters.json); 1 keeps it as set"),
        ParameterSpec("uncertainty-threshold", .number, .expert, minimum: 0.1, maximum: 10, default: 0.5, unit: "pixels",
                      help: "Matches whose disparity uncertainty (1 σ from the correlation peak) exceeds it are left out of the DSM (not of dsmopt match's map); their cells take their neighbours' matches or the hole filling, or stay empty"),
    ]

    public static func spec(_ key: String) -> ParameterSpec? { specs.first { $0.key == key } }

    /// A parameter's value by its key (nil for an unknown key).
    public subscript(key key: String) -> Double? {
        get {
            switch key {
            case "window": return Double(window)
            case "regularisation": return regularisation
            case "z-uncertainty": return zUncertainty
            case "precision": return precision
            case "decorrelation-threshold": return decorrelationThreshold
            case "left-right-tolerance": return leftRightTolerance
            case "jump-penalty-ratio": return jumpPenaltyRatio
            case "regularisation-adaptation": return regularisationAdaptation
            case "uncertainty-threshold": return uncertaintyThreshold
            default: return nil
            }
        }
        set {
            guard let v = newValue else { return }
            switch key {
            case "window": window = v.isFinite && abs(v) < 1e9 ? Int(v.rounded()) : -1
            case "regularisation": regularisation = v
            case "z-uncertainty": zUncertainty = v
            case "precision": precision = v
            case "decorrelation-threshold": decorrelationThreshold = v
            case "left-right-tolerance": leftRightTolerance = v
            case "jump-penalty-ratio": jumpPenaltyRatio = v
            case "regularisation-adaptation": regularisationAdaptation = v
            case "uncertainty-threshold": uncertaintyThreshold = v
            default: break
            }
        }
    }
}
