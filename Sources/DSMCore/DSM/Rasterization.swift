import Foundation

/// A north-up raster grid in a projected CRS: cell (i, j) covers [x0 + i·r, x0 + (i+1)·r] × [y0 − (j+1)·r, y0 − j·r].
public struct GridDefinition: Sendable, Codable, Equatable {
    public var epsg: Int
    /// Top-left corner.
    public var originX: Double
    public var originY: Double
    public var resolution: Double
    public var width: Int
    public var height: Int

    public init(epsg: Int, originX: Double, originY: Double, resolution: Double, width: Int, height: Int) {
        self.epsg = epsg; self.originX = originX; self.originY = originY
        self.resolution = resolution; self.width = width; self.height = height
    }

    /// The smallest grid aligned on multiples of the resolution that covers a bounding box.
    public init(epsg: Int, minX: Double, minY: Double, maxX: Double, maxY: Double, resolution r: Double) {
        let x0 = (minX / r).rounded(.down) * r, y1 = (maxY / r).rounded(.up) * r
        let x1 = (maxX / r).rounded(.up) * r, y0 = (minY / r).rounded(.down) * r
        self.init(epsg: epsg, originX: x0, originY: y1, resolution: r,
                  width: max(1, Int(((x1 - x0) / r).rounded())), height: max(1, Int(((y1 - y0) / r).rounded())))
    }

    public var geoTransform: [Double] { [originX, resolution, 0, originY, 0, -resolution] }
    public var count: Int { width * height }

    /// Centre of a cell.
    @inlinable public func centre(_ i: Int, _ j: Int) -> (x: Double, y: Double) {
        (originX + (Double(i) + 0.5) * resolution, originY - (Double(j) + 0.5) * resolution)
    }
}

/// A single-band float raster on a grid, NaN where empty.
public struct GridRaster: Sendable {
    public var grid: GridDefinition
    public var values: [Float]
    public init(grid: GridDefinition, values: [Float]) {
        precondition(values.count == grid.count)
        self.grid = grid; self.values = values
    }
    public init(grid: GridDefinition, fill: Float = .nan) {
        self.init(grid: grid, values: [Float](repeating: fill, count: grid.count))
    }
    public var validCount: Int { values.reduce(0) { $0 + ($1.isNaN ? 0 : 1) } }
}

/// Points in a projected CRS with their height and correlation score.
public struct ProjectedPoints: Sendable {
    public var x: [Double] = []
    public var y: [Double] = []
    public var z: [Float] = []
    public var score: [Float] = []
    /// Height standard deviation of each point, metres (NaN when unknown); empty when not tracked.
    public var sigma: [Float] = []
    public init() {}
    public var count: Int { x.count }
    public mutating func append(_ other: ProjectedPoints) {
        x += other.x; y += other.y; z += other.z; score += other.score; sigma += other.sigma
    }
}

public enum Rasterizer {
    /// Heights and scores on a grid: the median of the points inside each cell; cells without a point
    /// take the Gaussian-weighted mean (σ = half a cell) of the points within one cell's distance. With
    /// per-point `sigma`, also the height uncertainty: the median of the cell's points' (their errors are
    /// correlated over the matching window, so averaging them does not shrink it), splatted likewise.
    public static func rasterize(_ p: ProjectedPoints, grid g: GridDefinition) -> (height: GridRaster, score: GridRaster, sigma: GridRaster) {
        let hasSigma = p.sigma.count == p.count
        var cellOf = [Int](repeating: -1, count: p.count)
        for k in 0..<p.count {
            let i = Int(((p.x[k] - g.originX) / g.resolution).rounded(.down))
            let j = Int(((g.originY - p.y[k]) / g.resolution).rounded(.down))
            if i >= 0, i < g.width, j >= 0, j < g.height { cellOf[k] = j * g.width + i }
        }
        let order = (0..<p.count).filter { cellOf[$0] >= 0 }.sorted { cellOf[$0] < cellOf[$1] }
        var height = GridRaster(grid: g), score = GridRaster(grid: g), sigma = GridRaster(grid: g)
        var a = 0
        var buf: [Float] = [], sbuf: [Float] = []
        while a < order.count {
            let cell = cellOf[order[a]]
            var b = a
            buf.removeAll(keepingCapacity: true); sbuf.removeAll(keepingCapacity: true)
            var s: Float = 0
            while b < order.count && cellOf[order[b]] == cell {
                buf.append(p.z[order[b]]); s += p.score[order[b]]
                if hasSigma, !p.sigma[order[b]].isNaN { sbuf.append(p.sigma[order[b]]) }
                b += 1
            }
            if !sbuf.isEmpty { sbuf.sort(); sigma.values[cell] = sbuf[sbuf.count / 2] }
            buf.sort()
            let n = buf.count
            height.values[cell] = n % 2 == 1 ? buf[n / 2] : (buf[n / 2 - 1] + buf[n / 2]) / 2
            score.values[cell] = s / Float(n)
            a = b
        }
        // Gaussian splat into empty cells.
        var wsum = [Float](repeating: 0, count: g.count), hsum = wsum, ssum = wsum, usum = wsum, uw = wsum
        let sigma2 = Float(0.5 * g.resolution) * Float(0.5 * g.resolution)
        for k in 0..<p.count {
            let fx = (p.x[k] - g.originX) / g.resolution - 0.5, fy = (g.originY - p.y[k]) / g.resolution - 0.5
            let ci = Int(fx.rounded()), cj = Int(fy.rounded())
            for j in (cj - 1)...(cj + 1) where j >= 0 && j < g.height {
                for i in (ci - 1)...(ci + 1) where i >= 0 && i < g.width {
                    let cell = j * g.width + i
                    guard height.values[cell].isNaN || wsum[cell] > 0 else { continue }
                    let dx = Float((Double(i) - fx) * g.resolution), dy = Float((Double(j) - fy) * g.resolution)
                    let d2 = dx * dx + dy * dy
                    guard d2 <= Float(g.resolution * g.resolution) else { continue }
                    let w = exp(-d2 / (2 * sigma2))
                    wsum[cell] += w; hsum[cell] += w * p.z[k]; ssum[cell] += w * p.score[k]
                    if hasSigma, !p.sigma[k].isNaN { usum[cell] += w * p.sigma[k]; uw[cell] += w }
                }
            }
        }
        for c in 0..<g.count where wsum[c] > 0 {
            height.values[c] = hsum[c] / wsum[c]
            score.values[c] = ssum[c] / wsum[c]
            if uw[c] > 0 { sigma.values[c] = usum[c] / uw[c] }
        }
        return (height, score, sigma)
    }
}
