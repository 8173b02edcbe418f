import CGDAL

/// Coordinate reference systems through GDAL/OGR.
public enum SpatialReference {
    /// WKT of an EPSG code, with the traditional GIS axis order (longitude/easting first).
    public static func wkt(epsg: Int) throws -> String {
        GDAL.initialize()
        guard let srs = OSRNewSpatialReference(nil) else {
            throw GDALError(operation: "OSRNewSpatialReference", path: nil, message: GDAL.lastError())
        }
        defer { OSRDestroySpatialReference(srs) }
        guard OSRImportFromEPSG(srs, Int32(epsg)) == OGRERR_NONE else {
            throw GDALError(operation: "import EPSG:\(epsg)", path: nil, message: GDAL.lastError())
        }
        var out: UnsafeMutablePointer<CChar>?
        guard OSRExportToWkt(srs, &out) == OGRERR_NONE, let out else {
            throw GDALError(operation: "export EPSG:\(epsg) to WKT", path: nil, message: GDAL.lastError())
        }
        defer { VSIFree(out) }
        return String(cString: out)
    }
}
