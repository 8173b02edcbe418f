import CGDAL

/// GDAL's own RPC transformer, built from RPC metadata items (the names GDAL uses in its "RPC"
/// metadata domain). Used to cross-check the project's RPC model; pixel coordinates are GDAL's
/// (top-left corner of the image at 0, 0), exactly as `gdaltransform -rpc`.
public final class GDALRPCTransformer {
    let handle: UnsafeMutableRawPointer

    /// - Parameter pixelErrorThreshold: GDAL's `RPC_PIXEL_ERROR_THRESHOLD` for its iterative inverse
    ///   (pixel → ground); its default (0.1 px) is coarse.
    public init(rpcMetadata: [(String, String)], pixelErrorThreshold: Double = 1e-7) throws {
        GDAL.initialize()
        let list = GDAL.stringList(rpcMetadata)
        defer { CSLDestroy(list) }
        var info = GDALRPCInfoV2()
        guard GDALExtractRPCInfoV2(list, &info) != 0 else {
            throw GDALError(operation: "GDALExtractRPCInfoV2", path: nil, message: GDAL.lastError())
        }
        guard let h = GDALCreateRPCTransformerV2(&info, 0, pixelErrorThreshold, nil) else {
            throw GDALError(operation: "GDALCreateRPCTransformerV2", path: nil, message: GDAL.lastError())
        }
        handle = h
    }

    deinit { GDALDestroyRPCTransformer(handle) }

    /// Ground (lon, lat, h) → pixel (col, row) in GDAL's convention; nil where GDAL reports failure.
    public func project(_ points: [(lon: Double, lat: Double, h: Double)]) -> [(col: Double, row: Double)?] {
        transform(points.map { ($0.lon, $0.lat, $0.h) }, groundToPixel: true)
    }

    /// Pixel (col, row) in GDAL's convention at height h → ground (lon, lat); nil where GDAL fails.
    public func localize(_ points: [(col: Double, row: Double, h: Double)]) -> [(lon: Double, lat: Double)?] {
        transform(points.map { ($0.col, $0.row, $0.h) }, groundToPixel: false)
    }

    private func transform(_ pts: [(Double, Double, Double)], groundToPixel: Bool) -> [(Double, Double)?] {
        var x = pts.map(\.0), y = pts.map(\.1), z = pts.map(\.2)
        var ok = [Int32](repeating: 0, count: pts.count)
        _ = GDALRPCTransform(handle, groundToPixel ? 1 : 0, Int32(pts.count), &x, &y, &z, &ok)
        return (0..<pts.count).map { ok[$0] != 0 ? (x[$0], y[$0]) : nil }
    }
}
