import Foundation

/// Lines of sight of an image window, sampled on a grid: the ground points (ECEF) seen by each grid
/// pixel at two heights. Bilinear interpolation between grid nodes gives any pixel's line of sight far
/// more cheaply than two localisations per pixel (the RPC is smooth at the grid's scale).
public struct LineOfSightGrid: Sendable {
    public let x0: Double, y0: Double, step: Double
    public let nx: Int, ny: Int
    public let lowHeight: Double, highHeight: Double
    var low: [SIMD3<Double>]
    var high: [SIMD3<Double>]

    /// Samples `model` over [x0, x1] × [y0, y1] (pixel-centre coordinates) every `step` pixels.
    public init(model: RPCModel, x0: Double, y0: Double, x1: Double, y1: Double, step: Double = 16,
                heights: ClosedRange<Double>) throws {
        self.x0 = x0; self.y0 = y0; self.step = step
        nx = Int(((x1 - x0) / step).rounded(.up)) + 2
        ny = Int(((y1 - y0) / step).rounded(.up)) + 2
        lowHeight = heights.lowerBound; highHeight = heights.upperBound
        low = []; high = []
        low.reserveCapacity(nx * ny); high.reserveCapacity(nx * ny)
        for j in 0..<ny {
            for i in 0..<nx {
                let x = x0 + Double(i) * step, y = y0 + Double(j) * step
                let a = try model.localize(column: x, row: y, height: lowHeight)
                let b = try model.localize(column: x, row: y, height: highHeight)
                low.append(WGS84.toECEF(longitude: a.longitude, latitude: a.latitude, height: lowHeight))
                high.append(WGS84.toECEF(longitude: b.longitude, latitude: b.latitude, height: highHeight))
            }
        }
    }

    /// The line of sight of pixel (x, y): a point and a direction (towards the satellite), ECEF.
    public func ray(_ x: Double, _ y: Double) -> (origin: SIMD3<Double>, direction: SIMD3<Double>) {
        let fx = (x - x0) / step, fy = (y - y0) / step
        let i = min(max(Int(fx.rounded(.down)), 0), nx - 2), j = min(max(Int(fy.rounded(.down)), 0), ny - 2)
        let tx = fx - Double(i), ty = fy - Double(j)
        func lerp(_ g: [SIMD3<Double>]) -> SIMD3<Double> {
            let k = j * nx + i
            let a = g[k] * (1 - tx) + g[k + 1] * tx
            let b = g[k + nx] * (1 - tx) + g[k + nx + 1] * tx
            return a * (1 - ty) + b * ty
        }
        let p = lerp(low), q = lerp(high)
        return (p, q - p)
    }
}

/// A triangulated point.
public struct GroundPoint: Sendable {
    public var longitude: Double
    public var latitude: Double
    public var height: Double
    /// Distance between the two lines of sight at their closest approach, metres.
    public var residual: Float
    /// Correlation score of the match.
    public var score: Float
    /// Standard deviation of the match's disparity, pixels (NaN when unknown).
    public var disparityUncertainty: Float = .nan
}

public enum Triangulation {
    /// Closest approach of two lines p + s·u and q + t·v: the midpoint and the gap between them.
    @inlinable public static func intersect(_ p: SIMD3<Double>, _ u: SIMD3<Double>, _ q: SIMD3<Double>,
                                            _ v: SIMD3<Double>) -> (point: SIMD3<Double>, gap: Double)? {
        let w = p - q
        let a = (u * u).sum(), b = (u * v).sum(), c = (v * v).sum(), d = (u * w).sum(), e = (v * w).sum()
        let den = a * c - b * b
        guard den > 1e-12 * a * c else { return nil }
        let s = (b * e - c * d) / den, t = (a * e - b * d) / den
        let x = p + u * s, y = q + v * t
        let g = x - y
        return ((x + y) * 0.5, (g * g).sum().squareRoot())
    }

    /// Triangulates every valid pixel of a rectified tile's disparity map.
    /// - Parameters:
    ///   - tile: the tile's epipolar geometry (rectified grid ↔ sensor maps).
    ///   - first, second: lines of sight of the two images over the tile's source windows.
    ///   - maximumGap: points whose lines of sight pass further apart than this (metres) are dropped.
    public static func points(tile: EpipolarTile, disparity: DisparityMap, first: LineOfSightGrid,
                              second: LineOfSightGrid, maximumGap: Double = 5) -> [GroundPoint] {
        let il = tile.left.inverse, ir = tile.right.inverse
        var out: [GroundPoint] = []
        out.reserveCapacity(disparity.validCount)
        for v in 0..<disparity.height {
            for u in 0..<disparity.width {
                let i = v * disparity.width + u
                let d = disparity.disparity[i]
                guard !d.isNaN else { continue }
                let p1 = il.apply(Double(u), Double(v))
                let p2 = ir.apply(Double(u) - Double(d), Double(v))
                let r1 = first.ray(p1.x, p1.y), r2 = second.ray(p2.x, p2.y)
                guard let x = intersect(r1.origin, r1.direction, r2.origin, r2.direction), x.gap <= maximumGap else { continue }
                let g = WGS84.toGeodetic(x.point)
                out.append(GroundPoint(longitude: g.longitude, latitude: g.latitude, height: g.height,
                                       residual: Float(x.gap), score: disparity.score[i], disparityUncertainty: disparity.uncertainty[i]))
            }
        }
        return out
    }
}
