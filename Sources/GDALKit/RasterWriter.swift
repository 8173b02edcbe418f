import CGDAL
import Foundation

/// Writes rasters through GDAL drivers.
public enum RasterWriter {
    /// Writes `bands` (each width × height, row-major) to a new file.
    /// - Parameters:
    ///   - metadata: items per metadata domain ("" for the default domain, "RPC" for an RPC model).
    ///   - options: driver creation options, e.g. ["COMPRESS": "DEFLATE"], ["RPB": "YES"].
    public static func write(path: String, width: Int, height: Int, bands: [[Float]], type: RasterDataType,
                             driver: String = "GTiff", metadata: [String: [(String, String)]] = [:],
                             options: [(String, String)] = [], noData: Double? = nil,
                             geoTransform: [Double]? = nil, projectionWKT: String? = nil) throws {
        GDAL.initialize()
        GDAL.resetError()
        guard let drv = GDALGetDriverByName(driver) else {
            throw GDALError(operation: "find driver \(driver)", path: path, message: GDAL.lastError())
        }
        let opts = GDAL.stringList(options)
        defer { CSLDestroy(opts) }
        guard let ds = GDALCreate(drv, path, Int32(width), Int32(height), Int32(bands.count), type.gdal, opts) else {
            throw GDALError(operation: "create", path: path, message: GDAL.lastError())
        }
        var failure: GDALError?
        for (domain, items) in metadata {
            let list = GDAL.stringList(items)
            GDALSetMetadata(ds, list, domain.isEmpty ? nil : domain)
            CSLDestroy(list)
        }
        if var gt = geoTransform { GDALSetGeoTransform(ds, &gt) }
        if let wkt = projectionWKT { GDALSetProjection(ds, wkt) }
        for (i, data) in bands.enumerated() {
            precondition(data.count == width * height, "band \(i + 1) does not match the raster size")
            let band = GDALGetRasterBand(ds, Int32(i + 1))
            if let nd = noData { GDALSetRasterNoDataValue(band, nd) }
            var copy = data
            let err = copy.withUnsafeMutableBytes { buf in
                GDALRasterIO(band, GF_Write, 0, 0, Int32(width), Int32(height), buf.baseAddress,
                             Int32(width), Int32(height), GDT_Float32, 0, 0)
            }
            if err != CE_None { failure = GDALError(operation: "write band \(i + 1)", path: path, message: GDAL.lastError()) }
        }
        GDALClose(ds)
        if let failure { throw failure }
    }
}
