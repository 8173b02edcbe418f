import Foundation

/// A single-band image held in memory, possibly decimated from a full-resolution image.
///
/// Sample (i, j) covers full-resolution pixels [i·scale, (i+1)·scale) × [j·scale, (j+1)·scale); its centre
/// is at full-resolution pixel-centre coordinate i·scale + (scale − 1)/2.
public struct GrayImage: Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [Float]
    /// Full-resolution pixels per sample (1 for a full-resolution image).
    public let scale: Double

    public init(width: Int, height: Int, pixels: [Float], scale: Double = 1) {
        precondition(pixels.count == width * height, "GrayImage storage does not match its size")
        self.width = width
        self.height = height
        self.pixels = pixels
        self.scale = scale
    }

    @inlinable public subscript(x: Int, y: Int) -> Float { pixels[y * width + x] }

    /// Full-resolution coordinate of a sample coordinate.
    @inlinable public func fullResolution(_ v: Double) -> Double { v * scale + (scale - 1) / 2 }
    /// Sample coordinate of a full-resolution coordinate.
    @inlinable public func sampleCoordinate(_ v: Double) -> Double { (v - (scale - 1) / 2) / scale }

    /// Bilinear sample; nil outside the image.
    @inlinable public func bilinear(_ x: Double, _ y: Double) -> Float? {
        guard x >= 0, y >= 0, x <= Double(width - 1), y <= Double(height - 1) else { return nil }
        let x0 = min(Int(x), width - 2), y0 = min(Int(y), height - 2)
        let fx = Float(x - Double(x0)), fy = Float(y - Double(y0))
        let i = y0 * width + x0
        let a = pixels[i], b = pixels[i + 1], c = pixels[i + width], d = pixels[i + width + 1]
        return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy
    }
}

/// One height measured by sparse correlation along the epipolar curve of a point of the first image.
public struct HeightSample: Sendable, Equatable {
    public var column: Double
    public var row: Double
    public var height: Double
    public var correlation: Double
}

/// Summary of the scene heights seen by a pair.
public struct SceneHeightEstimate: Sendable, Equatable, Codable {
    /// Median of the measured heights (metres above the ellipsoid).
    public var median: Double
    /// 2nd and 98th percentiles of the measured heights.
    public var low: Double
    public var high: Double
    /// Number of points that correlated.
    public var samples: Int
    /// "correlation" when measured, "rpc-offset" when nothing correlated and the RPC height offset is used.
    public var source: String
}

/// Coarse scene-height estimation: for a grid of textured points of the first image, search the height
/// whose projection into the second image correlates best (normalised cross-correlation of a small patch
/// along the epipolar curve). Works on decimated images; gives the height range later stages search.
public struct SceneHeightEstimator: Sendable {
    public var gridSize = 16
    public var patchRadius = 5
    public var minimumCorrelation = 0.75
    /// Minimum standard deviation of a patch (image units) to be worth matching.
    public var minimumContrast: Float = 1.0

    public init() {}

    public func samples(left: GrayImage, leftModel: RPCModel, right: GrayImage, rightModel: RPCModel,
                        heights: ClosedRange<Double>) -> [HeightSample] {
        let r = patchRadius
        guard left.width > 2 * r + 2, left.height > 2 * r + 2, right.width > 2 * r + 2, right.height > 2 * r + 2 else { return [] }
        var result: [HeightSample] = []
        let n = gridSize
        for gy in 0..<n {
            for gx in 0..<n {
                let x = r + 1 + Int(Double(gx) + 0.5) * (left.width - 2 * r - 2) / n
                let y = r + 1 + Int(Double(gy) + 0.5) * (left.height - 2 * r - 2) / n
                if let s = measure(x: x, y: y, left: left, leftModel: leftModel, right: right,
                                   rightModel: rightModel, heights: heights) {
                    result.append(s)
                }
            }
        }
        return result
    }

    func measure(x: Int, y: Int, left: GrayImage, leftModel: RPCModel, right: GrayImage, rightModel: RPCModel,
                 heights: ClosedRange<Double>) -> HeightSample? {
        let r = patchRadius
        // Reference patch, zero-mean and unit-norm.
        var ref: [Float] = []
        ref.reserveCapacity((2 * r + 1) * (2 * r + 1))
        for dy in -r...r { for dx in -r...r { ref.append(left[x + dx, y + dy]) } }
        let mean = ref.reduce(0, +) / Float(ref.count)
        var ss: Float = 0
        for i in ref.indices { ref[i] -= mean; ss += ref[i] * ref[i] }
        guard (ss / Float(ref.count)).squareRoot() >= minimumContrast else { return nil }
        let refNorm = ss.squareRoot()

        let fc = left.fullResolution(Double(x)), fr = left.fullResolution(Double(y))
        func rightPoint(_ h: Double) -> (Double, Double)? {
            guard let g = try? leftModel.localize(column: fc, row: fr, height: h) else { return nil }
            let p = rightModel.project(longitude: g.longitude, latitude: g.latitude, height: h)
            return (right.sampleCoordinate(p.column), right.sampleCoordinate(p.row))
        }
        guard let a = rightPoint(heights.lowerBound), let b = rightPoint(heights.upperBound) else { return nil }
        let length = hypot(b.0 - a.0, b.1 - a.1)
        let steps = min(4000, max(2, Int((length * 2).rounded(.up)) + 1))
        var scores = [Double](repeating: -2, count: steps)
        var patch = [Float](repeating: 0, count: ref.count)
        for k in 0..<steps {
            let h = heights.lowerBound + (heights.upperBound - heights.lowerBound) * Double(k) / Double(steps - 1)
            guard let q = rightPoint(h) else { continue }
            var ok = true
            var i = 0
            var sum: Float = 0
            outer: for dy in -r...r {
                for dx in -r...r {
                    guard let v = right.bilinear(q.0 + Double(dx), q.1 + Double(dy)) else { ok = false; break outer }
                    patch[i] = v; sum += v; i += 1
                }
            }
            guard ok else { continue }
            let m = sum / Float(patch.count)
            var num: Float = 0, den: Float = 0
            for j in patch.indices {
                let v = patch[j] - m
                num += v * ref[j]; den += v * v
            }
            guard den > 0 else { continue }
            scores[k] = Double(num / (den.squareRoot() * refNorm))
        }
        guard let best = scores.indices.max(by: { scores[$0] < scores[$1] }), scores[best] >= minimumCorrelation else { return nil }
        // Require a distinct peak: nothing comparable farther than two steps away.
        for k in scores.indices where abs(k - best) > 2 && scores[k] > scores[best] - 0.05 { return nil }
        var kk = Double(best)
        if best > 0, best < steps - 1, scores[best - 1] > -2, scores[best + 1] > -2 {
            let c0 = scores[best - 1], c1 = scores[best], c2 = scores[best + 1]
            let denom = c0 - 2 * c1 + c2
            if denom < 0 { kk += max(-0.5, min(0.5, 0.5 * (c0 - c2) / denom)) }
        }
        let h = heights.lowerBound + (heights.upperBound - heights.lowerBound) * kk / Double(steps - 1)
        return HeightSample(column: fc, row: fr, height: h, correlation: scores[best])
    }

    /// Robust summary of samples; falls back to `fallback` when fewer than `minimumSamples` correlated.
    public static func summarise(_ samples: [HeightSample], fallback: Double, minimumSamples: Int = 5) -> SceneHeightEstimate {
        guard samples.count >= minimumSamples else {
            return SceneHeightEstimate(median: fallback, low: fallback, high: fallback, samples: samples.count, source: "rpc-offset")
        }
        let h = samples.map(\.height).sorted()
        func q(_ p: Double) -> Double { h[min(h.count - 1, max(0, Int((p * Double(h.count - 1)).rounded())))] }
        return SceneHeightEstimate(median: q(0.5), low: q(0.02), high: q(0.98), samples: h.count, source: "correlation")
    }
}
