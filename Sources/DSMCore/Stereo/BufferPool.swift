import Foundation

/// Large Int16 buffers (cost volumes and their aggregation) recycled between the strips and epipolar tiles
/// one matcher processes. A strip's volume is tens of MB: allocated fresh, glibc maps it from the kernel and
/// every page of it faults in zeroed, then unmaps it when the strip ends — measured at about 14 % of a
/// match step's CPU in the kernel (4096² synthetic pair). Recycled, its pages stay mapped while the matcher
/// lives (one tile) and are only rewritten. Holds at most `limit` free buffers (as many as are in use at
/// once, so that the peak stays that of fresh buffers); thread-safe.
final class BufferPool: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [[Int16]] = []
    private var limit: Int

    init(limit: Int) { self.limit = limit }

    /// Keeps at most `limit` free buffers from now on.
    func setLimit(_ limit: Int) {
        lock.lock(); defer { lock.unlock() }
        self.limit = limit
        if free.count > limit { free.removeFirst(free.count - limit) }
    }

    /// A buffer of `count` elements: every one set to `value`, or of unspecified content when `value` is nil
    /// (the caller writes every element).
    func take(count: Int, repeating value: Int16?) -> [Int16] {
        lock.lock()
        // The smallest free buffer that holds `count` elements without growing.
        var pick: Int?
        for (i, b) in free.enumerated() where b.capacity >= count && (pick.map { b.capacity < free[$0].capacity } ?? true) { pick = i }
        var buffer = pick.map { free.remove(at: $0) }
        // None holds it: the free buffers are smaller than what is needed from now on (a taller strip, a wider
        // tile, the full-resolution pass after the coarse one) — drop them rather than hold them beside it.
        if pick == nil { free.removeAll() }
        lock.unlock()
        guard var b = buffer else { return [Int16](repeating: value ?? 0, count: count) }
        buffer = nil
        if b.count > count { b.removeLast(b.count - count) } else if b.count < count { b.append(contentsOf: repeatElement(0, count: count - b.count)) }
        if let value { b.withUnsafeMutableBufferPointer { $0.update(repeating: value) } }
        return b
    }

    /// Gives a buffer back for a later `take` (leaves `buffer` empty). Beyond `limit`, the smallest is dropped.
    func give(_ buffer: inout [Int16]) {
        var b: [Int16] = []
        swap(&b, &buffer)
        guard b.capacity > 0 else { return }
        lock.lock(); defer { lock.unlock() }
        free.append(b)
        if free.count > limit, let i = free.indices.min(by: { free[$0].capacity < free[$1].capacity }) { free.remove(at: i) }
    }
}
