import Foundation
import LinearAlgebra

/// Nuth & Kääb (2011) coregistration of a DEM (the secondary) onto a reference DEM, both on one grid
/// (the caller resamples the secondary onto the reference's grid first).
///
/// A horizontal shift s of a surface shows in the elevation differences as dh = tan(slope) ·
/// (s_east · sin(aspect) + s_north · cos(aspect)) + bias, aspect being the downslope azimuth. Dividing
/// by tan(slope) gives the relation Nuth & Kääb fit: dh / tan(slope) = a·sin(aspect) + b·cos(aspect) + c,
/// linear in (a, b, c) = (s_east, s_north, bias term), solved by least squares (LAPACK) on stable terrain:
/// cells with a slope between `minimumSlopeDeg` and `maximumSlopeDeg`, and within `outlierNMADs`
/// NMADs of the median difference. The secondary is resampled (bilinear) at the accumulated shift and
/// the fit repeated until the step is below `tolerancePixels` or `maximumIterations` is reached. The
/// vertical bias is then the median difference on stable terrain at the final shift.
public enum NuthKaab {
    public struct Settings: Sendable, Equatable {
        public var maximumIterations = 30
        public var tolerancePixels = 0.0005
        public var minimumSlopeDeg = 3.0
        public var maximumSlopeDeg = 70.0
        public var outlierNMADs = 3.0
        public init() {}
    }

    /// Difference statistics (secondary − reference) on stable terrain, metres.
    public struct Statistics: Sendable, Codable, Equatable {
        public var cells: Int
        public var median: Double
        public var nmad: Double
        public var rmse: Double
        public var mean: Double
    }

    public struct Result: Sendable, Equatable {
        /// Shift to apply to the secondary, in reference pixels: columns (east) and rows (down).
        public var columns: Double
        public var rows: Double
        /// Height to add to the secondary, metres.
        public var dz: Double
        public var iterations: Int
        /// Per iteration: the shift after it (columns, rows) and the NMAD of the differences before it.
        public var history: [(columns: Double, rows: Double, nmad: Double)]
        public var before: Statistics
        public var after: Statistics
        public static func == (a: Result, b: Result) -> Bool {
            a.columns == b.columns && a.rows == b.rows && a.dz == b.dz && a.iterations == b.iterations && a.before == b.before && a.after == b.after
        }
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case tooFewStableCells(Int)
        case sizeMismatch
        public var description: String {
            switch self {
            case .tooFewStableCells(let n): return "only \(n) cells of stable, sloped terrain are common to the DSM and the reference (at least 100 needed)"
            case .sizeMismatch: return "the DSM and the reference are not on the same grid"
            }
        }
    }

    /// - Parameters:
    ///   - reference, secondary: heights on the same grid (row-major, `width` × `height`), NaN where unknown.
    ///   - pixelWidth, pixelHeight: the grid's cell size in metres (east–west, north–south).
    ///   - excluded: cells never used as stable terrain (e.g. water), optional.
    public static func estimate(reference: [Float], secondary: [Float], width: Int, height: Int,
                                pixelWidth: Double, pixelHeight: Double, excluded: [Bool]? = nil,
                                settings: Settings = Settings()) throws -> Result {
        guard reference.count == width * height, secondary.count == width * height, excluded.map({ $0.count == width * height }) ?? true else {
            throw Failure.sizeMismatch
        }
        // Slope and aspect of the reference (central differences), metres per metre.
        let n = width * height
        var tanSlope = [Float](repeating: .nan, count: n), sinA = [Float](repeating: 0, count: n), cosA = sinA
        let minTan = Float(tan(settings.minimumSlopeDeg * .pi / 180)), maxTan = Float(tan(settings.maximumSlopeDeg * .pi / 180))
        var usable = [Bool](repeating: false, count: n)
        for j in 1..<max(1, height - 1) {
            for i in 1..<max(1, width - 1) {
                let c = j * width + i
                let e = reference[c + 1], w = reference[c - 1], s = reference[c + width], nn = reference[c - width]
                guard e.isFinite, w.isFinite, s.isFinite, nn.isFinite, reference[c].isFinite else { continue }
                let gEast = Double(e - w) / (2 * pixelWidth), gNorth = Double(nn - s) / (2 * pixelHeight)
                let t = Float((gEast * gEast + gNorth * gNorth).squareRoot())
                tanSlope[c] = t
                guard t > 0 else { continue }
                // Downslope direction (−gradient): azimuth from north, clockwise.
                sinA[c] = Float(-gEast) / t
                cosA[c] = Float(-gNorth) / t
                usable[c] = t >= minTan && t <= maxTan && !(excluded?[c] ?? false)
            }
        }
        var columns = 0.0, rows = 0.0
        var history: [(Double, Double, Double)] = []
        var dh = [Float](repeating: .nan, count: n)
        func differences(_ cs: Double, _ rs: Double) {
            // Secondary content belongs `cs` columns east and `rs` rows down of where it is: the aligned
            // secondary at (i, j) is the secondary at (i − cs, j − rs).
            for j in 0..<height {
                let y = Double(j) - rs
                let y0 = Int(y.rounded(.down)), fy = Float(y - Double(y0))
                for i in 0..<width {
                    let c = j * width + i
                    let x = Double(i) - cs
                    let x0 = Int(x.rounded(.down)), fx = Float(x - Double(x0))
                    guard x0 >= 0, y0 >= 0, x0 + 1 < width, y0 + 1 < height, reference[c].isFinite else { dh[c] = .nan; continue }
                    let k = y0 * width + x0
                    let a = secondary[k], b = secondary[k + 1], cc = secondary[k + width], d = secondary[k + width + 1]
                    let v = (a * (1 - fx) + b * fx) * (1 - fy) + (cc * (1 - fx) + d * fx) * fy
                    dh[c] = v - reference[c]
                }
            }
        }
        func robust(_ mask: (Int) -> Bool) -> (median: Double, nmad: Double, count: Int) {
            var v: [Float] = []
            v.reserveCapacity(n / 2)
            for c in 0..<n where dh[c].isFinite && mask(c) { v.append(dh[c]) }
            guard !v.isEmpty else { return (.nan, .nan, 0) }
            let med = Double(median(&v))
            for k in v.indices { v[k] = abs(v[k] - Float(med)) }
            return (med, 1.4826 * Double(median(&v)), v.count)
        }
        var iterations = 0
        for _ in 0..<settings.maximumIterations {
            differences(columns, rows)
            let (med, nmad, count) = robust { usable[$0] }
            guard count >= 100 else { throw Failure.tooFewStableCells(count) }
            let limit = Float(settings.outlierNMADs * max(nmad, 1e-3))
            // Normal equations of y = a·sin + b·cos + c.
            var ata = [Double](repeating: 0, count: 9), aty = [Double](repeating: 0, count: 3), m = 0
            for c in 0..<n where usable[c] && dh[c].isFinite && abs(dh[c] - Float(med)) <= limit {
                let y = Double(dh[c] / tanSlope[c]), row = [Double(sinA[c]), Double(cosA[c]), 1]
                for p in 0..<3 {
                    aty[p] += row[p] * y
                    for q in 0..<3 { ata[p * 3 + q] += row[p] * row[q] }
                }
                m += 1
            }
            guard m >= 100 else { throw Failure.tooFewStableCells(m) }
            let sol = try leastSquares(Matrix(rows: 3, columns: 3, values: ata), Matrix(rows: 3, columns: 1, values: aty))
            let east = sol[0, 0], north = sol[1, 0]
            // The secondary shows the terrain displaced by (east, north): move it back.
            let stepColumns = -east / pixelWidth, stepRows = north / pixelHeight
            columns += stepColumns; rows += stepRows
            iterations += 1
            history.append((columns, rows, nmad))
            if (stepColumns * stepColumns + stepRows * stepRows).squareRoot() < settings.tolerancePixels { break }
        }
        func statistics(_ cs: Double, _ rs: Double, _ dz: Double) -> Statistics {
            differences(cs, rs)
            var v: [Float] = [], sum = 0.0, sq = 0.0
            for c in 0..<n where usable[c] && dh[c].isFinite { v.append(dh[c] + Float(dz)) }
            let med = v.isEmpty ? 0 : Double(median(&v))
            var kept: [Float] = []
            var dev = v.map { abs($0 - Float(med)) }
            let nmad = dev.isEmpty ? 0 : 1.4826 * Double(median(&dev))
            for x in v where abs(Double(x) - med) <= settings.outlierNMADs * max(nmad, 1e-3) { kept.append(x) }
            for x in kept { sum += Double(x); sq += Double(x) * Double(x) }
            let k = Double(max(kept.count, 1))
            return Statistics(cells: kept.count, median: med, nmad: nmad, rmse: (sq / k).squareRoot(), mean: sum / k)
        }
        let before = statistics(0, 0, 0)
        // Vertical bias: the median difference at the final shift, over all stable cells (flat ones too).
        differences(columns, rows)
        let flat = robust { c in tanSlope[c].isFinite && tanSlope[c] <= maxTan && !(excluded?[c] ?? false) }
        let dz = flat.count > 0 ? -flat.median : 0
        let after = statistics(columns, rows, dz)
        return Result(columns: columns, rows: rows, dz: dz, iterations: iterations,
                      history: history.map { (columns: $0.0, rows: $0.1, nmad: $0.2) }, before: before, after: after)
    }

    /// Median of finite values (reorders `v`).
    public static func median(_ v: inout [Float]) -> Float {
        guard !v.isEmpty else { return .nan }
        let k = v.count / 2
        v.withUnsafeMutableBufferPointer { select(&$0, k) }
        if v.count % 2 == 1 { return v[k] }
        let lower = v[..<k].max()!
        return (lower + v[k]) / 2
    }

    /// Quickselect: puts the k-th smallest at index k, smaller ones before it.
    static func select(_ a: inout UnsafeMutableBufferPointer<Float>, _ k: Int) {
        var lo = 0, hi = a.count - 1
        while lo < hi {
            let pivot = a[(lo + hi) / 2]
            var i = lo, j = hi
            while i <= j {
                while a[i] < pivot { i += 1 }
                while a[j] > pivot { j -= 1 }
                if i <= j { a.swapAt(i, j); i += 1; j -= 1 }
            }
            if k <= j { hi = j } else if k >= i { lo = i } else { return }
        }
    }
}
