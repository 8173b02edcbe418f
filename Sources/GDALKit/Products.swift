import CGDAL
import Foundation

/// Georeferenced product writing: Cloud Optimized GeoTIFFs and GDAL's DEM processing.
public enum GeoProducts {
    /// Runs `gdaldem` processing (e.g. "hillshade") on a raster file into a GeoTIFF file, with its
    /// command-line options (e.g. ["-multidirectional", "-compute_edges"]).
    public static func demProcessing(_ processing: String, source: String, destination: String, arguments: [String]) throws {
        GDAL.initialize()
        GDAL.resetError()
        guard let src = GDALOpen(source, GA_ReadOnly) else {
            throw GDALError(operation: "open", path: source, message: GDAL.lastError())
        }
        defer { GDALClose(src) }
        var argv = GDAL.stringList([])
        for a in ["-of", "GTiff"] + arguments { argv = CSLAddString(argv, a) }
        defer { CSLDestroy(argv) }
        guard let opts = GDALDEMProcessingOptionsNew(argv, nil) else {
            throw GDALError(operation: "gdaldem \(processing) options \(arguments)", path: nil, message: GDAL.lastError())
        }
        defer { GDALDEMProcessingOptionsFree(opts) }
        var usage: Int32 = 0
        guard let out = GDALDEMProcessing(destination, src, processing, nil, opts, &usage) else {
            throw GDALError(operation: "gdaldem \(processing)", path: destination, message: GDAL.lastError())
        }
        GDALClose(out)
    }
}
