import Foundation
import LinearAlgebra

/// Nuth & Kääb (2011) coregistration of a DEM (the secondary) onto a reference DEM, both on one grid
/// (the caller resamples the secondary onto the reference's grid first).
///
/// A horizontal shift s of a surface shows in the elevation differences as Nuth & Kääb's relation
/// dh = tan(slope) · (s_east · sin(aspect) + s_north · cos(aspect)) + bias, aspect being the downslope
/// azimuth. It is fitted as is — linear in (s_east, s_north, bias), by least squares (LAPACK) — on stable
/// terrain: cells with a slope between `minimumSlopeDeg` and `maximumSlopeDeg`, within `outlierNMADs`
/// NMADs of the median difference. (Nuth & Kääb divide both sides by tan(slope) and fit a constant c
/// for the bias/tan(slope) term; on terrain with one dominant aspect that term is confounded with the
/// shift: a DSM of La Réunion's slopes raised by 2 m and moved by 3 cells was then "corrected" by 1.6
/// cells the wrong way, its NMAD rising from 0.87 to 1.20 m. Undivided, the bias is a true constant.)
/// The secondary is resampled (bilinear) at the accumulated shift and the fit repeated until the step is
/// below `tolerancePixels` or `maximumIterations` is reached. The vertical bias is then the median
/// difference on stable terrain at the final shift.
public enum NuthKaab {
    public struct Settings: Sendable, Equatable {
        public var maximumIterations = 30
        public var tolerancePixels = 0.0005
        public var minimumSlopeDeg = 3.0
        public var maximumSlopeDeg = 70.0
        public var outlierNMADs = 3.0
        /// Also fit a tilt (a plane) to the differences left after the shift and the bias.
        public var tilt = false
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
        /// With `Settings.tilt`: heights to add per metre east and north of the grid's centre (on top of dz,
        /// which is then the correction at the centre).
        public var tilt: (east: Double, north: Double)?
        public static func == (a: Result, b: Result) -> Bool {
            a.columns == b.columns && a.rows == b.rows && a.dz == b.dz && a.iterations == b.iterations && a.before == b.before && a.after == b.after
                && a.tilt?.east == b.tilt?.east && a.tilt?.north == b.tilt?.north
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
    ///
    /// The fit runs coarse to fine (block averages of 8, 4, 2 cells, then the grid itself), each level
    /// starting from the previous one's shift: the linear relation holds for shifts small against the
    /// scale of the relief's slopes, which a fine, rough DSM (0.5 m cells, 3 cells off) does not give. At
    /// each level the shift with the lowest NMAD is kept (a step that makes the fit worse is undone).
    public static func estimate(reference: [Float], secondary: [Float], width: Int, height: Int,
                                pixelWidth: Double, pixelHeight: Double, excluded: [Bool]? = nil,
                                settings: Settings = Settings()) throws -> Result {
        guard reference.count == width * height, secondary.count == width * height, excluded.map({ $0.count == width * height }) ?? true else {
            throw Failure.sizeMismatch
        }
        let full = Level(reference: reference, secondary: secondary, width: width, height: height,
                         pixelWidth: pixelWidth, pixelHeight: pixelHeight, excluded: excluded, settings: settings)
        var columns = 0.0, rows = 0.0, iterations = 0
        var history: [(columns: Double, rows: Double, nmad: Double)] = []
        for factor in [8, 4, 2] where min(width, height) / factor >= 48 {
            let level = full.decimated(by: factor)
            guard let fit = try? level.fit(from: (columns / Double(factor), rows / Double(factor))) else { continue }
            columns = fit.columns * Double(factor); rows = fit.rows * Double(factor)
            iterations += fit.history.count
            history += fit.history.map { ($0.columns * Double(factor), $0.rows * Double(factor), $0.nmad) }
        }
        let fit = try full.fit(from: (columns, rows))
        columns = fit.columns; rows = fit.rows
        iterations += fit.history.count
        history += fit.history
        let before = full.statistics(0, 0, 0)
        var dz = full.verticalShift(columns, rows)
        var tilt: (east: Double, north: Double)?
        if settings.tilt {
            // The shift and the plane are fitted in turn (a plane left in the differences biases the shift,
            // and the shift's residuals the plane) until the plane settles.
            var a = 0.0, b = 0.0
            var level = full
            for _ in 0..<5 {
                let p = try level.plane(columns, rows, dz)
                a += p.east; b += p.north
                var corrected = secondary
                for k in corrected.indices {
                    let o = full.offset(k)
                    corrected[k] -= Float(a * o.east + b * o.north)
                }
                level = Level(reference: reference, secondary: corrected, width: width, height: height,
                              pixelWidth: pixelWidth, pixelHeight: pixelHeight, excluded: excluded, settings: settings)
                let refit = try level.fit(from: (columns, rows))
                columns = refit.columns; rows = refit.rows
                iterations += refit.history.count
                history += refit.history
                dz = level.verticalShift(columns, rows)
                if abs(p.east) < 1e-7 && abs(p.north) < 1e-7 { break }
            }
            tilt = (-a, -b)
        }
        let after = full.statistics(columns, rows, dz, tilt: tilt)
        return Result(columns: columns, rows: rows, dz: dz, iterations: iterations, history: history, before: before, after: after, tilt: tilt)
    }

    /// One grid of the fit: the reference's slope and aspect, the secondary resampled at a shift.
    struct Level {
        let reference: [Float], secondary: [Float]
        let width: Int, height: Int
        let pixelWidth: Double, pixelHeight: Double
        let excluded: [Bool]?
        let settings: Settings
        var tanSlope: [Float], sinA: [Float], cosA: [Float], usable: [Bool]
        let maxTan: Float

        init(reference: [Float], secondary: [Float], width: Int, height: Int, pixelWidth: Double, pixelHeight: Double,
             excluded: [Bool]?, settings: Settings) {
            self.reference = reference; self.secondary = secondary; self.width = width; self.height = height
            self.pixelWidth = pixelWidth; self.pixelHeight = pixelHeight; self.excluded = excluded; self.settings = settings
            let n = width * height
            tanSlope = [Float](repeating: .nan, count: n); sinA = [Float](repeating: 0, count: n); cosA = sinA
            usable = [Bool](repeating: false, count: n)
            let minTan = Float(tan(settings.minimumSlopeDeg * .pi / 180))
            maxTan = Float(tan(settings.maximumSlopeDeg * .pi / 180))
            // Slope and aspect of the reference (central differences), metres per metre.
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
        }

        /// Block averages of `f` × `f` cells (a block with any unknown cell is unknown; excluded if any is).
        func decimated(by f: Int) -> Level {
            let w = width / f, h = height / f
            func average(_ v: [Float]) -> [Float] {
                var out = [Float](repeating: .nan, count: w * h)
                for j in 0..<h {
                    for i in 0..<w {
                        var sum: Float = 0
                        var ok = true
                        for dj in 0..<f where ok {
                            for di in 0..<f {
                                let x = v[(j * f + dj) * width + i * f + di]
                                if !x.isFinite { ok = false; break }
                                sum += x
                            }
                        }
                        if ok { out[j * w + i] = sum / Float(f * f) }
                    }
                }
                return out
            }
            let ex = excluded.map { e in
                (0..<(w * h)).map { k -> Bool in
                    let i = k % w, j = k / w
                    for dj in 0..<f { for di in 0..<f where e[(j * f + dj) * width + i * f + di] { return true } }
                    return false
                }
            }
            // Block averages are aligned on the blocks' centres: a shift of s fine cells is s / f coarse cells.
            return Level(reference: average(reference), secondary: average(secondary), width: w, height: h,
                         pixelWidth: pixelWidth * Double(f), pixelHeight: pixelHeight * Double(f), excluded: ex, settings: settings)
        }

        /// Secondary − reference with the secondary moved by (cs, rs) cells: the aligned secondary at (i, j)
        /// is the secondary at (i − cs, j − rs), bilinear.
        func differences(_ cs: Double, _ rs: Double) -> [Float] {
            var dh = [Float](repeating: .nan, count: width * height)
            for j in 0..<height {
                let y = Double(j) - rs
                let y0 = Int(y.rounded(.down)), fy = Float(y - Double(y0))
                for i in 0..<width {
                    let c = j * width + i
                    let x = Double(i) - cs
                    let x0 = Int(x.rounded(.down)), fx = Float(x - Double(x0))
                    guard x0 >= 0, y0 >= 0, x0 + 1 < width, y0 + 1 < height, reference[c].isFinite else { continue }
                    let k = y0 * width + x0
                    let a = secondary[k], b = secondary[k + 1], cc = secondary[k + width], d = secondary[k + width + 1]
                    dh[c] = (a * (1 - fx) + b * fx) * (1 - fy) + (cc * (1 - fx) + d * fx) * fy - reference[c]
                }
            }
            return dh
        }

        func robust(_ dh: [Float], _ mask: (Int) -> Bool) -> (median: Double, nmad: Double, count: Int) {
            var v: [Float] = []
            v.reserveCapacity(dh.count / 2)
            for c in dh.indices where dh[c].isFinite && mask(c) { v.append(dh[c]) }
            guard !v.isEmpty else { return (.nan, .nan, 0) }
            let med = Double(NuthKaab.median(&v))
            for k in v.indices { v[k] = abs(v[k] - Float(med)) }
            return (med, 1.4826 * Double(NuthKaab.median(&v)), v.count)
        }

        /// Iterates from a starting shift until the step is below the tolerance; a step that made the NMAD
        /// more than 10 % worse than the best seen is undone (divergence), and the level ends there.
        func fit(from start: (Double, Double)) throws -> (columns: Double, rows: Double, history: [(columns: Double, rows: Double, nmad: Double)]) {
            var columns = start.0, rows = start.1
            var best = (columns: columns, rows: rows, nmad: Double.infinity)
            var history: [(columns: Double, rows: Double, nmad: Double)] = []
            for _ in 0..<settings.maximumIterations {
                let dh = differences(columns, rows)
                let (med, nmad, count) = robust(dh) { usable[$0] }
                guard count >= 100 else { throw Failure.tooFewStableCells(count) }
                if nmad > best.nmad * 1.1 { columns = best.columns; rows = best.rows; break }
                if nmad < best.nmad { best = (columns, rows, nmad) }
                let limit = Float(settings.outlierNMADs * max(nmad, 1e-3))
                // Normal equations of dh = a·tan(slope)·sin(aspect) + b·tan(slope)·cos(aspect) + c.
                var ata = [Double](repeating: 0, count: 9), aty = [Double](repeating: 0, count: 3), m = 0
                for c in dh.indices where usable[c] && dh[c].isFinite && abs(dh[c] - Float(med)) <= limit {
                    let t = Double(tanSlope[c])
                    let y = Double(dh[c]), row = [t * Double(sinA[c]), t * Double(cosA[c]), 1]
                    for p in 0..<3 {
                        aty[p] += row[p] * y
                        for q in 0..<3 { ata[p * 3 + q] += row[p] * row[q] }
                    }
                    m += 1
                }
                guard m >= 100 else { throw Failure.tooFewStableCells(m) }
                let sol = try leastSquares(Matrix(rows: 3, columns: 3, values: ata), Matrix(rows: 3, columns: 1, values: aty))
                // The secondary shows the terrain displaced by (east, north) metres: move it back.
                let stepColumns = -sol[0, 0] / pixelWidth, stepRows = sol[1, 0] / pixelHeight
                columns += stepColumns; rows += stepRows
                history.append((columns, rows, nmad))
                if (stepColumns * stepColumns + stepRows * stepRows).squareRoot() < settings.tolerancePixels { break }
            }
            return (columns, rows, history)
        }

        /// The vertical bias at a shift: minus the median difference over all stable cells (flat ones too).
        func verticalShift(_ cs: Double, _ rs: Double) -> Double {
            let flat = robust(differences(cs, rs)) { c in tanSlope[c].isFinite && tanSlope[c] <= maxTan && !(excluded?[c] ?? false) }
            return flat.count > 0 ? -flat.median : 0
        }

        /// Metres east and north of the grid's centre.
        func offset(_ c: Int) -> (east: Double, north: Double) {
            ((Double(c % width) - Double(width - 1) / 2) * pixelWidth, -(Double(c / width) - Double(height - 1) / 2) * pixelHeight)
        }

        /// The plane a·east + b·north + centre fitted (LAPACK) to the differences left at a shift and bias, on
        /// stable cells (flat ones too) within 3 NMAD.
        func plane(_ cs: Double, _ rs: Double, _ dz: Double) throws -> (east: Double, north: Double, centre: Double) {
            let dh = differences(cs, rs).map { $0 + Float(dz) }
            let stable: (Int) -> Bool = { c in tanSlope[c].isFinite && tanSlope[c] <= maxTan && !(excluded?[c] ?? false) }
            let (med, nmad, count) = robust(dh, stable)
            guard count >= 100 else { throw Failure.tooFewStableCells(count) }
            let limit = Float(settings.outlierNMADs * max(nmad, 1e-3))
            var ata = [Double](repeating: 0, count: 9), aty = [Double](repeating: 0, count: 3)
            for c in dh.indices where stable(c) && dh[c].isFinite && abs(dh[c] - Float(med)) <= limit {
                let o = offset(c), row = [o.east, o.north, 1]
                for p in 0..<3 {
                    aty[p] += row[p] * Double(dh[c])
                    for q in 0..<3 { ata[p * 3 + q] += row[p] * row[q] }
                }
            }
            let sol = try leastSquares(Matrix(rows: 3, columns: 3, values: ata), Matrix(rows: 3, columns: 1, values: aty))
            return (sol[0, 0], sol[1, 0], sol[2, 0])
        }

        func statistics(_ cs: Double, _ rs: Double, _ dz: Double, tilt: (east: Double, north: Double)? = nil) -> Statistics {
            let dh = differences(cs, rs)
            var v: [Float] = []
            for c in dh.indices where usable[c] && dh[c].isFinite {
                let t = tilt.map { t in let o = offset(c); return t.east * o.east + t.north * o.north } ?? 0
                v.append(dh[c] + Float(dz + t))
            }
            let med = v.isEmpty ? 0 : Double(NuthKaab.median(&v))
            var dev = v.map { abs($0 - Float(med)) }
            let nmad = dev.isEmpty ? 0 : 1.4826 * Double(NuthKaab.median(&dev))
            var sum = 0.0, sq = 0.0, kept = 0
            for x in v where abs(Double(x) - med) <= settings.outlierNMADs * max(nmad, 1e-3) {
                sum += Double(x); sq += Double(x) * Double(x); kept += 1
            }
            let k = Double(max(kept, 1))
            return Statistics(cells: kept, median: med, nmad: nmad, rmse: (sq / k).squareRoot(), mean: sum / k)
        }
    }

    /// Secondary − reference after a result is applied (shift, dz, tilt), on the grid (NaN where unknown).
    public static func residuals(reference: [Float], secondary: [Float], width: Int, height: Int, pixelWidth: Double, pixelHeight: Double,
                                 result: Result) -> [Float] {
        let level = Level(reference: reference, secondary: secondary, width: width, height: height,
                          pixelWidth: pixelWidth, pixelHeight: pixelHeight, excluded: nil, settings: Settings())
        var dh = level.differences(result.columns, result.rows)
        for k in dh.indices where dh[k].isFinite {
            let t = result.tilt.map { t in let o = level.offset(k); return t.east * o.east + t.north * o.north } ?? 0
            dh[k] += Float(result.dz + t)
        }
        return dh
    }

    /// Median of finite values (reorders `v`).
    public static func median(_ v: inout [Float]) -> Float {
        guard !v.isEmpty else { return .nan }
        let k = v.count / 2
        v.withUnsafeMutableBufferPointer { selectKthSmallest(&$0, k) }
        if v.count % 2 == 1 { return v[k] }
        let lower = v[..<k].max()!
        return (lower + v[k]) / 2
    }
}
