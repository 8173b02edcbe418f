import DSMCore
import Foundation
import GDALKit
import SensorIngest
import TestSupport
import Testing

/// The stereo core on real data: Middlebury Cones for the matcher, the Pléiades pairs for epipolar
/// resampling.
@Suite struct StereoCoreTests {
    /// bad-1.0 / bad-2.0 on non-occluded pixels with known truth, invalid pixels counted as bad
    /// (the Middlebury convention used by ../shared/tools/disp_eval.py).
    func conesScores(fill: Bool) throws -> (bad1: Double, bad2: Double, invalid: Double) {
        let left = try readGrayImage(try TestData.path("middlebury-cones/Cones_LEFT.tif"))
        let right = try readGrayImage(try TestData.path("middlebury-cones/Cones_RIGHT.tif"))
        let truth = try readGrayImage(try TestData.path("middlebury-cones/Cones_LEFT_GT.tif"))
        let occlusion = try readGrayImage(try TestData.path("middlebury-cones/Occlusion_LEFT.png"))
        var matcher = DenseMatcher()
        matcher.fillInvalid = fill
        let m = try matcher.match(left: left, right: right, minDisparity: 0, maxDisparity: 64)
        var scored = 0, bad1 = 0, bad2 = 0, invalid = 0
        for i in 0..<truth.pixels.count where truth.pixels[i] > 0 && occlusion.pixels[i] > 0 {
            scored += 1
            let d = m.disparity[i]
            if d.isNaN { invalid += 1; bad1 += 1; bad2 += 1; continue }
            let e = abs(d - truth.pixels[i])
            if e > 1 { bad1 += 1 }
            if e > 2 { bad2 += 1 }
        }
        let n = Double(scored)
        return (Double(bad1) / n, Double(bad2) / n, Double(invalid) / n)
    }

    @Test func conesQuality() throws {
        let raw = try conesScores(fill: false)
        print(String(format: "Cones raw: bad-1.0 %.2f%%, bad-2.0 %.2f%%, invalid %.2f%%", raw.bad1 * 100, raw.bad2 * 100, raw.invalid * 100))
        // Regression fences, not the target (issue 10: bad-1.0 ≤ 4.0 % raw). Measured 5.96 % / 5.09 %
        // (5.75 % / 5.00 % before the speckle filter and the Gaussian 9×9 sub-pixel window, which cost
        // Cones 0.2 points and removed every blunder of the La Réunion DSM; CNES Pandora
        // census+SGM+cross-check: 5.7 % / 4.7 %).
        #expect(raw.bad1 <= 0.061)
        #expect(raw.bad2 <= 0.052)
        let filled = try conesScores(fill: true)
        print(String(format: "Cones filled: bad-1.0 %.2f%%, bad-2.0 %.2f%%, invalid %.2f%%", filled.bad1 * 100, filled.bad2 * 100, filled.invalid * 100))
        // Measured 4.29 % / 3.23 % (4.03 % / 3.11 % before the speckle filter; speckles are filled as mismatches).
        #expect(filled.bad1 <= 0.044)
        #expect(filled.bad2 <= 0.034)
    }

    func rectify(_ a: String, _ b: String, window: PixelWindow?, pointing: Bool = true) throws -> [RectifiedTile] {
        let i1 = try SensorImage.open(try TestData.path(a)), i2 = try SensorImage.open(try TestData.path(b))
        let scene = try StereoInspector().inspect([i1, i2]).sceneHeight
        var r = PairRectification(first: i1, second: i2)
        r.correctPointing = pointing
        let margin = max(20, 0.1 * (scene.high - scene.low))
        let w = window ?? PixelWindow(x: 0, y: 0, width: i1.width, height: i1.height)
        return try PairRectification.tiles(w, size: 512).map { try r.rectify($0, heights: (scene.low - margin)...(scene.high + margin)) }
    }

    @Test(arguments: [("pleiades/reunion-pair/img_01.tif", "pleiades/reunion-pair/img_02.tif"),
                      ("pleiades/marseille-triplet/img_02.tif", "pleiades/marseille-triplet/img_01.tif"),
                      ("pleiades/marseille-triplet/img_02.tif", "pleiades/marseille-triplet/img_03.tif"),
                      ("pleiades/marseille-triplet/img_01.tif", "pleiades/marseille-triplet/img_03.tif")])
    func residualEpipolarErrorIsSmall(_ pair: (String, String)) throws {
        for t in try rectify(pair.0, pair.1, window: PixelWindow(x: 256, y: 256, width: 512, height: 512)) {
            print(String(format: "epipolar %@ ~ %@: %d matches, median |row residual| %.3f px (%.3f px before a %.3f px pointing correction), RPC affine model residual %.4f px",
                         pair.0, pair.1, t.parallaxAfter.count, t.parallaxAfter.medianAbsolute, t.parallaxBefore.medianAbsolute,
                         t.geometry.pointingCorrection, t.geometry.modelResidual))
            #expect(t.parallaxAfter.count >= 50)
            #expect(t.parallaxAfter.medianAbsolute < 0.3)
            #expect(t.geometry.modelResidual < 0.05)
            // The rectified grid covers the tile: no more than the corners are outside the source.
            let valid = t.left.pixels.filter { $0.isFinite }.count
            #expect(Double(valid) / Double(t.left.pixels.count) > 0.6)
        }
    }

    @Test func pointingCorrectionIsNeededOnReunion() throws {
        let raw = try rectify("pleiades/reunion-pair/img_01.tif", "pleiades/reunion-pair/img_02.tif",
                              window: PixelWindow(x: 256, y: 256, width: 512, height: 512), pointing: false)
        // The two RPC models disagree by about 0.75 px across the track: without the correction the
        // residual is above the 0.3 px target.
        #expect(raw[0].parallaxAfter.medianAbsolute > 0.5)
        #expect(raw[0].geometry.pointingCorrection == 0)
    }

    @Test func rectifiedTileMatchesToTheSceneHeights() throws {
        // Dense matching of a rectified La Réunion tile finds disparities inside the range projected from
        // the scene heights, with most pixels valid.
        let t = try rectify("pleiades/reunion-pair/img_01.tif", "pleiades/reunion-pair/img_02.tif",
                            window: PixelWindow(x: 300, y: 300, width: 400, height: 400))[0]
        let m = try DenseMatcher().match(left: t.left, right: t.right, minDisparity: t.geometry.disparityRange.lowerBound,
                                         maxDisparity: t.geometry.disparityRange.upperBound)
        let inside = t.left.pixels.filter { $0.isFinite }.count
        let valid = m.disparity.filter { !$0.isNaN }
        print("rectified La Réunion tile: \(valid.count)/\(inside) pixels matched")
        #expect(Double(valid.count) / Double(inside) > 0.7)
        #expect(valid.allSatisfy { t.geometry.disparityRange.contains(Double($0)) })
    }
}
