import Foundation

/// A synthetic scene with known truth: a smooth terrain with hills, covered by a band-limited texture,
/// that can be rendered into any RPC view. Used for fixtures and accuracy tests.
public struct SyntheticScene: Sendable {
    public struct Hill: Sendable {
        public var east: Double, north: Double, height: Double, radius: Double
        public init(east: Double, north: Double, height: Double, radius: Double) {
            self.east = east; self.north = north; self.height = height; self.radius = radius
        }
    }

    /// Scene centre; its height is the base height of the terrain.
    public var centre: GeoPoint
    public var hills: [Hill]
    /// A planar slope (metres per metre) to the east and north.
    public var slope: SIMD2<Double>
    public var seed: UInt64
    /// Size of the finest texture detail, metres (keep above ~2 GSD so views are not aliased).
    public var textureScale: Double

    /// A lake: flat water at `level` inside `radius` (local east/north metres), the terrain easing into it
    /// over the next 30 % of the radius; water has no texture (uniform reflectance) and low near infrared.
    public struct Lake: Sendable, Codable, Equatable {
        public var east: Double, north: Double, radius: Double, level: Double
        public init(east: Double, north: Double, radius: Double, level: Double) {
            self.east = east; self.north = north; self.radius = radius; self.level = level
        }
        func distance(_ e: Double, _ n: Double) -> Double { ((e - east) * (e - east) + (n - north) * (n - north)).squareRoot() }
    }
    public var lake: Lake?

    /// A building: a box with vertical walls and a flat roof at `roof` metres (ellipsoidal), over the
    /// footprint |east − e| ≤ halfEast, |north − n| ≤ halfNorth (local metres). Roofs are weakly textured
    /// (a tenth of the ground's contrast: a low-texture area); walls carry a texture that varies along
    /// them and with height. Buildings hide the ground behind them from oblique views (occlusions).
    public struct Building: Sendable, Codable, Equatable {
        public var east: Double, north: Double, halfEast: Double, halfNorth: Double, roof: Double
        public init(east: Double, north: Double, halfEast: Double, halfNorth: Double, roof: Double) {
            self.east = east; self.north = north; self.halfEast = halfEast; self.halfNorth = halfNorth; self.roof = roof
        }
        public func contains(_ e: Double, _ n: Double) -> Bool { abs(e - east) <= halfEast && abs(n - north) <= halfNorth }
    }
    public var buildings: [Building] = []

    public let frame: LocalFrame

    public init(centre: GeoPoint, hills: [Hill], slope: SIMD2<Double> = .zero, seed: UInt64 = 1, textureScale: Double = 1.5) {
        self.centre = centre
        self.hills = hills
        self.slope = slope
        self.seed = seed
        self.textureScale = textureScale
        frame = LocalFrame(longitude: centre.longitude, latitude: centre.latitude, height: 0)
    }

    /// A default scene: a few hills up to `relief` metres over a gentle slope.
    public static func hills(centre: GeoPoint, extent: Double, relief: Double = 40, seed: UInt64 = 1) -> SyntheticScene {
        var g = SplitMix64(seed)
        var hills: [Hill] = []
        for _ in 0..<6 {
            hills.append(Hill(east: (g.unit() - 0.5) * extent, north: (g.unit() - 0.5) * extent,
                              height: relief * (0.3 + 0.7 * g.unit()), radius: extent * (0.08 + 0.15 * g.unit())))
        }
        return SyntheticScene(centre: centre, hills: hills, slope: SIMD2(0.02, -0.01), seed: seed)
    }

    /// Surface height (metres above the ellipsoid) at local east/north metres: the ground, or a roof.
    public func height(east e: Double, north n: Double) -> Double {
        var h = groundHeight(east: e, north: n)
        for b in buildings where b.contains(e, n) { h = max(h, b.roof) }
        return h
    }

    /// Buildings of `count` boxes 8–30 m wide, 6–20 m tall, placed at random over `extent` (not in the lake
    /// nor overlapping each other).
    public mutating func addBuildings(count: Int, extent: Double) {
        var g = SplitMix64(seed &+ 0xB0B)
        var tries = 0
        while buildings.count < count && tries < 50 * count {
            tries += 1
            let he = 4 + 11 * g.unit(), hn = 4 + 11 * g.unit()
            let e = (g.unit() - 0.5) * (extent - 2 * he - 10), n = (g.unit() - 0.5) * (extent - 2 * hn - 10)
            if let l = lake, l.distance(e, n) < l.radius * 1.3 + max(he, hn) { continue }
            if buildings.contains(where: { abs($0.east - e) < $0.halfEast + he + 6 && abs($0.north - n) < $0.halfNorth + hn + 6 }) { continue }
            buildings.append(Building(east: e, north: n, halfEast: he, halfNorth: hn, roof: groundHeight(east: e, north: n) + 6 + 14 * g.unit()))
        }
    }

    /// Ground height without buildings.
    public func groundHeight(east e: Double, north n: Double) -> Double {
        let land = landHeight(east: e, north: n)
        guard let lake else { return land }
        let d = lake.distance(e, n)
        if d <= lake.radius { return lake.level }
        let t = min(1, (d - lake.radius) / (0.3 * lake.radius))
        let s = t * t * (3 - 2 * t)
        return lake.level + (land - lake.level) * s
    }

    /// True inside the lake.
    public func isWater(east e: Double, north n: Double) -> Bool { lake.map { $0.distance(e, n) <= $0.radius } ?? false }

    func landHeight(east e: Double, north n: Double) -> Double {
        var h = centre.height + slope.x * e + slope.y * n
        for hill in hills {
            let d2 = ((e - hill.east) * (e - hill.east) + (n - hill.north) * (n - hill.north)) / (hill.radius * hill.radius)
            h += hill.height * exp(-0.5 * d2)
        }
        return h
    }

    public func height(longitude: Double, latitude: Double) -> Double {
        let p = frame.enu(longitude: longitude, latitude: latitude, height: 0)
        return height(east: p.x, north: p.y)
    }

    /// Ground reflectance in [0, 1]: several octaves of smooth value noise; uniform on water.
    public func texture(east e: Double, north n: Double) -> Double {
        if isWater(east: e, north: n) { return 0.12 }
        var sum = 0.0, amp = 1.0, norm = 0.0, scale = textureScale * 8
        for octave in 0..<4 {
            sum += amp * valueNoise(e / scale, n / scale, octave: UInt64(octave))
            norm += amp
            amp *= 0.6
            scale /= 2
        }
        return sum / norm
    }

    /// Renders the scene as seen by `model`: each pixel sees the ground point found by intersecting its
    /// line of sight with the ground (fixed-point iteration, valid for smooth ground without hidden parts),
    /// or the first building surface above it on that line (`buildingHit`).
    public func render(model: RPCModel, width: Int, height: Int, gain: Double = 3000, offset: Double = 500) throws -> [Float] {
        try render(model: model, width: width, rows: 0..<height, gain: gain, offset: offset)
    }

    /// Renders rows `rows` of a `width`-wide image (row-major, `rows.count × width`): the same values as
    /// the whole image's rows, so an image can be rendered strip by strip.
    /// `band`: nil for the panchromatic texture, else a multispectral band (`reflectance(east:north:band:)`).
    public func render(model: RPCModel, width: Int, rows: Range<Int>, gain: Double = 3000, offset: Double = 500, band: Int? = nil) throws -> [Float] {
        var out = [Float](repeating: 0, count: width * rows.count)
        for r in rows {
            var h = centre.height
            for c in 0..<width {
                var e = 0.0, n = 0.0
                for _ in 0..<30 {
                    let g = try model.localize(column: Double(c), row: Double(r), height: h)
                    let p = frame.enu(longitude: g.longitude, latitude: g.latitude, height: 0)
                    e = p.x; n = p.y
                    let next = groundHeight(east: e, north: n)
                    if abs(next - h) < 1e-4 { h = next; break }
                    h = next
                }
                var v = band.map { reflectance(east: e, north: n, band: $0) } ?? texture(east: e, north: n)
                if !buildings.isEmpty, let hit = try buildingHit(model: model, column: c, row: r, ground: (e, n, h)) {
                    let t = hit.wall ? texture(east: hit.along + 5000, north: 2 * hit.height + 5000) : 0.5 + 0.1 * (texture(east: hit.east, north: hit.north) - 0.5)
                    v = band == nil ? t : 0.1 + 0.2 * t
                }
                out[(r - rows.lowerBound) * width + c] = Float(offset + gain * v)
            }
        }
        return out
    }

    /// The first building surface on the line of sight of pixel (column, row) above the ground point it
    /// would otherwise see: the line of sight is straight over the buildings' heights (two localisations),
    /// each box is entered through its roof or a wall.
    func buildingHit(model: RPCModel, column c: Int, row r: Int, ground: (e: Double, n: Double, h: Double))
        throws -> (east: Double, north: Double, height: Double, wall: Bool, along: Double)? {
        let g = try model.localize(column: Double(c), row: Double(r), height: ground.h + 10)
        let p = frame.enu(longitude: g.longitude, latitude: g.latitude, height: 0)
        let de = (p.x - ground.e) / 10, dn = (p.y - ground.n) / 10  // metres moved per metre of height
        var best: (east: Double, north: Double, height: Double, wall: Bool, along: Double)?
        for b in buildings {
            // Heights t above the ground point at which the line of sight is inside the footprint.
            var lo = -Double.infinity, hi = Double.infinity
            var wallAxis = -1
            for (axis, (p0, d, centre, half)) in [(ground.e, de, b.east, b.halfEast), (ground.n, dn, b.north, b.halfNorth)].enumerated() {
                if abs(d) < 1e-12 {
                    if abs(p0 - centre) > half { lo = 1; hi = 0 }
                    continue
                }
                let a = (centre - half - p0) / d, z = (centre + half - p0) / d
                lo = max(lo, min(a, z))
                if max(a, z) < hi { hi = max(a, z); wallAxis = axis }
            }
            let top = min(ground.h + hi, b.roof), bottom = max(ground.h + lo, ground.h)
            guard top >= bottom, top > (best?.height ?? ground.h) else { continue }
            let t = top - ground.h
            let e = ground.e + de * t, n = ground.n + dn * t
            let wall = top < b.roof
            best = (e, n, top, wall, wallAxis == 0 ? n : e)
        }
        return best
    }

    /// Multispectral reflectance (Pléiades band order: 0 blue, 1 green, 2 red, 3 near infrared): land is
    /// vegetation-like (bright in the near infrared), water bright in green and dark in the near infrared.
    public func reflectance(east e: Double, north n: Double, band: Int) -> Double {
        if isWater(east: e, north: n) { return [0.12, 0.10, 0.06, 0.02][band] }
        let t = texture(east: e, north: n)
        return [0.05 + 0.1 * t, 0.08 + 0.15 * t, 0.05 + 0.1 * t, 0.35 + 0.3 * t][band]
    }

    // MARK: noise

    func lattice(_ i: Int, _ j: Int, _ octave: UInt64) -> Double {
        var x = UInt64(bitPattern: Int64(i)) &* 0x9E37_79B9_7F4A_7C15
        x ^= UInt64(bitPattern: Int64(j)) &* 0xC2B2_AE3D_27D4_EB4F
        x ^= (seed &+ octave) &* 0x1656_67B1_9E37_79F9
        var g = SplitMix64(x)
        return g.unit()
    }

    func valueNoise(_ x: Double, _ y: Double, octave: UInt64) -> Double {
        let i = Int(floor(x)), j = Int(floor(y))
        let fx = x - floor(x), fy = y - floor(y)
        // Quintic fade for a smooth (C²) field.
        let u = fx * fx * fx * (fx * (fx * 6 - 15) + 10), v = fy * fy * fy * (fy * (fy * 6 - 15) + 10)
        let a = lattice(i, j, octave), b = lattice(i + 1, j, octave)
        let c = lattice(i, j + 1, octave), d = lattice(i + 1, j + 1, octave)
        return (a * (1 - u) + b * u) * (1 - v) + (c * (1 - u) + d * u) * v
    }
}

/// SplitMix64: a small deterministic generator for synthetic data and reproducible tests.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(_ seed: UInt64) { state = seed }
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
