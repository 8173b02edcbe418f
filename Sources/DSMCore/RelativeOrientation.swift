import Foundation
import LinearAlgebra

/// The same ground point seen in several images: one pixel (column, row) per image that sees it.
public struct TiePoint: Sendable, Equatable {
    public var observations: [Observation]
    public struct Observation: Sendable, Equatable {
        public var image: Int
        public var column: Double
        public var row: Double
        public init(image: Int, column: Double, row: Double) { self.image = image; self.column = column; self.row = row }
    }
    public init(observations: [Observation]) { self.observations = observations }
}

/// A bias added to an image's RPC projection, in pixels: the corrected model projects a ground point at
/// `project(point) + (column, row)`.
public struct ImageBias: Sendable, Codable, Equatable {
    public var column: Double
    public var row: Double
    public init(column: Double = 0, row: Double = 0) { self.column = column; self.row = row }
    public static let zero = ImageBias()
}

extension RPCModel {
    /// The model with a bias in image space (the RPC's column and row offsets moved), so projection,
    /// localisation and the direct model all agree with it.
    public func corrected(by bias: ImageBias) -> RPCModel {
        var m = self
        m.columnNorm.offset += bias.column
        m.rowNorm.offset += bias.row
        return m
    }
}

/// The outcome of the relative orientation of a scene's images (in the manifest).
public struct OrientationAdjustment: Sendable, Codable, Equatable {
    /// Per image, the bias applied to its RPC model.
    public var biases: [ImageBias]
    /// Tie points used (seen in at least two images) and their observations.
    public var tiePoints: Int
    public var observations: Int
    /// Tie points left out as outliers (their residual after the first adjustment beyond 3× the median
    /// and 0.5 px).
    public var rejected: Int
    /// RMS of the tie points' reprojection residuals (each point intersected from all its observations
    /// by least squares), pixels, with the original models and with the corrected ones.
    public var rmsBeforePx: Double
    public var rmsAfterPx: Double
    /// The same for the tie points seen in three images or more (what ties the pairs of a triplet).
    public var multiViewTiePoints: Int
}

public enum OrientationError: Error, Equatable, CustomStringConvertible {
    case tooFewTiePoints(found: Int, needed: Int)
    public var description: String {
        switch self {
        case .tooFewTiePoints(let f, let n): return "relative orientation: \(f) tie points found, \(n) needed"
        }
    }
}

/// Relative orientation of a scene's images from sparse tie points: one bias per image in image space
/// (a shift of its RPC projection, the dominant error of Pléiades RPCs over a scene), estimated jointly
/// for all images by least squares so that every tie point's rays meet.
///
/// Unknowns: the biases (2 per image) and each tie point's ground position (3). Each Gauss–Newton step
/// first intersects every tie point from its observations with the current biases, then solves the
/// biases' update from the reduced system — each tie point's rows projected onto the orthogonal
/// complement of its own Jacobian (the Schur complement, so the points drop out) — with LAPACKE's `dgels`.
/// Tie points fix the images relative to each other but not the whole scene's position: moving the
/// ground and shifting every image accordingly fits them as well. A weak prior (σ `priorSigmaPx`)
/// pulls every bias towards zero, so the solution keeps the scene where the original models put it on
/// average, and the images' relative errors are shared between them rather than all put on one image.
public enum RelativeOrientation {
    public static func adjust(models: [RPCModel], tiePoints: [TiePoint], initialHeight: Double,
                              priorSigmaPx: Double = 10, iterations: Int = 5, minimumTiePoints: Int = 10) throws -> OrientationAdjustment {
        let k = models.count
        var points = tiePoints.filter { Set($0.observations.map(\.image)).count >= 2 && $0.observations.allSatisfy { $0.image >= 0 && $0.image < k } }
        guard points.count >= minimumTiePoints else { throw OrientationError.tooFewTiePoints(found: points.count, needed: minimumTiePoints) }
        var biases = [ImageBias](repeating: .zero, count: k)
        var rejected = 0
        for iteration in 0..<iterations {
            let corrected = zip(models, biases).map { $0.corrected(by: $1) }
            var rows: [[Double]] = [], rhs: [Double] = []
            for t in points {
                guard let x = intersect(t, models: corrected, initialHeight: initialHeight) else { continue }
                let n = t.observations.count
                // A (2n × 3): pixels per metre east, north, up; r (2n): observed − projected.
                var a = [Double](repeating: 0, count: 2 * n * 3), r = [Double](repeating: 0, count: 2 * n)
                for (q, o) in t.observations.enumerated() {
                    let m = corrected[o.image]
                    let jac = m.projectionJacobian(at: x)
                    let p = m.project(longitude: x.longitude, latitude: x.latitude, height: x.height)
                    a[(2 * q) * 3 + 0] = jac.j.0; a[(2 * q) * 3 + 1] = jac.j.1; a[(2 * q) * 3 + 2] = jac.v.x
                    a[(2 * q + 1) * 3 + 0] = jac.j.2; a[(2 * q + 1) * 3 + 1] = jac.j.3; a[(2 * q + 1) * 3 + 2] = jac.v.y
                    r[2 * q] = o.column - p.column; r[2 * q + 1] = o.row - p.row
                }
                guard let projector = complementProjector(a, rows: 2 * n) else { continue }
                // B (2n × 2k): the bias of each observation's image.
                for i in 0..<(2 * n) {
                    var row = [Double](repeating: 0, count: 2 * k)
                    var value = 0.0
                    for j in 0..<(2 * n) {
                        let pij = projector[i * 2 * n + j]
                        let o = t.observations[j / 2]
                        row[2 * o.image + j % 2] += pij
                        value += pij * r[j]
                    }
                    rows.append(row); rhs.append(value)
                }
            }
            let w = 1 / priorSigmaPx
            for i in 0..<(2 * k) {
                var row = [Double](repeating: 0, count: 2 * k)
                row[i] = w
                rows.append(row)
                rhs.append(-w * (i % 2 == 0 ? biases[i / 2].column : biases[i / 2].row))
            }
            let a = Matrix(rows: rows.count, columns: 2 * k, values: rows.flatMap { $0 })
            let step = try leastSquares(a, Matrix(rows: rhs.count, columns: 1, values: rhs))
            for i in 0..<k {
                biases[i].column += step[2 * i, 0]
                biases[i].row += step[2 * i + 1, 0]
            }
            // After the first step, leave out the tie points that still do not fit (mismatches).
            if iteration == 0 {
                let res = residuals(models: models, biases: biases, points: points, initialHeight: initialHeight)
                let sorted = res.perPoint.compactMap { $0 }.sorted()
                if !sorted.isEmpty {
                    let limit = max(0.5, 3 * sorted[sorted.count / 2])
                    let kept = zip(points, res.perPoint).filter { ($0.1 ?? .infinity) <= limit }.map(\.0)
                    if kept.count >= minimumTiePoints { rejected = points.count - kept.count; points = kept }
                }
            }
        }
        // Before and after, over the tie points kept.
        let before = residuals(models: models, biases: [ImageBias](repeating: .zero, count: k), points: points, initialHeight: initialHeight)
        let after = residuals(models: models, biases: biases, points: points, initialHeight: initialHeight)
        return OrientationAdjustment(biases: biases, tiePoints: points.count, observations: points.reduce(0) { $0 + $1.observations.count },
                                     rejected: rejected, rmsBeforePx: before.rms, rmsAfterPx: after.rms,
                                     multiViewTiePoints: points.filter { $0.observations.count >= 3 }.count)
    }

    /// Per tie point, the RMS of its reprojection residuals (pixels) after intersecting it with the biased
    /// models; nil where it could not be intersected. And the overall RMS.
    public static func residuals(models: [RPCModel], biases: [ImageBias], points: [TiePoint], initialHeight: Double)
        -> (perPoint: [Double?], rms: Double) {
        let corrected = zip(models, biases).map { $0.corrected(by: $1) }
        var s = 0.0, n = 0.0
        let per: [Double?] = points.map { t in
            guard let x = intersect(t, models: corrected, initialHeight: initialHeight) else { return nil }
            var e = 0.0
            for o in t.observations {
                let p = corrected[o.image].project(longitude: x.longitude, latitude: x.latitude, height: x.height)
                e += (o.column - p.column) * (o.column - p.column) + (o.row - p.row) * (o.row - p.row)
            }
            s += e; n += Double(t.observations.count)
            return (e / Double(t.observations.count)).squareRoot()
        }
        return (per, n > 0 ? (s / n).squareRoot() : .nan)
    }

    /// The ground point whose projections best fit a tie point's observations (Gauss–Newton in local
    /// metres, started at the first observation localised at `initialHeight`).
    public static func intersect(_ t: TiePoint, models: [RPCModel], initialHeight: Double) -> GeoPoint? {
        guard let first = t.observations.first,
              let start = try? models[first.image].localize(column: first.column, row: first.row, height: initialHeight) else { return nil }
        var x = GeoPoint(longitude: start.longitude, latitude: start.latitude, height: initialHeight)
        for _ in 0..<10 {
            // Normal equations of the 2n × 3 system (3 × 3), solved by Cramer's rule.
            var n = [Double](repeating: 0, count: 9), g = [Double](repeating: 0, count: 3)
            for o in t.observations {
                let m = models[o.image]
                let jac = m.projectionJacobian(at: x)
                let p = m.project(longitude: x.longitude, latitude: x.latitude, height: x.height)
                let rows = [([jac.j.0, jac.j.1, jac.v.x], o.column - p.column), ([jac.j.2, jac.j.3, jac.v.y], o.row - p.row)]
                for (a, r) in rows {
                    for i in 0..<3 {
                        g[i] += a[i] * r
                        for j in 0..<3 { n[3 * i + j] += a[i] * a[j] }
                    }
                }
            }
            guard let d = solve3(n, g) else { return nil }
            let radii = WGS84.radiiOfCurvature(latitude: x.latitude)
            x.longitude += d[0] / radii.east * 180 / .pi
            x.latitude += d[1] / radii.north * 180 / .pi
            x.height += d[2]
            if abs(d[0]) + abs(d[1]) + abs(d[2]) < 1e-4 { break }
        }
        return x.longitude.isFinite && x.latitude.isFinite && x.height.isFinite ? x : nil
    }

    static func solve3(_ m: [Double], _ b: [Double]) -> [Double]? {
        func det(_ a: [Double]) -> Double {
            a[0] * (a[4] * a[8] - a[5] * a[7]) - a[1] * (a[3] * a[8] - a[5] * a[6]) + a[2] * (a[3] * a[7] - a[4] * a[6])
        }
        let d = det(m)
        guard abs(d) > 1e-18, d.isFinite else { return nil }
        return (0..<3).map { c in
            var a = m
            for r in 0..<3 { a[3 * r + c] = b[r] }
            return det(a) / d
        }
    }

    /// I − A (AᵀA)⁻¹ Aᵀ for a (rows × 3) A, row-major; nil when AᵀA is singular.
    static func complementProjector(_ a: [Double], rows: Int) -> [Double]? {
        var n = [Double](repeating: 0, count: 9)
        for r in 0..<rows { for i in 0..<3 { for j in 0..<3 { n[3 * i + j] += a[3 * r + i] * a[3 * r + j] } } }
        // (AᵀA)⁻¹ column by column.
        var inv = [Double](repeating: 0, count: 9)
        for c in 0..<3 {
            var e = [0.0, 0.0, 0.0]; e[c] = 1
            guard let col = solve3(n, e) else { return nil }
            for r in 0..<3 { inv[3 * r + c] = col[r] }
        }
        var p = [Double](repeating: 0, count: rows * rows)
        for i in 0..<rows {
            for j in 0..<rows {
                var s = 0.0
                for u in 0..<3 { for v in 0..<3 { s += a[3 * i + u] * inv[3 * u + v] * a[3 * j + v] } }
                p[i * rows + j] = (i == j ? 1 : 0) - s
            }
        }
        return p
    }
}
