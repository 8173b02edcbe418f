import DSMCore
import Foundation
import SensorIngest

/// The first whole-scene pass, before anything is resampled: the relative orientation of the images
/// (`RelativeOrientation`) from tie points. The tie points are a grid of pixels of the hub image
/// (`PairSelection.hub`: the nadir view of a triplet) in sample windows over the scene, each matched in
/// every other image the hub is paired with — so a triplet's tie points are seen in all three images and
/// tie its pairs together.
enum OrientationPass {
    /// Tie points per sample window side.
    static let gridPerSide = 16

    static func run(images: [SensorImage], pairs: [[Int]], incidences: [Double], hubRegion: (Int) throws -> PixelWindow,
                    heights: ClosedRange<Double>) throws -> OrientationAdjustment {
        let hub = PairSelection.hub(of: pairs, incidences: incidences)
        let others = Set(pairs.filter { $0.contains(hub) }.flatMap { $0 }).subtracting([hub]).sorted()
        var tracks: [TiePoint] = []
        for window in PairRectification.sampleWindows(over: try hubRegion(hub)) {
            let m = 24, w = window.width, h = window.height
            var points: [SIMD2<Double>] = []
            for gy in 0..<gridPerSide {
                for gx in 0..<gridPerSide {
                    points.append(SIMD2(Double(window.x + m + (w - 2 * m) * (2 * gx + 1) / (2 * gridPerSide)),
                                        Double(window.y + m + (h - 2 * m) * (2 * gy + 1) / (2 * gridPerSide))))
                }
            }
            var observations = points.map { [TiePoint.Observation(image: hub, column: $0.x, row: $0.y)] }
            for k in others {
                let found = try PairRectification(first: images[hub], second: images[k]).matches(of: points, in: window, heights: heights)
                for (q, f) in found.enumerated() {
                    if let f { observations[q].append(.init(image: k, column: f.x, row: f.y)) }
                }
            }
            tracks += observations.filter { $0.count >= 2 }.map { TiePoint(observations: $0) }
        }
        return try RelativeOrientation.adjust(models: images.map(\.model), tiePoints: tracks,
                                              initialHeight: (heights.lowerBound + heights.upperBound) / 2)
    }
}
