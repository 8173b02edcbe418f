import Foundation

/// A point on the ground: degrees and metres above the WGS84 ellipsoid.
public struct GeoPoint: Sendable, Equatable, Codable {
    public var longitude: Double
    public var latitude: Double
    public var height: Double
    public init(longitude: Double, latitude: Double, height: Double = 0) {
        self.longitude = longitude
        self.latitude = latitude
        self.height = height
    }
}

/// Viewing geometry of one image at one ground point, derived from the RPC projection alone.
public struct ViewingGeometry: Sendable, Equatable {
    /// Horizontal displacement (east, north), in metres, of the ground point that stays on the same
    /// image pixel when the height increases by one metre. Its length is tan(incidence) and it points
    /// towards the satellite.
    public var displacementPerMetre: SIMD2<Double>
    /// Angle between the line of sight and the local vertical, in degrees.
    public var incidenceDegrees: Double { atan(simdLength(displacementPerMetre)) * 180 / .pi }
    /// Azimuth of the satellite seen from the ground point, degrees clockwise from north in [0, 360).
    public var azimuthDegrees: Double {
        let a = atan2(displacementPerMetre.x, displacementPerMetre.y) * 180 / .pi
        return a < 0 ? a + 360 : a
    }
    /// Unit vector from the ground point towards the satellite, in the local East-North-Up frame.
    public var lineOfSight: SIMD3<Double> {
        let v = SIMD3(displacementPerMetre.x, displacementPerMetre.y, 1)
        return v / norm(v)
    }
}

@inlinable func simdLength(_ v: SIMD2<Double>) -> Double { (v * v).sum().squareRoot() }

/// Ground sampling distance of a pixel: the ground length of one pixel step along columns and rows.
public struct GroundSampling: Sendable, Equatable, Codable {
    public var alongColumns: Double
    public var alongRows: Double
    /// Square root of the ground area of one pixel.
    public var mean: Double
}

extension RPCModel {
    /// Derivatives of the projection at a ground point, by central differences in the local frame:
    /// J = ∂(col, row)/∂(east, north) per metre and v = ∂(col, row)/∂height per metre.
    public func projectionJacobian(at p: GeoPoint, step: Double = 1.0) -> (j: (Double, Double, Double, Double), v: SIMD2<Double>) {
        let radii = WGS84.radiiOfCurvature(latitude: p.latitude)
        let dLon = step / radii.east * 180 / .pi
        let dLat = step / radii.north * 180 / .pi
        let e1 = project(longitude: p.longitude + dLon, latitude: p.latitude, height: p.height)
        let e0 = project(longitude: p.longitude - dLon, latitude: p.latitude, height: p.height)
        let n1 = project(longitude: p.longitude, latitude: p.latitude + dLat, height: p.height)
        let n0 = project(longitude: p.longitude, latitude: p.latitude - dLat, height: p.height)
        let h1 = project(longitude: p.longitude, latitude: p.latitude, height: p.height + step)
        let h0 = project(longitude: p.longitude, latitude: p.latitude, height: p.height - step)
        let s = 1 / (2 * step)
        return (((e1.column - e0.column) * s, (n1.column - n0.column) * s,
                 (e1.row - e0.row) * s, (n1.row - n0.row) * s),
                SIMD2((h1.column - h0.column) * s, (h1.row - h0.row) * s))
    }

    /// Viewing geometry at a ground point (see `ViewingGeometry`).
    public func viewingGeometry(at p: GeoPoint) -> ViewingGeometry {
        let (j, v) = projectionJacobian(at: p)
        // Solve J·d = −v for the horizontal displacement that keeps the pixel fixed.
        let det = j.0 * j.3 - j.1 * j.2
        let dx = (-v.x * j.3 + v.y * j.1) / det
        let dy = (-v.y * j.0 + v.x * j.2) / det
        return ViewingGeometry(displacementPerMetre: SIMD2(dx, dy))
    }

    /// Ground sampling distance at an image point and height.
    public func groundSampling(column c: Double, row r: Double, height: Double) throws -> GroundSampling {
        let centre = try localize(column: c, row: r, height: height)
        let frame = LocalFrame(longitude: centre.longitude, latitude: centre.latitude, height: height)
        func enu(_ dc: Double, _ dr: Double) throws -> SIMD3<Double> {
            let g = try localize(column: c + dc, row: r + dr, height: height)
            return frame.enu(longitude: g.longitude, latitude: g.latitude, height: height)
        }
        let a = try enu(0.5, 0) - enu(-0.5, 0)
        let b = try enu(0, 0.5) - enu(0, -0.5)
        return GroundSampling(alongColumns: norm(a), alongRows: norm(b), mean: norm(cross(a, b)).squareRoot())
    }

    /// Ground footprint of an image of `width` × `height` pixels at a constant height: the image outline
    /// (pixel corners, `samplesPerEdge` points per edge) localised on the ground, counter-clockwise
    /// seen from above is not guaranteed; use `GroundPolygon` to normalise.
    public func footprint(width: Int, height imageHeight: Int, at h: Double, samplesPerEdge: Int = 4) throws -> [GeoPoint] {
        let x0 = -0.5, y0 = -0.5, x1 = Double(width) - 0.5, y1 = Double(imageHeight) - 0.5
        let corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        var ring: [GeoPoint] = []
        for k in 0..<4 {
            let (ax, ay) = corners[k], (bx, by) = corners[(k + 1) % 4]
            for s in 0..<samplesPerEdge {
                let t = Double(s) / Double(samplesPerEdge)
                let g = try localize(column: ax + t * (bx - ax), row: ay + t * (by - ay), height: h)
                ring.append(GeoPoint(longitude: g.longitude, latitude: g.latitude, height: h))
            }
        }
        return ring
    }
}

/// Geometry of a stereo pair at a ground point: base-to-height ratio and convergence angle.
public struct StereoGeometry: Sendable, Equatable {
    /// Parallax between the two lines of sight per metre of height: |d₁ − d₂|, which is B/H.
    public var baseToHeight: Double
    /// Angle between the two lines of sight, degrees.
    public var convergenceDegrees: Double

    public init(_ a: ViewingGeometry, _ b: ViewingGeometry) {
        baseToHeight = simdLength(a.displacementPerMetre - b.displacementPerMetre)
        let c = max(-1, min(1, dot(a.lineOfSight, b.lineOfSight)))
        convergenceDegrees = acos(c) * 180 / .pi
    }
}
