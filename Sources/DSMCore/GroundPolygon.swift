import Foundation

/// A simple polygon on the ground, held in a local East-North tangent plane (metres).
public struct GroundPolygon: Sendable {
    public let frame: LocalFrame
    /// Vertices in the local plane, counter-clockwise seen from above, not closed.
    public private(set) var vertices: [SIMD2<Double>]

    public init(frame: LocalFrame, vertices: [SIMD2<Double>]) {
        self.frame = frame
        var v = vertices
        if Self.signedArea(v) < 0 { v.reverse() }
        self.vertices = v
    }

    public init(frame: LocalFrame, points: [GeoPoint]) {
        self.init(frame: frame, vertices: points.map {
            let e = frame.enu(longitude: $0.longitude, latitude: $0.latitude, height: $0.height)
            return SIMD2(e.x, e.y)
        })
    }

    static func signedArea(_ v: [SIMD2<Double>]) -> Double {
        guard v.count >= 3 else { return 0 }
        var s = 0.0
        for i in 0..<v.count {
            let a = v[i], b = v[(i + 1) % v.count]
            s += a.x * b.y - b.x * a.y
        }
        return s / 2
    }

    /// Area in square metres.
    public var area: Double { abs(Self.signedArea(vertices)) }

    /// Area-weighted centroid in the local plane.
    public var centroid: SIMD2<Double> {
        let a = Self.signedArea(vertices)
        guard abs(a) > 1e-12 else {
            return vertices.isEmpty ? .zero : vertices.reduce(.zero, +) / Double(vertices.count)
        }
        var c = SIMD2<Double>.zero
        for i in 0..<vertices.count {
            let p = vertices[i], q = vertices[(i + 1) % vertices.count]
            let cr = p.x * q.y - q.x * p.y
            c += (p + q) * cr
        }
        return c / (6 * a)
    }

    /// The centroid as a geodetic point (at the frame's height).
    public var centroidPoint: GeoPoint {
        let c = centroid
        let g = frame.geodetic(SIMD3(c.x, c.y, 0))
        return GeoPoint(longitude: g.longitude, latitude: g.latitude, height: frame.height)
    }

    /// Vertices as geodetic points.
    public var points: [GeoPoint] {
        vertices.map {
            let g = frame.geodetic(SIMD3($0.x, $0.y, 0))
            return GeoPoint(longitude: g.longitude, latitude: g.latitude, height: frame.height)
        }
    }

    /// Intersection with a convex polygon (Sutherland–Hodgman). `clip` must be convex; `self` may not.
    public func intersection(convex clip: GroundPolygon) -> GroundPolygon {
        var output = vertices
        let c = clip.vertices
        for i in 0..<c.count {
            let a = c[i], b = c[(i + 1) % c.count]
            let input = output
            output = []
            guard !input.isEmpty else { break }
            func inside(_ p: SIMD2<Double>) -> Bool { (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x) >= 0 }
            func cut(_ p: SIMD2<Double>, _ q: SIMD2<Double>) -> SIMD2<Double> {
                let d1 = (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x)
                let d2 = (b.x - a.x) * (q.y - a.y) - (b.y - a.y) * (q.x - a.x)
                return p + (q - p) * (d1 / (d1 - d2))
            }
            for j in 0..<input.count {
                let p = input[j], q = input[(j + 1) % input.count]
                let pin = inside(p), qin = inside(q)
                if pin { output.append(p) }
                if pin != qin { output.append(cut(p, q)) }
            }
        }
        return GroundPolygon(frame: frame, vertices: output)
    }

    /// The convex hull (monotone chain), used to clip against footprints that are convex in practice.
    public var convexHull: GroundPolygon {
        let pts = vertices.sorted { $0.x != $1.x ? $0.x < $1.x : $0.y < $1.y }
        guard pts.count >= 3 else { return self }
        func turn(_ o: SIMD2<Double>, _ a: SIMD2<Double>, _ b: SIMD2<Double>) -> Double {
            (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x)
        }
        var lower: [SIMD2<Double>] = [], upper: [SIMD2<Double>] = []
        for p in pts {
            while lower.count >= 2 && turn(lower[lower.count - 2], lower[lower.count - 1], p) <= 0 { lower.removeLast() }
            lower.append(p)
        }
        for p in pts.reversed() {
            while upper.count >= 2 && turn(upper[upper.count - 2], upper[upper.count - 1], p) <= 0 { upper.removeLast() }
            upper.append(p)
        }
        return GroundPolygon(frame: frame, vertices: Array(lower.dropLast() + upper.dropLast()))
    }
}
