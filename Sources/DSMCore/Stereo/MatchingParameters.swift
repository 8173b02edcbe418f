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

    public init() {}

    public static let defaults = MatchingParameters()

    /// One problem per bad field, named as on the command line and in the API.
    public func validate() -> [ParameterProblem] {
        var p: [ParameterProblem] = []
        if !(3...15).contains(window) || window % 2 == 0 {
            p.append(ParameterProblem(field: "window", value: "\(window)", expected: "an odd integer from 3 to 15"))
        }
        if !(regularisation >= 0 && regularisation <= 1) {
            p.append(ParameterProblem(field: "regularisation", value: "\(regularisation)", expected: "a number from 0 to 1"))
        }
        if !(zUncertainty > 0 && zUncertainty <= 1) {
            p.append(ParameterProblem(field: "z-uncertainty", value: "\(zUncertainty)", expected: "a number in (0, 1]"))
        }
        if !(precision >= 0.05 && precision <= 1) {
            p.append(ParameterProblem(field: "precision", value: "\(precision)", expected: "a step from 0.05 to 1 pixel"))
        }
        if !(decorrelationThreshold >= 0 && decorrelationThreshold < 1) {
            p.append(ParameterProblem(field: "decorrelation-threshold", value: "\(decorrelationThreshold)", expected: "a correlation in [0, 1)"))
        }
        if !(leftRightTolerance >= 0.25 && leftRightTolerance <= 8) {
            p.append(ParameterProblem(field: "left-right-tolerance", value: "\(leftRightTolerance)", expected: "from 0.25 to 8 pixels"))
        }
        if !(jumpPenaltyRatio >= 1 && jumpPenaltyRatio <= 64) {
            p.append(ParameterProblem(field: "jump-penalty-ratio", value: "\(jumpPenaltyRatio)", expected: "from 1 to 64"))
        }
        return p
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
    case sizeMismatch(String)

    public var description: String {
        switch self {
        case .invalidParameters(let p): return "invalid parameters: " + p.map(\.description).joined(separator: "; ")
        case .invalidDisparityRange(let a, let b): return "invalid disparity range [\(a), \(b)]: the minimum must not exceed the maximum"
        case .sizeMismatch(let s): return "images do not match: \(s)"
        }
    }
}

extension MatchingParameters {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case window, regularisation, zUncertainty, precision, decorrelationThreshold, leftRightTolerance, jumpPenaltyRatio
    }

    /// Decodes with the defaults for absent keys; unknown keys are an error (a misspelt parameter must
    /// not be silently ignored).
    public init(from decoder: Decoder) throws {
        self.init()
        let any = try decoder.container(keyedBy: AnyKey.self)
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        let unknown = any.allKeys.map(\.stringValue).filter { !known.contains($0) }.sorted()
        if !unknown.isEmpty {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "unknown parameter(s): \(unknown.joined(separator: ", "))"))
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        window = try c.decodeIfPresent(Int.self, forKey: .window) ?? window
        regularisation = try c.decodeIfPresent(Double.self, forKey: .regularisation) ?? regularisation
        zUncertainty = try c.decodeIfPresent(Double.self, forKey: .zUncertainty) ?? zUncertainty
        precision = try c.decodeIfPresent(Double.self, forKey: .precision) ?? precision
        decorrelationThreshold = try c.decodeIfPresent(Double.self, forKey: .decorrelationThreshold) ?? decorrelationThreshold
        leftRightTolerance = try c.decodeIfPresent(Double.self, forKey: .leftRightTolerance) ?? leftRightTolerance
        jumpPenaltyRatio = try c.decodeIfPresent(Double.self, forKey: .jumpPenaltyRatio) ?? jumpPenaltyRatio
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
