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
        let pixels = try RasterDataset(path: image.path).read(column: x0, row: y0, width: w, height: h)
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

/// A minimal LAS 1.4 writer: point data record format 6 with one extra-bytes float attribute.
enum LASWriter {
    static func write(path: String, x: [Double], y: [Double], z: [Double], score: [Float], wkt: String) throws {
        var d = Data()
        func u8(_ v: UInt8) { d.append(v) }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func i32(_ v: Int32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func f64(_ v: Double) { withUnsafeBytes(of: v.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        func f32(_ v: Float) { withUnsafeBytes(of: v.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        func text(_ s: String, _ n: Int) { var b = Array(s.utf8.prefix(n)); b += [UInt8](repeating: 0, count: n - b.count); d.append(contentsOf: b) }

        let n = x.count
        let wktBytes = Array(wkt.utf8) + [0]
        let vlr1 = 54 + wktBytes.count, vlr2 = 54 + 192
        let offset = 375 + vlr1 + vlr2
        let scale = 0.001
        let ox = ((x.min() ?? 0) / 1000).rounded(.down) * 1000, oy = ((y.min() ?? 0) / 1000).rounded(.down) * 1000
        let oz = ((z.min() ?? 0) / 100).rounded(.down) * 100
        // Header (375 bytes).
        text("LASF", 4); u16(0); u16(0x10)  // global encoding: CRS as WKT
        d.append(contentsOf: [UInt8](repeating: 0, count: 16))
        u8(1); u8(4)
        text("dsmopt", 32); text("dsmopt DSM pipeline", 32)
        let cal = Calendar(identifier: .gregorian)
        let now = Date()
        u16(UInt16(cal.ordinality(of: .day, in: .year, for: now) ?? 1)); u16(UInt16(cal.component(.year, from: now)))
        u16(375); u32(UInt32(offset)); u32(2)
        u8(6); u16(34)
        u32(0); for _ in 0..<5 { u32(0) }
        f64(scale); f64(scale); f64(scale); f64(ox); f64(oy); f64(oz)
        f64(x.max() ?? 0); f64(x.min() ?? 0); f64(y.max() ?? 0); f64(y.min() ?? 0); f64(z.max() ?? 0); f64(z.min() ?? 0)
        u64(0); u64(0); u32(0)
        u64(UInt64(n)); u64(UInt64(n)); for _ in 0..<14 { u64(0) }
        precondition(d.count == 375)
        // VLR: OGC WKT coordinate system.
        u16(0); text("LASF_Projection", 16); u16(2112); u16(UInt16(wktBytes.count)); text("OGC WKT", 32)
        d.append(contentsOf: wktBytes)
        // VLR: extra bytes descriptor for "score" (float).
        u16(0); text("LASF_Spec", 16); u16(4); u16(192); text("extra bytes", 32)
        d.append(contentsOf: [0, 0]); u8(9); u8(0); text("score", 32); d.append(contentsOf: [UInt8](repeating: 0, count: 4))
        d.append(contentsOf: [UInt8](repeating: 0, count: 8 + 16 + 8 + 16 + 8 + 16 + 8 + 16 + 8 + 16))
        text("ZNCC correlation score, -1 filled", 32)
        precondition(d.count == offset)
        d.reserveCapacity(offset + 34 * n)
        for k in 0..<n {
            i32(Int32(((x[k] - ox) / scale).rounded())); i32(Int32(((y[k] - oy) / scale).rounded())); i32(Int32(((z[k] - oz) / scale).rounded()))
            u16(0); u8(0x11); u8(0); u8(1); u8(0); u16(0); u16(0); f64(0)
            f32(score[k])
        }
        try d.write(to: URL(fileURLWithPath: path))
    }
}
