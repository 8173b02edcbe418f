import Dispatch
import Foundation

/// A left disparity map (Middlebury convention: left column x matches right column x − d) with its
/// quality layer. NaN marks pixels without a valid match.
public struct DisparityMap: Sendable {
    public let width: Int
    public let height: Int
    public var disparity: [Float]
    /// ZNCC of the chosen match (the correlation-score quality layer), NaN where invalid.
    public var score: [Float]

    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
        disparity = [Float](repeating: .nan, count: width * height)
        score = [Float](repeating: .nan, count: width * height)
    }

    public var validCount: Int { disparity.reduce(0) { $0 + ($1.isNaN ? 0 : 1) } }
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
    /// Search ranges wider than this many labels start with a coarse pass.
    public var coarseToFineLabels = 160
    /// Textureless threshold: windows whose standard deviation is below this share of the image's are
    /// not correlated.
    public var minimumRelativeContrast: Float = 0.01
    /// Take the best of the correlation windows shifted by ± half a window (limits edge fattening).
    public var shiftableWindows = true

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
        let l = normalised(left), r = normalised(right)
        var report = MatchingReport()
        let range = try searchRange(left: l, right: r, min: minDisparity, max: maxDisparity, parameters: p, report: &report)
        report.searchedRange = range
        let labels = DisparityLabels(minimum: range.lowerBound, maximum: range.upperBound, step: p.precision)
        let map = matchStrips(left: l, right: r, labels: labels, parameters: p, report: &report)
        return (map, report)
    }

    /// Coarse-to-fine narrowing of the search: match a pyramid level where the range has at most
    /// `coarseToFineLabels` one-pixel labels, then keep the robust range of what it found, widened by
    /// the Z uncertainty.
    func searchRange(left: GrayImage, right: GrayImage, min lo: Double, max hi: Double,
                     parameters p: MatchingParameters, report: inout MatchingReport) throws -> ClosedRange<Double> {
        let fullLabels = (hi - lo) / p.precision + 1
        guard fullLabels > Double(coarseToFineLabels), left.width >= 64, left.height >= 64 else { return lo...hi }
        var level = 0
        var cl = left, cr = right
        while (hi - lo) / pow(2, Double(level)) > Double(coarseToFineLabels) / 2, cl.width >= 64, cl.height >= 64 {
            cl = cl.downsampled(); cr = cr.downsampled(); level += 1
        }
        guard level > 0 else { return lo...hi }
        report.pyramidLevels = level
        let f = pow(2, Double(level))
        var coarse = p
        coarse.precision = 1
        var coarseMatcher = self
        coarseMatcher.parameters = coarse
        let cLabels = DisparityLabels(minimum: (lo / f).rounded(.down), maximum: (hi / f).rounded(.up), step: 1)
        var sub = MatchingReport()
        let map = coarseMatcher.matchStrips(left: normalised(cl), right: normalised(cr), labels: cLabels, parameters: coarse, report: &sub)
        report.cells += sub.cells
        let valid = map.disparity.filter { !$0.isNaN }.sorted()
        guard valid.count >= max(16, map.disparity.count / 20) else { return lo...hi }
        let q1 = Double(valid[valid.count / 100]) * f, q99 = Double(valid[valid.count * 99 / 100]) * f
        let margin = max(2 * f, p.zUncertainty * (hi - lo))
        let a = max(lo, q1 - margin), b = min(hi, q99 + margin)
        return a <= b ? a...b : lo...hi
    }

    /// Images scaled to zero mean and unit variance (ZNCC is invariant to it; Float sums stay accurate).
    func normalised(_ img: GrayImage) -> GrayImage {
        let s = img.statistics
        let m = Float(s.mean), inv = Float(s.std > 0 ? 1 / s.std : 1)
        return GrayImage(width: img.width, height: img.height, pixels: img.pixels.map { ($0 - m) * inv }, scale: img.scale)
    }

    func matchStrips(left: GrayImage, right: GrayImage, labels: DisparityLabels, parameters p: MatchingParameters,
                     report: inout MatchingReport) -> DisparityMap {
        let h = left.height
        let strips = max(1, min((h + stripRows - 1) / stripRows, h / 16))
        let rowsPerStrip = (h + strips - 1) / strips
        let results = StripResults(count: strips)
        let minimumStd = minimumRelativeContrast  // images are normalised to unit variance
        let margin = stripMargin
        let shiftableWindows = self.shiftableWindows
        DispatchQueue.concurrentPerform(iterations: strips) { s in
            let y0 = s * rowsPerStrip, y1 = min(h, y0 + rowsPerStrip)
            guard y0 < y1 else { return }
            let a = max(0, y0 - margin), b = min(h, y1 + margin)
            let l = left.crop(x: 0, y: a, width: left.width, height: b - a)
            let r = right.crop(x: 0, y: a, width: right.width, height: b - a)
            var volume = CostVolume.zncc(left: l, right: r, labels: labels, window: p.window,
                                         decorrelationThreshold: p.decorrelationThreshold, minimumStd: minimumStd)
            if shiftableWindows { volume.applyShiftableWindows(offset: p.window / 2) }
            let total = aggregate(volume, guide: l.pixels, penalties: Penalties(parameters: p))
            let map = select(volume, total, rightWidth: r.width, parameters: p)
            results.store(s, rows: y0..<y1, offset: y0 - a, map: map, cells: l.width * l.height * labels.count)
        }
        report.cells += results.cells
        return results.merged(width: left.width, height: h)
    }

    /// Winner-takes-all on the aggregated costs, sub-pixel refinement, left/right check, decorrelation.
    func select(_ c: CostVolume, _ s: [Int16], rightWidth wr: Int, parameters p: MatchingParameters) -> DisparityMap {
        let w = c.width, h = c.height, kp = c.paddedLabels, n = c.labels.count
        var map = DisparityMap(width: w, height: h)
        var best = [Int](repeating: 0, count: w * h)
        var rightBest = [Int](repeating: -1, count: wr)
        var rightCost = [Int16](repeating: .max, count: wr)
        s.withUnsafeBufferPointer { S in
            for y in 0..<h {
                for x in 0..<w {
                    let o = (y * w + x) * kp
                    var k0 = 0
                    var m = S[o]
                    for k in 1..<n where S[o + k] < m { m = S[o + k]; k0 = k }
                    best[y * w + x] = k0
                }
                // Right view's winners: for right column xr the candidates are left columns round(xr + d_k).
                for i in 0..<wr { rightBest[i] = -1; rightCost[i] = .max }
                for x in 0..<w {
                    let o = (y * w + x) * kp
                    for k in 0..<n {
                        let xr = Int((Double(x) - c.labels.disparity(k)).rounded())
                        guard xr >= 0, xr < wr else { continue }
                        let v = S[o + k]
                        if v < rightCost[xr] { rightCost[xr] = v; rightBest[xr] = k }
                    }
                }
                for x in 0..<w {
                    let k = best[y * w + x]
                    let o = (y * w + x) * kp
                    let cost = c.data[o + k]
                    if cost >= c.defaultCost { continue }  // decorrelated
                    var d = c.labels.disparity(k)
                    if k > 0, k < n - 1 {
                        let a = Double(S[o + k - 1]), b = Double(S[o + k]), e = Double(S[o + k + 1])
                        let den = a - 2 * b + e
                        if den > 0 { d += max(-0.5, min(0.5, 0.5 * (a - e) / den)) * c.labels.step }
                    }
                    let xr = Int((Double(x) - d).rounded())
                    guard Double(x) - d >= -0.5, xr < wr, xr >= 0 else { continue }
                    // Left/right consistency.
                    let kr = rightBest[xr]
                    guard kr >= 0, abs(c.labels.disparity(kr) - d) <= p.leftRightTolerance else { continue }
                    map.disparity[y * w + x] = Float(d)
                    map.score[y * w + x] = 1 - Float(cost) / costUnitsPerZNCC
                }
            }
        }
        return map
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
                }
            }
        }
        return out
    }
}
