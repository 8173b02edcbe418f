import CGDAL
import Foundation

/// Georeferenced product writing: Cloud Optimized GeoTIFFs and GDAL's DEM processing.
public enum GeoProducts {
    /// Writes bands as a Cloud Optimized GeoTIFF (deflate, internal overviews) through an in-memory dataset.
    public static func writeCOG(path: String, width: Int, height: Int, bands: [[Float]], type: RasterDataType,
                                geoTransform: [Double], projectionWKT: String, noData: Double? = nil,
                                metadata: [(String, String)] = [], bandDescriptions: [String] = [],
                                colorInterpretationRGB: Bool = false) throws {
        GDAL.initialize()
        GDAL.resetError()
        guard let mem = GDALGetDriverByName("MEM"), let cog = GDALGetDriverByName("COG") else {
            throw GDALError(operation: "find the MEM/COG drivers", path: path, message: GDAL.lastError())
        }
        guard let ds = GDALCreate(mem, "", Int32(width), Int32(height), Int32(bands.count), type.gdal, nil) else {
            throw GDALError(operation: "create in-memory raster", path: path, message: GDAL.lastError())
        }
        defer { GDALClose(ds) }
        var gt = geoTransform
        GDALSetGeoTransform(ds, &gt)
        GDALSetProjection(ds, projectionWKT)
        if !metadata.isEmpty {
            let list = GDAL.stringList(metadata)
            GDALSetMetadata(ds, list, nil)
            CSLDestroy(list)
        }
        for (i, data) in bands.enumerated() {
            let b = GDALGetRasterBand(ds, Int32(i + 1))
            if let noData { GDALSetRasterNoDataValue(b, noData) }
            if i < bandDescriptions.count { GDALSetDescription(b, bandDescriptions[i]) }
            if colorInterpretationRGB && bands.count >= 3 && i < 3 {
                GDALSetRasterColorInterpretation(b, [GCI_RedBand, GCI_GreenBand, GCI_BlueBand][i])
            }
            var copy = data
            let err = copy.withUnsafeMutableBytes {
                GDALRasterIO(b, GF_Write, 0, 0, Int32(width), Int32(height), $0.baseAddress, Int32(width), Int32(height), GDT_Float32, 0, 0)
            }
            guard err == CE_None else { throw GDALError(operation: "write band \(i + 1)", path: path, message: GDAL.lastError()) }
        }
        var options: [(String, String)] = [("COMPRESS", "DEFLATE"), ("OVERVIEWS", "AUTO"), ("BLOCKSIZE", "256")]
        if type == .float32 { options.append(("PREDICTOR", "YES")) }
        let opts = GDAL.stringList(options)
        defer { CSLDestroy(opts) }
        guard let out = GDALCreateCopy(cog, path, ds, 0, opts, nil, nil) else {
            throw GDALError(operation: "write Cloud Optimized GeoTIFF", path: path, message: GDAL.lastError())
        }
        GDALClose(out)
    }

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

    /// Writes a small PNG quick-look of RGB bytes (0–255 floats) through GDAL's PNG driver.
    public static func writePNG(path: String, width: Int, height: Int, rgb: [[Float]]) throws {
        GDAL.initialize()
        guard let mem = GDALGetDriverByName("MEM"), let png = GDALGetDriverByName("PNG"),
              let ds = GDALCreate(mem, "", Int32(width), Int32(height), Int32(rgb.count), GDT_Byte, nil) else {
            throw GDALError(operation: "create PNG", path: path, message: GDAL.lastError())
        }
        defer { GDALClose(ds) }
        for (i, data) in rgb.enumerated() {
            var copy = data
            _ = copy.withUnsafeMutableBytes {
                GDALRasterIO(GDALGetRasterBand(ds, Int32(i + 1)), GF_Write, 0, 0, Int32(width), Int32(height), $0.baseAddress,
                             Int32(width), Int32(height), GDT_Float32, 0, 0)
            }
        }
        guard let out = GDALCreateCopy(png, path, ds, 0, nil, nil, nil) else {
            throw GDALError(operation: "write PNG", path: path, message: GDAL.lastError())
        }
        GDALClose(out)
    }
}
