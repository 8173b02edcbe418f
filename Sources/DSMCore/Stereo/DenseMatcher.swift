import Dispatch
import Foundation

/// A left disparity map (Middlebury convention: left column x matches right column x − d) with its
/// quality layer. NaN marks pixels without a valid match.
public struct DisparityMap: Sendable {
    public let width: Int
    public let height: Int
    public var disparity: [Float]
    /// ZNCC of the chosen match (the correlation-score quality layer), NaN where invalid or filled.
    public var score: [Float]
    /// Why each pixel has (or lacks) a disparity: `MatchStatus` raw values.
    public var status: [UInt8]
    /// Standard deviation of the disparity, pixels, from the correlation peak (see `disparityUncertainty`);
    /// NaN where invalid or where the peak has no curvature to measure.
    public var uncertainty: [Float]

    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
        disparity = [Float](repeating: .nan, count: width * height)
        score = [Float](repeating: .nan, count: width * height)
        status = [UInt8](repeating: MatchStatus.outside.rawValue, count: width * height)
        uncertainty = [Float](repeating: .nan, count: width * height)
    }

    /// Counts of each status.
    public var statusCounts: [MatchStatus: Int] {
        var c: [MatchStatus: Int] = [:]
        for v in status { c[MatchStatus(rawValue: v) ?? .outside, default: 0] += 1 }
        return c
    }

    public var validCount: Int { disparity.reduce(0) { $0 + ($1.isNaN ? 0 : 1) } }
}

/// Per-pixel outcome of matching (the values of the status layer).
public enum MatchStatus: UInt8, Sendable, CaseIterable {
    /// Matched, consistent left/right.
    case valid = 0
    /// Best correlation below the decorrelation threshold (or no texture): left empty, never filled.
    case decorrelated = 1
    /// Failed the left/right check and the right view sees something closer: hidden in the right image.
    case occluded = 2
    /// Failed the left/right check otherwise.
    case mismatch = 3
    /// The match falls outside the right image.
    case outside = 4
    /// An occluded pixel filled with the background disparity (when filling is on).
    case filledOcclusion = 5
    /// A mismatch filled with the median of its neighbours (when filling is on).
    case filledMismatch = 6
    /// Part of a small island of disparities unconnected to its surroundings (a speckle): removed.
    case speckle = 7
}

/// What a matching run did: for benchmarks and logs.
public struct MatchingReport: Sendable, Equatable {
    /// Cost-volume cells computed and regularised (rows × columns × labels, margins included).
    public var cells: Int = 0
    /// Disparity range searched at full resolution after coarse-to-fine narrowing.
    public var searchedRange: ClosedRange<Double> = 0...0
    public var pyramidLevels: Int = 0
}

/// Dense matching of a rectified pair: ZNCC window correlation, semi-global regularisation over eight
/// directions, sub-pixel refinement, left/right consistency and decorrelation, in horizontal strips
/// processed in parallel, with a coarse-to-fine pass when the disparity range is large.
public struct DenseMatcher: Sendable {
    public var parameters: MatchingParameters
    /// Worker threads (strips matched concurrently).
    public var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    /// Rows per strip (plus margins); bounds the cost-volume memory.
    public var stripRows = 256
    /// Overlap between strips, rows on each side.
    public var stripMargin = 16
    /// Search ranges wider than this many labels start with a coarse pass that narrows them to what the
    /// images hold (each epipolar tile is given the whole scene's height range). Measured 2026-11-23 with
    /// 64 instead of 160 (ranges of 64–80 px were not narrowed at all): synthetic pairs 2048² −11 % CPU
    /// (paired runs), 4096² 3.13 → 2.75 and 8192² 3.40 → 2.56 CPU-s per input Mpx (scene-scale bench),
    /// NMAD against the truth unchanged; Middlebury Cones 5.32 → 5.26 % bad-1.0.
    public var coarseToFineLabels = 64
    /// Most one-pixel labels of the coarse pass: it runs at the first pyramid level (at least 1) where the
    /// range fits.
    public var coarsePassLabels = 80
    /// Textureless threshold: windows whose standard deviation is below this share of the image's are
    /// not correlated.
    public var minimumRelativeContrast: Float = 0.01
    /// Take the best of the correlation windows shifted by ± half a window (limits edge fattening). Used
    /// when `supportWeights` is nil, and by the coarse pass.
    public var shiftableWindows = true
    /// An alternative data term, off by default (`dsmopt match --support-weights`): the ZNCC over support weights
    /// that follow both images (`SupportWeights`) instead of the `parameters.window` square (shiftable). With
    /// it, the left/right check compares the regularised labels (the sub-pixel step, whose 9×9 window does
    /// fatten, may move a match towards a foreground edge) and the large-jump penalty is the same across image
    /// edges (the supports already keep to their side of an edge). Measured 2026-11-24 at γ 0.45 σ (Benchmarks/
    /// DSM-QUALITY.md, "Marseille triplet and Middlebury Cones"): better NMAD, completeness and synthetic wall
    /// sharpness, but more cells off by > 5 m against CARS's and (Marseille) S2P's DSMs and ~35 % more CPU —
    /// not the default (Marseille's added blunders lie in deep shadows where neither pair nor S2P is confirmed;
    /// README, "DSM quality"; the log in Benchmarks/DSM-QUALITY.md).
    public var supportWeights: SupportWeights? = nil
    /// Fill left/right-check failures: occlusions with the background (second-lowest disparity found
    /// along 8 directions), mismatches and speckles with the median. Filled pixels keep no score and are flagged in
    /// the status layer; decorrelated pixels are never filled. Off by default.
    public var fillInvalid = false
    /// σ, in pixels, of the Gaussian-weighted window of the sub-pixel refinement (`RefinementWindow`).
    /// Measured on the whole La Réunion pair against S2P (2026-11-22): a flat 5×5 window left 0.092 m of
    /// high-frequency noise in the DSM, σ = 2 (9×9) 0.056 m with a lower NMAD (0.350 against 0.370 m);
    /// σ = 2.5 smoothed more than it helped (NMAD 0.355 m). 0 gives a flat window of the correlation size.
    public var subpixelSigma: Float = 2
    /// Refine again with the right window sheared by the disparity's local gradient (`DSMFilter.localSlopes` of
    /// the refined map over the window's radius: minmod, so flat beside a depth edge), where it reaches
    /// 0.01 px per px. A window assumes a fronto-parallel surface: on a slant its estimate is the
    /// texture-weighted mean of the disparities it covers, off by a texture-dependent scatter ∝ the gradient.
    /// Measured 2026-11-23 on rectified ramps without noise (`dsmopt match`, 0.1 px per px): disparity NMAD
    /// 0.074 → 0.033 px; whole La Réunion pair against S2P: aligned NMAD 0.2992 → 0.2904 m, CPU +20 % (8.07 →
    /// 9.71 CPU-s); `dsmopt synth` B/H 0.25 without noise 0.0392 → 0.0248 m. The shear is read by linear
    /// interpolation between the label's columns, the same offsets for every label (no label favoured).
    public var shearedRefinement = true
    /// Refine again, where the refinement window holds a second surface (`surfaceMask`: the disparities'
    /// residuals from the pixel's plane — its local slope, as `shearedRefinement` reads it — split by a gap
    /// wider than `surfaceGap`), over the slots on the pixel's own surface only: beside a depth edge the
    /// centred window straddles the other surface and pulls the peak towards it. Measured (2026-11-25):
    /// Middlebury Cones raw bad-1.0 5.17 → 5.09 % (errors of 1–1.25 px 0.38 → 0.33 %); with `supportWeights` γ
    /// 0.3, regularisation 0.15, jump ratio 6.67 and 3 rounds of `occlusionRevalidationRounds` 4.03 → 3.94 %;
    /// `dsmopt synth --buildings 40 --noise 15` at B/H 0.25, NMAD within 2 m of walls 2.58 → 2.45 m, roofs
    /// 1.283 → 1.276 m (their completeness 0.978 → 0.965); whole La Réunion pair against S2P aligned NMAD 0.2880 →
    /// 0.2881 m, RMSE 0.507 → 0.505 m, > 5 m 421 → 387, within 1 m 96.34 % both, against CARS RMSE 0.522 →
    /// 0.529 m, > 5 m 1,023 → 1,092; Marseille (ROI of the test suite) NMAD 0.4579 → 0.4593 m, RMSE 0.666 →
    /// 0.670 m; CPU +14 %. A first form, which left out every slot more than 1 px off the plane and every
    /// left/right failure, gave Cones 5.08 % but La Réunion within 1 m 96.06 %, aligned NMAD 0.2904 m: on
    /// natural relief those slots are mostly the matched map's own scatter. Off by default (`dsmopt match
    /// --surface-refinement`).
    public var surfaceRefinement = false
    /// σ, in pixels, of the wider window a match is refined with again where the image's texture is coarser
    /// than `subpixelSigma`'s window resolves (`wideRefinementCurvature`) and the surface it covers is a plane
    /// (`wideRefinementPlaneTolerance`). ZNCC discards a window's mean and contrast, and on a texture whose
    /// features span several pixels a small window holds little more than a ramp, which shifting changes
    /// mostly in mean: the correlation peak is flat and image noise moves its vertex. Measured (2026-11-24) on
    /// rectified pairs of Gaussian-smoothed noise with 15 DN of image noise: texture correlation length 2 px
    /// NMAD 0.030 px, 4 px 0.085 px (an estimator limited by the noise alone: 0.024 and 0.047 px). Applying
    /// σ = 3 / 4 / 5 where the peak is flat took `dsmopt synth --buildings 40 --noise 15` at B/H 0.25 from 0.105
    /// to 0.091 / 0.085 / 0.081 m; σ = 4 everywhere smoothed the La Réunion pair away from S2P (aligned NMAD
    /// 0.2904 → 0.357 m), hence the curvature test. Values not above `subpixelSigma` disable it.
    public var wideRefinementSigma: Float = 4
    /// Correlation peaks flatter than this (curvature −∂²ZNCC/∂d², per px², of the `subpixelSigma` window) are
    /// refined again with the wide window: a texture whose correlation length exceeds about 2 px (a peak
    /// ZNCC ≈ exp(−d² / 4ℓ²) has curvature 1 / 2ℓ²). Medians measured: `dsmopt synth` scenes 0.15, the La
    /// Réunion pair 0.35, Middlebury Cones 0.45; 0.125 takes half the synthetic scene's matches and a tenth of
    /// La Réunion's. At 0.25 the synthetic scene gave 0.074 m but La Réunion's aligned NMAD 0.2913 m.
    public var wideRefinementCurvature = 0.125
    /// The wide window is used only where the matched disparities it covers lie within this many pixels of
    /// the plane through the match (its local slope, `DSMFilter.localSlopes`): it must not straddle a depth
    /// edge. Without the test Middlebury Cones went from 5.16 to 5.23 % bad-1.0 (the window reached across
    /// the cones' edges); with 1 px (the left/right tolerance) 5.17 %.
    public var wideRefinementPlaneTolerance: Float = 1
    /// Weight of the intensity term added to the correlation costs before the regularisation: the 3×3 mean
    /// of |L − R| (normalised images) truncated at one standard deviation, times this weight, in the units
    /// of 1 − ZNCC. The 5×5 correlation alone cannot tell apart the disparities its window straddles at a
    /// depth edge; the pixel-scale term can. Measured (2026-11-23) on Middlebury Cones (raw bad-1.0):
    /// 5.96 % without, 5.32 % at 0.3 (5.31 % in a first, slower form), 5.34 % at 0.5 (a pixel-wise term at
    /// 0.3: 5.51 %, a 5×5 census term: 5.77 %); on the whole La Réunion pair against S2P, completeness
    /// 0.975 → 0.988. 0 disables it.
    public var differenceWeight: Float = 0.3
    /// Connected regions of valid disparities (4-neighbours within `speckleStep` px of each other) smaller
    /// than this many pixels are removed as speckles: islands of wrong matches at occlusion borders, on
    /// repetitive texture and in shadows, which the left/right check lets through when both views agree on
    /// the same wrong match. On the La Réunion pair they made every cell off by more than 20 m (1,001 of
    /// them before the filter, 0 with 100 px). 0 disables the filter.
    public var speckleSize = 100
    public var speckleStep: Float = 1
    /// Rounds of re-validation of left/right-check failures the right view calls occluded (its winner there is
    /// closer): such a pixel keeps its own match when that continues, within the left/right tolerance, the
    /// disparity of a valid 8-neighbour in a region the speckle filter keeps (each round adds the pixels next
    /// to the previous round's). The right view's winners are read from the left view's aggregated costs, whose
    /// foreground spreads a pixel or two over the background beside a depth edge, and the check then rejects
    /// correct background matches there. Nothing is interpolated: a re-validated pixel carries its own match.
    /// Measured (2026-11-25): Middlebury Cones raw bad-1.0 5.17 → 4.26 % with 3 rounds (4.43 % with 1; with
    /// `supportWeights` γ 0.3, regularisation 0.15, jump ratio 6.67: 4.59 → 4.03 %); but on the whole La Réunion
    /// pair against S2P RMSE 0.507 → 0.541 m and cells off by > 5 m 421 → 616 (1 round: 0.527 m, 559): 4 % of
    /// the cells it adds are off by > 5 m, three in four too high, against 0.09 % elsewhere. Off by default
    /// (`dsmopt match --revalidate-occlusions N`); 0 disables it.
    public var occlusionRevalidationRounds = 0
    /// Cost-volume buffers reused by the strips and the epipolar tiles this matcher (and its copies) match:
    /// three per strip in flight (its costs, the intensity term, and their aggregation).
    let scratch = BufferPool(limit: 3)

    public init(parameters: MatchingParameters = .defaults) { self.parameters = parameters }

    public func match(left: GrayImage, right: GrayImage, minDisparity: Double, maxDisparity: Double) throws -> DisparityMap {
        try matchWithReport(left: left, right: right, minDisparity: minDisparity, maxDisparity: maxDisparity).map
    }

    public func matchWithReport(left: GrayImage, right: GrayImage, minDisparity: Double,
                                maxDisparity: Double) throws -> (map: DisparityMap, report: MatchingReport) {
        let p = try parameters.validated()
        guard minDisparity <= maxDisparity, minDisparity.isFinite, maxDisparity.isFinite else {
            throw MatchingError.invalidDisparityRange(min: minDisparity, max: maxDisparity)
        }
        guard left.height == right.height else {
            throw MatchingError.sizeMismatch("left has \(left.height) rows, right \(right.height)")
        }
        guard left.width > p.window, left.height > p.window, right.width > p.window else {
            throw MatchingError.sizeMismatch("images smaller than the \(p.window)×\(p.window) window")
        }
        // Only disparities that put a left pixel on the right image can match: left column x meets right column
        // x − d, so d lies in [−(right width − 1), left width − 1]. A range beyond asks for a cost volume of
        // labels that cannot match (a range of ±1e9 px asked for 644 GB).
        let possible = Double(-(right.width - 1))...Double(left.width - 1)
        guard minDisparity <= possible.upperBound, maxDisparity >= possible.lowerBound else {
            throw MatchingError.disparityRangeOutsideImages(min: minDisparity, max: maxDisparity, possible: possible)
        }
        // Clamped on the requested range's label grid, so that the labels searched are a subset of its labels.
        let lo = minDisparity < possible.lowerBound
            ? minDisparity + ((possible.lowerBound - minDisparity) / p.precision).rounded(.down) * p.precision : minDisparity
        let hi = min(maxDisparity, possible.upperBound)
        let l = normalised(left), r = normalised(right)
        var report = MatchingReport()
        let range = try searchRange(left: l.image, right: r.image, min: lo, max: hi, parameters: p, report: &report)
        report.searchedRange = range
        let labels = DisparityLabels(minimum: range.lowerBound, maximum: range.upperBound, step: p.precision)
        var map = matchStrips(left: l, right: r, labels: labels, parameters: p, report: &report)
        for i in 0..<map.disparity.count where !left.pixels[i].isFinite {
            map.disparity[i] = .nan; map.score[i] = .nan; map.uncertainty[i] = .nan; map.status[i] = MatchStatus.outside.rawValue
        }
        if speckleSize > 0 { map.removeSpeckles(smallerThan: speckleSize, step: speckleStep) }
        if fillInvalid { map.fillLeftRightFailures() }
        return (map, report)
    }

    /// Coarse-to-fine narrowing of the search: match a pyramid level where the range has at most
    /// `coarsePassLabels` one-pixel labels, then keep the robust range (1st to 99th percentile) of what it
    /// found, widened by the Z uncertainty (a share of the full range) or two coarse pixels.
    func searchRange(left: GrayImage, right: GrayImage, min lo: Double, max hi: Double,
                     parameters p: MatchingParameters, report: inout MatchingReport) throws -> ClosedRange<Double> {
        let fullLabels = (hi - lo) / p.precision + 1
        guard fullLabels > Double(coarseToFineLabels), left.width >= 64, left.height >= 64 else { return lo...hi }
        var level = 0
        var cl = left, cr = right
        while level == 0 || (hi - lo) / pow(2, Double(level)) > Double(coarsePassLabels), cl.width >= 64, cl.height >= 64 {
            cl = cl.downsampled(); cr = cr.downsampled(); level += 1
        }
        report.pyramidLevels = level
        let f = pow(2, Double(level))
        var coarse = p
        coarse.precision = 1
        var coarseMatcher = self
        coarseMatcher.parameters = coarse
        // The coarse pass only bounds the search (quantiles of its disparities, plus a margin): the intensity
        // term's sharper edges do not change them.
        coarseMatcher.differenceWeight = 0
        coarseMatcher.supportWeights = nil
        let cLabels = DisparityLabels(minimum: (lo / f).rounded(.down), maximum: (hi / f).rounded(.up), step: 1)
        var sub = MatchingReport()
        let map = coarseMatcher.matchStrips(left: normalised(cl), right: normalised(cr), labels: cLabels, parameters: coarse, report: &sub)
        report.cells += sub.cells
        let valid = map.disparity.filter { !$0.isNaN }.sorted()
        guard valid.count >= max(16, map.disparity.count / 20) else { return lo...hi }
        let q1 = Double(valid[valid.count / 100]) * f, q99 = Double(valid[valid.count * 99 / 100]) * f
        let margin = max(2 * f, p.zUncertainty * (hi - lo))
        // Bounds on the full range's label grid: the labels searched are a subset of the full range's (a grid
        // shifted by a fraction of a step moved 478 Cones pixels by more than 0.5 px, bad-1.0 5.32 → 5.47 %).
        let step = p.precision
        let a = max(lo, lo + ((q1 - margin - lo) / step).rounded(.down) * step)
        let b = min(hi, lo + ((q99 + margin - lo) / step).rounded(.up) * step)
        return a <= b ? a...b : lo...hi
    }

    /// Images scaled to zero mean and unit variance over their valid pixels (ZNCC is invariant to it; Float
    /// sums stay accurate). No-data (NaN) pixels become 0, and a mask (1 = no-data) is returned when there
    /// are any: windows touching no-data are not correlated.
    func normalised(_ img: GrayImage) -> (image: GrayImage, noData: GrayImage?) {
        var s = 0.0, s2 = 0.0, n = 0.0
        for v in img.pixels where v.isFinite { let d = Double(v); s += d; s2 += d * d; n += 1 }
        let m = n > 0 ? s / n : 0
        let std = n > 0 ? max(0, s2 / n - m * m).squareRoot() : 1
        let mf = Float(m), inv = Float(std > 0 ? 1 / std : 1)
        let out = GrayImage(width: img.width, height: img.height,
                            pixels: img.pixels.map { $0.isFinite ? ($0 - mf) * inv : 0 }, scale: img.scale)
        guard Int(n) < img.pixels.count else { return (out, nil) }
        return (out, GrayImage(width: img.width, height: img.height, pixels: img.pixels.map { $0.isFinite ? 0 : 1 }, scale: img.scale))
    }

    func matchStrips(left lm: (image: GrayImage, noData: GrayImage?), right rm: (image: GrayImage, noData: GrayImage?),
                     labels: DisparityLabels, parameters p: MatchingParameters, report: inout MatchingReport) -> DisparityMap {
        let left = lm.image, right = rm.image
        let h = left.height
        let strips = max(1, min((h + stripRows - 1) / stripRows, h / 16))
        let rowsPerStrip = (h + strips - 1) / strips
        let results = StripResults(count: strips)
        let minimumStd = minimumRelativeContrast  // images are normalised to unit variance
        let margin = stripMargin
        let shiftableWindows = self.shiftableWindows
        let pool = scratch
        pool.setLimit(3 * max(1, min(threads, strips)))
        let differenceWeight = self.differenceWeight
        let support = self.supportWeights
        // DSMOPT_PROFILE=1 prints the time of each phase of each strip on stderr.
        let profile = ProcessInfo.processInfo.environment["DSMOPT_PROFILE"] != nil
        let matchStrip: @Sendable (Int) -> Void = { s in
            let y0 = s * rowsPerStrip, y1 = min(h, y0 + rowsPerStrip)
            guard y0 < y1 else { return }
            let a = max(0, y0 - margin), b = min(h, y1 + margin)
            let l = left.crop(x: 0, y: a, width: left.width, height: b - a)
            let r = right.crop(x: 0, y: a, width: right.width, height: b - a)
            let ln = lm.noData?.crop(x: 0, y: a, width: left.width, height: b - a)
            let rn = rm.noData?.crop(x: 0, y: a, width: right.width, height: b - a)
            let t0 = DispatchTime.now().uptimeNanoseconds
            var volume = CostVolume.zncc(left: l, right: r, leftNoData: ln, rightNoData: rn, labels: labels, window: p.window,
                                         decorrelationThreshold: p.decorrelationThreshold, minimumStd: minimumStd,
                                         shiftable: support == nil && shiftableWindows, differenceWeight: differenceWeight,
                                         correlate: support == nil, pool: pool)
            let t1 = DispatchTime.now().uptimeNanoseconds
            if let support {
                volume.applySupportWeightedCorrelation(support, leftNoData: ln, decorrelationThreshold: p.decorrelationThreshold,
                                                       minimumStd: minimumStd)
            } else if shiftableWindows {
                volume.applyVerticalShiftableWindows(offset: p.window / 2)
            }
            var costs = volume.regularisationCosts()
            let t2 = DispatchTime.now().uptimeNanoseconds
            var total = aggregate(volume, costs: costs, guide: l.pixels, penalties: Penalties(parameters: p, edgeAware: support == nil), pool: pool)
            if differenceWeight > 0 { pool.give(&costs) }
            let t3 = DispatchTime.now().uptimeNanoseconds
            let map = select(volume, total, rightWidth: r.width, parameters: p)
            let t4 = DispatchTime.now().uptimeNanoseconds
            if profile {
                FileHandle.standardError.write(Data(String(format: "strip %d: cost %.3f s, shift %.3f s, sgm %.3f s, select %.3f s\n", s,
                             Double(t1 - t0) * 1e-9, Double(t2 - t1) * 1e-9, Double(t3 - t2) * 1e-9, Double(t4 - t3) * 1e-9).utf8))
            }
            results.store(s, rows: y0..<y1, offset: y0 - a, map: map, cells: l.width * l.height * labels.count)
            pool.give(&volume.data)
            pool.give(&total)
        }
        // One strip's cost volume per thread: `threads` bounds the memory as well as the parallelism.
        if threads <= 1 || strips == 1 {
            for s in 0..<strips { matchStrip(s) }
        } else {
            let cursor = StripCursor(count: strips)
            DispatchQueue.concurrentPerform(iterations: min(threads, strips)) { _ in
                while let s = cursor.next() { matchStrip(s) }
            }
        }
        report.cells += results.cells
        return results.merged(width: left.width, height: h)
    }

    /// The standard deviation (pixels) of a sub-pixel disparity from its correlation peak: ZNCC `peak` ρ,
    /// `curvature` κ = −∂²ZNCC/∂d² (per px²), over a window of N effective pixels ((Σw)²/Σw²):
    /// σ_d = c·√((1 − ρ) / (N·κ)). The share of the signal the window does not explain (1 − ρ), averaged over
    /// N pixels, is the noise on the correlation curve; a sharp peak (large κ) turns it into a small shift of
    /// the vertex. Flat peaks and poor correlations give large values. c = 2 is calibrated: without it the
    /// NMAD of (height error ÷ σ) of the matched heights was 2.16 and 1.95 against the truth of
    /// `dsmopt synth --noise 15` scenes at B/H 0.25 and 0.08, and 1.95 against S2P on La Réunion.
    static let uncertaintyCalibration = 2.0

    static func disparityUncertainty(peak: Float, curvature: Double, effectivePixels: Double) -> Float {
        guard curvature > 0, effectivePixels > 0 else { return .nan }
        return Float(uncertaintyCalibration * ((1 - Double(min(peak, 1))) / (effectivePixels * curvature)).squareRoot())
    }

    /// Winner-takes-all on the aggregated costs, sub-pixel refinement, left/right check, decorrelation.
    func select(_ c: CostVolume, _ s: [Int16], rightWidth wr: Int, parameters p: MatchingParameters) -> DisparityMap {
        let w = c.width, h = c.height, kp = c.paddedLabels, n = c.labels.count
        var map = DisparityMap(width: w, height: h)
        let refinement = RefinementWindow(sigma: subpixelSigma, minimumRadius: p.window / 2)
        let checkLabels = supportWeights != nil
        var best = [Int](repeating: 0, count: w * h)
        var rightBest = [Int](repeating: -1, count: wr)
        // Integer column offset of each label in the right view: xr = x − round(d_k).
        let offsets = (0..<n).map { Int(c.labels.disparity($0).rounded()) }
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: RefinementProbe.scratchCount(refinement))
        defer { scratch.deallocate() }
        var probe = RefinementProbe(volume: c, window: refinement, scratch: scratch)
        let wide = wideRefinementSigma > subpixelSigma ? RefinementWindow(sigma: wideRefinementSigma, minimumRadius: p.window / 2) : nil
        /// Valid matches whose correlation peak was flatter than `wideRefinementCurvature`.
        var flatPeaks: [Int] = []
        /// Left/right-check failures called occluded, with their own match (`occlusionRevalidationRounds`).
        struct Candidate { var index: Int; var disparity: Float; var uncertainty: Float; var score: Float; var flat: Bool }
        var revalidation: [Candidate] = []
        /// Sub-pixel: parabola through the centred-window ZNCC at the winner and its two neighbouring labels
        /// (the aggregated costs carry the regularisation's bias). The correlation peak may sit one label
        /// beside the regularised winner: climb to it first. nil where the scores are missing or flat. Returns
        /// the disparity, its uncertainty and the peak's curvature (per px²; NaN where the peak has none).
        func refine(_ probe: inout RefinementProbe, x: Int, y: Int, around k: Int, shear: (Float, Float)? = nil,
                    mask: [Bool]? = nil) -> (Double, Float, Double)? {
            var kc = k
            probe.move(x: x, y: y, around: k, shear: shear, mask: mask)
            for _ in 0..<3 {
                let (sa, sb, se) = probe.scores(around: kc)
                guard let a = sa, let b = sb, let e = se else { return nil }
                if a > b, a >= e, abs(kc - 1 - k) <= 1 { kc -= 1; continue }
                if e > b, e > a, abs(kc + 1 - k) <= 1 { kc += 1; continue }
                let den = Double(a - 2 * b + e)
                var d = c.labels.disparity(kc)
                guard den < 0 else { return (d, .nan, .nan) }
                d += max(-0.5, min(0.5, 0.5 * Double(a - e) / den)) * c.labels.step
                let curvature = -den / (c.labels.step * c.labels.step)
                return (d, Self.disparityUncertainty(peak: b, curvature: curvature, effectivePixels: probe.effectivePixels), curvature)
            }
            return nil
        }
        s.withUnsafeBufferPointer { S in
            for y in 0..<h {
                for x in 0..<w {
                    let o = S.baseAddress! + (y * w + x) * kp
                    // Vectorised minimum, then the first label that reaches it.
                    var mv = SIMD16<Int16>(repeating: .max)
                    for q in stride(from: 0, to: kp, by: 16) { mv = lanesMin(mv, UnsafeRawPointer(o + q).loadUnaligned(as: SIMD16<Int16>.self)) }
                    let m = mv.min()
                    // The first 16-label chunk holding it, then the lane.
                    let target = SIMD16<Int16>(repeating: m)
                    var q = 0
                    while !any(UnsafeRawPointer(o + q).loadUnaligned(as: SIMD16<Int16>.self) .== target) { q += 16 }
                    var k0 = q
                    while o[k0] != m { k0 += 1 }
                    best[y * w + x] = min(k0, n - 1)
                }
                // Right view's winners, column by column: the candidates of right column xr are the labels k
                // whose left column xr + offset_k lies in the row. The offsets grow with k, so these are one run
                // kLo ..< kHi, moving forward as xr goes down the row, visited in the order of a scan over
                // (x, k) — the same first minimum wins — with the running minimum kept in registers.
                rightBest.withUnsafeMutableBufferPointer { RB in
                offsets.withUnsafeBufferPointer { off in
                    let row = S.baseAddress! + y * w * kp
                    var kLo = 0, kHi = 0
                    for xr in stride(from: wr - 1, through: 0, by: -1) {
                        while kLo < n, xr + off[kLo] < 0 { kLo += 1 }
                        while kHi < n, xr + off[kHi] < w { kHi += 1 }
                        var bestCost = Int16.max, bestK = -1
                        var k = kLo
                        while k < kHi {
                            let v = row[(xr + off[k]) * kp + k]
                            if v < bestCost { bestCost = v; bestK = k }
                            k += 1
                        }
                        RB[xr] = bestK
                    }
                }}
                for x in 0..<w {
                    let k = best[y * w + x]
                    let o = (y * w + x) * kp
                    let cost = c.data[o + k]
                    if cost >= c.defaultCost { map.status[y * w + x] = MatchStatus.decorrelated.rawValue; continue }
                    var d = c.labels.disparity(k)
                    var sigma = Float.nan, curvature = Double.nan
                    if let refined = refine(&probe, x: x, y: y, around: k) { (d, sigma, curvature) = refined }
                    // Left/right consistency, of the regularised label or of the refined disparity (`supportWeights`).
                    let checked = checkLabels ? c.labels.disparity(k) : d
                    let xr = Int((Double(x) - checked).rounded())
                    guard Double(x) - checked >= -0.5, xr < wr, xr >= 0 else { continue }
                    let kr = rightBest[xr]
                    guard kr >= 0, abs(c.labels.disparity(kr) - checked) <= p.leftRightTolerance else {
                        let closer = kr >= 0 && c.labels.disparity(kr) > checked
                        map.status[y * w + x] = (closer ? MatchStatus.occluded : MatchStatus.mismatch).rawValue
                        if closer, occlusionRevalidationRounds > 0 {
                            revalidation.append(Candidate(index: y * w + x, disparity: Float(d), uncertainty: sigma,
                                                          score: 1 - Float(cost) / costUnitsPerZNCC, flat: curvature < wideRefinementCurvature))
                        }
                        continue
                    }
                    map.status[y * w + x] = MatchStatus.valid.rawValue
                    if wide != nil, curvature < wideRefinementCurvature { flatPeaks.append(y * w + x) }
                    map.disparity[y * w + x] = Float(d)
                    map.uncertainty[y * w + x] = sigma
                    map.score[y * w + x] = 1 - Float(cost) / costUnitsPerZNCC
                }
            }
        }
        // Re-validation of occlusion-check failures that continue a valid neighbour's surface; each round reads
        // the map as the previous round left it. Only regions the speckle filter keeps may grow (`anchored`): a
        // wrong island must not grow past the filter's size.
        var anchored: [Bool] = []
        if !revalidation.isEmpty {
            anchored = [Bool](repeating: false, count: w * h)
            map.forEachSurface(step: speckleStep) { region in
                if region.count >= speckleSize { for i in region { anchored[i] = true } }
            }
        }
        let tolerance = Float(p.leftRightTolerance)
        for _ in 0..<occlusionRevalidationRounds where !revalidation.isEmpty {
            var kept: [Candidate] = [], added: [Candidate] = []
            for candidate in revalidation {
                let x = candidate.index % w, y = candidate.index / w
                var continues = false
                for yy in max(0, y - 1)...min(h - 1, y + 1) where !continues {
                    for xx in max(0, x - 1)...min(w - 1, x + 1) where !(xx == x && yy == y) {
                        let v = map.disparity[yy * w + xx]
                        if anchored[yy * w + xx], abs(v - candidate.disparity) <= tolerance { continues = true; break }
                    }
                }
                if continues { added.append(candidate) } else { kept.append(candidate) }
            }
            if added.isEmpty { break }
            for candidate in added {
                let i = candidate.index
                map.status[i] = MatchStatus.valid.rawValue
                anchored[i] = true
                map.disparity[i] = candidate.disparity
                map.uncertainty[i] = candidate.uncertainty
                map.score[i] = candidate.score
                if wide != nil, candidate.flat { flatPeaks.append(i) }
            }
            revalidation = kept
        }
        // Sheared refinement: the disparity's gradient from the map just made, then the peak again with the
        // right window sheared by it (see `shearedRefinement`) where it reaches `shearThreshold`.
        let shearThreshold: Float = 0.01
        func shear(_ gx: Float, _ gy: Float) -> (Float, Float)? {
            abs(gx) >= shearThreshold || abs(gy) >= shearThreshold ? (gx, gy) : nil
        }
        // Surface refinement: the window keeps only the slots on the pixel's own surface (see `surfaceRefinement`).
        if shearedRefinement || surfaceRefinement {
            // The map holds disparities at its valid pixels only (NaN elsewhere).
            let matched = map.disparity
            let gradient = DSMFilter.localSlopes(matched, width: w, height: h, step: refinement.radius)
            let r = refinement.radius
            var mask = [Bool](repeating: true, count: (2 * r + 1) * (2 * r + 1))
            var residuals = [Float](repeating: .nan, count: mask.count)
            for y in 0..<h {
                for x in 0..<w where !matched[y * w + x].isNaN {
                    let i = y * w + x
                    let sheared = shearedRefinement ? shear(gradient.east[i], gradient.south[i]) : nil
                    let onePlane = !surfaceRefinement || Self.surfaceMask(matched, width: w, height: h, x: x, y: y, radius: r,
                                                                          slope: (gradient.east[i], gradient.south[i]),
                                                                          into: &mask, residuals: &residuals)
                    guard sheared != nil || !onePlane else { continue }
                    if let (d, sigma, _) = refine(&probe, x: x, y: y, around: best[i], shear: sheared, mask: onePlane ? nil : mask) {
                        map.disparity[i] = Float(d)
                        map.uncertainty[i] = sigma
                    }
                }
            }
        }
        // Wide refinement where the texture is coarse (flat peaks) and the surface under the wide window is a
        // plane: the peak again, around the same label, with the wider window (sheared as above).
        if let wide, !flatPeaks.isEmpty {
            let wideScratch = UnsafeMutablePointer<Float>.allocate(capacity: RefinementProbe.scratchCount(wide))
            defer { wideScratch.deallocate() }
            var wideProbe = RefinementProbe(volume: c, window: wide, scratch: wideScratch)
            let gradient = DSMFilter.localSlopes(map.disparity, width: w, height: h, step: refinement.radius)
            let matched = map.disparity
            let r = wide.radius
            for i in flatPeaks {
                let x = i % w, y = i / w
                // Both windows inside their images: replicated edges weigh more in a wide window (on the
                // right image's last column they moved a match by more than half a label).
                let xr = Int((Double(x) - Double(matched[i])).rounded())
                guard x >= r, x + r < w, y >= r, y + r < h, xr >= r, xr + r < wr else { continue }
                let gx = gradient.east[i], gy = gradient.south[i]
                guard Self.isPlane(matched, width: w, height: h, x: x, y: y, radius: r, slope: (gx, gy),
                                   tolerance: wideRefinementPlaneTolerance) else { continue }
                if let (d, sigma, _) = refine(&wideProbe, x: x, y: y, around: best[i], shear: shearedRefinement ? shear(gx, gy) : nil) {
                    map.disparity[i] = Float(d)
                    map.uncertainty[i] = sigma
                }
            }
        }
        return map
    }

    /// The widest gap, in pixels of disparity, between the sorted plane residuals of one surface (see
    /// `surfaceMask`): image noise scatters a surface's residuals without gaps this wide, a depth step leaves one.
    static let surfaceGap: Float = 0.5

    /// Flags, row by row over the (2r + 1)² window centred on (x, y) (edges replicated, as the refinement reads
    /// the images), the slots on the pixel's own surface: the disparities' residuals from the plane through
    /// the disparity at (x, y) with slope (east, south) px per px, sorted, form runs without a gap wider than
    /// `surfaceGap`; the run holding the centre's own residual (0) is the pixel's surface. Slots without a
    /// disparity (left/right failures) stay in: their image is still the pixel's neighbourhood. Returns whether
    /// it flagged every slot. `residuals` (one per slot) is the caller's scratch.
    static func surfaceMask(_ d: [Float], width w: Int, height h: Int, x: Int, y: Int, radius r: Int, slope: (Float, Float),
                            into mask: inout [Bool], residuals: inout [Float]) -> Bool {
        let d0 = d[y * w + x]
        var q = 0, lowest: Float = 0, highest: Float = 0
        for dy in -r...r {
            let row = min(max(y + dy, 0), h - 1) * w, rowOffset = d0 + slope.1 * Float(dy)
            for dx in -r...r {
                let e = d[row + min(max(x + dx, 0), w - 1)] - rowOffset - slope.0 * Float(dx)
                residuals[q] = e
                if !e.isNaN { lowest = min(lowest, e); highest = max(highest, e) }
                q += 1
            }
        }
        // Spread no wider than one gap: a single run (the common case).
        guard highest - lowest > surfaceGap else { return true }
        // The run holding the centre's residual (0), grown by the farthest residual within one gap of either
        // end until none is left (a few passes: the sorted order is not needed).
        var a: Float = 0, b: Float = 0
        while true {
            var na = a, nb = b
            for e in residuals {
                if e > b, e <= b + surfaceGap { nb = max(nb, e) }
                if e < a, e >= a - surfaceGap { na = min(na, e) }
            }
            if na == a, nb == b { break }
            a = na; b = nb
        }
        guard a > lowest || b < highest else { return true }
        var all = true
        for q in 0..<mask.count {
            let e = residuals[q]
            let on = e.isNaN || (e >= a && e <= b)
            mask[q] = on; all = all && on
        }
        return all
    }

    /// Whether the valid disparities within `radius` of (x, y) lie within `tolerance` px of the plane through
    /// the disparity at (x, y) with slope (east, south) px per px.
    static func isPlane(_ d: [Float], width w: Int, height h: Int, x: Int, y: Int, radius r: Int,
                        slope: (Float, Float), tolerance: Float) -> Bool {
        let d0 = d[y * w + x]
        for yy in max(0, y - r)...min(h - 1, y + r) {
            let rowOffset = d0 + slope.1 * Float(yy - y)
            for xx in max(0, x - r)...min(w - 1, x + r) {
                let v = d[yy * w + xx]
                if !v.isNaN, abs(v - rowOffset - slope.0 * Float(xx - x)) > tolerance { return false }
            }
        }
        return true
    }
}

/// Per-strip results, gathered from concurrent workers.
final class StripResults: @unchecked Sendable {
    private let lock = NSLock()
    private var parts: [(rows: Range<Int>, offset: Int, map: DisparityMap)?]
    private(set) var cells = 0

    init(count: Int) { parts = Array(repeating: nil, count: count) }

    func store(_ i: Int, rows: Range<Int>, offset: Int, map: DisparityMap, cells c: Int) {
        lock.lock(); defer { lock.unlock() }
        parts[i] = (rows, offset, map)
        cells += c
    }

    func merged(width: Int, height: Int) -> DisparityMap {
        var out = DisparityMap(width: width, height: height)
        for case let part? in parts {
            for y in part.rows {
                let src = (y - part.rows.lowerBound + part.offset) * width, dst = y * width
                for x in 0..<width {
                    out.disparity[dst + x] = part.map.disparity[src + x]
                    out.score[dst + x] = part.map.score[src + x]
                    out.status[dst + x] = part.map.status[src + x]
                    out.uncertainty[dst + x] = part.map.uncertainty[src + x]
                }
            }
        }
        return out
    }
}

extension DisparityMap {
    /// Each connected region of valid disparities (4-neighbours within `step` px of each other): the surfaces
    /// the speckle filter measures.
    func forEachSurface(step: Float, _ body: ([Int]) -> Void) {
        let d = disparity
        ConnectedRegions.forEach(width: width, height: height, member: { !d[$0].isNaN }, linked: { abs(d[$0] - d[$1]) <= step }, body)
    }

    /// Removes 4-connected regions of valid disparities, neighbours linked when they differ by at most
    /// `step` px, that hold fewer than `size` pixels (status `speckle`). Returns how many pixels went.
    @discardableResult
    public mutating func removeSpeckles(smallerThan size: Int, step: Float) -> Int {
        var speckles: [Int] = []
        forEachSurface(step: step) { region in
            if region.count < size { speckles += region }
        }
        for c in speckles { disparity[c] = .nan; score[c] = .nan; uncertainty[c] = .nan; status[c] = MatchStatus.speckle.rawValue }
        return speckles.count
    }

    /// Fills occluded and mismatched pixels (speckles count as mismatches) from the valid disparities found
    /// along 8 directions.
    public mutating func fillLeftRightFailures() {
        let directions = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)]
        let original = disparity
        var found: [Float] = []
        for y in 0..<height {
            for x in 0..<width {
                let i = y * width + x
                let st = MatchStatus(rawValue: status[i])
                guard st == .occluded || st == .mismatch || st == .speckle else { continue }
                found.removeAll(keepingCapacity: true)
                for (dx, dy) in directions {
                    var xx = x + dx, yy = y + dy
                    while xx >= 0, xx < width, yy >= 0, yy < height {
                        let v = original[yy * width + xx]
                        if !v.isNaN { found.append(v); break }
                        xx += dx; yy += dy
                    }
                }
                guard !found.isEmpty else { continue }
                found.sort()
                if st == .occluded {
                    disparity[i] = found[min(1, found.count - 1)]
                    status[i] = MatchStatus.filledOcclusion.rawValue
                } else {
                    disparity[i] = found[found.count / 2]
                    status[i] = MatchStatus.filledMismatch.rawValue
                }
            }
        }
    }
}


/// Hands out strip indices to the matcher's threads.
final class StripCursor: @unchecked Sendable {
    private let lock = NSLock()
    private var cursor = 0
    let count: Int
    init(count: Int) { self.count = count }
    func next() -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard cursor < count else { return nil }
        cursor += 1
        return cursor - 1
    }
}
