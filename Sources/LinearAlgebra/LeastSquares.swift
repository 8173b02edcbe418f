import CLinAlg

/// Errors from the dense linear-algebra wrappers.
public enum LinearAlgebraError: Error, Equatable, CustomStringConvertible {
    case dimensionMismatch(String)
    case rankDeficient(info: Int32)
    case lapack(routine: String, info: Int32)

    public var description: String {
        switch self {
        case .dimensionMismatch(let what): return "matrix dimensions do not match: \(what)"
        case .rankDeficient(let info): return "least-squares system is rank deficient (LAPACK info \(info))"
        case .lapack(let routine, let info): return "\(routine) failed (LAPACK info \(info))"
        }
    }
}

/// A dense row-major matrix of doubles.
public struct Matrix: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    public var values: [Double]

    public init(rows: Int, columns: Int, values: [Double]) {
        precondition(values.count == rows * columns, "Matrix storage does not match its shape")
        self.rows = rows
        self.columns = columns
        self.values = values
    }

    public init(rows: Int, columns: Int) {
        self.init(rows: rows, columns: columns, values: [Double](repeating: 0, count: rows * columns))
    }

    public subscript(row: Int, column: Int) -> Double {
        get { values[row * columns + column] }
        set { values[row * columns + column] = newValue }
    }
}

/// Solves min ‖A X − B‖₂ for a full-rank, over-determined A (rows ≥ columns) with LAPACKE `dgels`.
/// Returns X with shape `A.columns × B.columns`.
public func leastSquares(_ a: Matrix, _ b: Matrix) throws -> Matrix {
    guard a.rows == b.rows else {
        throw LinearAlgebraError.dimensionMismatch("A has \(a.rows) rows, B has \(b.rows)")
    }
    guard a.rows >= a.columns else {
        throw LinearAlgebraError.dimensionMismatch("A is \(a.rows)×\(a.columns): under-determined")
    }
    var aData = a.values
    var bData = b.values
    let info = LAPACKE_dgels(
        LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "N")),
        Int32(a.rows), Int32(a.columns), Int32(b.columns),
        &aData, Int32(a.columns), &bData, Int32(b.columns))
    if info > 0 { throw LinearAlgebraError.rankDeficient(info: info) }
    if info < 0 { throw LinearAlgebraError.lapack(routine: "dgels", info: info) }
    var x = Matrix(rows: a.columns, columns: b.columns)
    for i in 0..<a.columns {
        for j in 0..<b.columns { x[i, j] = bData[i * b.columns + j] }
    }
    return x
}

/// C = alpha·A·B + beta·C through OpenBLAS `cblas_dgemm` (row-major).
public func multiply(_ a: Matrix, _ b: Matrix) throws -> Matrix {
    guard a.columns == b.rows else {
        throw LinearAlgebraError.dimensionMismatch("A is \(a.rows)×\(a.columns), B is \(b.rows)×\(b.columns)")
    }
    var c = Matrix(rows: a.rows, columns: b.columns)
    a.values.withUnsafeBufferPointer { pa in
        b.values.withUnsafeBufferPointer { pb in
            c.values.withUnsafeMutableBufferPointer { pc in
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                            Int32(a.rows), Int32(b.columns), Int32(a.columns),
                            1.0, pa.baseAddress, Int32(a.columns),
                            pb.baseAddress, Int32(b.columns),
                            0.0, pc.baseAddress, Int32(b.columns))
            }
        }
    }
    return c
}
