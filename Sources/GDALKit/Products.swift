import CGDAL
import Foundation

/// Georeferenced product writing: Cloud Optimized GeoTIFFs and GDAL's DEM processing.
public enum GeoProducts {
    /// Creation options of the scratch GeoTIFFs a run assembles before GDAL turns them into the delivered
    /// COGs: ZSTD level 1 where this GDAL has it (on a 2048² run's assembly it writes and reads back twice as
    /// fast as DEFLATE level 1), DEFLATE level 1 otherwise.
    public static let scratchCompression: [(String, String)] = {
        GDAL.initialize()
        let list = GDALGetDriverByName("GTiff").flatMap { GDALGetMetadataItem($0, GDAL_DMD_CREATIONOPTIONLIST, nil) }.map { String(cString: $0) } ?? ""
        return list.contains("ZSTD") ? [("COMPRESS", "ZSTD"), ("ZSTD_LEVEL", "1")] : [("COMPRESS", "DEFLATE"), ("ZLEVEL", "1")]
    }()

    /// `scratchCompression` as `-co` arguments of a GDAL utility.
    public static var scratchCompressionArguments: [String] { scratchCompression.flatMap { ["-co", "\($0.0)=\($0.1)"] } }

    /// Runs `gdaldem` processing (e.g. "hillshade") on a raster file into a GeoTIFF file, with its
    /// command-line options (e.g. ["-multidirectional", "-compute_edges"]).
    public static func demProcessing(_ processing: String, source: String, destination: String, arguments: [String]) throws {
        GDAL.initialize()
        GDAL.resetError()
        let src = try GDAL.openReadOnly(source)
        defer { GDALClose(src) }
        let argv = GDAL.argv(["-of", "GTiff"] + arguments)
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

extension GeoProducts {
    /// `gdalwarp` through the C API, one source into a new destination (e.g. `["-of", "GTiff", "-t_srs", wkt,
    /// "-te", …, "-ts", …, "-r", "average", "-dstnodata", "nan", "-ot", "Float32"]`).
    public static func warp(source: String, destination: String, arguments: [String]) throws {
        GDAL.initialize()
        GDAL.resetError()
        let src = try GDAL.openReadOnly(source)
        defer { GDALClose(src) }
        let argv = GDAL.argv(arguments)
        defer { CSLDestroy(argv) }
        guard let opts = GDALWarpAppOptionsNew(argv, nil) else {
            throw GDALError(operation: "gdalwarp options \(arguments)", path: nil, message: GDAL.lastError())
        }
        defer { GDALWarpAppOptionsFree(opts) }
        var usage: Int32 = 0
        var sources: [GDALDatasetH?] = [src]
        guard let out = GDALWarp(destination, nil, 1, &sources, opts, &usage) else {
            throw GDALError(operation: "gdalwarp", path: destination, message: GDAL.lastError())
        }
        GDALClose(out)
        if CPLGetLastErrorType() == CE_Failure {
            throw GDALError(operation: "gdalwarp", path: destination, message: GDAL.lastError())
        }
    }

    /// A VRT mosaic of raster files (`gdalbuildvrt`), e.g. a folder of DEM tiles read as one raster.
    public static func buildVRT(sources: [String], destination: String, arguments: [String] = []) throws {
        GDAL.initialize()
        GDAL.resetError()
        let argv = GDAL.argv(arguments)
        defer { CSLDestroy(argv) }
        guard let opts = GDALBuildVRTOptionsNew(argv, nil) else {
            throw GDALError(operation: "gdalbuildvrt options \(arguments)", path: nil, message: GDAL.lastError())
        }
        defer { GDALBuildVRTOptionsFree(opts) }
        let owned = sources.map { strdup($0) }
        defer { for p in owned { free(p) } }
        var names: [UnsafePointer<CChar>?] = owned.map { $0.map { UnsafePointer($0) } }
        var usage: Int32 = 0
        guard let out = GDALBuildVRT(destination, Int32(sources.count), nil, &names, opts, &usage) else {
            throw GDALError(operation: "gdalbuildvrt", path: destination, message: GDAL.lastError())
        }
        GDALClose(out)
    }

    /// Burns the polygons of a vector file (e.g. GeoJSON) with value 1 into band 1 of an existing raster
    /// (`gdal_rasterize`; geometries are reprojected to the raster's CRS). `allTouched`: every cell a
    /// polygon touches, not only those whose centre is inside.
    /// `drivers`: the only vector drivers allowed to open the file (e.g. ["GeoJSON"] for a user's file); nil: any.
    public static func rasterize(vector: String, into raster: String, allTouched: Bool = false, drivers: [String]? = nil) throws {
        GDAL.initialize()
        GDAL.resetError()
        guard let src = GDAL.open(vector, flags: GDAL_OF_VECTOR | GDAL_OF_READONLY, drivers: drivers) else {
            let m = GDAL.lastError()
            throw GDALError(operation: "open as vector data", path: vector, message: m.isEmpty ? "not a vector format GDAL recognises" : m)
        }
        defer { GDALClose(src) }
        guard let dst = GDALOpen(raster, GA_Update) else {
            throw GDALError(operation: "open for update", path: raster, message: GDAL.lastError())
        }
        let argv = GDAL.argv(["-burn", "1"] + (allTouched ? ["-at"] : []))
        defer { CSLDestroy(argv) }
        guard let opts = GDALRasterizeOptionsNew(argv, nil) else {
            GDALClose(dst)
            throw GDALError(operation: "gdal_rasterize options", path: nil, message: GDAL.lastError())
        }
        defer { GDALRasterizeOptionsFree(opts) }
        var usage: Int32 = 0
        let out = GDALRasterize(nil, dst, src, opts, &usage)
        let failed = out == nil || CPLGetLastErrorType() == CE_Failure
        let m = GDAL.lastError()
        GDALClose(dst)
        if failed { throw GDALError(operation: "gdal_rasterize", path: vector, message: m) }
    }

    /// Replaces the geotransform (and optionally the CRS) of an existing raster, in place.
    public static func setGeoreference(path: String, geoTransform: [Double], projectionWKT: String? = nil) throws {
        GDAL.initialize()
        GDAL.resetError()
        guard let ds = GDALOpen(path, GA_Update) else {
            throw GDALError(operation: "open for update", path: path, message: GDAL.lastError())
        }
        var gt = geoTransform
        let e1 = GDALSetGeoTransform(ds, &gt)
        let e2 = projectionWKT.map { GDALSetProjection(ds, $0) } ?? CE_None
        let m = GDAL.lastError()
        GDALClose(ds)
        guard e1 == CE_None, e2 == CE_None else { throw GDALError(operation: "set the georeferencing", path: path, message: m) }
    }
}

/// Vector files (GeoJSON polygons given with a job).
public enum VectorFile {
    /// Bounds (minX, minY, maxX, maxY) of every layer together and the first layer's CRS as WKT ("" when
    /// none; GeoJSON defaults to WGS84 longitude/latitude). `drivers`: the only drivers allowed to open it.
    public static func extent(path: String, drivers: [String]? = nil) throws -> (bounds: [Double], wkt: String, features: Int) {
        GDAL.initialize()
        GDAL.resetError()
        guard let ds = GDAL.open(path, flags: GDAL_OF_VECTOR | GDAL_OF_READONLY, drivers: drivers) else {
            throw GDALError(operation: "open as vector data", path: path, message: GDAL.lastError())
        }
        defer { GDALClose(ds) }
        var bounds = [Double.infinity, .infinity, -Double.infinity, -Double.infinity]
        var wkt = "", features = 0
        for k in 0..<GDALDatasetGetLayerCount(ds) {
            guard let layer = GDALDatasetGetLayer(ds, k) else { continue }
            features += Int(OGR_L_GetFeatureCount(layer, 1))
            var e = OGREnvelope()
            guard OGR_L_GetExtent(layer, &e, 1) == OGRERR_NONE else { continue }
            bounds = [min(bounds[0], e.MinX), min(bounds[1], e.MinY), max(bounds[2], e.MaxX), max(bounds[3], e.MaxY)]
            if wkt.isEmpty, let srs = OGR_L_GetSpatialRef(layer) { wkt = (try? SpatialReference.export(srs, path)) ?? "" }
        }
        guard features > 0, bounds[0].isFinite else { throw GDALError(operation: "read features", path: path, message: "no feature with a geometry") }
        return (bounds, wkt, features)
    }
}
