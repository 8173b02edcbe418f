import DSMCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The run's work folder (`<output>/.dsmopt-work`): the plan, the whole-scene first pass, and each stage's
/// finished tiles. A tile file appears only complete (written beside, then hard-linked once), so its presence is
/// the record that the tile is done: `--resume` (or a re-queued service job) recomputes only the others.
public struct WorkFolder: Sendable {
    public static let name = ".dsmopt-work"
    public let root: String

    public init(output: String) { root = (output as NSString).appendingPathComponent(Self.name) }

    public func path(_ parts: String...) -> String {
        parts.reduce(root) { ($0 as NSString).appendingPathComponent($1) }
    }

    public var planPath: String { path("plan.json") }

    /// The format (`RunPlan.formatVersion`) of the plan an interrupted run left here; nil without a
    /// readable plan.
    public var planFormat: Int? {
        struct Format: Decodable { var formatVersion: Int? }
        guard let d = FileManager.default.contents(atPath: planPath) else { return nil }
        return (try? JSONDecoder().decode(Format.self, from: d))?.formatVersion
    }

    /// Whether an interrupted run left here a plan this version can resume. One of another format
    /// (its tiles laid out otherwise) cannot be: the run starts again.
    public var holdsResumablePlan: Bool { planFormat == RunPlan.formatVersion }
    public var stagingPath: String { path("staging") }
    public var assemblyPath: String { path("assembly") }

    public func create() throws {
        for stage in TileStage.allCases {
            try FileManager.default.createDirectory(atPath: path(stage.rawValue), withIntermediateDirectories: true)
        }
    }

    public func tilePath(_ stage: TileStage, _ tile: GroundTile) -> String { path(stage.rawValue, "\(tile.name).tile") }

    public func isDone(_ stage: TileStage, _ tile: GroundTile) -> Bool {
        FileManager.default.fileExists(atPath: tilePath(stage, tile))
    }

    /// Writes a file atomically: to a temporary name in the same folder, then renamed. Written with POSIX
    /// calls so that a failure carries the system's reason (e.g. "No space left on device").
    public static func writeAtomically(_ data: Data, to path: String) throws {
        let tmp = try writeBeside(data, path)
        guard rename(tmp, path) == 0 else { throw failure(path, tmp, "rename") }
    }

    /// Writes a file that, once there, never changes: the first complete write wins (hard link of a
    /// complete temporary file, which fails if the name exists); a later write of the same file — a
    /// second worker on the same tile, one that lost its lease — is dropped. Tiles are deterministic, so
    /// whichever write wins, the file is the same.
    public static func writeOnce(_ data: Data, to path: String) throws {
        let tmp = try writeBeside(data, path)
        defer { unlink(tmp) }
        if link(tmp, path) != 0 && errno != EEXIST { throw failure(path, tmp, "link") }
    }

    static func failure(_ path: String, _ tmp: String, _ what: String) -> PipelineError {
        let reason = String(cString: strerror(errno))
        try? FileManager.default.removeItem(atPath: tmp)
        return PipelineError.workFolder(path, "cannot be written (\(what): \(reason)); finished tiles are kept: free some space and resume with `dsmopt run --resume`")
    }

    /// The data in a complete temporary file beside `path` (its name ends in `.part-PID-RANDOM`).
    static func writeBeside(_ data: Data, _ path: String) throws -> String {
        let tmp = path + ".part-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw failure(path, tmp, "open") }
        var ok = true
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 { if errno == EINTR { continue }; ok = false; return }
                offset += n
            }
        }
        if !ok { let e = failure(path, tmp, "write"); Glibc.close(fd); throw e }
        guard Glibc.close(fd) == 0 else { throw failure(path, tmp, "close") }
        return tmp
    }

    public func write(_ stage: TileStage, _ tile: GroundTile, bands: [[Float]]) throws {
        try Self.writeOnce(TileRaster.encode(width: tile.cells.width, height: tile.cells.height, bands: bands),
                           to: tilePath(stage, tile))
    }

    /// CPU seconds of a step run by its own process (`DSMPipelineRunner.run(step:)`), counted by the
    /// assembly into the manifest's provenance.
    func recordCPU(step: DSMPipelineRunner.Step, seconds: Double) throws {
        let name: String
        switch step {
        case .plan: name = "plan"
        case .offsets: name = "offsets"
        case .assemble: name = "assemble"
        case .tiles(let s, let t): name = "\(s.rawValue)-\(t.first ?? 0)-\(t.count)"
        }
        try FileManager.default.createDirectory(atPath: path("cpu"), withIntermediateDirectories: true)
        try Self.writeAtomically(Data(String(format: "%.3f\n", seconds).utf8), to: path("cpu", "\(name)-\(getpid()).txt"))
    }

    func recordedCPU() -> Double {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: path("cpu"))) ?? []
        return files.filter { $0.hasSuffix(".txt") }.reduce(0) { sum, f in
            sum + ((try? String(contentsOfFile: path("cpu", f), encoding: .utf8)).flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0)
        }
    }

    public static func jsonData<T: Encodable>(_ value: T) throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try enc.encode(value)
    }

    public func read(_ stage: TileStage, _ tile: GroundTile) throws -> TileRaster {
        let p = tilePath(stage, tile)
        guard let d = FileManager.default.contents(atPath: p) else { throw PipelineError.workFolder(p, "missing") }
        return try TileRaster.decode(d, path: p)
    }

    /// Bands of a stage over any window of the grid, assembled from the tiles it crosses. Reads only what the
    /// window needs: of each tile, the rows it crosses of the asked bands (an ortho tile's DSM with its margins
    /// read whole tile files of six bands before: a fifth of its CPU in the kernel copying them).
    public func read(_ stage: TileStage, plan: TilePlan, window w: CellWindow, bands: [Int]) throws -> [[Float]] {
        var out = bands.map { _ in [Float](repeating: .nan, count: w.count) }
        var rows: [Float] = []
        for t in plan.tiles(intersecting: w) {
            let p = tilePath(stage, t)
            let fd = open(p, O_RDONLY)
            guard fd >= 0 else { throw PipelineError.workFolder(p, errno == ENOENT ? "missing" : "unreadable (\(String(cString: strerror(errno))))") }
            defer { Glibc.close(fd) }
            let layout = try TileRaster.layout(fd: fd, path: p)
            guard layout.width == t.cells.width, layout.height == t.cells.height else {
                throw PipelineError.workFolder(p, "holds \(layout.width)×\(layout.height) cells, the plan's tile \(t.cells.width)×\(t.cells.height)")
            }
            let common = t.cells.intersection(w)!
            let tw = t.cells.width
            rows.removeAll(keepingCapacity: true)
            rows.append(contentsOf: repeatElement(0, count: common.height * tw))
            for (k, b) in bands.enumerated() {
                guard b < layout.bands else { throw PipelineError.workFolder(p, "has \(layout.bands) bands, band \(b + 1) asked") }
                let offset = layout.dataOffset + (b * t.cells.count + (common.y - t.cells.y) * tw) * 4
                try rows.withUnsafeMutableBytes { try TileRaster.readFully(fd: fd, into: $0, at: offset, path: p) }
                rows.withUnsafeBufferPointer { s in
                    out[k].withUnsafeMutableBufferPointer { o in
                        for y in 0..<common.height {
                            let so = y * tw + (common.x - t.cells.x), dso = (common.y + y - w.y) * w.width + (common.x - w.x)
                            (o.baseAddress! + dso).update(from: s.baseAddress! + so, count: common.width)
                        }
                    }
                }
            }
        }
        return out
    }

    public func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        try Self.writeAtomically(try Self.jsonData(value), to: path)
    }

    public func readJSON<T: Decodable>(_ type: T.Type, from path: String) throws -> T? {
        guard let d = FileManager.default.contents(atPath: path) else { return nil }
        do { return try JSONDecoder().decode(T.self, from: d) } catch {
            throw PipelineError.workFolder(path, "unreadable (\(error))")
        }
    }
}

/// The per-tile stages whose results are kept in the work folder.
public enum TileStage: String, Sendable, CaseIterable, Codable {
    /// Per pair: height, correlation score and height uncertainty rasterised on the tile, and with several
    /// pairs the height of the matches left out by the uncertainty threshold (`RunPlan.matchBandsPerPair`).
    case match
    /// Fused and filtered: raw DSM, score, DSM, filled mask, pair contributions, height uncertainty.
    case fuse
    /// True orthos: one band per image, then the mosaic and its source index.
    case ortho
}

/// A tile's bands (Float32), stored little-endian with a small header.
public struct TileRaster: Sendable {
    public var width: Int
    public var height: Int
    public var bands: [[Float]]

    static let magic: [UInt8] = Array("DSMT1\n".utf8)

    static func encode(width: Int, height: Int, bands: [[Float]]) -> Data {
        var d = Data(magic)
        for v in [UInt32(width), UInt32(height), UInt32(bands.count)] { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        for b in bands {
            precondition(b.count == width * height)
            b.withUnsafeBytes { d.append(contentsOf: $0) }
        }
        return d
    }

    /// The header of an open tile file, checked against the file's size.
    static func layout(fd: Int32, path: String) throws -> (width: Int, height: Int, bands: Int, dataOffset: Int) {
        let h = magic.count
        var header = [UInt8](repeating: 0, count: h + 12)
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PipelineError.workFolder(path, "unreadable (\(String(cString: strerror(errno))))") }
        guard Int(st.st_size) >= h + 12 else { throw PipelineError.workFolder(path, "not a tile file") }
        try header.withUnsafeMutableBytes { try readFully(fd: fd, into: $0, at: 0, path: path) }
        guard Array(header.prefix(h)) == magic else { throw PipelineError.workFolder(path, "not a tile file") }
        func u32(_ o: Int) -> Int { Int(header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self) }.littleEndian) }
        let w = u32(h), ht = u32(h + 4), n = u32(h + 8)
        guard Int(st.st_size) == h + 12 + n * w * ht * 4 else { throw PipelineError.workFolder(path, "truncated tile file") }
        return (w, ht, n, h + 12)
    }

    /// Fills `buffer` from the file at `offset` (pread until complete).
    static func readFully(fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw PipelineError.workFolder(path, n == 0 ? "truncated tile file" : "unreadable (\(String(cString: strerror(errno))))") }
            done += n
        }
    }

    static func decode(_ d: Data, path: String) throws -> TileRaster {
        let h = magic.count
        guard d.count >= h + 12, Array(d.prefix(h)) == magic else { throw PipelineError.workFolder(path, "not a tile file") }
        func u32(_ o: Int) -> Int { Int(d.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self) }.littleEndian) }
        let w = u32(h), ht = u32(h + 4), n = u32(h + 8)
        let count = w * ht
        guard d.count == h + 12 + n * count * 4 else { throw PipelineError.workFolder(path, "truncated tile file") }
        var bands: [[Float]] = []
        for b in 0..<n {
            let start = h + 12 + b * count * 4
            bands.append([Float](unsafeUninitializedCapacity: count) { buf, n in
                d.withUnsafeBytes { raw in
                    _ = memcpy(buf.baseAddress!, raw.baseAddress! + start, count * 4)
                }
                n = count
            })
        }
        return TileRaster(width: w, height: ht, bands: bands)
    }
}
