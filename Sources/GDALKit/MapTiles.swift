import CGDAL
import Foundation

/// Web map tiles (Web Mercator, EPSG:3857, the z/x/y scheme of OpenStreetMap and Leaflet) cut from a
/// georeferenced raster by GDAL's warper. GDAL reads from the overview level that matches the tile's
/// resolution, so a tile of a 20 km COG costs what a tile of a small one does.
public enum MapTiles {
    /// Half the Web Mercator world's width, metres.
    static let extent = 20_037_508.342789244

    /// Bounds of tile z/x/y in EPSG:3857 metres: (minX, minY, maxX, maxY); nil outside the pyramid.
    public static func bounds(z: Int, x: Int, y: Int) -> (Double, Double, Double, Double)? {
        guard (0...24).contains(z) else { return nil }
        let n = 1 << z
        guard (0..<n).contains(x), (0..<n).contains(y) else { return nil }
        let size = 2 * extent / Double(n)
        let minX = -extent + Double(x) * size, maxY = extent - Double(y) * size
        return (minX, maxY - size, minX + size, maxY)
    }

    /// A raster warped onto one tile: its bands (Float32, row-major `size` × `size`) and the validity of
    /// each pixel (from the source's nodata value or alpha band).
    public struct Tile {
        public var size: Int
        public var bands: [[Float]]
        public var valid: [Bool]
    }

    /// Warps `bands` of `source` onto tile z/x/y (bilinear for continuous values, nearest for classes).
    /// Returns nil when the tile holds no valid pixel.
    public static func warp(source: String, z: Int, x: Int, y: Int, size: Int = 256, bands: [Int], nearest: Bool = false) throws -> Tile? {
        guard let b = bounds(z: z, x: x, y: y) else {
            throw GDALError(operation: "map tile \(z)/\(x)/\(y)", path: nil, message: "outside the tile pyramid")
        }
        GDAL.initialize()
        GDAL.resetError()
        let src = try GDAL.openReadOnly(source)
        defer { GDALClose(src) }
        // A tile away from the raster: nothing to warp.
        if let e = try webMercatorExtent(src), e.0 > b.2 || e.2 < b.0 || e.1 > b.3 || e.3 < b.1 { return nil }
        // Every band is warped (GDAL 3.6's gdalwarp has no band selection); a source alpha band is used as such.
        let arguments = ["-of", "MEM", "-t_srs", "EPSG:3857", "-te", "\(b.0)", "\(b.1)", "\(b.2)", "\(b.3)",
                         "-ts", "\(size)", "\(size)", "-r", nearest ? "near" : "bilinear", "-dstalpha"]
        let argv = GDAL.argv(arguments)
        defer { CSLDestroy(argv) }
        guard let opts = GDALWarpAppOptionsNew(argv, nil) else {
            throw GDALError(operation: "gdalwarp options \(arguments)", path: nil, message: GDAL.lastError())
        }
        defer { GDALWarpAppOptionsFree(opts) }
        var sources: [GDALDatasetH?] = [src]
        var usageError: Int32 = 0
        guard let out = GDALWarp("", nil, 1, &sources, opts, &usageError) else {
            throw GDALError(operation: "warp to tile \(z)/\(x)/\(y)", path: source, message: GDAL.lastError())
        }
        defer { GDALClose(out) }
        func read(_ band: Int) throws -> [Float] {
            var v = [Float](repeating: 0, count: size * size)
            let err = v.withUnsafeMutableBytes { buf in
                GDALRasterIO(GDALGetRasterBand(out, Int32(band)), GF_Read, 0, 0, Int32(size), Int32(size), buf.baseAddress,
                             Int32(size), Int32(size), GDT_Float32, 0, 0)
            }
            guard err == CE_None else { throw GDALError(operation: "read tile", path: source, message: GDAL.lastError()) }
            return v
        }
        let count = Int(GDALGetRasterCount(out))
        guard bands.allSatisfy({ $0 >= 1 && $0 < count }) else {
            throw GDALError(operation: "map tile bands \(bands)", path: source, message: "the raster has \(count - 1) band(s)")
        }
        let alpha = try read(count)
        guard alpha.contains(where: { $0 > 0 }) else { return nil }
        return Tile(size: size, bands: try bands.map(read), valid: alpha.map { $0 > 0 })
    }

    /// The raster's extent in EPSG:3857 (from points along its edges), nil when it has no georeferencing.
    static func webMercatorExtent(_ ds: GDALDatasetH) throws -> (Double, Double, Double, Double)? {
        var gt = [Double](repeating: 0, count: 6)
        guard GDALGetGeoTransform(ds, &gt) == CE_None, let wkt = GDALGetProjectionRef(ds), wkt.pointee != 0 else { return nil }
        let t = try CoordinateTransform(fromWKT: String(cString: wkt), toWKT: try SpatialReference.wkt(epsg: 3857))
        let w = Double(GDALGetRasterXSize(ds)), h = Double(GDALGetRasterYSize(ds))
        var xs: [Double] = [], ys: [Double] = []
        for k in 0...8 {
            let f = Double(k) / 8
            for (c, r) in [(f * w, 0.0), (f * w, h), (0, f * h), (w, f * h)] {
                xs.append(gt[0] + c * gt[1] + r * gt[2]); ys.append(gt[3] + c * gt[4] + r * gt[5])
            }
        }
        let ok = t.transform(x: &xs, y: &ys)
        let px = zip(xs, ok).filter { $0.1 && $0.0.isFinite }.map(\.0), py = zip(ys, ok).filter { $0.1 && $0.0.isFinite }.map(\.0)
        guard let x0 = px.min(), let x1 = px.max(), let y0 = py.min(), let y1 = py.max() else { return nil }
        return (x0, y0, x1, y1)
    }

    /// PNG bytes of an RGBA image (`size` × `size`, 4 bytes per pixel, row-major), through GDAL's PNG driver.
    public static func png(rgba: [UInt8], width: Int, height: Int) throws -> Data {
        precondition(rgba.count == width * height * 4, "RGBA buffer does not match its size")
        GDAL.initialize()
        guard let mem = GDALGetDriverByName("MEM"), let pngDriver = GDALGetDriverByName("PNG"),
              let ds = GDALCreate(mem, "", Int32(width), Int32(height), 4, GDT_Byte, nil) else {
            throw GDALError(operation: "create PNG", path: nil, message: GDAL.lastError())
        }
        defer { GDALClose(ds) }
        for band in 0..<4 {
            var plane = [UInt8](repeating: 0, count: width * height)
            for k in 0..<(width * height) { plane[k] = rgba[k * 4 + band] }
            let err = plane.withUnsafeMutableBytes { buf in
                GDALRasterIO(GDALGetRasterBand(ds, Int32(band + 1)), GF_Write, 0, 0, Int32(width), Int32(height), buf.baseAddress,
                             Int32(width), Int32(height), GDT_Byte, 0, 0)
            }
            guard err == CE_None else { throw GDALError(operation: "write PNG band", path: nil, message: GDAL.lastError()) }
        }
        let name = "/vsimem/dsmopt-tile-\(UUID().uuidString).png"
        guard let copy = GDALCreateCopy(pngDriver, name, ds, 0, nil, nil, nil) else {
            throw GDALError(operation: "encode PNG", path: nil, message: GDAL.lastError())
        }
        GDALClose(copy)
        defer { VSIUnlink(name) }
        var length: vsi_l_offset = 0
        guard let bytes = VSIGetMemFileBuffer(name, &length, 0) else {
            throw GDALError(operation: "read PNG from memory", path: nil, message: GDAL.lastError())
        }
        return Data(bytes: bytes, count: Int(length))
    }

    /// The value of band 1 at a longitude/latitude (WGS84), with the position in the raster's CRS; nil
    /// outside the raster or on nodata.
    public static func value(at longitude: Double, _ latitude: Double, in path: String) throws -> (value: Double, x: Double, y: Double)? {
        let ds = try RasterDataset(path: path)
        guard let gt = ds.geoTransform, gt[1] != 0, gt[5] != 0 else { return nil }
        let t = try CoordinateTransform(fromWKT: try SpatialReference.wkt(epsg: 4326), toWKT: ds.projectionWKT)
        guard let p = t.transform(longitude, latitude) else { return nil }
        let col = Int(((p.x - gt[0]) / gt[1]).rounded(.down)), row = Int(((p.y - gt[3]) / gt[5]).rounded(.down))
        guard col >= 0, row >= 0, col < ds.width, row < ds.height else { return nil }
        let v = try ds.read(column: col, row: row, width: 1, height: 1)[0]
        if !v.isFinite || ds.noDataValue().map({ Double(v) == $0 }) == true { return nil }
        return (Double(v), p.x, p.y)
    }

    /// Values of band 1 read at a coarse resolution (the smallest overview of at least `cells` cells when
    /// the file has overviews): enough for a colour ramp's percentiles. Nodata and non-finite values dropped.
    public static func sample(_ path: String, band: Int = 1, cells: Int = 512 * 512) throws -> [Float] {
        let ds = try RasterDataset(path: path)
        let f = max(1.0, (Double(ds.width * ds.height) / Double(cells)).squareRoot())
        let w = max(1, Int(Double(ds.width) / f)), h = max(1, Int(Double(ds.height) / f))
        let nodata = ds.noDataValue(band: band).map(Float.init)
        let values = try ds.read(band: band, bufferWidth: w, bufferHeight: h, resampling: .nearest)
        // A validity mask (orthos) says which cells hold data.
        let valid = ds.hasDatasetMask ? try ds.readValidity(bufferWidth: w, bufferHeight: h) : nil
        return values.indices.compactMap { k in
            let v = values[k]
            return v.isFinite && v != nodata && valid?[k] != false ? v : nil
        }
    }
}
