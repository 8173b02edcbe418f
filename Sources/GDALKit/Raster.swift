import CGDAL
import Foundation

/// The only module that talks to GDAL's C API. Handles are wrapped one kind per Swift type; a dataset is
/// not thread-safe, so each task opens its own.

/// A GDAL failure, with GDAL's own last message.
public struct GDALError: Error, CustomStringConvertible, Equatable {
    public let operation: String
    public let path: String?
    public let message: String
    public var description: String {
        let m = message.isEmpty ? "" : ": \(message)"
        return path.map { "\($0): \(operation) failed\(m)" } ?? "\(operation) failed\(m)"
    }
}

public enum GDAL {
    private static let registration: Void = {
        GDALAllRegister()
        // Errors are reported through Swift errors, never printed by GDAL itself.
        CPLSetErrorHandler(CPLQuietErrorHandler)
        // Reading a raster must not write .aux.xml sidecars next to user data.
        CPLSetConfigOption("GDAL_PAM_ENABLED", "NO")
    }()

    /// Registers drivers once; every entry point calls it.
    public static func initialize() { _ = registration }

    public static var version: String { String(cString: GDALVersionInfo("RELEASE_NAME")) }

    static func lastError() -> String {
        guard let p = CPLGetLastErrorMsg() else { return "" }
        return String(cString: p)
    }

    static func resetError() { CPLErrorReset() }

    /// Converts a Swift dictionary to a GDAL string list (caller frees with CSLDestroy).
    static func stringList(_ items: [(String, String)]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
        var list: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        for (k, v) in items { list = CSLSetNameValue(list, k, v) }
        return list
    }

    /// GDALOpenEx with an optional allow-list of drivers (nil: any driver).
    static func open(_ path: String, flags: Int32, drivers: [String]?) -> GDALDatasetH? {
        let owned: [UnsafeMutablePointer<CChar>?] = (drivers ?? []).map { strdup($0) }
        defer { for p in owned { free(p) } }
        let allowed: [UnsafePointer<CChar>?] = owned.map { $0.map { UnsafePointer($0) } } + [nil]
        return allowed.withUnsafeBufferPointer { list in
            GDALOpenEx(path, UInt32(flags), drivers == nil ? nil : list.baseAddress, nil, nil)
        }
    }

    /// A raster or vector file opened read-only for a GDAL utility (caller closes it).
    static func openReadOnly(_ path: String) throws -> GDALDatasetH {
        guard let ds = GDALOpen(path, GA_ReadOnly) else { throw GDALError(operation: "open", path: path, message: lastError()) }
        return ds
    }

    /// A utility's command-line arguments as a GDAL string list (caller frees with CSLDestroy).
    static func argv(_ arguments: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
        var list: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        for a in arguments { list = CSLAddString(list, a) }
        return list
    }

    /// Reads a GDAL string list of KEY=VALUE items into pairs, in order.
    static func pairs(_ list: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> [(String, String)] {
        guard let list else { return [] }
        var out: [(String, String)] = []
        var i = 0
        while let item = list[i] {
            let s = String(cString: item)
            if let eq = s.firstIndex(of: "=") {
                out.append((String(s[..<eq]), String(s[s.index(after: eq)...])))
            } else {
                out.append((s, ""))
            }
            i += 1
        }
        return out
    }
}

/// Pixel data types a raster band can hold, as GDAL names them.
public enum RasterDataType: String, Sendable, Codable {
    case byte = "Byte", uint16 = "UInt16", int16 = "Int16", uint32 = "UInt32", int32 = "Int32"
    case float32 = "Float32", float64 = "Float64", other = "Other"

    init(_ t: GDALDataType) {
        switch t {
        case GDT_Byte: self = .byte
        case GDT_UInt16: self = .uint16
        case GDT_Int16: self = .int16
        case GDT_UInt32: self = .uint32
        case GDT_Int32: self = .int32
        case GDT_Float32: self = .float32
        case GDT_Float64: self = .float64
        default: self = .other
        }
    }

    var gdal: GDALDataType {
        switch self {
        case .byte: return GDT_Byte
        case .uint16: return GDT_UInt16
        case .int16: return GDT_Int16
        case .uint32: return GDT_UInt32
        case .int32: return GDT_Int32
        case .float32: return GDT_Float32
        case .float64, .other: return GDT_Float64
        }
    }
}

/// How a decimated read combines full-resolution pixels.
public enum Resampling: Sendable {
    case nearest, average, bilinear

    var gdal: GDALRIOResampleAlg {
        switch self {
        case .nearest: return GRIORA_NearestNeighbour
        case .average: return GRIORA_Average
        case .bilinear: return GRIORA_Bilinear
        }
    }
}

/// An open raster dataset (read-only). Not thread-safe: one instance per task.
public final class RasterDataset {
    public let path: String
    let handle: GDALDatasetH

    /// Opens a raster; throws a `GDALError` naming the file when GDAL cannot read it as a raster.
    /// `drivers`: the only GDAL drivers allowed to open it (e.g. for files users sent: a VRT or a
    /// network-backed format must not be opened on their behalf); nil: any.
    public init(path: String, drivers: [String]? = nil) throws {
        GDAL.initialize()
        GDAL.resetError()
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else {
            throw GDALError(operation: "open", path: path, message: "no such file")
        }
        guard let h = GDAL.open(path, flags: GDAL_OF_RASTER | GDAL_OF_READONLY, drivers: drivers) else {
            let m = GDAL.lastError()
            throw GDALError(operation: "open as a raster image", path: path,
                            message: m.isEmpty ? "not a format GDAL recognises" : m)
        }
        handle = h
    }

    deinit { GDALClose(handle) }

    public var width: Int { Int(GDALGetRasterXSize(handle)) }
    public var height: Int { Int(GDALGetRasterYSize(handle)) }
    public var bandCount: Int { Int(GDALGetRasterCount(handle)) }
    public var driverName: String {
        guard let d = GDALGetDatasetDriver(handle) else { return "" }
        return String(cString: GDALGetDriverShortName(d))
    }

    /// Data type of a band (1-based).
    public func dataType(band: Int = 1) -> RasterDataType {
        guard let b = GDALGetRasterBand(handle, Int32(band)) else { return .other }
        return RasterDataType(GDALGetRasterDataType(b))
    }

    /// No-data value of a band, when set.
    public func noDataValue(band: Int = 1) -> Double? {
        guard let b = GDALGetRasterBand(handle, Int32(band)) else { return nil }
        var has: Int32 = 0
        let v = GDALGetRasterNoDataValue(b, &has)
        return has != 0 ? v : nil
    }

    /// Metadata items of a domain ("" for the default domain, "RPC", "IMAGERY", ...), in file order.
    public func metadataItems(domain: String = "") -> [(String, String)] {
        GDAL.pairs(GDALGetMetadata(handle, domain.isEmpty ? nil : domain))
    }

    public func metadata(domain: String = "") -> [String: String] {
        Dictionary(metadataItems(domain: domain), uniquingKeysWith: { a, _ in a })
    }

    /// Files GDAL associates with this dataset (the image and the sidecars it read).
    public var fileList: [String] {
        guard let list = GDALGetFileList(handle) else { return [] }
        defer { CSLDestroy(list) }
        var out: [String] = []
        var i = 0
        while let p = list[i] { out.append(String(cString: p)); i += 1 }
        return out
    }

    /// Affine geotransform, when the raster is georeferenced.
    public var geoTransform: [Double]? {
        var gt = [Double](repeating: 0, count: 6)
        return GDALGetGeoTransform(handle, &gt) == CE_None ? gt : nil
    }

    /// CRS as WKT, empty when none: WKT1 when it can say it, else WKT2:2019 (3D and compound systems).
    public var projectionWKT: String {
        if let p = GDALGetProjectionRef(handle), p.pointee != 0 { return String(cString: p) }
        guard let srs = GDALGetSpatialRef(handle) else { return "" }
        return (try? SpatialReference.export(srs, path, wkt2: true)) ?? ""
    }

    /// True when the file carries one validity mask for all bands (GDAL's per-dataset mask).
    public var hasDatasetMask: Bool {
        guard let b = GDALGetRasterBand(handle, 1) else { return false }
        let f = GDALGetMaskFlags(b)
        return f & GMF_PER_DATASET != 0 && f & GMF_ALL_VALID == 0 && f & GMF_NODATA == 0
    }

    /// The validity of every pixel of band 1 from GDAL's mask (its mask band, nodata or alpha): true = valid.
    /// `bufferWidth` × `bufferHeight`: decimated (nearest), for a coarse look.
    public func readValidity(bufferWidth: Int? = nil, bufferHeight: Int? = nil) throws -> [Bool] {
        guard let b = GDALGetRasterBand(handle, 1), let m = GDALGetMaskBand(b) else { throw GDALError(operation: "read mask", path: path, message: "no band") }
        let bw = bufferWidth ?? width, bh = bufferHeight ?? height
        var out = [UInt8](repeating: 0, count: bw * bh)
        let err = out.withUnsafeMutableBytes {
            GDALRasterIO(m, GF_Read, 0, 0, Int32(width), Int32(height), $0.baseAddress, Int32(bw), Int32(bh), GDT_Byte, 0, 0)
        }
        guard err == CE_None else { throw GDALError(operation: "read mask", path: path, message: GDAL.lastError()) }
        return out.map { $0 > 0 }
    }

    /// Reads a window of a band as Float32, optionally decimated to `bufferWidth` × `bufferHeight`.
    public func read(band: Int = 1, column: Int = 0, row: Int = 0, width w: Int? = nil, height h: Int? = nil,
                     bufferWidth: Int? = nil, bufferHeight: Int? = nil,
                     resampling: Resampling = .average) throws -> [Float] {
        let w = w ?? width, h = h ?? height
        let bw = bufferWidth ?? w, bh = bufferHeight ?? h
        guard band >= 1, band <= bandCount, let b = GDALGetRasterBand(handle, Int32(band)) else {
            throw GDALError(operation: "read band \(band)", path: path, message: "the image has \(bandCount) band(s)")
        }
        guard column >= 0, row >= 0, w > 0, h > 0, column + w <= width, row + h <= height, bw > 0, bh > 0 else {
            throw GDALError(operation: "read window \(column),\(row) \(w)×\(h)", path: path,
                            message: "outside the \(width)×\(height) image")
        }
        var out = [Float](repeating: 0, count: bw * bh)
        var extra = GDALRasterIOExtraArg()
        extra.nVersion = 1
        extra.eResampleAlg = resampling.gdal
        GDAL.resetError()
        let err = out.withUnsafeMutableBytes { buf in
            GDALRasterIOEx(b, GF_Read, Int32(column), Int32(row), Int32(w), Int32(h), buf.baseAddress,
                           Int32(bw), Int32(bh), GDT_Float32, 0, 0, &extra)
        }
        guard err == CE_None else {
            let m = GDAL.lastError()
            throw GDALError(operation: "read pixels", path: path, message: m.isEmpty ? "the image data is unreadable" : m)
        }
        return out
    }
}
