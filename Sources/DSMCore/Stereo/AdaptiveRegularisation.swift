import Foundation

/// The regularisation adapted to a pair's matching noise.
///
/// The semi-global penalties are in the units of the correlation cost 1 − ZNCC, so a setting means
/// different smoothing on different images: what it must outweigh is the noise of the costs, and the cost
/// of the true match measures that noise (a clean match costs nearly 0; image noise, vegetation and
/// perspective differences between the views raise it). The penalties are therefore scaled by the pair's
/// typical cost — the median 1 − ZNCC of its matches, measured once per scene — relative to that of a clean
/// match (`referenceCost`): the factor f is never below 1 and at most `regularisation-adaptation` (8 by
/// default: a pair whose matches cost more than that is mostly decorrelated, and a flat surface is no answer);
/// the one-step penalty is scaled by f, the large-jump penalty by √f (`adapted`).
///
/// Measured (2026-11-23, median 1 − ZNCC of the matches at the default setting): Middlebury Cones 0.010,
/// the `dsmopt synth` pairs (15 DN of noise) 0.004, the Marseille triplet's pairs 0.02, the La Réunion
/// pair (steep, vegetated, in shadow) 0.07: f from 1 to 7. Cones and the synthetic scenes barely move with
/// stronger penalties (Cones bad-1.0 5.20–5.28 % from ×1 to ×5); La Réunion gains (Benchmarks/DSM-QUALITY.md, item 10).
public enum AdaptiveRegularisation {
    /// 1 − ZNCC of a clean match: the cost level the regularisation setting is meant for.
    public static let referenceCost = 0.01
    /// Fewest valid matches the typical cost is taken from.
    public static let minimumMatches = 1000

    /// The factor applied to the regularisation of a pair whose matches typically cost `typicalCost`.
    public static func factor(typicalCost: Double, maximum: Double) -> Double {
        guard typicalCost.isFinite else { return 1 }
        return min(max(1, maximum), max(1, typicalCost / referenceCost))
    }

    /// `parameters` adapted for a pair whose matches typically cost `typicalCost`: the one-step penalty
    /// (`regularisation`) × the factor f (at most 1, the parameter's bound), the large-jump penalty × √f (through
    /// `jumpPenaltyRatio` ÷ √f, at least 1). Large jumps are where true edges are: scaled as much as the
    /// one-step penalty (×7, then capped), they pulled surfaces across low-texture borders on La Réunion — the
    /// foot of a 23 m step moved by a cell, 20.3 m off; left as set, most of the gain went (within 1 m
    /// 96.19 → 95.58 %); × √f kept both (see Benchmarks/DSM-QUALITY.md, item 10).
    public static func adapted(_ parameters: MatchingParameters, typicalCost: Double) -> MatchingParameters {
        let f = factor(typicalCost: typicalCost, maximum: parameters.regularisationAdaptation)
        var p = parameters
        p.regularisation = min(1, parameters.regularisation * f)
        p.jumpPenaltyRatio = max(1, parameters.jumpPenaltyRatio / f.squareRoot())
        return p
    }

    /// The median 1 − ZNCC of the valid matches of `maps`; nil with fewer than `minimumMatches`.
    public static func typicalCost(of maps: [DisparityMap]) -> (cost: Double, matches: Int)? {
        var costs: [Float] = []
        for m in maps {
            for (s, d) in zip(m.score, m.disparity) where !s.isNaN && !d.isNaN { costs.append(1 - s) }
        }
        guard costs.count >= minimumMatches else { return nil }
        let k = costs.count / 2
        costs.withUnsafeMutableBufferPointer { selectKthSmallest(&$0, k) }
        return (Double(costs[k]), costs.count)
    }
}
