import Foundation
import GDALKit

/// The coloured difference map (`difference.png`): B − A blue (B below A) – white – red (B above A) over
/// ±range, transparent where unknown, at most 1024 pixels on its longer side, with a legend bar and its
/// values in metres drawn under the map.
enum DifferenceMap {
    static let maxSide = 1024

    static func colour(_ d: Float, range: Double) -> (UInt8, UInt8, UInt8) {
        let t = max(-1, min(1, Double(d) / range))
        let c = t >= 0 ? (255.0, 255 * (1 - t), 255 * (1 - t)) : (255 * (1 + t), 255 * (1 + t), 255.0)
        return (UInt8(c.0.rounded()), UInt8(c.1.rounded()), UInt8(c.2.rounded()))
    }

    static func write(difference: String, range: Double, to path: String, scratch: String) throws {
        let ds = try RasterDataset(path: difference)
        let f = max(1, Double(max(ds.width, ds.height)) / Double(maxSide))
        let mw = max(1, Int((Double(ds.width) / f).rounded())), mh = max(1, Int((Double(ds.height) / f).rounded()))
        let d = try ds.read(bufferWidth: mw, bufferHeight: mh, resampling: .average)
        let legendHeight = 44
        let w = max(mw, 320), h = mh + legendHeight
        var r = [Float](repeating: 255, count: w * h), g = r, b = r, a = [Float](repeating: 0, count: w * h)
        for j in 0..<mh {
            for i in 0..<mw where d[j * mw + i].isFinite {
                let (cr, cg, cb) = colour(d[j * mw + i], range: range)
                let k = j * w + i
                r[k] = Float(cr); g[k] = Float(cg); b[k] = Float(cb); a[k] = 255
            }
        }
        // Legend: a white band with the colour bar from −range to +range and five labelled ticks.
        let x0 = 24, x1 = w - 44, barTop = mh + 8, barHeight = 12
        for j in mh..<h { for i in 0..<w { a[j * w + i] = 255 } }
        for i in x0...x1 {
            let v = Float((Double(i - x0) / Double(x1 - x0) * 2 - 1) * range)
            let (cr, cg, cb) = colour(v, range: range)
            for j in barTop..<(barTop + barHeight) { let k = j * w + i; r[k] = Float(cr); g[k] = Float(cg); b[k] = Float(cb) }
        }
        func put(_ text: String, centreX: Int, top: Int) {
            let scale = 2, advance = 4 * scale
            var x = centreX - text.count * advance / 2
            for ch in text {
                if let rows = glyphs[ch] {
                    for (gy, row) in rows.enumerated() {
                        for gx in 0..<3 where row[row.index(row.startIndex, offsetBy: gx)] == "1" {
                            for dy in 0..<scale { for dx in 0..<scale {
                                let px = x + gx * scale + dx, py = top + gy * scale + dy
                                guard px >= 0, px < w, py >= 0, py < h else { continue }
                                let k = py * w + px
                                r[k] = 0; g[k] = 0; b[k] = 0; a[k] = 255
                            } }
                        }
                    }
                }
                x += advance
            }
        }
        for t in [-1.0, -0.5, 0, 0.5, 1] {
            let x = x0 + Int(((t + 1) / 2 * Double(x1 - x0)).rounded())
            for j in (barTop + barHeight)..<(barTop + barHeight + 3) { let k = j * w + x; r[k] = 0; g[k] = 0; b[k] = 0 }
            put(label(t * range) + (t == 1 ? " m" : ""), centreX: x + (t == 1 ? 8 : 0), top: barTop + barHeight + 5)
        }
        let tmp = (scratch as NSString).appendingPathComponent("difference_rgba.tif")
        try RasterWriter.write(path: tmp, width: w, height: h, bands: [r, g, b, a], type: .byte)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try GeoProducts.translate(source: tmp, destination: path, arguments: ["-of", "PNG"])
        try? FileManager.default.removeItem(atPath: path + ".aux.xml")
    }

    /// "−2", "+0.5", "0": at most two decimals, no trailing zeros.
    static func label(_ v: Double) -> String {
        if abs(v) < 1e-12 { return "0" }
        var s = String(format: "%.2f", abs(v))
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return (v < 0 ? "-" : "+") + s
    }

    /// A 3×5 pixel font for the legend's characters.
    static let glyphs: [Character: [String]] = [
        "0": ["111", "101", "101", "101", "111"], "1": ["010", "110", "010", "010", "111"], "2": ["111", "001", "111", "100", "111"],
        "3": ["111", "001", "111", "001", "111"], "4": ["101", "101", "111", "001", "001"], "5": ["111", "100", "111", "001", "111"],
        "6": ["111", "100", "111", "101", "111"], "7": ["111", "001", "001", "001", "001"], "8": ["111", "101", "111", "101", "111"],
        "9": ["111", "101", "111", "001", "111"], "-": ["000", "000", "111", "000", "000"], "+": ["000", "010", "111", "010", "000"],
        ".": ["000", "000", "000", "000", "010"], "m": ["000", "000", "111", "111", "101"], " ": ["000", "000", "000", "000", "000"],
    ]
}
