import DSMCore
import Foundation
import Testing
import TestSupport

/// Known-answer tests of the dense matcher on synthetic pairs rendered from an analytic texture, so that
/// sub-pixel shifts carry no interpolation error.
@Suite struct MatcherTests {
    let scene = SyntheticScene(centre: GeoPoint(longitude: 0, latitude: 0), hills: [], textureScale: 2.0)

    /// A pair where right(x, y) = left(x + shift(x, y), y): the true disparity is `shift`.
    func pair(width: Int = 160, height: Int = 120, shift: (Int, Int) -> Double) -> (GrayImage, GrayImage) {
        var l = [Float](repeating: 0, count: width * height), r = l
        for y in 0..<height {
            for x in 0..<width {
                l[y * width + x] = Float(scene.texture(east: Double(x), north: Double(y)))
                r[y * width + x] = Float(scene.texture(east: Double(x) + shift(x, y), north: Double(y)))
            }
        }
        return (GrayImage(width: width, height: height, pixels: l), GrayImage(width: width, height: height, pixels: r))
    }

    func stats(_ m: DisparityMap, truth: Double, margin: Int = 20) -> (meanError: Double, maxError: Double, valid: Double) {
        var sum = 0.0, worst = 0.0, n = 0, total = 0
        for y in margin..<(m.height - margin) {
            for x in margin..<(m.width - margin) {
                total += 1
                let d = m.disparity[y * m.width + x]
                guard !d.isNaN else { continue }
                let e = abs(Double(d) - truth)
                sum += e; worst = max(worst, e); n += 1
            }
        }
        return (sum / Double(max(n, 1)), worst, Double(n) / Double(total))
    }

    @Test(arguments: [4.0, 7.0, 3.3, 5.75, 6.2])
    func constantShiftIsRecovered(_ truth: Double) throws {
        // Left x matches right x − d: right(x − d) = left(x) ⇒ right(x) = left(x + d).
        let (l, r) = pair { _, _ in truth }
        let m = try DenseMatcher().match(left: l, right: r, minDisparity: 0, maxDisparity: 12)
        let s = stats(m, truth: truth)
        print("constant shift \(truth): mean |error| \(s.meanError) px, max \(s.maxError) px, valid \(s.valid)")
        #expect(s.valid > 0.98)
        #expect(s.meanError < 0.05, "mean sub-pixel error \(s.meanError) px")
        #expect(s.maxError < 0.25)
    }

    /// On a slanted surface (disparity 3 + 0.1·x) the centred window's estimate scatters with the texture;
    /// the window sheared by the map's gradient follows the slant.
    @Test func shearedRefinementFollowsASlant() throws {
        let g = 0.1, d0 = 3.0
        // Left x matches right x − d(x): at right column xr, left x = (xr + d0) / (1 − g).
        let (l, r) = pair(width: 240, height: 100) { xr, _ in (d0 + g * Double(xr)) / (1 - g) }
        func meanError(sheared: Bool) throws -> (Double, Double) {
            var matcher = DenseMatcher()
            matcher.shearedRefinement = sheared
            let m = try matcher.match(left: l, right: r, minDisparity: 0, maxDisparity: 32)
            var sum = 0.0, n = 0, total = 0
            for y in 20..<(m.height - 20) {
                for x in 30..<(m.width - 30) {
                    total += 1
                    let d = m.disparity[y * m.width + x]
                    guard !d.isNaN else { continue }
                    sum += abs(Double(d) - (d0 + g * Double(x))); n += 1
                }
            }
            return (sum / Double(max(n, 1)), Double(n) / Double(total))
        }
        let (flat, flatValid) = try meanError(sheared: false)
        let (sheared, shearedValid) = try meanError(sheared: true)
        print("slant 0.1 px/px: mean |error| \(flat) px centred, \(sheared) px sheared; valid \(flatValid), \(shearedValid)")
        #expect(shearedValid > 0.95 && shearedValid >= flatValid - 0.001)
        // Fence, not a target: measured 2026-11-23 here 0.049 → 0.025 px (on a ramp of the synthetic view: NMAD
        // 0.074 → 0.033 px).
        #expect(sheared < 0.7 * flat, "sheared \(sheared) px against centred \(flat) px")
    }

    /// On a coarse texture with image noise the correlation peak is flat and noise moves its vertex: the
    /// wide refinement window (`wideRefinementSigma`) averages more of it, and is kept off a depth edge.
    @Test func wideRefinementOnCoarseTexture() throws {
        // Texture features of 6–48 px (four octaves of values in 0…1), image noise of σ 0.004 in both views;
        // foreground (disparity 9.3) on the right half, background (4.3) on the left.
        let coarse = SyntheticScene(centre: GeoPoint(longitude: 0, latitude: 0), hills: [], textureScale: 6.0)
        let width = 240, height = 120, edge = 120
        func disparity(_ x: Double) -> Double { x >= Double(edge) ? 9.3 : 4.3 }
        var noise = SplitMix64(seed: 7)
        func gaussian() -> Float { Float((0..<12).reduce(0.0) { s, _ in s + noise.unit() } - 6) * 0.004 }
        var l = [Float](repeating: 0, count: width * height), r = l
        for y in 0..<height {
            for x in 0..<width {
                l[y * width + x] = Float(coarse.texture(east: Double(x), north: Double(y))) + gaussian()
                // Right column xr sees the foreground where a foreground left pixel lands, else the background.
                let xf = Double(x) + 9.3
                let xl = xf >= Double(edge) ? xf : Double(x) + 4.3
                r[y * width + x] = Float(coarse.texture(east: xl, north: Double(y))) + gaussian()
            }
        }
        let left = GrayImage(width: width, height: height, pixels: l), right = GrayImage(width: width, height: height, pixels: r)
        func errors(_ m: DisparityMap, columns: [Range<Int>]) -> [Double] {
            var e: [Double] = []
            for y in 16..<(height - 16) {
                for range in columns {
                    for x in range where !m.disparity[y * width + x].isNaN {
                        e.append(Double(m.disparity[y * width + x]) - disparity(Double(x)))
                    }
                }
            }
            return e
        }
        var narrow = DenseMatcher()
        narrow.wideRefinementSigma = 0
        var unguarded = DenseMatcher()
        unguarded.wideRefinementPlaneTolerance = .infinity
        let maps = try [narrow, DenseMatcher(), unguarded].map { try $0.match(left: left, right: right, minDisparity: 0, maxDisparity: 16) }
        // Away from the edge and the image borders.
        let away = maps.map { nmad(errors($0, columns: [24..<(edge - 24), (edge + 24)..<(width - 24)])) }
        // Beside the edge, within reach of the wide window (radius 8): the background 8–20 px left of the edge
        // (the 5 px next to it are hidden in the right view; 3 more are left out with them) and the
        // foreground's first 8 px.
        let near = maps.map { m in errors(m, columns: [(edge - 20)..<(edge - 8), edge..<(edge + 8)]).map(abs) }
        let nearMean = near.map { $0.reduce(0, +) / Double(max($0.count, 1)) }
        print(String(format: "coarse texture: NMAD away from the edge %.4f px narrow, %.4f px wide; mean |error| near the edge %.4f narrow, %.4f guarded, %.4f unguarded (%d/%d/%d px)",
                     away[0], away[1], nearMean[0], nearMean[1], nearMean[2], near[0].count, near[1].count, near[2].count))
        // Fences, not targets. Measured 2026-11-24: NMAD 0.137 → 0.089 px away from the edge; near it mean
        // |error| 0.195 px narrow, 0.188 guarded, 0.245 unguarded.
        #expect(away[1] < 0.85 * away[0], "the wide window must reduce the noise on a coarse texture")
        #expect(nearMean[1] <= nearMean[0] * 1.05 + 0.002, "guarded, the edge's neighbourhood must not get worse")
        #expect(nearMean[2] > nearMean[1], "without the plane test the wide window reaches across the edge")
    }

    @Test func stepEdgeOcclusionIsRemovedByLeftRightCheck() throws {
        // Foreground (disparity 12) on the right half, background (disparity 4) on the left half: the
        // background just left of the edge is hidden in the right image.
        let edge = 80
        let (l, r) = pair(width: 160, height: 80) { x, _ in x >= edge ? 12 : 4 }
        // Re-render the right image as a real occlusion: right(xr) shows the foreground where any
        // foreground pixel lands, else the background.
        var right = [Float](repeating: 0, count: 160 * 80)
        for y in 0..<80 {
            for xr in 0..<160 {
                let xf = Double(xr) + 12  // foreground left pixel seen at xr
                let v = xf >= Double(edge) ? scene.texture(east: xf, north: Double(y)) : scene.texture(east: Double(xr) + 4, north: Double(y))
                right[y * 160 + xr] = Float(v)
            }
        }
        let m = try DenseMatcher().match(left: l, right: GrayImage(width: 160, height: 80, pixels: right), minDisparity: 0, maxDisparity: 16)
        _ = r
        // Left pixels edge−8 ..< edge are background hidden behind the foreground in the right view.
        var occludedValid = 0, occludedTotal = 0, visibleGood = 0, visibleTotal = 0
        for y in 10..<70 {
            for x in (edge - 7)..<(edge - 1) {
                occludedTotal += 1
                if !m.disparity[y * 160 + x].isNaN { occludedValid += 1 }
            }
            for x in 30..<(edge - 12) {
                visibleTotal += 1
                if abs(m.disparity[y * 160 + x] - 4) < 0.5 { visibleGood += 1 }
            }
            for x in (edge + 4)..<150 {
                visibleTotal += 1
                if abs(m.disparity[y * 160 + x] - 12) < 0.5 { visibleGood += 1 }
            }
        }
        print("step edge: \(occludedValid)/\(occludedTotal) occluded pixels kept, \(visibleGood)/\(visibleTotal) visible correct")
        #expect(Double(occludedValid) / Double(occludedTotal) < 0.1, "occluded pixels must be invalidated")
        #expect(Double(visibleGood) / Double(visibleTotal) > 0.97)
        let occludedStatus = (10..<70).flatMap { y in ((edge - 7)..<(edge - 1)).map { m.status[y * 160 + $0] } }
        // They are reported as left/right failures (occlusion or mismatch, a heuristic split).
        let occludedCount = occludedStatus.filter { $0 == MatchStatus.occluded.rawValue }.count
        let mismatchCount = occludedStatus.filter { $0 == MatchStatus.mismatch.rawValue }.count
        print("step edge statuses: \(occludedCount) occluded, \(mismatchCount) mismatch of \(occludedStatus.count)")
        #expect(occludedCount + mismatchCount >= occludedStatus.count * 9 / 10)
    }

    /// A brighter box (disparity 12, columns 70 ..< 130, rows 20 ..< 80 of a 200 × 100 pair) in front of a
    /// background (disparity 4), each with its own texture: the background just right of the box is visible in
    /// both views; the 8 background columns left of it are hidden in the right view.
    let box = (width: 200, height: 100, x0: 70, x1: 130, y0: 20, y1: 80)

    func boxPair() -> (left: GrayImage, right: GrayImage) {
        let (w, h) = (box.width, box.height)
        func inBox(_ x: Int, _ y: Int) -> Bool { x >= box.x0 && x < box.x1 && y >= box.y0 && y < box.y1 }
        func boxTexture(_ x: Int, _ y: Int) -> Float { Float(scene.texture(east: Double(x) + 500, north: Double(y)) + 0.5) }
        func ground(_ x: Int, _ y: Int) -> Float { Float(scene.texture(east: Double(x), north: Double(y))) }
        var l = [Float](repeating: 0, count: w * h), r = l
        for y in 0..<h {
            for x in 0..<w {
                l[y * w + x] = inBox(x, y) ? boxTexture(x, y) : ground(x, y)
                // Right column xr shows the box where a box pixel (left x = xr + 12) lands, else the ground (xr + 4).
                r[y * w + x] = inBox(x + 12, y) ? boxTexture(x + 12, y) : ground(x + 4, y)
            }
        }
        return (GrayImage(width: w, height: h, pixels: l), GrayImage(width: w, height: h, pixels: r))
    }

    /// On the box pair, a square window reaching across the box's edge pulls the background beside it to the
    /// box's disparity (foreground fattening). Support weights that follow both images stop at the edge.
    @Test func supportWeightsKeepTheBackgroundBesideAnEdge() throws {
        let (w, x0, x1, y0, y1) = (box.width, box.x0, box.x1, box.y0, box.y1)
        let (left, right) = boxPair()
        func rightOfTheEdge(_ matcher: DenseMatcher) throws -> (right: Double, inside: Double) {
            let m = try matcher.match(left: left, right: right, minDisparity: 0, maxDisparity: 20)
            var good = 0, total = 0, boxGood = 0, boxTotal = 0
            for y in (y0 + 5)..<(y1 - 5) {
                for x in x1..<(x1 + 3) {  // the background's first 3 columns beside the box
                    total += 1
                    if abs(m.disparity[y * w + x] - 4) <= 1 { good += 1 }
                }
                for x in (x0 + 5)..<(x1 - 5) {
                    boxTotal += 1
                    if abs(m.disparity[y * w + x] - 12) <= 0.5 { boxGood += 1 }
                }
            }
            return (Double(good) / Double(total), Double(boxGood) / Double(boxTotal))
        }
        var weighted = DenseMatcher()
        weighted.supportWeights = SupportWeights(intensityScale: 0.45)
        let square = try rightOfTheEdge(DenseMatcher()), support = try rightOfTheEdge(weighted)
        print("beside the box's edge: \(square.right) right with the shiftable window, \(support.right) with support weights; inside \(square.inside), \(support.inside)")
        #expect(support.inside > 0.97 && square.inside > 0.97)
        #expect(support.right > square.right, "support weights must keep more of the background beside the edge")
    }

    /// On the box pair, the ground beside the box's right edge is visible in both views, yet the left/right
    /// check rejects some of it, where the right view's winners carry the box's disparity a pixel or two past
    /// its edge; the 8 ground columns left of the box are hidden in the right view.
    @Test func revalidationKeepsTheBackgroundBesideAnEdgeNotTheOcclusion() throws {
        let (w, x0, x1, y0, y1) = (box.width, box.x0, box.x1, box.y0, box.y1)
        let (left, right) = boxPair()
        func tally(_ rounds: Int) throws -> (besideRight: Int, besideWrong: Int, occludedValid: Int, occludedFar: Int, boxGood: Int) {
            var matcher = DenseMatcher()
            matcher.occlusionRevalidationRounds = rounds
            let m = try matcher.match(left: left, right: right, minDisparity: 0, maxDisparity: 20)
            var t = (besideRight: 0, besideWrong: 0, occludedValid: 0, occludedFar: 0, boxGood: 0)
            for y in (y0 + 5)..<(y1 - 5) {
                for x in x1..<(x1 + 3) where !m.disparity[y * w + x].isNaN {
                    if abs(m.disparity[y * w + x] - 4) <= 1 { t.besideRight += 1 } else { t.besideWrong += 1 }
                }
                // Hidden in the right view: no match is right; one near the ground's disparity is what a fill would give.
                for x in (x0 - 8)..<x0 where !m.disparity[y * w + x].isNaN {
                    t.occludedValid += 1
                    if abs(m.disparity[y * w + x] - 4) > 1 { t.occludedFar += 1 }
                }
                for x in (x0 + 5)..<(x1 - 5) where abs(m.disparity[y * w + x] - 12) <= 0.5 { t.boxGood += 1 }
            }
            return t
        }
        let plain = try tally(0), revalidated = try tally(3)
        print("beside the box (of \(50 * 3)): right \(plain.besideRight) → \(revalidated.besideRight), wrong \(plain.besideWrong) → \(revalidated.besideWrong); occluded band (of \(50 * 8)) valid \(plain.occludedValid) → \(revalidated.occludedValid), off the ground by > 1 px \(plain.occludedFar) → \(revalidated.occludedFar)")
        #expect(revalidated.besideRight > plain.besideRight, "re-validation must keep more of the visible background beside the edge")
        #expect(revalidated.besideWrong == plain.besideWrong, "re-validation keeps matches that continue a neighbour: none off the ground's disparity")
        #expect(revalidated.occludedFar == plain.occludedFar, "no occluded pixel may take the box's disparity")
        #expect(revalidated.boxGood == plain.boxGood)
    }

    /// On the box pair, the sub-pixel refinement's 9 × 9 window centred on a pixel within 4 px of the box's
    /// edge straddles both surfaces and pulls the peak towards the other one; `surfaceRefinement` refines
    /// those pixels again over the window's slots on their own surface only, and leaves the rest alone.
    @Test func surfaceRefinementKeepsTheWindowOnItsOwnSurface() throws {
        let (w, h, x0, x1, y0, y1) = (box.width, box.height, box.x0, box.x1, box.y0, box.y1)
        let (left, right) = boxPair()
        let plain = DenseMatcher()
        var surface = DenseMatcher()
        surface.surfaceRefinement = true
        let a = try plain.match(left: left, right: right, minDisparity: 0, maxDisparity: 20)
        let b = try surface.match(left: left, right: right, minDisparity: 0, maxDisparity: 20)
        var errors = (plain: 0.0, surface: 0.0, count: 0), farChanged = 0, far = 0
        /// Whether (x, y) lies within `r` columns or rows of the box's outline.
        func near(_ x: Int, _ y: Int, _ r: Int) -> Bool {
            let nearX = abs(x - x0) <= r || abs(x - (x1 - 1)) <= r, nearY = abs(y - y0) <= r || abs(y - (y1 - 1)) <= r
            return (nearX && y >= y0 - r && y < y1 + r) || (nearY && x >= x0 - r && x < x1 + r)
        }
        for y in 0..<h {
            for x in 0..<w {
                let i = y * w + x
                // Where the matched disparities within 12 px spread by at most 0.3 px (the flat ground away from
                // the box; a window splits only at a gap of 0.5 px), no 9 × 9 window within reach of the wide
                // refinement (radius 8, which reads the map this pass leaves) holds a second surface: nothing
                // may change.
                if x >= 12, x < w - 12, y >= 12, y < h - 12 {
                    var lo = Float.infinity, hi = -Float.infinity
                    for yy in (y - 12)...(y + 12) {
                        for xx in (x - 12)...(x + 12) where !a.disparity[yy * w + xx].isNaN {
                            lo = min(lo, a.disparity[yy * w + xx]); hi = max(hi, a.disparity[yy * w + xx])
                        }
                    }
                    if hi - lo <= 0.3 {
                        far += 1
                        if a.disparity[i] != b.disparity[i] { farChanged += 1 }
                    }
                }
                guard near(x, y, 4), !a.disparity[i].isNaN, !b.disparity[i].isNaN else { continue }
                let truth: Float = x >= x0 && x < x1 && y >= y0 && y < y1 ? 12 : 4
                // Count only pixels matched to their own surface in both maps: the refinement moves a match
                // by at most 0.6 px, it does not choose the surface.
                guard abs(a.disparity[i] - truth) < 1.5, abs(b.disparity[i] - truth) < 1.5 else { continue }
                errors.plain += Double(abs(a.disparity[i] - truth)); errors.surface += Double(abs(b.disparity[i] - truth))
                errors.count += 1
            }
        }
        let n = Double(errors.count)
        print("within 4 px of the box's outline (\(errors.count) pixels): mean |error| \(errors.plain / n) → \(errors.surface / n) px; elsewhere \(farChanged) of \(far) pixels changed")
        #expect(errors.count > 500)
        #expect(errors.surface < 0.8 * errors.plain, "refinement on the pixel's own surface must be closer to the truth beside the edge")
        #expect(far > 2000)
        #expect(farChanged == 0, "where no window within reach holds a second surface, nothing is refined again")
    }

    @Test func texturelessAreaIsDecorrelatedNotInvented() throws {
        var (l, r) = pair(width: 160, height: 120) { _, _ in 5 }
        // A flat patch in both images (the same ground, seen shifted by 5 px).
        for y in 40..<80 {
            for x in 50..<110 { l.pixels[y * 160 + x] = 0.5 }
            for x in 45..<105 { r.pixels[y * 160 + x] = 0.5 }
        }
        var weighted = DenseMatcher()
        weighted.supportWeights = SupportWeights(intensityScale: 0.45)
        // With support weights the textured surroundings reach into the patch; it must stay empty all the same.
        let w = try weighted.match(left: l, right: r, minDisparity: 0, maxDisparity: 12)
        let weightedInvented = (46..<74).reduce(0) { n, y in n + (56..<104).filter { !w.disparity[y * 160 + $0].isNaN }.count }
        #expect(weightedInvented == 0, "support weights: \(weightedInvented) textureless pixels got a disparity")
        #expect(abs(w.disparity[20 * 160 + 80] - 5) < 0.1)
        let m = try DenseMatcher().match(left: l, right: r, minDisparity: 0, maxDisparity: 12)
        var inside = 0, invented = 0
        for y in 46..<74 {
            for x in 56..<104 {
                inside += 1
                if !m.disparity[y * 160 + x].isNaN { invented += 1 }
                #expect(m.status[y * 160 + x] == MatchStatus.decorrelated.rawValue || !m.disparity[y * 160 + x].isNaN)
            }
        }
        print("textureless: \(invented)/\(inside) pixels got a disparity")
        #expect(invented == 0, "textureless pixels must be left empty")
        // Filling never touches decorrelated pixels either.
        var filler = DenseMatcher()
        filler.fillInvalid = true
        let f = try filler.match(left: l, right: r, minDisparity: 0, maxDisparity: 12)
        #expect(f.disparity[60 * 160 + 80].isNaN)
        // Textured pixels around it are matched.
        #expect(abs(m.disparity[20 * 160 + 80] - 5) < 0.1)
    }

    @Test func coarseToFineNarrowsLargeRanges() throws {
        let (l, r) = pair(width: 256, height: 128) { _, _ in 37.4 }
        var matcher = DenseMatcher()
        matcher.coarseToFineLabels = 100
        let (m, report) = try matcher.matchWithReport(left: l, right: r, minDisparity: -60, maxDisparity: 100)
        print("coarse-to-fine: searched \(report.searchedRange), levels \(report.pyramidLevels), cells \(report.cells)")
        #expect(report.pyramidLevels >= 1)
        #expect(report.searchedRange.lowerBound > -60 && report.searchedRange.upperBound < 100)
        #expect(report.searchedRange.contains(37.4))
        let s = stats(m, truth: 37.4, margin: 48)
        #expect(s.valid > 0.95 && s.meanError < 0.05)
    }

    /// A range of 64–80 px (160–200 labels at the default precision) was left whole before: the coarse pass
    /// now runs at level 1 at least, and the narrowed range keeps the full range's label grid.
    @Test func moderateRangesAreNarrowedOnTheFullGrid() throws {
        let (l, r) = pair(width: 256, height: 128) { _, _ in 21.3 }
        let matcher = DenseMatcher()
        let (m, report) = try matcher.matchWithReport(left: l, right: r, minDisparity: -10.1, maxDisparity: 59.9)
        print("moderate range: searched \(report.searchedRange), levels \(report.pyramidLevels)")
        #expect(report.pyramidLevels == 1)
        #expect(report.searchedRange.lowerBound > -10.1 && report.searchedRange.upperBound < 59.9)
        #expect(report.searchedRange.contains(21.3))
        let step = matcher.parameters.precision
        for bound in [report.searchedRange.lowerBound, report.searchedRange.upperBound] {
            let k = (bound + 10.1) / step
            #expect(abs(k - k.rounded()) < 1e-9, "bound \(bound) is off the full range's label grid")
        }
        let s = stats(m, truth: 21.3, margin: 32)
        #expect(s.valid > 0.95 && s.meanError < 0.05)
    }

    @Test func parametersAreValidated() {
        var p = MatchingParameters()
        p.window = 4
        p.regularisation = -1
        p.zUncertainty = 0
        p.precision = 2
        p.decorrelationThreshold = 1
        let problems = p.validate()
        #expect(Set(problems.map(\.field)) == ["window", "regularisation", "z-uncertainty", "precision", "decorrelation-threshold"])
        #expect(MatchingParameters.defaults.validate().isEmpty)
        #expect(MatchingParameters.defaults.window == 5 && MatchingParameters.defaults.regularisation == 0.025)
        #expect(MatchingParameters.defaults.zUncertainty == 0.1 && MatchingParameters.defaults.precision == 0.4)
        #expect(MatchingParameters.defaults.decorrelationThreshold == 0.2)
        #expect(throws: MatchingError.self) {
            try DenseMatcher(parameters: p).match(left: GrayImage(width: 20, height: 20, pixels: .init(repeating: 0, count: 400)),
                                                  right: GrayImage(width: 20, height: 20, pixels: .init(repeating: 0, count: 400)),
                                                  minDisparity: 0, maxDisparity: 4)
        }
        #expect(throws: MatchingError.invalidDisparityRange(min: 5, max: 1)) {
            try DenseMatcher().match(left: GrayImage(width: 20, height: 20, pixels: .init(repeating: 0, count: 400)),
                                     right: GrayImage(width: 20, height: 20, pixels: .init(repeating: 0, count: 400)),
                                     minDisparity: 5, maxDisparity: 1)
        }
    }

    /// A disparity range beyond the images is searched only where a left pixel can meet the right image (a range
    /// of ±1e9 px had asked for a 644 GB cost volume and stopped `dsmopt match`); a range that misses them
    /// entirely is refused, naming the range that can match.
    @Test func aDisparityRangeBeyondTheImagesIsClamped() throws {
        let (l, r) = pair { _, _ in 5.5 }
        let asked = try DenseMatcher().matchWithReport(left: l, right: r, minDisparity: -1e9, maxDisparity: 1e9)
        let searched = asked.report.searchedRange
        #expect(searched.lowerBound >= -159 && searched.upperBound <= 159, "searched \(searched)")
        let s = stats(asked.map, truth: 5.5)
        #expect(s.valid > 0.95 && s.meanError < 0.05, "\(s)")
        #expect(throws: MatchingError.disparityRangeOutsideImages(min: 1000, max: 2000, possible: -159...159)) {
            try DenseMatcher().match(left: l, right: r, minDisparity: 1000, maxDisparity: 2000)
        }
    }

    /// Small islands of disparities unconnected to their surroundings are removed; large regions, however
    /// far their disparity from their neighbours', are kept.
    @Test func specklesAreRemoved() {
        var m = DisparityMap(width: 60, height: 40)
        for y in 0..<40 {
            for x in 0..<60 {
                m.disparity[y * 60 + x] = x < 40 ? 5 + 0.05 * Float(x) : 20  // a slope, then a 20×40 block (800 px)
                m.status[y * 60 + x] = MatchStatus.valid.rawValue
            }
        }
        for y in 10..<15 { for x in 10..<16 { m.disparity[y * 60 + x] = 12 } }  // a 30-px island of a wrong match
        m.disparity[30 * 60 + 5] = 5.25 + 0.9  // within one pixel of its neighbours: connected, kept
        let removed = m.removeSpeckles(smallerThan: 100, step: 1)
        #expect(removed == 30)
        #expect((10..<15).allSatisfy { y in (10..<16).allSatisfy { x in m.disparity[y * 60 + x].isNaN && m.status[y * 60 + x] == MatchStatus.speckle.rawValue } })
        #expect(m.disparity[30 * 60 + 5] == 6.15 && m.disparity[0] == 5 && m.disparity[39 * 60 + 59] == 20)
        // The matcher applies it by default (speckleSize 100) and fills speckles like mismatches when asked.
        #expect(DenseMatcher().speckleSize == 100)
        m.fillLeftRightFailures()
        #expect(m.status[12 * 60 + 12] == MatchStatus.filledMismatch.rawValue && abs(m.disparity[12 * 60 + 12] - 5.6) < 0.2)
    }

    /// The adapted regularisation: the median 1 − ZNCC of the valid matches (the sorted values' middle one),
    /// the factor clamped to 1 … `regularisation-adaptation`, the result to the parameter's bound.
    @Test func regularisationAdaptsToTheMatchingCost() {
        var rng = SystemRandomNumberGenerator()
        for trial in 0..<10 {
            var maps: [DisparityMap] = []
            var kept: [Float] = []
            for _ in 0..<3 {
                var m = DisparityMap(width: 40, height: 30)
                for i in 0..<m.score.count {
                    let s = Float.random(in: 0.2...1, using: &rng)
                    if Int.random(in: 0..<5, using: &rng) == 0 { continue }  // invalid: no disparity, no score
                    m.score[i] = s
                    m.disparity[i] = Float(trial)
                    kept.append(1 - s)
                }
                maps.append(m)
            }
            let t = AdaptiveRegularisation.typicalCost(of: maps)
            #expect(t?.matches == kept.count && t?.cost == Double(kept.sorted()[kept.count / 2]))
        }
        #expect(AdaptiveRegularisation.typicalCost(of: [DisparityMap(width: 10, height: 10)]) == nil, "too few matches")
        func adapted(_ p: MatchingParameters, _ cost: Double) -> (Double, Double) {
            let a = AdaptiveRegularisation.adapted(p, typicalCost: cost)
            #expect(a.window == p.window && a.precision == p.precision && a.zUncertainty == p.zUncertainty, "only the penalties change")
            return (a.regularisation, a.jumpPenaltyRatio)
        }
        var p = MatchingParameters.defaults
        #expect(adapted(p, 0.004) == (0.025, 16), "clean images: as set")
        let (r, j) = adapted(p, 0.04)  // f = 4: the one-step penalty × 4, the large jump × 2
        #expect(abs(r - 0.1) < 1e-12 && abs(j - 8) < 1e-12)
        #expect(adapted(p, 0.5).0 == 0.2 && abs(adapted(p, 0.5).1 - 16 / 8.0.squareRoot()) < 1e-12, "at most 8 × the setting")
        p.regularisationAdaptation = 1
        #expect(adapted(p, 0.05) == (0.025, 16), "1: never raised")
        p = .defaults
        p.regularisation = 0.5
        p.jumpPenaltyRatio = 1.5
        #expect(adapted(p, 0.04) == (1, 1), "never beyond the parameters' bounds")
        #expect(adapted(p, .nan) == (0.5, 1.5))
    }
}
