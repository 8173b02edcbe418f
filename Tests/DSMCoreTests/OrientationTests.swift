import DSMCore
import Foundation
import Testing

/// The relative orientation of a triplet from tie points, on exact synthetic views whose observations
/// carry known image-space biases.
@Suite struct OrientationTests {
    let centre = GeoPoint(longitude: 5.4, latitude: 43.3, height: 100)
    var models: [RPCModel] {
        [RPCModel.affineView(centre: centre, width: 2000, height: 2000, gsd: 0.7, incidenceDeg: 3, azimuthDeg: 100),
         RPCModel.affineView(centre: centre, width: 2000, height: 2000, gsd: 0.7, incidenceDeg: 12, azimuthDeg: 0),
         RPCModel.affineView(centre: centre, width: 2000, height: 2000, gsd: 0.7, incidenceDeg: 12, azimuthDeg: 180)]
    }

    /// Tie points of ground points on rough terrain, observed with the true biases and 0.05 px of noise.
    func tiePoints(biases: [ImageBias], count: Int = 300) -> [TiePoint] {
        var rng = SplitMix64(seed: 11)
        return (0..<count).map { _ in
            let e = (rng.unit() - 0.5) * 1000, n = (rng.unit() - 0.5) * 1000, h = 100 + (rng.unit() - 0.5) * 200
            let radii = WGS84.radiiOfCurvature(latitude: centre.latitude)
            let lon = centre.longitude + e / radii.east * 180 / .pi, lat = centre.latitude + n / radii.north * 180 / .pi
            return TiePoint(observations: models.indices.map { k in
                let p = models[k].project(longitude: lon, latitude: lat, height: h)
                return .init(image: k, column: p.column + biases[k].column + (rng.unit() - 0.5) * 0.1,
                             row: p.row + biases[k].row + (rng.unit() - 0.5) * 0.1)
            })
        }
    }

    /// Heights of a tie point intersected from two of its images.
    func height(_ t: TiePoint, _ images: [Int], _ models: [RPCModel]) -> Double {
        RelativeOrientation.intersect(TiePoint(observations: t.observations.filter { images.contains($0.image) }), models: models,
                                      initialHeight: 100)!.height
    }

    @Test func tripletBiasesAreRecoveredAndPairsAgree() throws {
        // The forward and backward views are off by ~1 px along track: their pairs with the nadir view
        // disagree in height by metres (as the Marseille triplet's did by ±2.4 m).
        let truth = [ImageBias(column: 0.3, row: -0.2), ImageBias(column: -0.4, row: 0.9), ImageBias(column: 0.2, row: -0.8)]
        let ties = tiePoints(biases: truth)
        let o = try RelativeOrientation.adjust(models: models, tiePoints: ties, initialHeight: 100)
        #expect(o.tiePoints == 300 && o.multiViewTiePoints == 300 && o.observations == 900 && o.rejected == 0)
        #expect(o.rmsBeforePx > 0.3, "before: \(o.rmsBeforePx)")
        #expect(o.rmsAfterPx < 0.05, "after: \(o.rmsAfterPx) (noise ±0.05 px)")
        // Tie points fix the images relative to each other, not the whole scene (moving the ground and
        // every image with it fits them as well), so the biases are checked through what they are for:
        // the pairs' heights.
        let corrected = zip(models, o.biases).map { $0.corrected(by: $1) }
        var before = 0.0, after = 0.0
        for t in ties {
            before = max(before, abs(height(t, [0, 1], models) - height(t, [0, 2], models)))
            after = max(after, abs(height(t, [0, 1], corrected) - height(t, [0, 2], corrected)))
        }
        #expect(before > 1, "pairs disagree by \(before) m before")
        #expect(after < 0.6, "pairs disagree by \(after) m after (per point, with the observation noise)")
        // The prior keeps the scene where the models put it: the mean bias is small.
        #expect(abs(o.biases.map(\.column).reduce(0, +)) < 1 && abs(o.biases.map(\.row).reduce(0, +)) < 1)
    }

    @Test func mismatchesAreLeftOutAndTooFewPointsRefused() throws {
        var ties = tiePoints(biases: [.zero, ImageBias(column: 0, row: 0.5), .zero])
        for k in 0..<10 { ties[k].observations[2].column += 15 }  // ten wrong matches
        let o = try RelativeOrientation.adjust(models: models, tiePoints: ties, initialHeight: 100)
        #expect(o.rejected == 10 && o.rmsAfterPx < 0.05)
        #expect(throws: OrientationError.tooFewTiePoints(found: 3, needed: 10)) {
            try RelativeOrientation.adjust(models: models, tiePoints: Array(ties.prefix(3)), initialHeight: 100)
        }
    }

    @Test func correctedModelShiftsProjectionAndLocalisation() throws {
        let m = models[1], b = ImageBias(column: 1.25, row: -0.5)
        let c = m.corrected(by: b)
        let p = m.project(longitude: 5.401, latitude: 43.299, height: 150), q = c.project(longitude: 5.401, latitude: 43.299, height: 150)
        #expect(abs(q.column - p.column - 1.25) < 1e-9 && abs(q.row - p.row + 0.5) < 1e-9)
        let g = try c.localize(column: q.column, row: q.row, height: 150)
        #expect(abs(g.longitude - 5.401) < 1e-9 && abs(g.latitude - 43.299) < 1e-9)
    }
}
