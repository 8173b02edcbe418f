import Foundation

/// One sparse 2-D match between rectified images: its position and the residual vertical parallax.
public struct ParallaxSample: Sendable, Equatable {
    public var u: Double
    public var v: Double
    public var disparity: Double
    /// Right row minus left row of the match, pixels (0 for perfect epipolar resampling).
    public var rowOffset: Double
    public var correlation: Double
}

/// Measures the residual epipolar error of rectified images by sparse 2-D correlation: for a grid of
/// textured left pixels, the best ZNCC over the disparity range and ±`rowSearch` rows, refined to
/// sub-pixel in both directions by parabolas.
public struct VerticalParallaxProbe: Sendable {
    public var grid = 20
    public var radius = 7
    public var rowSearch = 4
    public var minimumCorrelation = 0.8

    public init() {}

    /// Matches a regular `grid` × `grid` of left pixels.
    /// - Parameters:
    ///   - right: the right rectified grid, whose column j is common-frame column j + rightOffset.
    public func measure(left: GrayImage, right: GrayImage, rightOffset: Int,
                        disparities: ClosedRange<Double>) -> [ParallaxSample] {
        let m = radius + rowSearch + 1
        var points: [(Int, Int)] = []
        for gy in 0..<grid {
            for gx in 0..<grid {
                points.append((m + (left.width - 2 * m) * (2 * gx + 1) / (2 * grid), m + (left.height - 2 * m) * (2 * gy + 1) / (2 * grid)))
            }
        }
        return measure(left: left, right: right, rightOffset: rightOffset, disparities: disparities, at: points).compactMap { $0 }
    }

    /// Matches the given left pixels (u, v); nil where a pixel has no texture, no window inside both
    /// images, or no match above `minimumCorrelation` with a sub-pixel peak.
    public func measure(left: GrayImage, right: GrayImage, rightOffset: Int, disparities: ClosedRange<Double>,
                        at points: [(u: Int, v: Int)]) -> [ParallaxSample?] {
        let r = radius, rs = rowSearch, side = 2 * r + 1, rows = 2 * rs + 1
        let dLo = Int(disparities.lowerBound.rounded(.down)), dHi = Int(disparities.upperBound.rounded(.up))
        guard dLo <= dHi else { return points.map { _ in nil } }
        // Scratch: the reference patch and the score table (NaN = not computed).
        let ref = UnsafeMutablePointer<Float>.allocate(capacity: side * side)
        var table = [Double](repeating: .nan, count: (dHi - dLo + 1) * rows)
        defer { ref.deallocate() }
        return points.map { (u, v) -> ParallaxSample? in
            guard u - r >= 0, u + r < left.width, v - r - rs >= 0, v + r + rs < left.height else { return nil }
            guard normalisedPatch(left, u, v, into: ref) else { return nil }
            var best = -2.0, bd = 0, bdy = 0
            for t in table.indices { table[t] = .nan }
            for d in dLo...dHi {
                for dy in -rs...rs {
                    let ur = u - d - rightOffset, vr = v + dy
                    guard ur - r >= 0, ur + r < right.width, vr - r >= 0, vr + r < right.height,
                          let c = correlation(ref, right, ur, vr) else { continue }
                    table[(d - dLo) * rows + dy + rs] = c
                    if c > best { best = c; bd = d; bdy = dy }
                }
            }
            guard best >= minimumCorrelation else { return nil }
            func val(_ d: Int, _ dy: Int) -> Double? {
                guard d >= dLo, d <= dHi, abs(dy) <= rs else { return nil }
                let c = table[(d - dLo) * rows + dy + rs]
                return c.isNaN ? nil : c
            }
            // The parabola's vertex through three samples at −1, 0, +1: its offset from the middle one.
            func vertex(_ a: Double?, _ b: Double, _ c: Double?) -> Double? {
                guard let a, let c else { return nil }
                let den = a - 2 * b + c
                return den < 0 ? max(-0.5, min(0.5, 0.5 * (a - c) / den)) : nil
            }
            guard let sx = vertex(val(bd - 1, bdy), best, val(bd + 1, bdy)),
                  let sy = vertex(val(bd, bdy - 1), best, val(bd, bdy + 1)),
                  abs(bdy) < rs else { return nil }
            return ParallaxSample(u: Double(u), v: Double(v), disparity: Double(bd) + sx, rowOffset: Double(bdy) + sy, correlation: best)
        }
    }

    /// The (2r + 1)² window centred on (u, v), which must lie inside the image, minus its mean and scaled
    /// to unit norm, into `p`; false where it holds a NaN or has no texture.
    func normalisedPatch(_ img: GrayImage, _ u: Int, _ v: Int, into p: UnsafeMutablePointer<Float>) -> Bool {
        let r = radius, side = 2 * r + 1, count = side * side
        return img.pixels.withUnsafeBufferPointer { P in
            var q = 0, sum: Float = 0
            for dy in -r...r {
                let row = P.baseAddress! + (v + dy) * img.width + u
                for dx in -r...r {
                    let x = row[dx]
                    if x.isNaN { return false }
                    p[q] = x; sum += x; q += 1
                }
            }
            let m = sum / Float(count)
            var ss: Float = 0
            for i in 0..<count { p[i] -= m; ss += p[i] * p[i] }
            guard ss > 1e-6 * Float(count) else { return false }
            let inv = 1 / ss.squareRoot()
            for i in 0..<count { p[i] *= inv }
            return true
        }
    }

    /// The ZNCC of the normalised reference patch `ref` (zero mean, unit norm) with the window of `img`
    /// centred on (u, v), which must lie inside the image, in one pass over the window: Σ ref·x needs no
    /// centring of x since Σ ref = 0, and x's spread comes from Σx and Σx² taken about the window's centre
    /// pixel (no cancellation at 12-bit levels). nil where the window holds a NaN or has no texture.
    func correlation(_ ref: UnsafePointer<Float>, _ img: GrayImage, _ u: Int, _ v: Int) -> Double? {
        let r = radius, side = 2 * r + 1, count = Float(side * side)
        return img.pixels.withUnsafeBufferPointer { P -> Double? in
            let origin = P.baseAddress! + (v - r) * img.width + u - r
            let c0 = origin[r * img.width + r]
            var s8 = SIMD8<Float>(repeating: 0), ss8 = s8, sp8 = s8
            var s: Float = 0, ss: Float = 0, sp: Float = 0
            let centre = SIMD8<Float>(repeating: c0)
            for dy in 0..<side {
                let row = origin + dy * img.width, rr = ref + dy * side
                var q = 0
                while q + 8 <= side {
                    let x = load8(row + q) - centre
                    s8 += x; ss8 += x * x; sp8 += x * load8(rr + q)
                    q += 8
                }
                while q < side {
                    let x = row[q] - c0
                    s += x; ss += x * x; sp += x * rr[q]
                    q += 1
                }
            }
            s += s8.sum(); ss += ss8.sum(); sp += sp8.sum()
            // A NaN anywhere in the window makes Σx NaN.
            guard !s.isNaN else { return nil }
            let spread = ss - s * s / count
            guard spread > 1e-6 * count else { return nil }
            return Double(sp / spread.squareRoot())
        }
    }

    /// Median of |row offset| and the median signed row offset.
    public static func summary(_ s: [ParallaxSample]) -> (medianAbsolute: Double, median: Double, count: Int) {
        guard !s.isEmpty else { return (.nan, .nan, 0) }
        let a = s.map { abs($0.rowOffset) }.sorted(), m = s.map(\.rowOffset).sorted()
        return (a[a.count / 2], m[m.count / 2], s.count)
    }
}
