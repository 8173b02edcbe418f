import CGDAL

/// Coordinate transformation between EPSG systems through OGR, with the traditional GIS axis order
/// (longitude/easting first) on both sides. Not thread-safe: one instance per task.
public final class CoordinateTransform {
    let handle: OGRCoordinateTransformationH
    public let sourceEPSG: Int
    public let targetEPSG: Int

    public convenience init(fromEPSG: Int, toEPSG: Int) throws {
        let a = try SpatialReference.handle(epsg: fromEPSG)
        defer { OSRDestroySpatialReference(a) }
        let b = try SpatialReference.handle(epsg: toEPSG)
        defer { OSRDestroySpatialReference(b) }
        try self.init(a, b, epsg: (fromEPSG, toEPSG), what: "transform EPSG:\(fromEPSG) → EPSG:\(toEPSG)")
    }

    /// Between two CRS given as WKT (e.g. a raster's and a DSM's); EPSG codes are reported as 0.
    public convenience init(fromWKT: String, toWKT: String) throws {
        let a = try SpatialReference.handle(wkt: fromWKT)
        defer { OSRDestroySpatialReference(a) }
        let b = try SpatialReference.handle(wkt: toWKT)
        defer { OSRDestroySpatialReference(b) }
        try self.init(a, b, epsg: (0, 0), what: "transform between two coordinate systems")
    }

    init(_ a: OGRSpatialReferenceH, _ b: OGRSpatialReferenceH, epsg: (Int, Int), what: String) throws {
        guard let h = OCTNewCoordinateTransformation(a, b) else {
            throw GDALError(operation: what, path: nil, message: GDAL.lastError())
        }
        handle = h
        sourceEPSG = epsg.0
        targetEPSG = epsg.1
    }

    deinit { OCTDestroyCoordinateTransformation(handle) }

    /// Transforms points in place; returns false for points that failed (left unchanged).
    @discardableResult
    public func transform(x: inout [Double], y: inout [Double]) -> [Bool] {
        precondition(x.count == y.count)
        var ok = [Int32](repeating: 0, count: x.count)
        var z = [Double](repeating: 0, count: x.count)
        _ = OCTTransformEx(handle, Int32(x.count), &x, &y, &z, &ok)
        return ok.map { $0 != 0 }
    }

    public func transform(_ x: Double, _ y: Double) -> (x: Double, y: Double)? {
        var xs = [x], ys = [y]
        return transform(x: &xs, y: &ys)[0] ? (xs[0], ys[0]) : nil
    }

    /// EPSG code of the UTM zone (WGS84) containing a longitude/latitude.
    public static func utmEPSG(longitude: Double, latitude: Double) -> Int {
        let zone = min(60, max(1, Int(((longitude + 180) / 6).rounded(.down)) + 1))
        return (latitude >= 0 ? 32600 : 32700) + zone
    }
}
