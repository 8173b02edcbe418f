import DSMCore
import Foundation
import GDALKit

/// Reads band 1 of any GDAL raster as a full-resolution `GrayImage`.
public func readGrayImage(_ path: String) throws -> GrayImage {
    let ds = try openRaster(path, drivers: nil)
    do {
        return GrayImage(width: ds.width, height: ds.height, pixels: try ds.read())
    } catch let e as GDALError {
        throw IngestError.unreadableImage(file: path, detail: e.message)
    }
}

/// Writes a Float32 single-band GeoTIFF with NaN as no-data (tiled, deflate-compressed).
public func writeFloatRaster(_ path: String, width: Int, height: Int, values: [Float],
                             metadata: [(String, String)] = []) throws {
    try RasterWriter.write(path: path, width: width, height: height, bands: [values], type: .float32,
                           metadata: metadata.isEmpty ? [:] : ["": metadata],
                           options: [("COMPRESS", "DEFLATE"), ("PREDICTOR", "3"), ("TILED", "YES")], noData: .nan)
}
