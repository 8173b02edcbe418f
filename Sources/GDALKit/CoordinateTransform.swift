import CGDAL

/// Coordinate transformation between EPSG systems through OGR, with the traditional GIS axis order
/// (longitude/easting first) on both sides. Not thread-safe: one instance per task.
public final class CoordinateTransform {
    let handle: OGRCoordinateTransformationH
    public let sourceEPSG: Int
    public let targetEPSG: Int

    public init(fromEPSG: Int, toEPSG: Int) throws {
        GDAL.initialize()
        let a = try SpatialReference.handle(epsg: fromEPSG)
        defer { OSRDestroySpatialReference(a) }
        let b = try SpatialReference.handle(epsg: toEPSG)
        defer { OSRDestroySpatialReference(b) }
        guard let h = OCTNewCoordinateTransformation(a, b) else {
            throw GDALError(operation: "transform EPSG:\(fromEPSG) → EPSG:\(toEPSG)", path: nil, message: GDAL.lastError())
        }
        handle = h
        sourceEPSG = fromEPSG
        targetEPSG = toEPSG
    }

    /// Between two CRS given as WKT (e.g. a raster's and a DSM's); EPSG codes are reported as 0.
    public init(fromWKT: String, toWKT: String) throws {
        GDAL.initialize()
        let a = try SpatialReference.handle(wkt: fromWKT)
        defer { OSRDestroySpatialReference(a) }
        let b = try SpatialReference.handle(wkt: toWKT)
        defer { OSRDestroySpatialReference(b) }
        guard let h = OCTNewCoordinateTransformation(a, b) else {
            throw GDALError(operation: "transform between two coordinate systems", path: nil, message: GDAL.lastError())
        }
        handle = h
        sourceEPSG = 0
        targetEPSG = 0
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
