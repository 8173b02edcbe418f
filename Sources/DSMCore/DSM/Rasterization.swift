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
    ///
    /// Heights are of the cell's centre: a point off the centre is carried to it along the local slope
    /// (`DSMFilter.localSlopes` of a first pass, flat beside walls) before the median or the mean. A point
    /// lands anywhere in its cell, so without this a slope s left an error of up to s × half a cell.
    public static func rasterize(_ p: ProjectedPoints, grid g: GridDefinition) -> (height: GridRaster, score: GridRaster, sigma: GridRaster) {
        let index = CellIndex(p, grid: g)
        let first = pass(p, index, grid: g, slopes: nil, heightOnly: true).height
        let r = pass(p, index, grid: g, slopes: DSMFilter.localSlopes(first), heightOnly: false)
        return (r.height, r.score!, r.sigma!)
    }

    /// One pass of `rasterize`: heights carried to the cell centres along `slopes` (metres per cell, east
    /// and south), or taken as they are without.
    public static func rasterize(_ p: ProjectedPoints, grid g: GridDefinition, slopes: (east: [Float], south: [Float])?) -> (height: GridRaster, score: GridRaster, sigma: GridRaster) {
        let r = pass(p, CellIndex(p, grid: g), grid: g, slopes: slopes, heightOnly: false)
        return (r.height, r.score!, r.sigma!)
    }

    /// Each point's cell (−1 outside the grid) and the points inside the grid ordered by cell.
    struct CellIndex {
        let cellOf: [Int32]
        let order: [Int32]
        init(_ p: ProjectedPoints, grid g: GridDefinition) {
            var cellOf = [Int32](repeating: -1, count: p.count)
            for k in 0..<p.count {
                let i = Int(((p.x[k] - g.originX) / g.resolution).rounded(.down))
                let j = Int(((g.originY - p.y[k]) / g.resolution).rounded(.down))
                if i >= 0, i < g.width, j >= 0, j < g.height { cellOf[k] = Int32(j * g.width + i) }
            }
            order = (0..<Int32(p.count)).filter { cellOf[Int($0)] >= 0 }.sorted { cellOf[Int($0)] < cellOf[Int($1)] }
            self.cellOf = cellOf
        }
    }

    /// `heightOnly` leaves the scores and uncertainties empty (a first pass, for the slopes).
    static func pass(_ p: ProjectedPoints, _ index: CellIndex, grid g: GridDefinition,
                     slopes: (east: [Float], south: [Float])?, heightOnly: Bool) -> (height: GridRaster, score: GridRaster?, sigma: GridRaster?) {
        let hasSigma = !heightOnly && p.sigma.count == p.count
        let cellOf = index.cellOf, order = index.order
        var height = GridRaster(grid: g)
        var score = heightOnly ? nil : GridRaster(grid: g), sigma = heightOnly ? nil : GridRaster(grid: g)
        var a = 0
        var buf: [Float] = [], sbuf: [Float] = []
        while a < order.count {
            let cell = Int(cellOf[Int(order[a])])
            var b = a
            buf.removeAll(keepingCapacity: true); sbuf.removeAll(keepingCapacity: true)
            var s: Float = 0
            let (ci, cj) = (cell % g.width, cell / g.width)
            let (se, ss) = slopes.map { ($0.east[cell], $0.south[cell]) } ?? (0, 0)
            while b < order.count && Int(cellOf[Int(order[b])]) == cell {
                let k = Int(order[b])
                // Offset from the cell's centre, in cells (east, south).
                let fx = Float((p.x[k] - g.originX) / g.resolution - Double(ci) - 0.5)
                let fy = Float((g.originY - p.y[k]) / g.resolution - Double(cj) - 0.5)
                buf.append(p.z[k] - se * fx - ss * fy); s += p.score[k]
                if hasSigma, !p.sigma[k].isNaN { sbuf.append(p.sigma[k]) }
                b += 1
            }
            if !sbuf.isEmpty { sbuf.sort(); sigma?.values[cell] = sbuf[sbuf.count / 2] }
            buf.sort()
            let n = buf.count
            height.values[cell] = n % 2 == 1 ? buf[n / 2] : (buf[n / 2 - 1] + buf[n / 2]) / 2
            score?.values[cell] = s / Float(n)
            a = b
        }
        // Gaussian splat into empty cells.
        var wsum = [Float](repeating: 0, count: g.count), hsum = wsum
        var ssum = heightOnly ? [] : wsum, usum = hasSigma ? wsum : [], uw = usum
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
                    // The point's height carried to this cell's centre (dx, dy: centre − point, metres).
                    let z = slopes.map { p.z[k] + ($0.east[cell] * dx + $0.south[cell] * dy) / Float(g.resolution) } ?? p.z[k]
                    wsum[cell] += w; hsum[cell] += w * z
                    if !heightOnly { ssum[cell] += w * p.score[k] }
                    if hasSigma, !p.sigma[k].isNaN { usum[cell] += w * p.sigma[k]; uw[cell] += w }
                }
            }
        }
        for c in 0..<g.count where wsum[c] > 0 {
            height.values[c] = hsum[c] / wsum[c]
            if !heightOnly { score?.values[c] = ssum[c] / wsum[c] }
            if hasSigma, uw[c] > 0 { sigma?.values[c] = usum[c] / uw[c] }
        }
        return (height, score, sigma)
    }
}
