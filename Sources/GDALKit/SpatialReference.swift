import CGDAL
import Foundation

/// Coordinate reference systems through GDAL/OGR.
public enum SpatialReference {
    /// WKT of an EPSG code, with the traditional GIS axis order (longitude/easting first).
    public static func wkt(epsg: Int) throws -> String {
        let srs = try handle(epsg: epsg)
        defer { OSRDestroySpatialReference(srs) }
        return try export(srs, "EPSG:\(epsg)")
    }

    /// WKT of a height product's CRS: for `.egm96` the compound system `EPSG:h+5773` (EGM96 height),
    /// which GeoTIFF stores in its keys; for `.ellipsoid` the horizontal system alone — GDAL 3.6's GeoTIFF
    /// writer cannot store an ellipsoidal vertical axis in the keys (it would go to a .aux.xml sidecar,
    /// lost on copy), so ellipsoidal heights are said by the VERTICAL_REFERENCE metadata item and the manifest.
    public static func heightWKT(epsg: Int, datum: VerticalDatum) throws -> String {
        GDAL.initialize()
        switch datum {
        case .ellipsoid:
            return try wkt(epsg: epsg)
        case .egm96:
            guard let srs = OSRNewSpatialReference(nil) else { throw GDALError(operation: "OSRNewSpatialReference", path: nil, message: GDAL.lastError()) }
            defer { OSRDestroySpatialReference(srs) }
            guard OSRSetFromUserInput(srs, "EPSG:\(epsg)+5773") == OGRERR_NONE else {
                throw GDALError(operation: "EPSG:\(epsg)+5773", path: nil, message: GDAL.lastError())
            }
            return try export(srs, "EPSG:\(epsg)+5773", wkt2: true)
        }
    }

    /// What `describe` tells of a CRS. `metresPerUnit`: of a projected CRS's axes; nil for any other kind
    /// (geographic, geocentric, …).
    public typealias Description = (name: String, projected: Bool, geographic: Bool, metresPerUnit: Double?)

    /// The name of an EPSG coordinate reference system ("WGS 84 / UTM zone 40S") and whether it is projected;
    /// throws for an unknown code.
    public static func describe(epsg: Int) throws -> Description {
        let srs = try handle(epsg: epsg)
        defer { OSRDestroySpatialReference(srs) }
        let name = OSRGetName(srs).map { String(cString: $0) } ?? "EPSG:\(epsg)"
        let projected = OSRIsProjected(srs) != 0
        return (name, projected, OSRIsGeographic(srs) != 0, projected ? OSRGetLinearUnits(srs, nil) : nil)
    }

    /// True when the CRS is geographic (degrees).
    public static func isGeographic(wkt: String) -> Bool {
        guard let srs = try? handle(wkt: wkt) else { return false }
        defer { OSRDestroySpatialReference(srs) }
        return OSRIsGeographic(srs) != 0
    }

    /// The EPSG code of a CRS, when it has one (identified by GDAL's authority lookup).
    public static func epsg(wkt: String) -> Int? {
        guard let srs = try? handle(wkt: wkt) else { return nil }
        defer { OSRDestroySpatialReference(srs) }
        _ = OSRAutoIdentifyEPSG(srs)
        guard let name = OSRGetAuthorityName(srs, nil), String(cString: name) == "EPSG", let code = OSRGetAuthorityCode(srs, nil) else { return nil }
        return Int(String(cString: code))
    }

    /// Metres per linear unit of a projected CRS (1 for metres); nil for a geographic one.
    public static func metresPerUnit(wkt: String) -> Double? {
        guard let srs = try? handle(wkt: wkt) else { return nil }
        defer { OSRDestroySpatialReference(srs) }
        guard OSRIsGeographic(srs) == 0 else { return nil }
        return OSRGetLinearUnits(srs, nil)
    }

    /// Semi-major axis (m) and flattening of a CRS's ellipsoid.
    public static func ellipsoid(wkt: String) -> (a: Double, f: Double) {
        guard let srs = try? handle(wkt: wkt) else { return (6378137, 1 / 298.257223563) }
        defer { OSRDestroySpatialReference(srs) }
        var err = OGRERR_NONE
        let a = OSRGetSemiMajor(srs, &err), inv = OSRGetInvFlattening(srs, &err)
        return (a > 0 ? a : 6378137, inv > 0 ? 1 / inv : 0)
    }

    /// A CRS from an EPSG code, traditional GIS axis order; caller destroys it.
    static func handle(epsg: Int) throws -> OGRSpatialReferenceH {
        GDAL.initialize()
        guard let s = OSRNewSpatialReference(nil) else { throw GDALError(operation: "OSRNewSpatialReference", path: nil, message: GDAL.lastError()) }
        guard OSRImportFromEPSG(s, Int32(epsg)) == OGRERR_NONE else {
            OSRDestroySpatialReference(s)
            throw GDALError(operation: "import EPSG:\(epsg)", path: nil, message: "unknown or unsupported EPSG code")
        }
        OSRSetAxisMappingStrategy(s, OAMS_TRADITIONAL_GIS_ORDER)
        return s
    }

    /// A CRS from WKT (or anything OSRSetFromUserInput reads), traditional GIS axis order; caller destroys it.
    static func handle(wkt: String) throws -> OGRSpatialReferenceH {
        GDAL.initialize()
        guard !wkt.isEmpty else { throw GDALError(operation: "read a coordinate system", path: nil, message: "none given") }
        guard let s = OSRNewSpatialReference(nil) else { throw GDALError(operation: "OSRNewSpatialReference", path: nil, message: GDAL.lastError()) }
        guard OSRSetFromUserInput(s, wkt) == OGRERR_NONE else {
            OSRDestroySpatialReference(s)
            throw GDALError(operation: "read a coordinate system", path: nil, message: "not a valid CRS definition")
        }
        OSRSetAxisMappingStrategy(s, OAMS_TRADITIONAL_GIS_ORDER)
        return s
    }

    /// WKT1 (what most software reads), or WKT2:2019 (needed for 3D and compound systems).
    static func export(_ srs: OGRSpatialReferenceH, _ name: String, wkt2: Bool = false) throws -> String {
        var out: UnsafeMutablePointer<CChar>?
        let options = GDAL.stringList([("FORMAT", wkt2 ? "WKT2_2019" : "WKT1")])
        defer { CSLDestroy(options) }
        let err = wkt2 ? options!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: 2) { OSRExportToWktEx(srs, &out, $0) }
                       : OSRExportToWkt(srs, &out)
        guard err == OGRERR_NONE, let out else {
            throw GDALError(operation: "export \(name) to WKT", path: nil, message: GDAL.lastError())
        }
        defer { VSIFree(out) }
        return String(cString: out)
    }
}

/// What DSM heights are measured from.
public enum VerticalDatum: String, Sendable, Codable, CaseIterable {
    /// Heights above the WGS84 ellipsoid (what the RPC models and triangulation give).
    case ellipsoid
    /// Orthometric heights above the EGM96 geoid (EPSG:5773), through PROJ's grid.
    case egm96

    public var description: String {
        switch self {
        case .ellipsoid: return "heights in metres above the WGS84 ellipsoid"
        case .egm96: return "orthometric heights in metres above the EGM96 geoid (EPSG:5773)"
        }
    }
    public var unitsText: String { self == .ellipsoid ? "m above WGS84 ellipsoid" : "m above EGM96 geoid" }
    /// The GeoTIFF metadata item VERTICAL_REFERENCE of height products.
    public var metadataValue: String { self == .ellipsoid ? "WGS84 ellipsoid" : "EGM96 geoid (EPSG:5773)" }
}

/// The EGM96 geoid through PROJ (the grid `us_nga_egm96_15.tif`, or `egm96_15.gtx` from Debian's
/// proj-data): undulation N such that h(ellipsoid) = H(EGM96) + N. PROJ's "ballpark" fallback (no grid,
/// N = 0) is refused, so a missing grid is an error, never a silent zero. Not thread-safe.
public final class GeoidModel {
    let handle: OGRCoordinateTransformationH

    public enum Failure: Error, CustomStringConvertible {
        case gridMissing(String)
        public var description: String {
            switch self {
            case .gridMissing(let m):
                return "the EGM96 geoid grid is not available to PROJ (install Debian's proj-data, which provides egm96_15.gtx)\(m.isEmpty ? "" : ": \(m)")"
            }
        }
    }

    public init() throws {
        GDAL.initialize()
        let a = try SpatialReference.handle(epsg: 4979)
        defer { OSRDestroySpatialReference(a) }
        let b = try SpatialReference.handle(wkt: "EPSG:4326+5773")
        defer { OSRDestroySpatialReference(b) }
        guard let opts = OCTNewCoordinateTransformationOptions() else { throw Failure.gridMissing(GDAL.lastError()) }
        defer { OCTDestroyCoordinateTransformationOptions(opts) }
        OCTCoordinateTransformationOptionsSetBallparkAllowed(opts, 0)
        GDAL.resetError()
        guard let h = OCTNewCoordinateTransformationEx(a, b, opts) else { throw Failure.gridMissing(GDAL.lastError()) }
        handle = h
        // A transformation may be created lazily and fail on the first point: probe one.
        guard (try? undulation(longitudes: [0], latitudes: [0])) != nil else {
            throw Failure.gridMissing(GDAL.lastError())
        }
    }

    deinit { OCTDestroyCoordinateTransformation(handle) }

    /// Geoid undulations (metres) at WGS84 longitudes/latitudes.
    public func undulation(longitudes: [Double], latitudes: [Double]) throws -> [Double] {
        precondition(longitudes.count == latitudes.count)
        var x = longitudes, y = latitudes
        var z = [Double](repeating: 0, count: x.count)
        var ok = [Int32](repeating: 0, count: x.count)
        GDAL.resetError()
        _ = OCTTransformEx(handle, Int32(x.count), &x, &y, &z, &ok)
        guard ok.allSatisfy({ $0 != 0 }), z.allSatisfy(\.isFinite) else { throw Failure.gridMissing(GDAL.lastError()) }
        // Ellipsoidal height 0 becomes the orthometric height −N.
        return z.map { -$0 }
    }
}
