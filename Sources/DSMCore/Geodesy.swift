import Foundation

/// WGS84 ellipsoid and local frames. Angles in degrees at the API, heights in metres above the ellipsoid.
public enum WGS84 {
    public static let semiMajorAxis = 6_378_137.0
    public static let flattening = 1.0 / 298.257223563
    public static let eccentricitySquared = flattening * (2 - flattening)

    /// Geodetic (lon, lat, h) → Earth-centred Earth-fixed (x, y, z) in metres.
    public static func toECEF(longitude: Double, latitude: Double, height: Double) -> SIMD3<Double> {
        let lon = longitude * .pi / 180, lat = latitude * .pi / 180
        let sinLat = sin(lat), cosLat = cos(lat)
        let n = semiMajorAxis / (1 - eccentricitySquared * sinLat * sinLat).squareRoot()
        return SIMD3((n + height) * cosLat * cos(lon),
                     (n + height) * cosLat * sin(lon),
                     (n * (1 - eccentricitySquared) + height) * sinLat)
    }

    /// ECEF → geodetic, by fixed-point iteration on t = tan(latitude): t = z / (r − e²·N·cos φ), with cos φ and
    /// the normal radius N taken from t itself, so an iteration costs two square roots and no trigonometry
    /// (triangulation converts every matched point: the previous iteration on the angle, with a sine, a cosine
    /// and an arctangent per step, was 12 % of a match step's CPU). Each step gains a factor e² ≈ 1/150; from
    /// Bowring's start one or two steps reach 1e-14; then one arctangent. The height is
    /// r·cos φ + z·sin φ − a·√(1 − e²·sin²φ), well conditioned at every latitude.
    public static func toGeodetic(_ p: SIMD3<Double>) -> (longitude: Double, latitude: Double, height: Double) {
        let a = semiMajorAxis, e2 = eccentricitySquared
        let lon = atan2(p.y, p.x)
        let r = (p.x * p.x + p.y * p.y).squareRoot()
        guard r > 1e-9 * a else {
            // On the polar axis.
            return (lon * 180 / .pi, p.z >= 0 ? 90 : -90, abs(p.z) - a * (1 - e2).squareRoot())
        }
        // Bowring's start (the parametric latitude's tangent, then one closed-form step; square roots only):
        // within ~1e-12 of the answer for points near the ellipsoid, so the iteration below confirms it in
        // one or two steps where the ellipsoidal start (t = z / (r·(1 − e²))) took four to six.
        let b = a * (1 - e2).squareRoot()
        let tu = p.z * a / (r * b)
        let cu = 1 / (1 + tu * tu).squareRoot(), su = tu * cu
        var t = (p.z + e2 / (1 - e2) * b * su * su * su) / (r - e2 * a * cu * cu * cu)
        for _ in 0..<10 {
            let c = 1 / (1 + t * t).squareRoot()
            let n = a / (1 - e2 * t * t * c * c).squareRoot()
            let next = p.z / (r - e2 * n * c)
            let converged = abs(next - t) <= 1e-14 * max(1, abs(t))  // ≈ 0.06 µm on the ground
            t = next
            if converged { break }
        }
        let c = 1 / (1 + t * t).squareRoot(), s = t * c
        let h = r * c + p.z * s - a * (1 - e2 * s * s).squareRoot()
        return (lon * 180 / .pi, atan(t) * 180 / .pi, h)
    }

    /// Radii of curvature at a latitude: metres per radian along the meridian (north) and the parallel (east).
    public static func radiiOfCurvature(latitude: Double) -> (north: Double, east: Double) {
        let s = sin(latitude * .pi / 180)
        let w = (1 - eccentricitySquared * s * s).squareRoot()
        let n = semiMajorAxis / w
        let m = semiMajorAxis * (1 - eccentricitySquared) / (w * w * w)
        return (m, n * cos(latitude * .pi / 180))
    }
}

/// A local East-North-Up tangent frame at a geodetic origin.
public struct LocalFrame: Sendable {
    public let longitude: Double
    public let latitude: Double
    public let height: Double
    public let origin: SIMD3<Double>
    public let east: SIMD3<Double>
    public let north: SIMD3<Double>
    public let up: SIMD3<Double>

    public init(longitude: Double, latitude: Double, height: Double = 0) {
        self.longitude = longitude
        self.latitude = latitude
        self.height = height
        origin = WGS84.toECEF(longitude: longitude, latitude: latitude, height: height)
        let lon = longitude * .pi / 180, lat = latitude * .pi / 180
        east = SIMD3(-sin(lon), cos(lon), 0)
        north = SIMD3(-sin(lat) * cos(lon), -sin(lat) * sin(lon), cos(lat))
        up = SIMD3(cos(lat) * cos(lon), cos(lat) * sin(lon), sin(lat))
    }

    /// Geodetic → local ENU metres.
    public func enu(longitude: Double, latitude: Double, height: Double) -> SIMD3<Double> {
        let d = WGS84.toECEF(longitude: longitude, latitude: latitude, height: height) - origin
        return SIMD3((d * east).sum(), (d * north).sum(), (d * up).sum())
    }

    /// Local ENU metres → geodetic.
    public func geodetic(_ enu: SIMD3<Double>) -> (longitude: Double, latitude: Double, height: Double) {
        WGS84.toGeodetic(origin + enu.x * east + enu.y * north + enu.z * up)
    }
}

@inlinable func dot(_ a: SIMD3<Double>, _ b: SIMD3<Double>) -> Double { (a * b).sum() }
@inlinable func norm(_ a: SIMD3<Double>) -> Double { dot(a, a).squareRoot() }
@inlinable func cross(_ a: SIMD3<Double>, _ b: SIMD3<Double>) -> SIMD3<Double> {
    SIMD3(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x)
}
