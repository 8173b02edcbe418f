import DSMCore
import Foundation
import SensorIngest

/// The typical cost of a pair's matches, measured once per scene for `AdaptiveRegularisation`: up to four
/// 128-px windows spread over the pair's region, rectified with its pointing correction and matched with
/// the run's parameters as set.
enum MatchingNoise {
    static let windowSize = 128

    static func measure(_ rectification: PairRectification, region: PixelWindow, heights: ClosedRange<Double>,
                        pointingCorrection: Double, parameters: MatchingParameters) throws -> (cost: Double, matches: Int)? {
        let matcher = DenseMatcher(parameters: parameters)
        var maps: [DisparityMap] = []
        for w in PairRectification.sampleWindows(over: region, samplesPerSide: 2, windowSize: windowSize) where w.width >= 64 && w.height >= 64 {
            let t = try rectification.rectify(w, heights: heights, pointingCorrection: pointingCorrection)
            maps.append(try matcher.match(left: t.left, right: t.right, minDisparity: t.geometry.disparityRange.lowerBound,
                                          maxDisparity: t.geometry.disparityRange.upperBound))
        }
        return AdaptiveRegularisation.typicalCost(of: maps)
    }
}
