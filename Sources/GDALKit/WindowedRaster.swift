import CGDAL
import Foundation

extension GDAL {
    /// Bounds GDAL's raster block cache (bytes). GDAL's default is 5 % of the machine's RAM, which a
    /// scene-scale run must not take for granted: the pipeline sets it from its memory budget.
    /// Lowering it below what the cache holds makes GDAL flush other threads' blocks from this one, dirty
    /// blocks of files being written included; it is then left as it is (a process that runs several
    /// pipelines at once — the test process — keeps the larger cache it already uses).
    public static func setCacheMax(bytes: Int) {
        initialize()
        guard GDALGetCacheUsed64() <= GIntBig(bytes) else { return }
        GDALSetCacheMax64(GIntBig(bytes))
    }
}

/// A tiled GeoTIFF written window by window (the products of a scene are assembled from ground tiles
/// without ever holding a whole raster). Not thread-safe: one writer, one thread.
public final class WindowedRasterWriter {
    public let path: String
    public let width: Int
    public let height: Int
    public let bandCount: Int
    private var handle: GDALDatasetH?

    /// Creates the file (tiled 256×256, fast deflate) with its georeferencing, no-data, metadata and band
    /// descriptions; values are written with `write(band:x:y:width:height:values:)`.
    /// `domains`: extra metadata domains (e.g. "RPC"); `options`: extra or overriding creation options
    /// (e.g. ("RPB", "YES")).
    public init(path: String, width: Int, height: Int, bands: Int, type: RasterDataType, geoTransform: [Double]?,
                projectionWKT: String?, noData: Double?, metadata: [(String, String)] = [], bandDescriptions: [String] = [],
                colorInterpretationRGB: Bool = false, domains: [String: [(String, String)]] = [:],
                options extra: [(String, String)] = [], validityMask: Bool = false) throws {
        GDAL.initialize()
        GDAL.resetError()
        self.path = path; self.width = width; self.height = height; self.bandCount = bands
        guard let drv = GDALGetDriverByName("GTiff") else {
            throw GDALError(operation: "find the GTiff driver", path: path, message: GDAL.lastError())
        }
        var base: [(String, String)] = [("TILED", "YES"), ("BLOCKXSIZE", "256"), ("BLOCKYSIZE", "256"), ("COMPRESS", "DEFLATE"),
                                        ("ZLEVEL", "1"), ("BIGTIFF", "IF_SAFER"), ("SPARSE_OK", "TRUE")]
        if colorInterpretationRGB && bands == 4 { base.append(("ALPHA", "YES")) }
        base = base.filter { b in !extra.contains { $0.0 == b.0 } } + extra
        let opts = GDAL.stringList(base)
        defer { CSLDestroy(opts) }
        guard let ds = GDALCreate(drv, path, Int32(width), Int32(height), Int32(bands), type.gdal, opts) else {
            throw GDALError(operation: "create", path: path, message: GDAL.lastError())
        }
        handle = ds
        if validityMask {
            // One mask for all bands, inside the TIFF (not a .msk sidecar): 255 = valid, 0 = no data.
            CPLSetThreadLocalConfigOption("GDAL_TIFF_INTERNAL_MASK", "YES")
            defer { CPLSetThreadLocalConfigOption("GDAL_TIFF_INTERNAL_MASK", nil) }
            guard GDALCreateDatasetMaskBand(ds, GMF_PER_DATASET) == CE_None else {
                throw GDALError(operation: "create the validity mask", path: path, message: GDAL.lastError())
            }
        }
        if var gt = geoTransform { GDALSetGeoTransform(ds, &gt) }
        if let projectionWKT { GDALSetProjection(ds, projectionWKT) }
        for (domain, items) in domains {
            let list = GDAL.stringList(items)
            GDALSetMetadata(ds, list, domain)
            CSLDestroy(list)
        }
        if !metadata.isEmpty {
            let list = GDAL.stringList(metadata)
            GDALSetMetadata(ds, list, nil)
            CSLDestroy(list)
        }
        for i in 0..<bands {
            let b = GDALGetRasterBand(ds, Int32(i + 1))
            if let noData { GDALSetRasterNoDataValue(b, noData) }
            if i < bandDescriptions.count { GDALSetDescription(b, bandDescriptions[i]) }
            if colorInterpretationRGB && bands >= 3 && i < 4 {
                // RGB, and a fourth band is the alpha (0 = no data, 255 = opaque).
                GDALSetRasterColorInterpretation(b, [GCI_RedBand, GCI_GreenBand, GCI_BlueBand, GCI_AlphaBand][i])
            }
        }
    }

    deinit { if let handle { GDALClose(handle) } }

    /// Writes a window of one band (1-based) from Float32 values (converted to the file's type).
    public func write(band: Int, x: Int, y: Int, width w: Int, height h: Int, values: [Float]) throws {
        guard let ds = handle else { throw GDALError(operation: "write", path: path, message: "already closed") }
        precondition(values.count == w * h && x >= 0 && y >= 0 && x + w <= width && y + h <= height)
        GDAL.resetError()
        var copy = values
        let err = copy.withUnsafeMutableBytes {
            GDALRasterIO(GDALGetRasterBand(ds, Int32(band)), GF_Write, Int32(x), Int32(y), Int32(w), Int32(h), $0.baseAddress,
                         Int32(w), Int32(h), GDT_Float32, 0, 0)
        }
        guard err == CE_None else { throw GDALError(operation: "write window \(x),\(y) \(w)×\(h)", path: path, message: GDAL.lastError()) }
    }

    /// Writes a window of the validity mask (created with `validityMask: true`): true = valid.
    public func writeMask(x: Int, y: Int, width w: Int, height h: Int, valid: [Bool]) throws {
        guard let ds = handle else { throw GDALError(operation: "write", path: path, message: "already closed") }
        precondition(valid.count == w * h && x >= 0 && y >= 0 && x + w <= width && y + h <= height)
        GDAL.resetError()
        var bytes = valid.map { $0 ? UInt8(255) : 0 }
        let err = bytes.withUnsafeMutableBytes {
            GDALRasterIO(GDALGetMaskBand(GDALGetRasterBand(ds, 1)), GF_Write, Int32(x), Int32(y), Int32(w), Int32(h), $0.baseAddress,
                         Int32(w), Int32(h), GDT_Byte, 0, 0)
        }
        guard err == CE_None else { throw GDALError(operation: "write mask window \(x),\(y) \(w)×\(h)", path: path, message: GDAL.lastError()) }
    }

    /// Flushes and closes the file; a write error surfacing at close (full disk) is thrown.
    public func close() throws {
        guard let ds = handle else { return }
        handle = nil
        GDAL.resetError()
        GDALFlushCache(ds)
        let m = GDAL.lastError()
        GDALClose(ds)
        if CPLGetLastErrorType() == CE_Failure || CPLGetLastErrorType() == CE_Fatal {
            throw GDALError(operation: "flush", path: path, message: m)
        }
    }
}

extension GeoProducts {
    /// `gdal_translate` through the C API (e.g. `["-of", "COG", "-co", "COMPRESS=DEFLATE"]`, or
    /// `["-of", "PNG", "-outsize", "512", "0"]`, which reads the source's overviews).
    public static func translate(source: String, destination: String, arguments: [String]) throws {
        GDAL.initialize()
        GDAL.resetError()
        let src = try GDAL.openReadOnly(source)
        defer { GDALClose(src) }
        let argv = GDAL.argv(arguments)
        defer { CSLDestroy(argv) }
        guard let opts = GDALTranslateOptionsNew(argv, nil) else {
            throw GDALError(operation: "gdal_translate options \(arguments)", path: nil, message: GDAL.lastError())
        }
        defer { GDALTranslateOptionsFree(opts) }
        var usage: Int32 = 0
        guard let out = GDALTranslate(destination, src, opts, &usage) else {
            throw GDALError(operation: "gdal_translate", path: destination, message: GDAL.lastError())
        }
        GDALClose(out)
        if CPLGetLastErrorType() == CE_Failure {
            throw GDALError(operation: "gdal_translate", path: destination, message: GDAL.lastError())
        }
    }

    /// DEFLATE level of the delivered COGs. Measured on the assembly of a 2048² synthetic pair (13 COGs,
    /// 2026-11-22): level 6 (GDAL's default) 7.9 CPU-s and 73.0 MB, level 3 6.3 CPU-s and 75.6 MB (+3.6 %),
    /// level 1 5.9 CPU-s and 77.4 MB (+6.3 %).
    public static let cogDeflateLevel = 3

    /// DEFLATE level of the ortho-images' COGs: their 12-bit digital numbers, noise included, barely compress
    /// further at level 3 than at 1 (4096² synthetic pair: +2 % size at level 1 for 1.8× less CPU).
    public static let orthoDeflateLevel = 1

    /// What a COG's values are, which decides how its overviews are made.
    public enum COGContent: Sendable {
        /// Heights, scores, uncertainties, images: overviews by averaging.
        case continuous
        /// Flags, bit masks, source indices (in any band): overviews by nearest neighbour (an average of bit
        /// masks or of image indices means nothing).
        case categorical
    }

    /// Converts a (tiled) GeoTIFF into a Cloud Optimized GeoTIFF: deflate with GDAL's predictor for the data
    /// type (floating-point or horizontal differencing), internal overviews, 256² blocks. GDAL's COG driver
    /// makes the overviews by cubic convolution unless told otherwise: it rang at walls, blended categories,
    /// and was the dearest of its choices (4096² pair's Float32 DSM: 2.06 CPU-s cubic, 1.72 average, 1.54
    /// nearest).
    ///
    /// The driver first writes the overviews into a temporary file beside the destination, ZSTD-compressed,
    /// then reads them back into the COG: written uncompressed (GDAL's `COG_TMP_COMPRESSION`, set for this
    /// thread only), they cost no compression at all. Measured on the assembly of a 4096² synthetic pair
    /// (paired runs, 2026-11-23): 13 % less CPU; the temporary file is a third of the uncompressed layer.
    public static func toCOG(source: String, destination: String, content: COGContent, level: Int = cogDeflateLevel) throws {
        let args = ["-of", "COG", "-co", "COMPRESS=DEFLATE", "-co", "OVERVIEWS=AUTO", "-co", "BLOCKSIZE=256",
                    "-co", "BIGTIFF=IF_SAFER", "-co", "NUM_THREADS=1", "-co", "LEVEL=\(level)", "-co", "PREDICTOR=YES",
                    "-co", "RESAMPLING=\(content == .categorical ? "NEAREST" : "AVERAGE")"]
        CPLSetThreadLocalConfigOption("COG_TMP_COMPRESSION", "NONE")
        defer { CPLSetThreadLocalConfigOption("COG_TMP_COMPRESSION", nil) }
        try translate(source: source, destination: destination, arguments: args)
    }
}
