import Foundation

/// The expert parameters of DSM-OPT's matcher, with its defaults. Every stage that matches reads them
/// from here; presets and API requests are validated by `validate()`.
public struct MatchingParameters: Sendable, Codable, Equatable {
    /// Correlation window size in pixels (odd, 3–15). Larger windows are more robust on low texture and
    /// blur relief edges.
    public var window: Int = 5
    /// Regularisation factor (0–1): the penalty on a disparity change between neighbouring pixels,
    /// relative to the correlation cost 1 − ZNCC (which lies in [0, 2]). A change of one search step
    /// costs `regularisation`, a larger jump costs `regularisation × jumpPenaltyRatio` (so that true
    /// discontinuities — building edges — stay sharp). 0 disables regularisation.
    public var regularisation: Double = 0.025
    /// Z uncertainty (0–1): in coarse-to-fine matching, the half-width of the search interval around the
    /// coarse estimate, as a share of the initial disparity range (at least two coarse pixels).
    public var zUncertainty: Double = 0.1
    /// Potential-precision threshold (0.05–1 px): the quantisation step of the disparity search. Steps
    /// below one pixel match against a sub-pixel resampled (bicubic) second image.
    public var precision: Double = 0.4
    /// Decorrelated-pixel threshold (0–0.99): cells whose ZNCC falls below it get the default cost
    /// (1 − threshold) during regularisation, and pixels whose final ZNCC is below it are left empty.
    public var decorrelationThreshold: Double = 0.2
    /// Left/right consistency tolerance in pixels (0.25–8).
    public var leftRightTolerance: Double = 1.0
    /// Ratio of the large-jump penalty to the one-step penalty (1–64).
    public var jumpPenaltyRatio: Double = 16
    /// Largest factor (1–8) by which a run raises `regularisation` for a pair whose matches are noisy
    /// (`AdaptiveRegularisation`); 1 keeps the regularisation as set. The matcher itself reads
    /// `regularisation` only: the pipeline scales it per pair.
    public var regularisationAdaptation: Double = 8
    /// Largest disparity uncertainty (1 σ from the correlation peak, pixels; item 7 of the README's "DSM
    /// quality") of a match the DSM takes: less certain matches — and those without a σ — are left out of
    /// the DSM, their cells taking their neighbours' matches, the hole filling, or staying empty. The
    /// matcher's own map (`dsmopt match`) keeps them. 0.5: README "DSM quality", item 21.
    public var uncertaintyThreshold: Double = 0.5

    public init() {}

    public static let defaults = MatchingParameters()

    /// One problem per bad field, named as on the command line and in the API (from `specs`).
    public func validate() -> [ParameterProblem] {
        Self.specs.compactMap { spec in self[key: spec.key].flatMap(spec.problem) }
    }

    public func validated() throws -> MatchingParameters {
        let problems = validate()
        if !problems.isEmpty { throw MatchingError.invalidParameters(problems) }
        return self
    }
}

/// A parameter outside its range.
public struct ParameterProblem: Sendable, Codable, Equatable, CustomStringConvertible {
    public var field: String
    public var value: String
    public var expected: String
    public var description: String { "\(field) = \(value): expected \(expected)" }
    public init(field: String, value: String, expected: String) {
        self.field = field; self.value = value; self.expected = expected
    }
}

public enum MatchingError: Error, Equatable, CustomStringConvertible {
    case invalidParameters([ParameterProblem])
    case invalidDisparityRange(min: Double, max: Double)
    /// No disparity of the range puts a left pixel on the right image.
    case disparityRangeOutsideImages(min: Double, max: Double, possible: ClosedRange<Double>)
    case sizeMismatch(String)

    public var description: String {
        switch self {
        case .invalidParameters(let p): return "invalid parameters: " + p.map(\.description).joined(separator: "; ")
        case .invalidDisparityRange(let a, let b): return "invalid disparity range [\(a), \(b)]: the minimum must not exceed the maximum"
        case .disparityRangeOutsideImages(let a, let b, let p):
            return "disparity range [\(a), \(b)] puts no left pixel on the right image: with these widths a disparity lies in [\(p.lowerBound), \(p.upperBound)]"
        case .sizeMismatch(let s): return "images do not match: \(s)"
        }
    }
}

extension MatchingParameters {
    /// Spellings of presets written before the parameter table (camelCase), read for compatibility and
    /// never written.
    static let legacyKeys = ["zUncertainty": "z-uncertainty", "decorrelationThreshold": "decorrelation-threshold",
                             "leftRightTolerance": "left-right-tolerance", "jumpPenaltyRatio": "jump-penalty-ratio"]

    /// Decodes the table's keys, with the defaults for absent ones; unknown keys and values of the wrong type
    /// are errors (a misspelt parameter must not be silently ignored).
    public init(from decoder: Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: AnyKey.self)
        var unknown: [String] = []
        for k in c.allKeys {
            let key = Self.legacyKeys[k.stringValue] ?? k.stringValue
            guard let spec = Self.spec(key) else { unknown.append(k.stringValue); continue }
            let v = try c.decode(Double.self, forKey: k)
            if spec.kind == .oddInteger || spec.kind == .integer, v != v.rounded() {
                throw DecodingError.dataCorruptedError(forKey: k, in: c, debugDescription: "\(key) must be an integer")
            }
            self[key: key] = v
        }
        if !unknown.isEmpty {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "unknown parameter(s): \(unknown.sorted().joined(separator: ", "))"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: AnyKey.self)
        for spec in Self.specs {
            guard let v = self[key: spec.key], let k = AnyKey(stringValue: spec.key) else { continue }
            if spec.kind == .oddInteger || spec.kind == .integer { try c.encode(Int(v), forKey: k) } else { try c.encode(v, forKey: k) }
        }
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
