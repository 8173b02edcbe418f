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

    /// The left columns whose match at label k lies inside the right image (x − d_k within its columns).
    func matchedColumns(_ k: Int, leftWidth w: Int, rightWidth wr: Int) -> Range<Int> {
        let d = disparity(k)
        let first = max(0, min(w, Int(d.rounded(.up))))
        return first..<max(first, min(w, Int((Double(wr - 1) + d).rounded(.down)) + 1))
    }
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
    /// The normalised left image and the right image shifted by each label's fractional phase.
    let left: GrayImage
    let phases: [GrayImage]
    let labelPhase: [Int]
    let labelShift: [Int]
    let windowRadius: Int
    /// The intensity term of each cell, in cost units, same layout as `data` (empty when its weight is 0):
    /// the weighted 3×3 mean of |L − R| truncated at one standard deviation of the normalised images.
    /// Added to `data` for the regularisation only (`regularisationCosts`): decorrelation, scores and the
    /// sub-pixel step read the correlation alone.
    var difference: [Int16] = []
    /// For a volume built without the correlation (`zncc(correlate: false)`), what another data term needs of
    /// the window statistics: 1/σ of each pixel's window (0 where it has no texture or touches no-data) in the
    /// left image and in each right phase, and the right phases' no-data masks. nil otherwise.
    var windowTexture: WindowTexture?

    struct WindowTexture {
        let left: [Float]
        let right: [[Float]]
        let rightNoData: [[Float]?]
    }

    static let paddingCost: Int16 = 1023

    @inlinable func index(_ x: Int, _ y: Int) -> Int { (y * width + x) * paddedLabels }
}

/// A cost in [0, 2¹⁵) rounded to the nearest cost unit (ties to even), without the trapping Float → Int
/// conversion: adding 1.5 · 2²³ leaves the rounded integer in the low mantissa bits.
@inline(__always) func costUnits(_ c: Float) -> Int16 {
    Int16(truncatingIfNeeded: (c + 12_582_912).bitPattern)
}

@inline(__always) func costUnits(_ c: SIMD8<Float>) -> SIMD8<Int16> {
    SIMD8<Int16>(truncatingIfNeeded: unsafeBitCast(c + 12_582_912, to: SIMD8<UInt32>.self))
}

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
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

    /// - Parameter noData: 1 where the pixel is no-data (its value is 0 in `img`); interpolated masks
    ///   count as no-data wherever they exceed 0.01. Windows touching no-data are not correlated.
    init(_ img: [Float], noData mask: [Float]?, width: Int, height: Int, radius: Int, minimumStd: Float) {
        mean = boxMeans(img, width: width, height: height, radius: radius)
        let sq = boxMeans(img.map { $0 * $0 }, width: width, height: height, radius: radius)
        var inv = [Float](repeating: 0, count: img.count)
        let hasNoData = mask != nil
        let noData = mask.map { m in boxMeans(m.map { abs($0) > 0.01 ? 1 : 0 }, width: width, height: height, radius: radius) } ?? []
        for i in 0..<img.count {
            let v = sq[i] - mean[i] * mean[i]
            inv[i] = v > minimumStd * minimumStd ? 1 / v.squareRoot() : 0
            if hasNoData && noData[i] > 0 { inv[i] = 0 }
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
    /// (bicubic) serves sub-pixel steps. With a `differenceWeight`, the intensity term (`difference`) is
    /// computed in the same pass.
    static func zncc(left: GrayImage, right: GrayImage, leftNoData: GrayImage?, rightNoData: GrayImage?,
                     labels: DisparityLabels, window: Int,
                     decorrelationThreshold: Double, minimumStd: Float, shiftable: Bool,
                     differenceWeight: Float = 0, correlate: Bool = true, pool: BufferPool? = nil) -> CostVolume {
        let w = left.width, h = left.height, wr = right.width
        let r = window / 2
        let n = Float(window * window)
        let kp = (labels.count + 15) / 16 * 16
        let defaultCost = Int16((Float(1 - decorrelationThreshold) * costUnitsPerZNCC).rounded())
        var volume = pool?.take(count: w * h * kp, repeating: CostVolume.paddingCost)
            ?? [Int16](repeating: CostVolume.paddingCost, count: w * h * kp)

        // Distinct fractional phases and the shifted right images with their window statistics.
        var phaseIndex: [Int: Int] = [:]
        var phases: [GrayImage] = []
        var phaseMasks: [GrayImage?] = []
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
                phaseMasks.append(rightNoData?.shiftedHorizontally(by: frac))
            }
            labelPhase[k] = phaseIndex[key]!
            labelShift[k] = Int(whole)
        }
        let leftStats = WindowStatistics(left.pixels, noData: leftNoData?.pixels, width: w, height: h, radius: r, minimumStd: minimumStd)
        let rightStats = phases.indices.map {
            WindowStatistics(phases[$0].pixels, noData: phaseMasks[$0]?.pixels, width: wr, height: h, radius: r, minimumStd: minimumStd)
        }

        let threshold = Float(decorrelationThreshold)
        let invN = 1 / n
        let fDefault = Float(defaultCost)
        var columnSums = [Float](repeating: 0, count: labels.count * w)
        var rowCosts = [Int16](repeating: 0, count: labels.count * w)
        // The intensity term: per row, [label][column] like the costs, then transposed with them.
        // Eight aggregated paths of at most (cost + term + large penalty) each must stay within Int16.
        precondition(differenceWeight >= 0 && differenceWeight <= 1, "intensity term weight out of 0...1")
        let withDifference = differenceWeight > 0
        var difference = withDifference ? (pool?.take(count: w * h * kp, repeating: nil) ?? [Int16](repeating: 0, count: w * h * kp)) : []
        var rowDifferences = [Int16](repeating: 0, count: withDifference ? labels.count * w : 0)
        var adColumns = [Float](repeating: 0, count: withDifference ? labels.count * (w + 2) : 0)
        let differenceScale = differenceWeight * costUnitsPerZNCC / 9
        var minTmp = [Int16](repeating: 0, count: w)
        let shiftOffset = shiftable ? r : 0

        left.pixels.withUnsafeBufferPointer { L in
        columnSums.withUnsafeMutableBufferPointer { V in
        rowCosts.withUnsafeMutableBufferPointer { RC in
        minTmp.withUnsafeMutableBufferPointer { M in
        volume.withUnsafeMutableBufferPointer { out in
        difference.withUnsafeMutableBufferPointer { diffOut in
        rowDifferences.withUnsafeMutableBufferPointer { RD in
        adColumns.withUnsafeMutableBufferPointer { AD in
            let lp = L.baseAddress!
            /// The intensity term of label k along row y, columns first ..< last (the match inside the right
            /// image; 0 elsewhere): min(|L − R|, 1) summed over rows y − 1 … y + 1 and columns x − 1 … x + 1
            /// (rows, columns and the right image's columns edge-clamped), scaled to cost units. The sums over
            /// the three rows are kept per label and column and moved down a row at a time, refreshed every 64
            /// rows like the correlation's.
            @inline(__always) func differenceRow(_ k: Int, _ rp: UnsafePointer<Float>, y: Int, shift: Int, first: Int, last: Int) {
                let rd = RD.baseAddress! + k * w
                guard first < last else { for x in 0..<w { rd[x] = 0 }; return }
                let lo = max(0, first - 1), hi = min(w, last + 1)
                let ad = AD.baseAddress! + k * (w + 2) + 1  // ad[x] for x in −1 ... w
                let one = SIMD8<Float>(repeating: 1)
                /// Adds sign · min(|L − R|, 1) of one row to the sums, columns lo ..< hi.
                @inline(__always) func add(row: Int, sign: Float) {
                    let yy = min(max(row, 0), h - 1)
                    let lrow = lp + yy * w, rrow = rp + yy * wr
                    /// One column, the right column clamped to the right row.
                    @inline(__always) func addClamped(_ x: Int) { ad[x] += sign * min(abs(lrow[x] - rrow[min(max(x - shift, 0), wr - 1)]), 1) }
                    // Columns whose right column x − shift lies inside the right row, 8 at a time.
                    let vLo = min(hi, max(lo, shift)), vHi = max(vLo, min(hi, wr + shift))
                    for x in lo..<vLo { addClamped(x) }
                    let s8 = SIMD8<Float>(repeating: sign)
                    var x = vLo
                    while x + 8 <= vHi {
                        // |d| truncated at 1 (the standard library's generic pointwiseMin/Max stay calls here).
                        var d = load8(lrow + x) - load8(rrow + x - shift)
                        d.replace(with: -d, where: d .< 0)
                        d.replace(with: one, where: d .> one)
                        let a = UnsafeRawPointer(ad + x).loadUnaligned(as: SIMD8<Float>.self) + s8 * d
                        UnsafeMutableRawPointer(ad + x).storeBytes(of: a, as: SIMD8<Float>.self)
                        x += 8
                    }
                    while x < hi { addClamped(x); x += 1 }
                }
                if y % 64 == 0 {
                    for x in lo..<hi { ad[x] = 0 }
                    for t in -1...1 { add(row: y + t, sign: 1) }
                } else {
                    add(row: y + 1, sign: 1)
                    add(row: y - 2, sign: -1)
                }
                ad[-1] = ad[0]; ad[w] = ad[w - 1]  // replicated edges (read only where lo = 0 or hi = w)
                for x in 0..<first { rd[x] = 0 }
                for x in last..<w { rd[x] = 0 }
                let scale = SIMD8<Float>(repeating: differenceScale), zero = SIMD8<Float>(repeating: 0)
                var x = first
                while x + 8 <= last {
                    var sum = UnsafeRawPointer(ad + x - 1).loadUnaligned(as: SIMD8<Float>.self)
                        + UnsafeRawPointer(ad + x).loadUnaligned(as: SIMD8<Float>.self)
                        + UnsafeRawPointer(ad + x + 1).loadUnaligned(as: SIMD8<Float>.self)
                    sum.replace(with: zero, where: sum .< zero)  // running-sum rounding below 0
                    UnsafeMutableRawPointer(rd + x).storeBytes(of: costUnits(sum * scale), as: SIMD8<Int16>.self)
                    x += 8
                }
                while x < last { rd[x] = costUnits(max(0, ad[x - 1] + ad[x] + ad[x + 1]) * differenceScale); x += 1 }
            }
            /// Adds sign · L(row)·R(row, x − shift) to the column sums of one label, x in 0..<w.
            @inline(__always) func accumulate(_ v: UnsafeMutablePointer<Float>, _ rp: UnsafePointer<Float>, row: Int,
                                              shift: Int, sign: Float) {
                let yy = min(max(row, 0), h - 1)
                let lrow = lp + yy * w, rrow = rp + yy * wr
                let lo = min(w, max(0, shift)), hi = max(lo, min(w, wr + shift))
                for x in 0..<lo { v[x] += sign * lrow[x] * rrow[min(max(x - shift, 0), wr - 1)] }
                let rs = rrow - shift
                for x in lo..<hi { v[x] += sign * lrow[x] * rs[x] }
                for x in hi..<w { v[x] += sign * lrow[x] * rrow[min(max(x - shift, 0), wr - 1)] }
            }
            for y in 0..<h {
                let lMean = leftStats.mean.withUnsafeBufferPointer { $0.baseAddress! } + y * w
                let lInv = leftStats.inverseStd.withUnsafeBufferPointer { $0.baseAddress! } + y * w
                for k in 0..<labels.count {
                    let phase = labelPhase[k], shift = labelShift[k]
                    let stats = rightStats[phase]
                    phases[phase].pixels.withUnsafeBufferPointer { R in
                    stats.mean.withUnsafeBufferPointer { RM in
                    stats.inverseStd.withUnsafeBufferPointer { RI in
                        let rp = R.baseAddress!
                        let v = V.baseAddress! + k * w
                        let columns = labels.matchedColumns(k, leftWidth: w, rightWidth: wr)
                        let first = columns.lowerBound, last = columns.upperBound
                        // Without the correlation (another data term fills `data`): the default costs and the
                        // intensity term only.
                        guard correlate else {
                            for x in 0..<w { RC.baseAddress![k * w + x] = defaultCost }
                            if withDifference { differenceRow(k, rp, y: y, shift: shift, first: first, last: last) }
                            return
                        }
                        if y % 64 == 0 {
                            // Exact refresh of the vertical window sums (bounds Float drift).
                            for x in 0..<w { v[x] = 0 }
                            for dy in -r...r { accumulate(v, rp, row: y + dy, shift: shift, sign: 1) }
                        } else {
                            accumulate(v, rp, row: y + r, shift: shift, sign: 1)
                            accumulate(v, rp, row: y - r - 1, shift: shift, sign: -1)
                        }
                        // Horizontal window sums (2r + 1 taps, edge columns replicated) → ZNCC → cost where the
                        // match lies inside the right image, default cost elsewhere; 8 columns at a time where
                        // every tap lies inside the row.
                        let rm = RM.baseAddress! + y * wr - shift, ri = RI.baseAddress! + y * wr - shift
                        let rc = RC.baseAddress! + k * w
                        for x in 0..<first { rc[x] = defaultCost }
                        for x in last..<w { rc[x] = defaultCost }
                        if withDifference { differenceRow(k, rp, y: y, shift: shift, first: first, last: last) }
                        @inline(__always) func scalarCost(_ x: Int) {
                            var s: Float = 0
                            for t in -r...r { s += v[min(max(x + t, 0), w - 1)] }
                            let ncc = (s * invN - lMean[x] * rm[x]) * lInv[x] * ri[x]
                            rc[x] = ncc > threshold ? costUnits(max(0, 1 - ncc) * costUnitsPerZNCC) : defaultCost
                        }
                        let vectorEnd = max(first, min(last, w - r))
                        var x = first
                        while x < min(max(r, first), vectorEnd) { scalarCost(x); x += 1 }
                        while x + 8 <= vectorEnd {
                            var s = SIMD8<Float>(repeating: 0)
                            for t in -r...r { s += UnsafeRawPointer(v + x + t).loadUnaligned(as: SIMD8<Float>.self) }
                            let ncc = (s * invN - load8(lMean + x) * load8(rm + x)) * load8(lInv + x) * load8(ri + x)
                            var cost = (1 - ncc) * costUnitsPerZNCC
                            cost.replace(with: 0, where: cost .< 0)
                            cost.replace(with: fDefault, where: .!(ncc .> threshold))
                            UnsafeMutableRawPointer(rc + x).storeBytes(of: costUnits(cost), as: SIMD8<Int16>.self)
                            x += 8
                        }
                        while x < last { scalarCost(x); x += 1 }
                        if shiftOffset > 0 {
                            // Horizontal half of the shiftable-window minimum (edges clamp).
                            for x in 0..<w { M[x] = rc[x] }
                            let o = shiftOffset
                            for x in 0..<min(o, w) {
                                var m = M[x]
                                for t in 0...min(w - 1, x + o) { m = min(m, M[t]) }
                                rc[x] = m
                            }
                            if w > 2 * o {
                                // 16 columns at a time, then the rest one by one.
                                let mb = M.baseAddress!
                                var x = o
                                while x + 16 <= w - o {
                                    var m = UnsafeRawPointer(mb + x - o).loadUnaligned(as: Lanes.self)
                                    for t in 1...(2 * o) { m = lanesMin(m, UnsafeRawPointer(mb + x - o + t).loadUnaligned(as: Lanes.self)) }
                                    UnsafeMutableRawPointer(rc + x).storeBytes(of: m, as: Lanes.self)
                                    x += 16
                                }
                                while x < w - o {
                                    var m = mb[x - o]
                                    for t in 1...(2 * o) { m = min(m, mb[x - o + t]) }
                                    rc[x] = m
                                    x += 1
                                }
                            }
                            for x in max(o, w - o)..<w {
                                var m = M[x]
                                for t in max(0, x - o)..<w { m = min(m, M[t]) }
                                rc[x] = m
                            }
                        }
                    }}}
                }
                // Transpose the row's [label][column] costs into [column][label].
                let rowBase = y * w * kp
                let nl = labels.count, rcb = RC.baseAddress!
                if withDifference {
                    // Both in one pass; the padded labels' terms are 0 (the buffer comes back from the pool as is).
                    let rdb = RD.baseAddress!
                    for x in 0..<w {
                        let o = out.baseAddress! + rowBase + x * kp, od = diffOut.baseAddress! + rowBase + x * kp
                        var src = rcb + x, dsrc = rdb + x
                        for k in 0..<nl { o[k] = src.pointee; od[k] = dsrc.pointee; src += w; dsrc += w }
                        for k in nl..<kp { od[k] = 0 }
                    }
                } else {
                    for x in 0..<w {
                        let o = out.baseAddress! + rowBase + x * kp
                        var src = rcb + x
                        for k in 0..<nl { o[k] = src.pointee; src += w }
                    }
                }
            }
        }}}}}}}}
        return CostVolume(width: w, height: h, labels: labels, paddedLabels: kp, data: volume, defaultCost: defaultCost,
                          left: left, phases: phases, labelPhase: labelPhase, labelShift: labelShift, windowRadius: r,
                          difference: difference,
                          windowTexture: correlate ? nil : WindowTexture(left: leftStats.inverseStd, right: rightStats.map(\.inverseStd),
                                                                         rightNoData: phaseMasks.map { $0?.pixels }))
    }

    /// The costs the regularisation aggregates: the correlation costs plus the intensity term, written into
    /// the intensity term's buffer (which this empties); the correlation costs alone when there is none.
    mutating func regularisationCosts() -> [Int16] {
        guard !difference.isEmpty else { return data }
        var out: [Int16] = []
        swap(&out, &difference)
        data.withUnsafeBufferPointer { C in
            out.withUnsafeMutableBufferPointer { D in
                let c = C.baseAddress!, d = D.baseAddress!
                var i = 0
                while i + 16 <= C.count {
                    let v = UnsafeRawPointer(c + i).loadUnaligned(as: Lanes.self) &+ UnsafeRawPointer(d + i).loadUnaligned(as: Lanes.self)
                    UnsafeMutableRawPointer(d + i).storeBytes(of: v, as: Lanes.self)
                    i += 16
                }
                while i < C.count { d[i] = c[i] &+ d[i]; i += 1 }
            }
        }
        return out
    }
}

extension CostVolume {
    /// Shiftable windows: each cell takes the best (lowest) cost among the windows offset by every
    /// offset in −offset…offset along x and y, so that a pixel near a depth edge can use a window that
    /// does not straddle it. The minimum is separable: the horizontal half is fused into `zncc`, this is
    /// the vertical half, over every label plane 16 labels at a time.
    mutating func applyVerticalShiftableWindows(offset o: Int) {
        guard o > 0, height > 0 else { return }
        let w = width, h = height, kp = paddedLabels, rowLength = w * kp, slots = 2 * o + 1
        // In place, row by row: the original costs of rows y − o … y + o (edges clamped) are kept in a ring of
        // 2o + 1 rows, row r in slot r mod (2o + 1); row y + o is copied in before row y is overwritten.
        var ring = [Int16](repeating: 0, count: slots * rowLength)
        ring.withUnsafeMutableBufferPointer { R in
            data.withUnsafeMutableBufferPointer { D in
                let ringBase = R.baseAddress!, dataBase = D.baseAddress!
                @inline(__always) func slot(_ row: Int) -> UnsafeMutablePointer<Int16> { ringBase + (row % slots) * rowLength }
                for row in 0..<min(o, h) { slot(row).update(from: dataBase + row * rowLength, count: rowLength) }
                for y in 0..<h {
                    if y + o < h { slot(y + o).update(from: dataBase + (y + o) * rowLength, count: rowLength) }
                    let out = dataBase + y * rowLength
                    let centre = slot(y)
                    for i in stride(from: 0, to: rowLength, by: 16) {
                        var v = UnsafeRawPointer(centre + i).loadUnaligned(as: SIMD16<Int16>.self)
                        for t in -o...o where t != 0 {
                            v = lanesMin(v, UnsafeRawPointer(slot(min(max(y + t, 0), h - 1)) + i).loadUnaligned(as: SIMD16<Int16>.self))
                        }
                        UnsafeMutableRawPointer(out + i).storeBytes(of: v, as: SIMD16<Int16>.self)
                    }
                }
            }
        }
    }
}

/// The window of the sub-pixel refinement: Gaussian weights (σ in pixels) over a (2r+1)² square, r = ⌈2σ⌉
/// at least the correlation window's radius. A wide, centre-weighted window averages image noise on
/// smooth surfaces; the refinement only moves a match within half a label, so it cannot blur an edge
/// further than that.
public struct RefinementWindow: Sendable, Equatable {
    public let radius: Int
    public let sigma: Float
    let weights: [Float]
    /// (Σw)² / Σw²: how many pixels' worth of independent noise the window averages.
    public let effectivePixels: Double

    public init(sigma: Float, minimumRadius: Int) {
        self.sigma = sigma
        radius = max(minimumRadius, Int((2 * sigma).rounded(.up)))
        var w: [Float] = []
        for dy in -radius...radius {
            for dx in -radius...radius { w.append(sigma > 0 ? exp(-Float(dx * dx + dy * dy) / (2 * sigma * sigma)) : 1) }
        }
        weights = w
        let s = w.reduce(0) { $0 + Double($1) }, s2 = w.reduce(0) { $0 + Double($1) * Double($1) }
        effectivePixels = s * s / s2
    }
}

/// The sub-pixel refinement's scores at one pixel: the weighted ZNCC of the centred window against the
/// labels around the winner, with edges replicated. The left window's values and sums are taken once per
/// pixel and each label's score once (the climb to the correlation peak revisits labels). Each window's
/// values are first gathered into a flat (2r + 1)² array (rows copied where the window lies inside the
/// image, edge-clamped otherwise), then summed 8 at a time — one path for every pixel, so the same results
/// inside the image and along its edges.
struct RefinementProbe {
    let volume: CostVolume
    let window: RefinementWindow
    /// Scratch for the left and the right window's values, 2 · (2r + 1)² floats, owned by the caller.
    let leftValues: UnsafeMutablePointer<Float>
    let rightValues: UnsafeMutablePointer<Float>
    private(set) var x = 0, y = 0
    private var sl: Float = 0, vl: Float = 0, n: Float = 0
    private var textured = false
    /// Scores of labels `first` ..< `first` + 5, computed on demand.
    private var first = 0
    private var cache: (Float?, Float?, Float?, Float?, Float?) = (nil, nil, nil, nil, nil)
    private var known: (Bool, Bool, Bool, Bool, Bool) = (false, false, false, false, false)
    /// The right window's shear at this pixel: the disparity's gradient (px per px along columns and rows).
    /// Window slot q is read at its column + `shearWhole[q]` + `shearFraction[q]` (linear interpolation
    /// between the label's shifted columns; the same offsets for every label, so no label is favoured).
    private var sheared = false
    private var shearWhole: [Int]
    private var shearFraction: [Float]
    /// The weights at this pixel: the window's, or, after `move(mask:)`, those of the slots the mask keeps.
    private var weights: [Float]
    private var masked = false
    /// (Σw)² / Σw² of the weights at this pixel (`RefinementWindow.effectivePixels` unless masked).
    private(set) var effectivePixels: Double

    /// Floats of scratch a probe needs for `window`.
    static func scratchCount(_ window: RefinementWindow) -> Int { 2 * (2 * window.radius + 1) * (2 * window.radius + 1) }

    init(volume: CostVolume, window: RefinementWindow, scratch: UnsafeMutablePointer<Float>) {
        self.volume = volume; self.window = window
        leftValues = scratch
        rightValues = scratch + (2 * window.radius + 1) * (2 * window.radius + 1)
        n = window.weights.reduce(0, +)
        shearWhole = [Int](repeating: 0, count: window.weights.count)
        shearFraction = [Float](repeating: 0, count: window.weights.count)
        weights = window.weights
        effectivePixels = window.effectivePixels
    }

    /// Copies the (2r + 1)² window centred on (cx, cy) of a `width` × `height` image into `out`, row by row,
    /// replicating the edge pixels where the window leaves the image.
    @inline(__always)
    private func gather(_ image: UnsafePointer<Float>, width: Int, height: Int, cx: Int, cy: Int, into out: UnsafeMutablePointer<Float>) {
        let r = window.radius, side = 2 * r + 1
        if cx >= r, cx + r < width, cy >= r, cy + r < height {
            for dy in 0..<side { (out + dy * side).update(from: image + (cy - r + dy) * width + cx - r, count: side) }
        } else {
            var q = 0
            for dy in -r...r {
                let row = image + min(max(cy + dy, 0), height - 1) * width
                for dx in -r...r { out[q] = row[min(max(cx + dx, 0), width - 1)]; q += 1 }
            }
        }
    }

    /// Moves to pixel (x, y), whose winner is label k: scores of labels k − 2 … k + 2 may then be asked.
    /// `mask` (one flag per window slot, row by row) keeps only the slots it flags.
    mutating func move(x: Int, y: Int, around k: Int, shear: (Float, Float)? = nil, mask: [Bool]? = nil) {
        self.x = x; self.y = y; first = k - 2
        if let mask {
            var s = 0.0, s2 = 0.0
            for q in 0..<weights.count {
                weights[q] = mask[q] ? window.weights[q] : 0
                s += Double(weights[q]); s2 += Double(weights[q]) * Double(weights[q])
            }
            n = Float(s)
            effectivePixels = s2 > 0 ? s * s / s2 : 0
            masked = true
        } else if masked {
            weights = window.weights
            n = weights.reduce(0, +)
            effectivePixels = window.effectivePixels
            masked = false
        }
        known = (false, false, false, false, false)
        sheared = shear != nil
        if let (gx, gy) = shear {
            let r = window.radius
            var q = 0
            for dy in -r...r {
                for dx in -r...r {
                    // The disparity at the slot is d + gx·dx + gy·dy: read the right image that much further left.
                    let o = -(gx * Float(dx) + gy * Float(dy))
                    let whole = o.rounded(.down)
                    shearWhole[q] = Int(whole); shearFraction[q] = o - whole
                    q += 1
                }
            }
        }
        let w = volume.width, h = volume.height, count = weights.count
        volume.left.pixels.withUnsafeBufferPointer { L in gather(L.baseAddress!, width: w, height: h, cx: x, cy: y, into: leftValues) }
        var s8 = SIMD8<Float>(repeating: 0), ss8 = SIMD8<Float>(repeating: 0)
        var sl: Float = 0, sll: Float = 0
        weights.withUnsafeBufferPointer { wt in
            let wp = wt.baseAddress!
            var q = 0
            while q + 8 <= count {
                let a = load8(leftValues + q), wq = load8(wp + q)
                s8 += wq * a; ss8 += wq * a * a
                q += 8
            }
            while q < count { let a = leftValues[q], wq = wp[q]; sl += wq * a; sll += wq * a * a; q += 1 }
        }
        sl += s8.sum(); sll += ss8.sum()
        self.sl = sl
        vl = sll - sl * sl / n
        textured = vl > 1e-6
    }

    /// The scores of labels k − 1, k and k + 1 (k within 1 of the winner given to `move`); nil for a
    /// label outside the search or a window without texture.
    mutating func scores(around k: Int) -> (Float?, Float?, Float?) {
        guard textured else { return (nil, nil, nil) }
        return (score(k - 1), score(k), score(k + 1))
    }

    private mutating func score(_ label: Int) -> Float? {
        let slot = label - first
        switch slot {
        case 0: if known.0 { return cache.0 }
        case 1: if known.1 { return cache.1 }
        case 2: if known.2 { return cache.2 }
        case 3: if known.3 { return cache.3 }
        case 4: if known.4 { return cache.4 }
        default: return compute(label)
        }
        let v = compute(label)
        switch slot {
        case 0: cache.0 = v; known.0 = true
        case 1: cache.1 = v; known.1 = true
        case 2: cache.2 = v; known.2 = true
        case 3: cache.3 = v; known.3 = true
        default: cache.4 = v; known.4 = true
        }
        return v
    }

    private func compute(_ label: Int) -> Float? {
        guard label >= 0, label < volume.labels.count else { return nil }
        let c = volume
        let R = c.phases[c.labelPhase[label]], shift = c.labelShift[label]
        let w = c.width, h = c.height, count = window.weights.count
        // The right window: columns x − shift ± r of the right image (edges clamped to the left image's
        // columns first, as the cost volume's windows are).
        R.pixels.withUnsafeBufferPointer { P in
            let r = window.radius
            if sheared {
                var q = 0
                for dy in -r...r {
                    let row = P.baseAddress! + min(max(y + dy, 0), h - 1) * R.width
                    for dx in -r...r {
                        let c0 = min(max(x + dx, 0), w - 1) - shift + shearWhole[q]
                        let a = row[min(max(c0, 0), R.width - 1)], b = row[min(max(c0 + 1, 0), R.width - 1)]
                        rightValues[q] = a + shearFraction[q] * (b - a)
                        q += 1
                    }
                }
            } else if x >= r, x + r < w, y >= r, y + r < h {
                gather(P.baseAddress!, width: R.width, height: h, cx: x - shift, cy: y, into: rightValues)
            } else {
                var q = 0
                for dy in -r...r {
                    let row = P.baseAddress! + min(max(y + dy, 0), h - 1) * R.width
                    for dx in -r...r { rightValues[q] = row[min(max(min(max(x + dx, 0), w - 1) - shift, 0), R.width - 1)]; q += 1 }
                }
            }
        }
        var sr8 = SIMD8<Float>(repeating: 0), srr8 = SIMD8<Float>(repeating: 0), slr8 = SIMD8<Float>(repeating: 0)
        var sr: Float = 0, srr: Float = 0, slr: Float = 0
        weights.withUnsafeBufferPointer { wt in
            let wp = wt.baseAddress!
            var q = 0
            while q + 8 <= count {
                let b = load8(rightValues + q), wb = load8(wp + q) * b
                sr8 += wb; srr8 += wb * b; slr8 += wb * load8(leftValues + q)
                q += 8
            }
            while q < count { let b = rightValues[q], wb = wp[q] * b; sr += wb; srr += wb * b; slr += wb * leftValues[q]; q += 1 }
        }
        sr += sr8.sum(); srr += srr8.sum(); slr += slr8.sum()
        let vr = srr - sr * sr / n
        guard vr > 1e-6 else { return nil }
        return (slr - sl * sr / n) / (vl * vr).squareRoot()
    }
}
