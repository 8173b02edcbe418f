import Foundation

/// Penalties of the semi-global regularisation, in cost units (1/512 of 1 − ZNCC).
struct Penalties {
    /// Cost of a change of up to `smallJump` labels (one pixel) between neighbours.
    let small: Int16
    /// Cost of any larger jump.
    let large: Int16
    /// Label changes that count as small: the whole steps within one pixel, at least 1.
    let smallJump: Int
    /// Intensity step (normalised image units) that halves the large-jump penalty: jumps are cheaper
    /// across image edges, where depth discontinuities usually are.
    let edgeScale: Float

    /// - Parameter edgeAware: halve the large-jump penalty across image edges (`edgeScale`); otherwise it is
    ///   the same everywhere.
    init(parameters p: MatchingParameters, edgeAware: Bool = true) {
        let p1 = Float(p.regularisation) * costUnitsPerZNCC
        // Larger than twice the largest cost is already "forbidden"; the cap keeps Int16 sums in range.
        let p2 = min(Float(p.regularisation * p.jumpPenaltyRatio) * costUnitsPerZNCC, 2 * costUnitsPerZNCC)
        small = Int16(p1.rounded())
        large = max(small, Int16(p2.rounded()))
        smallJump = max(1, Int((1 / p.precision + 1e-9).rounded(.down)))
        edgeScale = edgeAware ? 0.25 : .infinity
    }

    /// The large-jump penalty between two neighbours of intensities a and b.
    @inline(__always) func large(_ a: Float, _ b: Float) -> Int16 {
        guard edgeScale.isFinite else { return large }
        let f = 1 / (1 + abs(a - b) / edgeScale)
        return max(small &+ 1, Int16((Float(large) * f).rounded()))
    }
}

typealias Lanes = SIMD16<Int16>

/// Lane-wise minimum, always inlined: the standard library's generic `pointwiseMin` was left as a call
/// per 16 lanes in the release build (6 % of a match step's samples in its own frame).
@inline(__always) func lanesMin(_ a: Lanes, _ b: Lanes) -> Lanes { a.replacing(with: b, where: b .< a) }

/// Semi-global aggregation over 8 directions (two raster passes of 4 directions each), with the
/// disparity labels of a pixel processed 16 at a time.
///
/// L_r(p, k) = C(p, k) + min(L_r(p−r, k), min_{1≤|j|≤J} L_r(p−r, k+j) + P1, min_i L_r(p−r, i) + P2) − min_i L_r(p−r, i)
/// and S(p, k) = Σ_r L_r(p, k). Values stay below C + P2, so eight paths fit in Int16. C is `costs` when
/// given (the correlation costs plus the intensity term), else the volume's costs.
func aggregate(_ c: CostVolume, costs: [Int16]? = nil, guide: [Float], penalties: Penalties, pool: BufferPool? = nil) -> [Int16] {
    let w = c.width, h = c.height, kp = c.paddedLabels
    let j = penalties.smallJump
    let pad = ((j + 15) / 16) * 16
    let stride = kp + 2 * pad  // a padded label vector: [pad sentinels][kp labels][pad sentinels]
    let sentinel: Int16 = 0x3000
    var total = pool?.take(count: w * h * kp, repeating: 0) ?? [Int16](repeating: 0, count: w * h * kp)
    // Row buffers for the three directions that come from the previous row, current and previous.
    var prev = [Int16](repeating: sentinel, count: 3 * w * stride)
    var curr = [Int16](repeating: sentinel, count: 3 * w * stride)
    var horizontal = [Int16](repeating: sentinel, count: 2 * stride)  // previous pixel, current pixel
    var prevMin = [Int16](repeating: 0, count: 3 * w)
    var currMin = [Int16](repeating: 0, count: 3 * w)
    let p1 = Lanes(repeating: penalties.small)
    let chunks = kp / 16

    guide.withUnsafeBufferPointer { G in
    (costs ?? c.data).withUnsafeBufferPointer { C in
    total.withUnsafeMutableBufferPointer { S in
    prev.withUnsafeMutableBufferPointer { prevBuf in
    curr.withUnsafeMutableBufferPointer { currBuf in
    horizontal.withUnsafeMutableBufferPointer { H in
    prevMin.withUnsafeMutableBufferPointer { PM in
    currMin.withUnsafeMutableBufferPointer { CM in
        var pb = prevBuf.baseAddress!, cb = currBuf.baseAddress!
        var pm = PM.baseAddress!, cm = CM.baseAddress!
        let hb = H.baseAddress!

        /// One path step: reads the previous L (padded vector at `from`, its minimum `fromMin`), writes the
        /// new L at `to`, adds it into S at `sum`, returns the new minimum. `from == nil` starts a path.
        @inline(__always)
        func step(_ cost: UnsafePointer<Int16>, _ from: UnsafeMutablePointer<Int16>?, _ fromMin: Int16, _ jump: Int16,
                  _ to: UnsafeMutablePointer<Int16>, _ sum: UnsafeMutablePointer<Int16>) -> Int16 {
            var newMin = Lanes(repeating: Int16.max)
            guard let from else {
                for q in 0..<chunks {
                    let v = UnsafeRawPointer(cost + 16 * q).loadUnaligned(as: Lanes.self)
                    UnsafeMutableRawPointer(to + pad + 16 * q).storeBytes(of: v, as: Lanes.self)
                    let s = UnsafeRawPointer(sum + 16 * q).loadUnaligned(as: Lanes.self)
                    UnsafeMutableRawPointer(sum + 16 * q).storeBytes(of: s &+ v, as: Lanes.self)
                    newMin = lanesMin(newMin, v)
                }
                return newMin.min()
            }
            let m = Lanes(repeating: fromMin)
            let jumpCap = Lanes(repeating: fromMin &+ jump)
            for q in 0..<chunks {
                let base = from + pad + 16 * q
                var best = UnsafeRawPointer(base).loadUnaligned(as: Lanes.self)
                for s in 1...j {
                    best = lanesMin(best, UnsafeRawPointer(base - s).loadUnaligned(as: Lanes.self) &+ p1)
                    best = lanesMin(best, UnsafeRawPointer(base + s).loadUnaligned(as: Lanes.self) &+ p1)
                }
                best = lanesMin(best, jumpCap)
                let v = UnsafeRawPointer(cost + 16 * q).loadUnaligned(as: Lanes.self) &+ best &- m
                UnsafeMutableRawPointer(to + pad + 16 * q).storeBytes(of: v, as: Lanes.self)
                let s = UnsafeRawPointer(sum + 16 * q).loadUnaligned(as: Lanes.self)
                UnsafeMutableRawPointer(sum + 16 * q).storeBytes(of: s &+ v, as: Lanes.self)
                newMin = lanesMin(newMin, v)
            }
            return newMin.min()
        }

        for forward in [true, false] {
            let dir = forward ? 1 : -1
            for yi in 0..<h {
                let y = forward ? yi : h - 1 - yi
                var hMin: Int16 = 0
                for xi in 0..<w {
                    let x = forward ? xi : w - 1 - xi
                    let cost = C.baseAddress! + (y * w + x) * kp
                    let sum = S.baseAddress! + (y * w + x) * kp
                    // Horizontal path, from the previous pixel of this row.
                    let hTo = hb + (xi % 2) * stride, hFrom = hb + ((xi + 1) % 2) * stride
                    let g = G[y * w + x]
                    hMin = step(cost, xi == 0 ? nil : hFrom, hMin, xi == 0 ? 0 : penalties.large(g, G[y * w + x - dir]), hTo, sum)
                    // Vertical and the two diagonals, from the previous row.
                    for d in 0..<3 {
                        let px = x + (d == 1 ? -dir : d == 2 ? dir : 0)  // d: 0 vertical, 1 and 2 diagonals
                        let to = cb + (d * w + x) * stride
                        let from: UnsafeMutablePointer<Int16>? = (yi == 0 || px < 0 || px >= w) ? nil : pb + (d * w + px) * stride
                        let jump = from == nil ? 0 : penalties.large(g, G[(y - dir) * w + px])
                        cm[d * w + x] = step(cost, from, from == nil ? 0 : pm[d * w + px], jump, to, sum)
                    }
                }
                swap(&pb, &cb)
                swap(&pm, &cm)
            }
        }
    }}}}}}}}
    return total
}
