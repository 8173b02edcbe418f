import DSMCore
import Foundation

/// A window of the output grid, in cells.
public struct CellWindow: Sendable, Codable, Equatable, Hashable {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int
    public init(x: Int, y: Int, width: Int, height: Int) { self.x = x; self.y = y; self.width = width; self.height = height }
    public var count: Int { width * height }

    /// This window grown by `margin` cells on every side, clipped to a grid.
    public func expanded(by margin: Int, within grid: GridDefinition) -> CellWindow {
        let x0 = max(0, x - margin), y0 = max(0, y - margin)
        let x1 = min(grid.width, x + width + margin), y1 = min(grid.height, y + height + margin)
        return CellWindow(x: x0, y: y0, width: x1 - x0, height: y1 - y0)
    }

    /// The values of `inner` cut out of values laid out on this window (`inner` must lie inside it).
    public func crop<T>(_ values: [T], to inner: CellWindow) -> [T] {
        var out: [T] = []
        out.reserveCapacity(inner.count)
        for y in inner.y..<(inner.y + inner.height) {
            let start = (y - self.y) * width + (inner.x - x)
            out.append(contentsOf: values[start..<(start + inner.width)])
        }
        return out
    }

    public func intersection(_ o: CellWindow) -> CellWindow? {
        let x0 = max(x, o.x), y0 = max(y, o.y), x1 = min(x + width, o.x + o.width), y1 = min(y + height, o.y + o.height)
        guard x1 > x0, y1 > y0 else { return nil }
        return CellWindow(x: x0, y: y0, width: x1 - x0, height: y1 - y0)
    }
}

extension GridDefinition {
    /// The grid of a window of this grid (same CRS and resolution).
    public func subgrid(_ w: CellWindow) -> GridDefinition {
        GridDefinition(epsg: epsg, originX: originX + Double(w.x) * resolution, originY: originY - Double(w.y) * resolution,
                       resolution: resolution, width: w.width, height: w.height)
    }
}

/// The unit of work of a run: one ground tile of the output grid. Every stage of the pipeline computes a
/// tile on its own (reading what it needs of its neighbours' earlier stages for its margins), so tiles
/// run in any order, in parallel, or in another process, and a finished tile is never computed again.
public struct GroundTile: Sendable, Codable, Hashable, CustomStringConvertible {
    public var row: Int
    public var column: Int
    public var cells: CellWindow
    public var name: String { "r\(row)_c\(column)" }
    public var description: String { "tile \(name)" }
}

/// The output grid cut into ground tiles of about `tileSize` cells (equal sizes, no slivers).
public struct TilePlan: Sendable, Codable, Equatable {
    public var grid: GridDefinition
    /// The nominal tile size; tiles are between 2/3 and 3/2 of it along each axis (`tiles(along:size:)`).
    public var tileSize: Int
    public var rows: Int
    public var columns: Int

    public init(grid: GridDefinition, tileSize: Int) {
        self.grid = grid
        self.tileSize = tileSize
        rows = Self.tiles(along: grid.height, size: tileSize)
        columns = Self.tiles(along: grid.width, size: tileSize)
    }

    /// The number of equal tiles along an axis whose size is nearest the nominal one. Not the ceiling: a
    /// grid a little wider than one tile (a 1024² scene at its GSD gives 1055 × 1074 cells) would become
    /// four tiles of half the size, each paying the matcher's margins (32 px around each tile, epipolar
    /// sub-tiles cut short) — on that scene 7 % more CPU than one tile — and tile sizes would vary with the
    /// scene size (528, 845, 1000 cells at 1024², 4096², 16384²), and so would the memory of a tile.
    static func tiles(along length: Int, size: Int) -> Int {
        max(1, Int((Double(length) / Double(max(1, size))).rounded()))
    }

    /// The largest tile's width and height (the scheduler's memory estimate).
    public var largestTile: (width: Int, height: Int) {
        ((grid.width + columns - 1) / columns, (grid.height + rows - 1) / rows)
    }

    static func split(_ length: Int, _ n: Int, _ i: Int) -> (Int, Int) {
        let a = length * i / n, b = length * (i + 1) / n
        return (a, b - a)
    }

    public func tile(row r: Int, column c: Int) -> GroundTile {
        let (y, h) = Self.split(grid.height, rows, r), (x, w) = Self.split(grid.width, columns, c)
        return GroundTile(row: r, column: c, cells: CellWindow(x: x, y: y, width: w, height: h))
    }

    public var tiles: [GroundTile] {
        (0..<rows).flatMap { r in (0..<columns).map { c in tile(row: r, column: c) } }
    }

    /// The tiles whose cells intersect a window.
    public func tiles(intersecting w: CellWindow) -> [GroundTile] {
        tiles.filter { $0.cells.intersection(w) != nil }
    }
}

extension TileStage {
    /// Neighbouring tiles (rows × columns) that make one task of the job service's tile queue at this stage.
    /// Each task row in the store costs the queue about the same (a claim, heartbeats, a fenced completion),
    /// so a task should carry seconds of work whatever the stage: a match tile of 1024² cells takes ~4.5
    /// CPU-s, a fuse or ortho tile ~0.9 (Benchmarks/README.md "Queue throughput"). Blocks of neighbours
    /// also share the margins they read from each other.
    public var taskBlock: (rows: Int, columns: Int) {
        switch self {
        case .match: return (1, 2)
        case .fuse, .ortho: return (3, 3)
        }
    }
}

extension TilePlan {
    /// The tiles of each task of a stage: blocks of `stage.taskBlock` neighbouring tiles, the blocks in row
    /// order, each block's tiles as indices into `tiles` (row order); every tile in exactly one task.
    public func taskGroups(_ stage: TileStage) -> [[Int]] {
        let (br, bc) = stage.taskBlock
        var groups: [[Int]] = []
        for r0 in stride(from: 0, to: rows, by: br) {
            for c0 in stride(from: 0, to: columns, by: bc) {
                groups.append((r0..<min(rows, r0 + br)).flatMap { r in (c0..<min(columns, c0 + bc)).map { r * columns + $0 } })
            }
        }
        return groups
    }
}
