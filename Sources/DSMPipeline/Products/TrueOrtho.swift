import DSMCore
import Foundation
import GDALKit
import SensorIngest

/// True ortho-images: each DSM cell takes the image value its ground point projects to, unless another
/// cell hides it from that view (z-buffer on the image grid: the highest point seen along a pixel's line
/// of sight wins).
enum TrueOrtho {
    static func render(image: SensorImage, dsm: GridRaster, longitudes: [Double], latitudes: [Double],
                       resolution: Double) throws -> [Float] {
        let n = dsm.values.count
        var col = [Double](repeating: .nan, count: n), row = col
        for c in 0..<n where !dsm.values[c].isNaN {
            let p = image.model.project(longitude: longitudes[c], latitude: latitudes[c], height: Double(dsm.values[c]))
            col[c] = p.column; row[c] = p.row
        }
        let finite = (0..<n).filter { col[$0].isFinite }
        guard !finite.isEmpty else { return [Float](repeating: 0, count: n) }
        let x0 = max(0, Int(finite.map { col[$0] }.min()!.rounded(.down)) - 3)
        let y0 = max(0, Int(finite.map { row[$0] }.min()!.rounded(.down)) - 3)
        let x1 = min(image.width - 1, Int(finite.map { col[$0] }.max()!.rounded(.up)) + 3)
        let y1 = min(image.height - 1, Int(finite.map { row[$0] }.max()!.rounded(.up)) + 3)
        guard x1 > x0, y1 > y0 else { return [Float](repeating: 0, count: n) }
        let w = x1 - x0 + 1, h = y1 - y0 + 1
        let pixels = try RasterDataset(path: image.path, drivers: SensorImage.inputDrivers).read(column: x0, row: y0, width: w, height: h)
        let src = GrayImage(width: w, height: h, pixels: pixels)
        // Z-buffer: highest height seen per image pixel.
        var zbuf = [Float](repeating: -.infinity, count: w * h)
        for c in finite {
            let i = Int(col[c].rounded()) - x0, j = Int(row[c].rounded()) - y0
            guard i >= 0, j >= 0, i < w, j < h else { continue }
            zbuf[j * w + i] = max(zbuf[j * w + i], dsm.values[c])
        }
        // A cell is hidden when a point more than `tolerance` higher shares its pixel. The tolerance covers
        // the height change within one cell at the view's slope.
        let v = image.model.viewingGeometry(at: GeoPoint(longitude: longitudes[finite[0]], latitude: latitudes[finite[0]],
                                                         height: Double(dsm.values[finite[0]])))
        let tanInc = Float(tan(v.incidenceDegrees * .pi / 180))
        let tolerance = max(1.0, Float(2 * resolution) / max(tanInc, 0.05) * 0.5)
        var out = [Float](repeating: 0, count: n)
        for c in finite {
            let i = Int(col[c].rounded()) - x0, j = Int(row[c].rounded()) - y0
            guard i >= 0, j >= 0, i < w, j < h else { continue }
            guard dsm.values[c] >= zbuf[j * w + i] - tolerance else { continue }
            if let s = src.bicubic(col[c] - Double(x0), row[c] - Double(y0)) { out[c] = max(1, min(65535, s.rounded())) }
        }
        return out
    }
}

/// A LAS 1.4 writer, point data record format 6 with one extra-bytes float attribute ("score"),
/// streamed: points are appended in batches and the header (counts, bounds) is completed at the end.
final class LASWriter {
    let path: String
    let handle: FileHandle
    let offset: (Double, Double, Double)
    let scale = 0.001
    var count = 0
    var minimum = SIMD3<Double>(repeating: .infinity), maximum = SIMD3<Double>(repeating: -.infinity)
    let wkt: String

    /// `origin`: offsets of the stored integer coordinates (near the data's minimum).
    init(path: String, wkt: String, origin: (Double, Double, Double)) throws {
        self.path = path
        self.wkt = wkt
        offset = ((origin.0 / 1000).rounded(.down) * 1000, (origin.1 / 1000).rounded(.down) * 1000, (origin.2 / 100).rounded(.down) * 100)
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw PipelineError.workFolder(path, "cannot be created")
        }
        handle = h
        try handle.write(contentsOf: header())
    }

    func header() -> Data {
        var d = Data()
        func u8(_ v: UInt8) { d.append(v) }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func f64(_ v: Double) { withUnsafeBytes(of: v.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        func text(_ s: String, _ n: Int) { var b = Array(s.utf8.prefix(n)); b += [UInt8](repeating: 0, count: n - b.count); d.append(contentsOf: b) }
        let wktBytes = Array(wkt.utf8) + [0]
        let vlr1 = 54 + wktBytes.count, vlr2 = 54 + 192
        let pointOffset = 375 + vlr1 + vlr2
        let lo = count > 0 ? minimum : SIMD3(offset.0, offset.1, offset.2), hi = count > 0 ? maximum : lo
        text("LASF", 4); u16(0); u16(0x10)  // global encoding: CRS as WKT
        d.append(contentsOf: [UInt8](repeating: 0, count: 16))
        u8(1); u8(4)
        text("dsmopt", 32); text("dsmopt DSM pipeline", 32)
        let cal = Calendar(identifier: .gregorian)
        let now = Date()
        u16(UInt16(cal.ordinality(of: .day, in: .year, for: now) ?? 1)); u16(UInt16(cal.component(.year, from: now)))
        u16(375); u32(UInt32(pointOffset)); u32(2)
        u8(6); u16(34)
        u32(0); for _ in 0..<5 { u32(0) }
        f64(scale); f64(scale); f64(scale); f64(offset.0); f64(offset.1); f64(offset.2)
        f64(hi.x); f64(lo.x); f64(hi.y); f64(lo.y); f64(hi.z); f64(lo.z)
        u64(0); u64(0); u32(0)
        u64(UInt64(count)); u64(UInt64(count)); for _ in 0..<14 { u64(0) }
        precondition(d.count == 375)
        // VLR: OGC WKT coordinate system.
        u16(0); text("LASF_Projection", 16); u16(2112); u16(UInt16(wktBytes.count)); text("OGC WKT", 32)
        d.append(contentsOf: wktBytes)
        // VLR: extra bytes descriptor for "score" (float).
        u16(0); text("LASF_Spec", 16); u16(4); u16(192); text("extra bytes", 32)
        d.append(contentsOf: [0, 0]); u8(9); u8(0); text("score", 32); d.append(contentsOf: [UInt8](repeating: 0, count: 4))
        d.append(contentsOf: [UInt8](repeating: 0, count: 8 + 16 + 8 + 16 + 8 + 16 + 8 + 16 + 8 + 16))
        text("ZNCC correlation score, -1 filled", 32)
        precondition(d.count == pointOffset)
        return d
    }

    func append(x: [Double], y: [Double], z: [Double], score: [Float]) throws {
        var d = Data()
        d.reserveCapacity(34 * x.count)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        for k in 0..<x.count {
            let p = SIMD3(x[k], y[k], z[k])
            minimum = pointwiseMin(minimum, p); maximum = pointwiseMax(maximum, p)
            put(Int32(((x[k] - offset.0) / scale).rounded())); put(Int32(((y[k] - offset.1) / scale).rounded()))
            put(Int32(((z[k] - offset.2) / scale).rounded()))
            put(UInt16(0)); d.append(0x11); d.append(0); d.append(1); d.append(0); put(UInt16(0)); put(UInt16(0)); put(UInt64(0))
            put(score[k].bitPattern)
        }
        count += x.count
        try handle.write(contentsOf: d)
    }

    /// Rewrites the header with the final counts and bounds, and closes the file.
    func finish() throws {
        try handle.seek(toOffset: 0)
        try handle.write(contentsOf: header())
        try handle.close()
    }
}
