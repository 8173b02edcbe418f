import Dispatch
import Foundation

/// How much memory a run may use, and how that bounds the work in flight.
public struct MemoryBudget: Sendable, Codable, Equatable {
    public var bytes: Int

    public init(bytes: Int) { self.bytes = bytes }

    /// Half of the machine's physical memory: leaves room for the page cache and other processes.
    public static var machineDefault: MemoryBudget {
        MemoryBudget(bytes: Int(ProcessInfo.processInfo.physicalMemory / 2))
    }

    /// The largest budget a run takes, 1 PiB: beyond any machine, and far enough from Int's range that the
    /// scheduler's sums of it cannot overflow (99999999999G had stopped `dsmopt run` converting it).
    public static let maximumBytes = 1 << 50

    /// "1.5G", "800M", "2048K" or a plain number of bytes; nil beyond `maximumBytes`.
    public static func parse(_ text: String) -> MemoryBudget? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        let units: [(String, Double)] = [("GB", 1_073_741_824), ("G", 1_073_741_824), ("MB", 1_048_576), ("M", 1_048_576), ("KB", 1024), ("K", 1024)]
        for (suffix, m) in units where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count)), v > 0, v * m <= Double(maximumBytes) else { return nil }
            return MemoryBudget(bytes: Int(v * m))
        }
        guard let v = Int(t), v > 0, v <= maximumBytes else { return nil }
        return MemoryBudget(bytes: v)
    }

    /// Memory the process needs whatever the tiling: code, GDAL's block cache, the plan, buffers.
    public static let baseBytes = 160 << 20
    /// GDAL's raster block cache, part of `baseBytes`.
    public static let gdalCacheBytes = 64 << 20
}

/// The shape of the matching work of one tile, from which its memory is estimated and bounded.
public struct TileWorkload: Sendable, Codable, Equatable {
    /// Tiles matched at the same time.
    public var concurrency: Int
    /// Threads of the matcher inside one tile (strips in parallel).
    public var matcherThreads: Int
    /// Rows of a matcher strip (the cost volume is held for one strip at a time per thread).
    public var stripRows: Int
    /// Estimated peak bytes of one tile in flight.
    public var bytesPerTile: Int

    /// Bytes of one tile: image windows, rectified tiles, points, per-pair rasters, and `threads` strip
    /// cost volumes (cost, intensity term, shiftable-window copy and path aggregation: ~14 bytes per cell).
    static func bytes(stripRows: Int, threads: Int, epipolarWidth: Int, labels: Int, tileCells: Int, pairs: Int) -> Int {
        let volume = (stripRows + 32) * (epipolarWidth + 64) * labels * 14
        let images = 12 * epipolarWidth * epipolarWidth * 4 * 2
        let rasters = tileCells * 4 * (2 * pairs + 8) + tileCells * 40
        return 24 << 20 + threads * volume + images + rasters
    }

    /// The most tiles (then the most matcher threads, then the tallest strips) that fit the budget.
    public static func plan(budget: MemoryBudget, cores: Int, epipolarWidth: Int, labels: Int, tileCells: Int,
                            pairs: Int) -> TileWorkload {
        let available = max(64 << 20, budget.bytes - MemoryBudget.baseBytes)
        for concurrency in stride(from: max(1, cores), through: 1, by: -1) {
            for rows in [256, 192, 128, 96, 64, 48, 32] {
                let per = bytes(stripRows: rows, threads: 1, epipolarWidth: epipolarWidth, labels: labels, tileCells: tileCells, pairs: pairs)
                if per * concurrency <= available {
                    let threads = max(1, cores / concurrency)
                    let perT = bytes(stripRows: rows, threads: threads, epipolarWidth: epipolarWidth, labels: labels,
                                     tileCells: tileCells, pairs: pairs)
                    let t = perT * concurrency <= available ? threads : 1
                    return TileWorkload(concurrency: concurrency, matcherThreads: t, stripRows: rows,
                                        bytesPerTile: bytes(stripRows: rows, threads: t, epipolarWidth: epipolarWidth, labels: labels,
                                                            tileCells: tileCells, pairs: pairs))
                }
            }
        }
        return TileWorkload(concurrency: 1, matcherThreads: 1, stripRows: 32,
                            bytesPerTile: bytes(stripRows: 32, threads: 1, epipolarWidth: epipolarWidth, labels: labels,
                                                tileCells: tileCells, pairs: pairs))
    }
}

extension TileWorkload {
    /// Bytes of one fusion/filtering tile: the extended window's per-pair bands as read (`bandsPerPair`) and
    /// their heights shifted by the pair's offset (two more), and ~16 rasters of work (fusion, outliers, hole
    /// labels, denoising), 4–8 bytes per cell.
    static func fuseBytes(extendedCells: Int, pairs: Int, bandsPerPair: Int) -> Int {
        extendedCells * (4 * ((bandsPerPair + 2) * pairs) + 4 * 16 + 16) + (8 << 20)
    }

    /// Bytes of one true-ortho tile: ground coordinates (2 doubles), projections (2 doubles), the DSM and
    /// z-buffer per image, and the image window (about the tile's footprint in pixels).
    static func orthoBytes(extendedCells: Int, images: Int, pixelsPerCell: Double) -> Int {
        let pixels = Int(Double(extendedCells) * max(1, pixelsPerCell * pixelsPerCell) * 1.3)
        return extendedCells * (32 + 4 * (images + 2)) + pixels * 12 + (8 << 20)
    }

    /// How many tiles of `bytes` each fit the budget at once (at least 1, at most `cores`).
    static func concurrency(budget: MemoryBudget, cores: Int, bytes: Int) -> Int {
        max(1, min(cores, (budget.bytes - MemoryBudget.baseBytes) / max(1, bytes)))
    }
}

/// Runs independent tile tasks on a fixed number of threads; the first error stops the others from
/// starting and is rethrown. Reports tiles done / total and an ETA.
struct TileExecutor {
    var concurrency: Int
    var report: @Sendable (_ done: Int, _ total: Int, _ eta: Double?) -> Void

    func run<T: Sendable>(_ items: [T], _ body: @escaping @Sendable (T) throws -> Void) throws {
        guard !items.isEmpty else { return }
        let state = ExecutorState(total: items.count)
        let start = DispatchTime.now().uptimeNanoseconds
        let report = self.report
        DispatchQueue.concurrentPerform(iterations: min(concurrency, items.count)) { _ in
            while let i = state.next() {
                do {
                    try body(items[i])
                    // Give the tile's freed memory back to the system: glibc keeps it in per-thread arenas
                    // otherwise, and the peak would grow with the number of threads that ever ran a tile.
                    releaseFreedMemory()
                    // Reported under the lock: progress never goes backwards.
                    state.finished { done in
                        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                        report(done, items.count, done < items.count ? elapsed / Double(done) * Double(items.count - done) : 0)
                    }
                } catch {
                    state.fail(error)
                }
            }
        }
        if let e = state.error { throw e }
    }
}

private final class ExecutorState: @unchecked Sendable {
    private let lock = NSLock()
    private var cursor = 0
    private var done = 0
    private(set) var error: Error?
    let total: Int
    init(total: Int) { self.total = total }

    func next() -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard error == nil, cursor < total else { return nil }
        cursor += 1
        return cursor - 1
    }

    func finished(_ then: (Int) -> Void) {
        lock.lock(); defer { lock.unlock() }
        done += 1
        then(done)
    }

    func fail(_ e: Error) {
        lock.lock(); defer { lock.unlock() }
        if error == nil { error = e }
    }
}

#if os(Linux)
@_silgen_name("malloc_trim") private func glibcMallocTrim(_ pad: Int) -> Int32
/// Returns the allocator's free pages to the system (glibc `malloc_trim`).
func releaseFreedMemory() { _ = glibcMallocTrim(0) }
#else
func releaseFreedMemory() {}
#endif
