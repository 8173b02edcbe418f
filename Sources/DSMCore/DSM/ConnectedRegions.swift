/// 4-connected regions of a `width` × `height` grid (row-major cell indices): the cells where `member`
/// holds, two neighbours joined when `linked(a, b)` also holds. Each region is handed to `body` once, its
/// cells in flood order (depth first, neighbours pushed right, left, down, up), regions in the order of
/// their first cell. Used by the DSM's hole filling and island removal and the matcher's speckle filter.
public enum ConnectedRegions {
    public static func forEach(width: Int, height: Int, member: (Int) -> Bool, linked: (Int, Int) -> Bool = { _, _ in true },
                               _ body: ([Int]) -> Void) {
        var seen = [Bool](repeating: false, count: width * height)
        var stack: [Int] = [], region: [Int] = []
        for start in 0..<(width * height) where !seen[start] && member(start) {
            region.removeAll(keepingCapacity: true)
            stack.append(start); seen[start] = true
            while let c = stack.popLast() {
                region.append(c)
                let x = c % width, y = c / width
                for (dx, dy) in [(1, 0), (-1, 0), (0, 1), (0, -1)] {
                    let nx = x + dx, ny = y + dy
                    guard nx >= 0, ny >= 0, nx < width, ny < height else { continue }
                    let n = ny * width + nx
                    if !seen[n], member(n), linked(c, n) { seen[n] = true; stack.append(n) }
                }
            }
            body(region)
        }
    }

    /// Whether a region (row-major cell indices of a `width` × `height` grid) has a cell on the grid's edge.
    public static func touchesBorder(_ region: [Int], width w: Int, height h: Int) -> Bool {
        region.contains { c in c % w == 0 || c / w == 0 || c % w == w - 1 || c / w == h - 1 }
    }
}
