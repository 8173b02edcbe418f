import Foundation

/// Rational polynomial camera (RPC) models, as delivered with Pléiades products.
///
/// Conventions (see `Conventions.swift`):
/// - Ground coordinates are (longitude, latitude) in degrees on WGS84 and heights in metres above the
///   WGS84 ellipsoid.
/// - Image coordinates inside the core are *pixel-centre* coordinates: (0, 0) is the centre of the
///   top-left pixel, so an array index equals its coordinate. GDAL (and `gdaltransform -rpc`) puts the
///   top-left *corner* at (0, 0); `ImageConvention.gdal` converts with a +0.5 shift.
/// - DIMAP files count pixels from 1; their readers subtract 1 from the image offsets before building
///   an `RPCModel`, as GDAL does.

/// The 20 cubic monomials of an RPC00B polynomial, in the NITF order
/// 1, x, y, z, xy, xz, yz, x², y², z², xyz, x³, xy², xz², x²y, y³, yz², x²z, y²z, z³,
/// where (x, y, z) = (longitude, latitude, height) for projection and (column, row, height) for a
/// DIMAP direct (localisation) model.
@inlinable
func rpcMonomials(_ x: Double, _ y: Double, _ z: Double) -> [Double] {
    [1, x, y, z, x * y, x * z, y * z, x * x, y * y, z * z,
     x * y * z, x * x * x, x * y * y, x * z * z, x * x * y, y * y * y, y * z * z, x * x * z, y * y * z, z * z * z]
}

/// A ratio of two RPC00B cubic polynomials.
public struct RationalFunction: Sendable, Equatable, Codable {
    public var numerator: [Double]
    public var denominator: [Double]

    public init(numerator: [Double], denominator: [Double]) {
        precondition(numerator.count == 20 && denominator.count == 20, "RPC polynomials have 20 coefficients")
        self.numerator = numerator
        self.denominator = denominator
    }

    @inlinable
    static func polynomial(_ c: [Double], _ x: Double, _ y: Double, _ z: Double) -> Double {
        // Horner-free but branch-free evaluation; the order matches `rpcMonomials`.
        var s = c[0] + c[1] * x + c[2] * y + c[3] * z
        s += c[4] * x * y + c[5] * x * z + c[6] * y * z + c[7] * x * x + c[8] * y * y + c[9] * z * z
        s += c[10] * x * y * z + c[11] * x * x * x + c[12] * x * y * y + c[13] * x * z * z + c[14] * x * x * y
        s += c[15] * y * y * y + c[16] * y * z * z + c[17] * x * x * z + c[18] * y * y * z + c[19] * z * z * z
        return s
    }

    /// ∂p/∂x and ∂p/∂y of one cubic polynomial.
    @inlinable
    static func gradientXY(_ c: [Double], _ x: Double, _ y: Double, _ z: Double) -> (Double, Double) {
        let dx = c[1] + c[4] * y + c[5] * z + 2 * c[7] * x + c[10] * y * z + 3 * c[11] * x * x
            + c[12] * y * y + c[13] * z * z + 2 * c[14] * x * y + 2 * c[17] * x * z
        let dy = c[2] + c[4] * x + c[6] * z + 2 * c[8] * y + c[10] * x * z + 2 * c[12] * x * y
            + c[14] * x * x + 3 * c[15] * y * y + c[16] * z * z + 2 * c[18] * y * z
        return (dx, dy)
    }

    public func value(_ x: Double, _ y: Double, _ z: Double) -> Double {
        Self.polynomial(numerator, x, y, z) / Self.polynomial(denominator, x, y, z)
    }

    /// The value and its partial derivatives with respect to x and y.
    public func valueAndGradient(_ x: Double, _ y: Double, _ z: Double) -> (value: Double, dx: Double, dy: Double) {
        let n = Self.polynomial(numerator, x, y, z)
        let d = Self.polynomial(denominator, x, y, z)
        let (nx, ny) = Self.gradientXY(numerator, x, y, z)
        let (dx, dy) = Self.gradientXY(denominator, x, y, z)
        let inv = 1 / d
        return (n * inv, (nx * d - n * dx) * inv * inv, (ny * d - n * dy) * inv * inv)
    }
}

/// Offset and scale of one normalised RPC variable: normalised = (value − offset) / scale.
public struct Normalisation: Sendable, Equatable, Codable {
    public var offset: Double
    public var scale: Double
    public init(offset: Double, scale: Double) {
        self.offset = offset
        self.scale = scale
    }
    @inlinable public func normalise(_ v: Double) -> Double { (v - offset) / scale }
    @inlinable public func denormalise(_ v: Double) -> Double { v * scale + offset }
}

/// A rectangle of image coordinates (pixel-centre convention, inclusive bounds).
public struct ImageDomain: Sendable, Equatable, Codable {
    public var firstColumn: Double
    public var firstRow: Double
    public var lastColumn: Double
    public var lastRow: Double
    public init(firstColumn: Double, firstRow: Double, lastColumn: Double, lastRow: Double) {
        self.firstColumn = firstColumn
        self.firstRow = firstRow
        self.lastColumn = lastColumn
        self.lastRow = lastRow
    }
    /// The domain covered by an image of `width` × `height` pixels.
    public init(width: Int, height: Int) {
        self.init(firstColumn: 0, firstRow: 0, lastColumn: Double(width - 1), lastRow: Double(height - 1))
    }
}

/// A longitude/latitude rectangle in degrees.
public struct GroundDomain: Sendable, Equatable, Codable {
    public var minLongitude: Double
    public var minLatitude: Double
    public var maxLongitude: Double
    public var maxLatitude: Double
    public init(minLongitude: Double, minLatitude: Double, maxLongitude: Double, maxLatitude: Double) {
        self.minLongitude = minLongitude
        self.minLatitude = minLatitude
        self.maxLongitude = maxLongitude
        self.maxLatitude = maxLatitude
    }
}

/// Errors of the sensor model.
public enum SensorModelError: Error, Equatable, CustomStringConvertible {
    /// The iterative localisation did not reach the requested accuracy within its iteration cap.
    case didNotConverge(iterations: Int, residualPixels: Double)
    /// A polynomial denominator vanished: the point lies where the model is not defined.
    case singular(String)

    public var description: String {
        switch self {
        case .didNotConverge(let n, let r):
            return "RPC localisation did not converge after \(n) iterations (residual \(r) px)"
        case .singular(let what): return "RPC model is singular: \(what)"
        }
    }
}

/// An RPC camera model: the projection (inverse model, ground → image) and, when the product carries
/// it, the direct model (image → ground) used as a first guess for localisation.
public struct RPCModel: Sendable, Equatable, Codable {
    // Projection: (lon, lat, h) → (col, row)
    public var column: RationalFunction
    public var row: RationalFunction
    public var longitudeNorm: Normalisation
    public var latitudeNorm: Normalisation
    public var heightNorm: Normalisation
    public var columnNorm: Normalisation
    public var rowNorm: Normalisation

    /// Optional direct (localisation) model: (col, row, h) → (lon, lat), normalised with the same
    /// offsets and scales.
    public var directLongitude: RationalFunction?
    public var directLatitude: RationalFunction?

    /// Where the model is meant to be used, when the product says so.
    public var imageDomain: ImageDomain?
    public var groundDomain: GroundDomain?

    public init(column: RationalFunction, row: RationalFunction,
                longitudeNorm: Normalisation, latitudeNorm: Normalisation, heightNorm: Normalisation,
                columnNorm: Normalisation, rowNorm: Normalisation,
                directLongitude: RationalFunction? = nil, directLatitude: RationalFunction? = nil,
                imageDomain: ImageDomain? = nil, groundDomain: GroundDomain? = nil) {
        self.column = column
        self.row = row
        self.longitudeNorm = longitudeNorm
        self.latitudeNorm = latitudeNorm
        self.heightNorm = heightNorm
        self.columnNorm = columnNorm
        self.rowNorm = rowNorm
        self.directLongitude = directLongitude
        self.directLatitude = directLatitude
        self.imageDomain = imageDomain
        self.groundDomain = groundDomain
    }

    /// The height interval the model was fitted for: offset ± scale.
    public var heightRange: ClosedRange<Double> {
        let a = heightNorm.offset - abs(heightNorm.scale)
        let b = heightNorm.offset + abs(heightNorm.scale)
        return a...b
    }

    /// Projection: ground point → image coordinates (pixel-centre convention).
    public func project(longitude: Double, latitude: Double, height: Double) -> (column: Double, row: Double) {
        let x = longitudeNorm.normalise(longitude)
        let y = latitudeNorm.normalise(latitude)
        let z = heightNorm.normalise(height)
        return (columnNorm.denormalise(column.value(x, y, z)), rowNorm.denormalise(row.value(x, y, z)))
    }

    /// Localisation: image coordinates and a height → ground point.
    ///
    /// Newton iterations on the projection function, started from the direct model when there is one,
    /// stop when the projected point is within `tolerancePixels` of the target; the iteration count is
    /// capped and a non-converging point throws `SensorModelError.didNotConverge`.
    public func localize(column c: Double, row r: Double, height: Double,
                         tolerancePixels: Double = 1e-7, maxIterations: Int = 40) throws -> (longitude: Double, latitude: Double) {
        let z = heightNorm.normalise(height)
        let tc = columnNorm.normalise(c)
        let tr = rowNorm.normalise(r)
        var (x, y) = initialGuess(column: c, row: r, z: z)
        var residual = Double.infinity
        for iteration in 0..<maxIterations {
            let fc = column.valueAndGradient(x, y, z)
            let fr = row.valueAndGradient(x, y, z)
            let ec = tc - fc.value, er = tr - fr.value
            residual = hypot(ec * columnNorm.scale, er * rowNorm.scale)
            guard residual.isFinite else { throw SensorModelError.singular("non-finite projection at iteration \(iteration)") }
            if residual <= tolerancePixels { return (longitudeNorm.denormalise(x), latitudeNorm.denormalise(y)) }
            let det = fc.dx * fr.dy - fc.dy * fr.dx
            guard det != 0, det.isFinite else { throw SensorModelError.singular("zero Jacobian determinant") }
            var sx = (fr.dy * ec - fc.dy * er) / det
            var sy = (fc.dx * er - fr.dx * ec) / det
            // Damped step: halve until the residual decreases (guards against far-off first guesses).
            var accepted = false
            for _ in 0..<20 {
                let nc = column.value(x + sx, y + sy, z), nr = row.value(x + sx, y + sy, z)
                let nres = hypot((tc - nc) * columnNorm.scale, (tr - nr) * rowNorm.scale)
                if nres.isFinite && nres < residual { accepted = true; break }
                sx *= 0.5; sy *= 0.5
            }
            if !accepted && residual > tolerancePixels * 100 {
                throw SensorModelError.didNotConverge(iterations: iteration + 1, residualPixels: residual)
            }
            x += sx; y += sy
            if !accepted { break }
        }
        // A last check: the final point may be good enough even if the loop ran out.
        let ec = tc - column.value(x, y, z), er = tr - row.value(x, y, z)
        let finalResidual = hypot(ec * columnNorm.scale, er * rowNorm.scale)
        if finalResidual <= max(tolerancePixels, 1e-6) {
            return (longitudeNorm.denormalise(x), latitudeNorm.denormalise(y))
        }
        throw SensorModelError.didNotConverge(iterations: maxIterations, residualPixels: finalResidual)
    }

    /// The direct model alone (no refinement), when the product provides one.
    public func localizeDirect(column c: Double, row r: Double, height: Double) -> (longitude: Double, latitude: Double)? {
        guard let dl = directLongitude, let dp = directLatitude else { return nil }
        let x = columnNorm.normalise(c), y = rowNorm.normalise(r), z = heightNorm.normalise(height)
        return (longitudeNorm.denormalise(dl.value(x, y, z)), latitudeNorm.denormalise(dp.value(x, y, z)))
    }

    /// First guess of the normalised (x, y) for localisation.
    func initialGuess(column c: Double, row r: Double, z: Double) -> (Double, Double) {
        if let g = localizeDirect(column: c, row: r, height: heightNorm.denormalise(z)) {
            let x = longitudeNorm.normalise(g.longitude), y = latitudeNorm.normalise(g.latitude)
            if x.isFinite && y.isFinite { return (x, y) }
        }
        return (0, 0)
    }
}
