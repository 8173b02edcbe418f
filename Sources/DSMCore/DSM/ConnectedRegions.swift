/// Connected regions of a `width` × `height` grid (row-major cell indices): the cells where `member`
/// holds, two neighbours joined when `linked(a, b)` also holds — 4-connected, or 8-connected with `diagonal`.
/// Each region is handed to `body` once, its cells in flood order (depth first, neighbours pushed in
/// `forEachNeighbour`'s order), regions in the order of their first cell. Used by the DSM's hole filling and
/// island removal, the matcher's speckle filter and the water bodies of the water mask (8-connected).
public enum ConnectedRegions {
    public static func forEach(width: Int, height: Int, diagonal: Bool = false, member: (Int) -> Bool,
                               linked: (Int, Int) -> Bool = { _, _ in true }, _ body: ([Int]) -> Void) {
        var seen = [Bool](repeating: false, count: width * height)
        var stack: [Int] = [], region: [Int] = []
        for start in 0..<(width * height) where !seen[start] && member(start) {
            region.removeAll(keepingCapacity: true)
            stack.append(start); seen[start] = true
            while let c = stack.popLast() {
                region.append(c)
                forEachNeighbour(of: c, width: width, height: height, diagonal: diagonal) { n in
                    if !seen[n], member(n), linked(c, n) { seen[n] = true; stack.append(n) }
                }
            }
            body(region)
        }
    }

    /// Calls `body` with each neighbour of cell `c` inside the grid: its 4-neighbours right, left, down, up;
    /// with `diagonal`, its 8-neighbours row by row from the top left.
    @inlinable @inline(__always)
    public static func forEachNeighbour(of c: Int, width w: Int, height h: Int, diagonal: Bool = false, _ body: (Int) -> Void) {
        let x = c % w, y = c / w
        if diagonal {
            for ny in max(0, y - 1)...min(h - 1, y + 1) {
                for nx in max(0, x - 1)...min(w - 1, x + 1) where nx != x || ny != y { body(ny * w + nx) }
            }
        } else {
            if x + 1 < w { body(c + 1) }
            if x > 0 { body(c - 1) }
            if y + 1 < h { body(c + w) }
            if y > 0 { body(c - w) }
        }
    }

    /// Whether a region (row-major cell indices of a `width` × `height` grid) has a cell on the grid's edge.
    public static func touchesBorder(_ region: [Int], width w: Int, height h: Int) -> Bool {
        region.contains { c in c % w == 0 || c / w == 0 || c % w == w - 1 || c / w == h - 1 }
    }
}
