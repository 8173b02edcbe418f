import Foundation

/// Costs are stored as Int16 in units of 1/512 of (1 − ZNCC).
public let costUnitsPerZNCC: Float = 512

/// The disparity labels of a search: d_k = minimum + k · step, k = 0 ..< count.
public struct DisparityLabels: Sendable, Equatable {
    public let minimum: Double
    public let step: Double
    public let count: Int

    public init(minimum: Double, maximum: Double, step: Double) {
        self.minimum = minimum
        self.step = step
        count = Int(((maximum - minimum) / step + 1e-9).rounded(.down)) + 1
    }

    @inlinable public func disparity(_ k: Int) -> Double { minimum + Double(k) * step }
    public var maximum: Double { disparity(count - 1) }
}

/// A ZNCC cost volume, laid out [row][column][label] with labels padded to a multiple of 16.
struct CostVolume {
    let width: Int
    let height: Int
    let labels: DisparityLabels
    /// Labels rounded up to a multiple of 16 (padded labels hold `paddingCost`).
    let paddedLabels: Int
    var data: [Int16]
    /// Default cost given to decorrelated cells: (1 − threshold) in cost units.
    let defaultCost: Int16

    static let paddingCost: Int16 = 1023

    @inlinable func index(_ x: Int, _ y: Int) -> Int { (y * width + x) * paddedLabels }
}

/// Clamped (edge-replicating) box sums of a w×h image over a (2r+1)² window, in Double for accuracy.
func boxMeans(_ img: [Float], width: Int, height: Int, radius r: Int) -> [Float] {
    var col = [Double](repeating: 0, count: img.count)
    // Vertical sums with clamped rows.
    for x in 0..<width {
        var s = 0.0
        for dy in -r...r { s += Double(img[min(max(dy, 0), height - 1) * width + x]) }
        col[x] = s
        for y in 1..<max(height, 1) {
            s += Double(img[min(y + r, height - 1) * width + x]) - Double(img[max(y - r - 1, 0) * width + x])
            col[y * width + x] = s
        }
    }
    var out = [Float](repeating: 0, count: img.count)
    let n = Double((2 * r + 1) * (2 * r + 1))
    for y in 0..<height {
        let row = y * width
        var s = 0.0
        for dx in -r...r { s += col[row + min(max(dx, 0), width - 1)] }
        out[row] = Float(s / n)
        for x in 1..<max(width, 1) {
            s += col[row + min(x + r, width - 1)] - col[row + max(x - r - 1, 0)]
            out[row + x] = Float(s / n)
        }
    }
    return out
}

/// Local mean and inverse standard deviation of an image over the correlation window.
struct WindowStatistics {
    let mean: [Float]
    /// 1/σ, or 0 where the window has no texture (σ below `minimumStd`).
    let inverseStd: [Float]

    init(_ img: [Float], width: Int, height: Int, radius: Int, minimumStd: Float) {
        mean = boxMeans(img, width: width, height: height, radius: radius)
        let sq = boxMeans(img.map { $0 * $0 }, width: width, height: height, radius: radius)
        var inv = [Float](repeating: 0, count: img.count)
        for i in 0..<img.count {
            let v = sq[i] - mean[i] * mean[i]
            inv[i] = v > minimumStd * minimumStd ? 1 / v.squareRoot() : 0
        }
        inverseStd = inv
    }
}

extension CostVolume {
    /// Builds the ZNCC cost volume of `left` against `right` for the given labels.
    ///
    /// Both images must be normalised (zero mean, unit variance overall) so that Float running sums keep
    /// their precision. The window product sums Σ L·R(x − d) are computed with running sums along
    /// columns (refreshed every 64 rows to bound drift) and along rows, so the cost per label does not
    /// grow with the window size. A right image shifted by each distinct fractional part of the labels
    /// (bicubic) serves sub-pixel steps.
    static func zncc(left: GrayImage, right: GrayImage, labels: DisparityLabels, window: Int,
                     decorrelationThreshold: Double, minimumStd: Float) -> CostVolume {
        let w = left.width, h = left.height, wr = right.width
        let r = window / 2
        let n = Float(window * window)
        let kp = (labels.count + 15) / 16 * 16
        let defaultCost = Int16((Float(1 - decorrelationThreshold) * costUnitsPerZNCC).rounded())
        var volume = [Int16](repeating: CostVolume.paddingCost, count: w * h * kp)

        // Distinct fractional phases and the shifted right images with their window statistics.
        var phaseIndex: [Int: Int] = [:]
        var phases: [GrayImage] = []
        var labelPhase = [Int](repeating: 0, count: labels.count)
        var labelShift = [Int](repeating: 0, count: labels.count)
        for k in 0..<labels.count {
            let d = labels.disparity(k)
            let whole = d.rounded(.down)
            let frac = d - whole
            let key = Int((frac * 1e6).rounded())
            if phaseIndex[key] == nil {
                phaseIndex[key] = phases.count
                phases.append(right.shiftedHorizontally(by: frac))
            }
            labelPhase[k] = phaseIndex[key]!
            labelShift[k] = Int(whole)
        }
        let leftStats = WindowStatistics(left.pixels, width: w, height: h, radius: r, minimumStd: minimumStd)
        let rightStats = phases.map { WindowStatistics($0.pixels, width: wr, height: h, radius: r, minimumStd: minimumStd) }

        let threshold = Float(decorrelationThreshold)
        var columnSums = [Float](repeating: 0, count: labels.count * w)
        var rowCosts = [Int16](repeating: 0, count: labels.count * w)
        var prefix = [Float](repeating: 0, count: w + 1)

        left.pixels.withUnsafeBufferPointer { L in
        columnSums.withUnsafeMutableBufferPointer { V in
        rowCosts.withUnsafeMutableBufferPointer { RC in
        prefix.withUnsafeMutableBufferPointer { P in
        volume.withUnsafeMutableBufferPointer { out in
            @inline(__always) func product(_ k: Int, _ x: Int, _ y: Int, _ R: UnsafeBufferPointer<Float>) -> Float {
                let yy = min(max(y, 0), h - 1)
                let xl = min(max(x, 0), w - 1)
                let xr = min(max(xl - labelShift[k], 0), wr - 1)
                return L[yy * w + xl] * R[yy * wr + xr]
            }
            for y in 0..<h {
                for k in 0..<labels.count {
                    phases[labelPhase[k]].pixels.withUnsafeBufferPointer { R in
                        let base = k * w
                        if y % 64 == 0 {
                            // Exact refresh of the vertical window sums.
                            for x in 0..<w {
                                var s: Float = 0
                                for dy in -r...r { s += product(k, x, y + dy, R) }
                                V[base + x] = s
                            }
                        } else {
                            for x in 0..<w { V[base + x] += product(k, x, y + r, R) - product(k, x, y - r - 1, R) }
                        }
                        // Horizontal window sums through a prefix sum over clamped columns.
                        P[0] = 0
                        for x in 0..<w { P[x + 1] = P[x] + V[base + x] }
                        let firstCol = V[base], lastCol = V[base + w - 1]
                        let stats = rightStats[labelPhase[k]]
                        let shift = labelShift[k]
                        let d = labels.disparity(k)
                        for x in 0..<w {
                            let lo = x - r, hi = x + r
                            var s = P[min(hi, w - 1) + 1] - P[max(lo, 0)]
                            if lo < 0 { s += Float(-lo) * firstCol }
                            if hi > w - 1 { s += Float(hi - (w - 1)) * lastCol }
                            let xr = x - shift
                            let matchX = Double(x) - d
                            var cost = defaultCost
                            if matchX >= 0, matchX <= Double(wr - 1), xr >= 0, xr < wr {
                                let li = y * w + x, ri = y * wr + xr
                                let invL = leftStats.inverseStd[li], invR = stats.inverseStd[ri]
                                if invL > 0, invR > 0 {
                                    let ncc = (s / n - leftStats.mean[li] * stats.mean[ri]) * invL * invR
                                    if ncc > threshold {
                                        cost = Int16((max(0, 1 - ncc) * costUnitsPerZNCC).rounded())
                                    }
                                }
                            }
                            RC[base + x] = cost
                        }
                    }
                }
                // Transpose the row's [label][column] costs into [column][label].
                let rowBase = y * w * kp
                for x in 0..<w {
                    let o = rowBase + x * kp
                    for k in 0..<labels.count { out[o + k] = RC[k * w + x] }
                }
            }
        }}}}}
        return CostVolume(width: w, height: h, labels: labels, paddedLabels: kp, data: volume, defaultCost: defaultCost)
    }
}

extension CostVolume {
    /// Shiftable windows: each cell takes the best (lowest) cost among the windows offset by
    /// every offset in −offset…offset along x and y, so that a pixel near a depth edge can use a window that does not
    /// straddle it. A separable 3-tap minimum over every label plane, 16 labels at a time.
    mutating func applyShiftableWindows(offset o: Int) {
        guard o > 0 else { return }
        let w = width, h = height, kp = paddedLabels
        var tmp = data
        data.withUnsafeBufferPointer { src in
            tmp.withUnsafeMutableBufferPointer { dst in
                for y in 0..<h {
                    for x in 0..<w {
                        let pd = dst.baseAddress! + (y * w + x) * kp
                        for q in stride(from: 0, to: kp, by: 16) {
                            var v = UnsafeRawPointer(src.baseAddress! + (y * w + x) * kp + q).loadUnaligned(as: SIMD16<Int16>.self)
                            for t in -o...o where t != 0 {
                                let xx = min(max(x + t, 0), w - 1)
                                v = pointwiseMin(v, UnsafeRawPointer(src.baseAddress! + (y * w + xx) * kp + q).loadUnaligned(as: SIMD16<Int16>.self))
                            }
                            UnsafeMutableRawPointer(pd + q).storeBytes(of: v, as: SIMD16<Int16>.self)
                        }
                    }
                }
            }
        }
        tmp.withUnsafeBufferPointer { src in
            data.withUnsafeMutableBufferPointer { dst in
                for y in 0..<h {
                    for x in 0..<w {
                        let pd = dst.baseAddress! + (y * w + x) * kp
                        for q in stride(from: 0, to: kp, by: 16) {
                            var v = UnsafeRawPointer(src.baseAddress! + (y * w + x) * kp + q).loadUnaligned(as: SIMD16<Int16>.self)
                            for t in -o...o where t != 0 {
                                let yy = min(max(y + t, 0), h - 1)
                                v = pointwiseMin(v, UnsafeRawPointer(src.baseAddress! + (yy * w + x) * kp + q).loadUnaligned(as: SIMD16<Int16>.self))
                            }
                            UnsafeMutableRawPointer(pd + q).storeBytes(of: v, as: SIMD16<Int16>.self)
                        }
                    }
                }
            }
        }
    }
}
