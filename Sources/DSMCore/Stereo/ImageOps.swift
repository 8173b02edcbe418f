import Foundation

/// Keys cubic convolution kernel (a = −0.5), the usual "bicubic".
@inlinable func cubicWeights(_ t: Float) -> SIMD4<Float> {
    let a: Float = -0.5
    let t2 = t * t, t3 = t2 * t
    let w0 = a * (t3 - 2 * t2 + t)
    let w1 = (a + 2) * t3 - (a + 3) * t2 + 1
    let w2 = -(a + 2) * t3 + (2 * a + 3) * t2 - a * t
    let w3 = -a * (t3 - t2)
    return SIMD4(w0, w1, w2, w3)
}

extension GrayImage {
    /// Bicubic sample with edge replication; nil when (x, y) is more than half a pixel outside.
    @inlinable public func bicubic(_ x: Double, _ y: Double) -> Float? {
        guard x >= -0.5, y >= -0.5, x <= Double(width) - 0.5, y <= Double(height) - 0.5 else { return nil }
        let xf = x.rounded(.down), yf = y.rounded(.down)
        let ix = Int(xf), iy = Int(yf)
        let wx = cubicWeights(Float(x - xf)), wy = cubicWeights(Float(y - yf))
        var acc: Float = 0
        for j in 0..<4 {
            let yy = Swift.min(Swift.max(iy - 1 + j, 0), height - 1)
            let base = yy * width
            var row: Float = 0
            for i in 0..<4 {
                let xx = Swift.min(Swift.max(ix - 1 + i, 0), width - 1)
                row += wx[i] * pixels[base + xx]
            }
            acc += wy[j] * row
        }
        return acc
    }

    /// The image shifted right by a fraction of a pixel: out(x) = in(x − shift), bicubic, edges replicated.
    public func shiftedHorizontally(by shift: Double) -> GrayImage {
        if shift == 0 { return self }
        let n = Int(shift.rounded(.down))
        let w = cubicWeights(Float(1 - (shift - Double(n))))  // sample at x − shift = (x − n − 1) + (1 − frac)
        var out = [Float](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<height {
                    let row = y * width
                    for x in 0..<width {
                        let x0 = x - n - 1
                        var acc: Float = 0
                        for i in 0..<4 {
                            let xx = Swift.min(Swift.max(x0 - 1 + i, 0), width - 1)
                            acc += w[i] * src[row + xx]
                        }
                        dst[row + x] = acc
                    }
                }
            }
        }
        return GrayImage(width: width, height: height, pixels: out, scale: scale)
    }

    /// Half-resolution image (2×2 box average after a [1 2 1]/4 smoothing), for image pyramids.
    public func downsampled() -> GrayImage {
        let w2 = Swift.max(1, width / 2), h2 = Swift.max(1, height / 2)
        var out = [Float](repeating: 0, count: w2 * h2)
        func px(_ x: Int, _ y: Int) -> Float {
            pixels[Swift.min(Swift.max(y, 0), height - 1) * width + Swift.min(Swift.max(x, 0), width - 1)]
        }
        for y in 0..<h2 {
            for x in 0..<w2 {
                let cx = 2 * x, cy = 2 * y
                var acc: Float = 0
                // 4×4 binomial-like kernel centred on the 2×2 block: weights [1 3 3 1]/8 per axis.
                let k: [Float] = [1, 3, 3, 1]
                for j in 0..<4 { for i in 0..<4 { acc += k[i] * k[j] * px(cx - 1 + i, cy - 1 + j) } }
                out[y * w2 + x] = acc / 64
            }
        }
        return GrayImage(width: w2, height: h2, pixels: out, scale: scale * 2)
    }

    /// Mean and standard deviation of the pixels.
    public var statistics: (mean: Double, std: Double) {
        var s = 0.0, s2 = 0.0
        for v in pixels { let d = Double(v); s += d; s2 += d * d }
        let n = Double(Swift.max(1, pixels.count))
        let m = s / n
        return (m, Swift.max(0, s2 / n - m * m).squareRoot())
    }

    /// A window copy (clamped to the image).
    public func crop(x: Int, y: Int, width w: Int, height h: Int) -> GrayImage {
        var out = [Float](repeating: 0, count: w * h)
        for r in 0..<h {
            let yy = Swift.min(Swift.max(y + r, 0), height - 1)
            for c in 0..<w {
                out[r * w + c] = pixels[yy * width + Swift.min(Swift.max(x + c, 0), width - 1)]
            }
        }
        return GrayImage(width: w, height: h, pixels: out, scale: scale)
    }
}
