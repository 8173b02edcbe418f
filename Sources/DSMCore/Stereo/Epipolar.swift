import Foundation

/// A 2-D affine map: (x, y) → (a·x + b·y + c, d·x + e·y + f).
public struct Affine2D: Sendable, Equatable, Codable {
    public var a, b, c, d, e, f: Double

    public init(a: Double, b: Double, c: Double, d: Double, e: Double, f: Double) {
        self.a = a; self.b = b; self.c = c; self.d = d; self.e = e; self.f = f
    }

    public static let identity = Affine2D(a: 1, b: 0, c: 0, d: 0, e: 1, f: 0)

    /// Rotation by `angle` (radians) scaled by `scale`, then a translation.
    public static func similarity(angle: Double, scale: Double = 1, tx: Double = 0, ty: Double = 0) -> Affine2D {
        Affine2D(a: scale * cos(angle), b: -scale * sin(angle), c: tx, d: scale * sin(angle), e: scale * cos(angle), f: ty)
    }

    @inlinable public func apply(_ x: Double, _ y: Double) -> (x: Double, y: Double) {
        (a * x + b * y + c, d * x + e * y + f)
    }

    public var inverse: Affine2D {
        let det = a * e - b * d
        let ia = e / det, ib = -b / det, id = -d / det, ie = a / det
        return Affine2D(a: ia, b: ib, c: -(ia * c + ib * f), d: id, e: ie, f: -(id * c + ie * f))
    }

    /// self ∘ other: apply `other` first.
    public func after(_ o: Affine2D) -> Affine2D {
        Affine2D(a: a * o.a + b * o.d, b: a * o.b + b * o.e, c: a * o.c + b * o.f + c,
                 d: d * o.a + e * o.d, e: d * o.b + e * o.e, f: d * o.c + e * o.f + f)
    }

    public func translated(_ tx: Double, _ ty: Double) -> Affine2D {
        var t = self
        t.c += tx; t.f += ty
        return t
    }
}

/// A rectangle of full-resolution pixels (pixel-centre coordinates of its first pixel, and its size).
public struct PixelWindow: Sendable, Equatable, Codable {
    public var x: Int, y: Int, width: Int, height: Int
    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x; self.y = y; self.width = width; self.height = height
    }

    /// Whether the window has a positive size and lies inside an image of `imageWidth` × `imageHeight`
    /// pixels. Compared by subtraction: a corner near Int.max must not overflow a sum.
    public func isInside(imageWidth: Int, imageHeight: Int) -> Bool {
        width > 0 && height > 0 && x >= 0 && y >= 0 && x <= imageWidth - width && y <= imageHeight - height
    }
}

/// The epipolar geometry of one tile of a pair: sensor → rectified maps for both images, the rectified
/// grid, and the disparity range the scene's heights produce. Rectified rows are epipolar lines; a
/// left rectified pixel (u, v) matches the right rectified pixel (u − d, v).
public struct EpipolarTile: Sendable, Codable {
    /// Tile window in the first image.
    public var window: PixelWindow
    /// Image-1 pixel → rectified left grid pixel (the grid's first pixel is (0, 0)).
    public var left: Affine2D
    /// Image-2 pixel → rectified right grid pixel.
    public var right: Affine2D
    /// Size of the rectified left grid.
    public var width: Int
    public var height: Int
    /// Width of the rectified right grid (wide enough for every disparity of the range).
    public var rightWidth: Int
    /// Disparities of the heights searched: left grid column u matches right grid column u − d.
    public var disparityRange: ClosedRange<Double>
    public var heightRange: ClosedRange<Double>
    /// Row disagreement of the affine model on the RPC virtual correspondences, pixels (max).
    public var modelResidual: Double
    /// Row correction applied to the right image from image matching (pointing error), pixels.
    public var pointingCorrection: Double = 0
}

public enum EpipolarError: Error, Equatable, CustomStringConvertible {
    case degenerate(String)
    public var description: String {
        switch self { case .degenerate(let s): return "epipolar geometry cannot be built: \(s)" }
    }
}

/// Builds per-tile affine epipolar geometries from two RPC models.
public struct EpipolarRectifier: Sendable {
    public let first: RPCModel
    public let second: RPCModel
    /// Sampling of the virtual correspondences per tile side.
    public var grid = 7
    /// Extra disparity, in pixels, added on each side of the projected height range.
    public var disparityMargin = 2.0

    public init(first: RPCModel, second: RPCModel) {
        self.first = first
        self.second = second
    }

    /// Virtual correspondences of a window at a height: (image-1 point, image-2 point).
    func correspondences(_ w: PixelWindow, heights: [Double]) throws -> [(SIMD2<Double>, SIMD2<Double>, Double)] {
        var out: [(SIMD2<Double>, SIMD2<Double>, Double)] = []
        for h in heights {
            for j in 0..<grid {
                for i in 0..<grid {
                    let x = Double(w.x) + Double(w.width - 1) * Double(i) / Double(grid - 1)
                    let y = Double(w.y) + Double(w.height - 1) * Double(j) / Double(grid - 1)
                    let g = try first.localize(column: x, row: y, height: h)
                    let p = second.project(longitude: g.longitude, latitude: g.latitude, height: h)
                    out.append((SIMD2(x, y), SIMD2(p.column, p.row), h))
                }
            }
        }
        return out
    }

    public func tile(_ w: PixelWindow, heights: ClosedRange<Double>) throws -> EpipolarTile {
        let hs = [heights.lowerBound, (heights.lowerBound + heights.upperBound) / 2, heights.upperBound]
        let matches = try correspondences(w, heights: hs)
        let n = grid * grid
        // Epipolar directions: image 2 moves along v2 as the height changes for a fixed image-1 point;
        // image 1 moves along v1 for a fixed image-2 point.
        var v2 = SIMD2<Double>.zero
        for i in 0..<n { v2 += matches[2 * n + i].1 - matches[i].1 }
        var v1 = SIMD2<Double>.zero
        for i in 0..<n {
            let p2 = matches[n + i].1
            let g0 = try second.localize(column: p2.x, row: p2.y, height: hs[0])
            let g1 = try second.localize(column: p2.x, row: p2.y, height: hs[2])
            let a = first.project(longitude: g0.longitude, latitude: g0.latitude, height: hs[0])
            let b = first.project(longitude: g1.longitude, latitude: g1.latitude, height: hs[2])
            v1 += SIMD2(b.column - a.column, b.row - a.row)
        }
        guard (v1 * v1).sum() > 1e-12, (v2 * v2).sum() > 1e-12 else {
            throw EpipolarError.degenerate("no parallax between the views over heights \(heights)")
        }
        // Rotate each image so that its epipolar lines become rows with the same orientation: v2 → +x and
        // −v1 → +x (for a fixed point of the other image, a height increase moves the two images' points in
        // opposite senses along their epipolar lines). The disparity u₁ − u₂ then decreases as height rises.
        let r1 = Affine2D.similarity(angle: -atan2(-v1.y, -v1.x))
        let r2 = Affine2D.similarity(angle: -atan2(v2.y, v2.x))
        // Row agreement: y₂' = s·y₁' + t over all correspondences (affine epipolar geometry).
        var sy = 0.0, sy2 = 0.0, st = 0.0, syt = 0.0
        for m in matches {
            let y1 = r1.apply(m.0.x, m.0.y).y, y2 = r2.apply(m.1.x, m.1.y).y
            sy += y1; sy2 += y1 * y1; st += y2; syt += y1 * y2
        }
        let cnt = Double(matches.count)
        let s = (cnt * syt - sy * st) / (cnt * sy2 - sy * sy)
        let t = (st - s * sy) / cnt
        guard s.isFinite, abs(s) > 0.2, abs(s) < 5 else { throw EpipolarError.degenerate("row scale \(s) between the views") }
        // Right: y'' = (y₂' − t)/s and the same scale in x (a similarity keeps pixels square).
        var right = Affine2D(a: 1 / s, b: 0, c: 0, d: 0, e: 1 / s, f: -t / s).after(r2)
        var left = r1
        // Left grid: bounding box of the tile's corners.
        let corners = [(Double(w.x) - 0.5, Double(w.y) - 0.5), (Double(w.x + w.width) - 0.5, Double(w.y) - 0.5),
                       (Double(w.x) - 0.5, Double(w.y + w.height) - 0.5), (Double(w.x + w.width) - 0.5, Double(w.y + w.height) - 0.5)]
        let mapped = corners.map { left.apply($0.0, $0.1) }
        let u0 = mapped.map(\.x).min()!.rounded(.down), v0 = mapped.map(\.y).min()!.rounded(.down)
        let u1 = mapped.map(\.x).max()!.rounded(.up), v1g = mapped.map(\.y).max()!.rounded(.up)
        left = left.translated(-u0 - 0.5, -v0 - 0.5)
        right = right.translated(-u0 - 0.5, -v0 - 0.5)
        // Disparities and row residuals of the virtual correspondences.
        var dMin = Double.infinity, dMax = -Double.infinity, residual = 0.0, dMean = 0.0
        for m in matches {
            let p = left.apply(m.0.x, m.0.y), q = right.apply(m.1.x, m.1.y)
            dMin = min(dMin, p.x - q.x); dMax = max(dMax, p.x - q.x)
            residual = max(residual, abs(p.y - q.y))
            if m.2 == hs[1] { dMean += (p.x - q.x) / Double(n) }
        }
        // Centre the disparities of the mean height on zero (keeps the right grid near the left one).
        let shift = dMean.rounded()
        right = right.translated(shift, 0)
        dMin -= shift; dMax -= shift
        let width = Int(u1 - u0), height = Int(v1g - v0)
        let dLo = (dMin - disparityMargin).rounded(.down), dHi = (dMax + disparityMargin).rounded(.up)
        // Right grid: it must hold column u − d for every left column u and disparity d, so its first
        // column is the common frame's −dHi; disparities shift by the same amount.
        right = right.translated(dHi, 0)
        let rightWidth = width + Int(dHi - dLo)
        return EpipolarTile(window: w, left: left, right: right, width: width, height: height,
                            rightWidth: rightWidth, disparityRange: (dLo - dHi)...0,
                            heightRange: heights, modelResidual: residual)
    }
}

/// Bicubic resampling of a source window into a rectified grid through an affine map.
public enum EpipolarResampler {
    /// - Parameters:
    ///   - source: pixels of the source image window whose first pixel is full-image pixel `origin`.
    ///   - toGrid: full-image pixel → grid pixel (before `columnOffset`).
    ///   - columnOffset: grid column j samples grid coordinate j + columnOffset.
    /// Pixels whose source lies outside the window are NaN.
    public static func resample(_ source: GrayImage, origin: (x: Int, y: Int), toGrid: Affine2D,
                                width: Int, height: Int, columnOffset: Int = 0) -> GrayImage {
        let inv = toGrid.inverse
        var out = [Float](repeating: .nan, count: width * height)
        for v in 0..<height {
            for j in 0..<width {
                let p = inv.apply(Double(j + columnOffset), Double(v))
                if let s = source.bicubic(p.x - Double(origin.x), p.y - Double(origin.y)) { out[v * width + j] = s }
            }
        }
        return GrayImage(width: width, height: height, pixels: out)
    }

    /// The source window (full-image pixels, with a bicubic margin) a grid needs.
    public static func sourceWindow(toGrid: Affine2D, width: Int, height: Int, columnOffset: Int = 0,
                                    imageWidth: Int, imageHeight: Int) -> PixelWindow? {
        let inv = toGrid.inverse
        let pts = [(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)].map {
            inv.apply(Double($0.0 + columnOffset), Double($0.1))
        }
        let x0 = max(0, Int(pts.map(\.x).min()!.rounded(.down)) - 3), y0 = max(0, Int(pts.map(\.y).min()!.rounded(.down)) - 3)
        let x1 = min(imageWidth - 1, Int(pts.map(\.x).max()!.rounded(.up)) + 3)
        let y1 = min(imageHeight - 1, Int(pts.map(\.y).max()!.rounded(.up)) + 3)
        guard x1 >= x0, y1 >= y0 else { return nil }
        return PixelWindow(x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1)
    }
}
