import Crypto
import Foundation

/// A finished job's results as one zip archive (`GET /jobs/{id}/results.zip`): every file of its results
/// document under one folder, stored as they are (the GeoTIFFs are compressed already), with ZIP64 records
/// where a file or an offset passes 4 GiB.
///
/// The archive is laid out before a byte is sent: its length, its ETag and the bytes of any range follow
/// from the files' names, sizes, modification times and CRC-32s. So a download of several gigabytes
/// states its length and resumes with Range and If-Range as a single product's does, and the files are
/// read from the results folder as the archive streams (nothing is written but a small index).
public struct ResultsArchive: Sendable {
    /// One file of the archive, as its index records it.
    public struct Member: Codable, Equatable, Sendable {
        /// The file's name in the results folder (a product's `file`).
        public var name: String
        public var size: Int64
        /// The file's modification time, in microseconds since 1970: with the size, what says the CRC is current.
        public var modified: Int64
        public var crc32: UInt32
    }

    /// A stretch of the archive: bytes built here (headers, the central directory), or a file's bytes.
    enum Piece: Sendable {
        case bytes([UInt8])
        case file(path: String)
    }

    let pieces: [(start: Int64, length: Int64, piece: Piece)]
    public let length: Int64
    /// Strong: a digest of the central directory, which names every file with its size, time and CRC-32.
    public let etag: String
    /// The newest member's modification time.
    let modified: Date

    /// The index of the members' CRC-32s, kept in the results folder (hidden: not a product, not published).
    public static let indexName = ".results-zip.json"

    /// Sizes and offsets from which ZIP64 fields are written (4 GiB − 1 in the format; lower in tests, so
    /// that the ZIP64 records are checked with real unzippers on small files).
    public static let zip64Limit: Int64 = 0xFFFF_FFFF

    /// The archive of `members`, files of `folder`, each under `root/` in the archive.
    public init(folder: String, root: String, members: [Member], zip64Limit: Int64 = Self.zip64Limit) {
        var pieces: [(Int64, Int64, Piece)] = []
        var offset: Int64 = 0
        var central: [UInt8] = []
        func add(_ piece: Piece, _ length: Int64) { pieces.append((offset, length, piece)); offset += length }
        for m in members {
            let name = Array("\(root)/\(m.name)".utf8)
            let time = Self.dosTime(m.modified)
            let unixSeconds = UInt32(clamping: max(0, m.modified / 1_000_000))
            let big = m.size >= zip64Limit, farOffset = offset >= zip64Limit
            // The extended timestamp (UTC modification time: DOS times have no zone).
            var stamp: [UInt8] = []
            stamp.le16(0x5455); stamp.le16(5); stamp.append(1); stamp.le32(unixSeconds)
            var local: [UInt8] = []
            local.le32(0x0403_4B50)
            local.le16(big ? 45 : 20)        // version needed: 4.5 for ZIP64
            local.le16(0)                    // flags: sizes and CRC known, ASCII names
            local.le16(0)                    // stored
            local.le16(time.time); local.le16(time.date)
            local.le32(m.crc32)
            local.le32(big ? 0xFFFF_FFFF : UInt32(m.size)); local.le32(big ? 0xFFFF_FFFF : UInt32(m.size))
            var localExtra = stamp
            if big { localExtra.le16(1); localExtra.le16(16); localExtra.le64(UInt64(m.size)); localExtra.le64(UInt64(m.size)) }
            local.le16(UInt16(name.count)); local.le16(UInt16(localExtra.count))
            local += name + localExtra

            var centralExtra = stamp
            if big || farOffset {
                var fields: [UInt8] = []
                if big { fields.le64(UInt64(m.size)); fields.le64(UInt64(m.size)) }
                if farOffset { fields.le64(UInt64(offset)) }
                centralExtra.le16(1); centralExtra.le16(UInt16(fields.count)); centralExtra += fields
            }
            central.le32(0x0201_4B50)
            central.le16(3 << 8 | 45)          // made by: Unix, 4.5
            central.le16(big || farOffset ? 45 : 20)
            central.le16(0); central.le16(0)
            central.le16(time.time); central.le16(time.date)
            central.le32(m.crc32)
            central.le32(big ? 0xFFFF_FFFF : UInt32(m.size)); central.le32(big ? 0xFFFF_FFFF : UInt32(m.size))
            central.le16(UInt16(name.count)); central.le16(UInt16(centralExtra.count)); central.le16(0)
            central.le16(0); central.le16(0)
            central.le32(0o100644 << 16)       // a regular file, rw-r--r--
            central.le32(farOffset ? 0xFFFF_FFFF : UInt32(offset))
            central += name + centralExtra

            add(.bytes(local), Int64(local.count))
            add(.file(path: (folder as NSString).appendingPathComponent(m.name)), m.size)
        }
        let directoryOffset = offset, directorySize = Int64(central.count), count = members.count
        let digest = SHA256.hash(data: Array(root.utf8) + central)
        var end: [UInt8] = []
        let zip64 = directoryOffset >= zip64Limit || directorySize >= zip64Limit || count >= 0xFFFF || zip64Limit < Self.zip64Limit
        if zip64 {
            let record = directoryOffset + directorySize
            end.le32(0x0606_4B50); end.le64(44)
            end.le16(3 << 8 | 45); end.le16(45)
            end.le32(0); end.le32(0)
            end.le64(UInt64(count)); end.le64(UInt64(count))
            end.le64(UInt64(directorySize)); end.le64(UInt64(directoryOffset))
            end.le32(0x0706_4B50); end.le32(0); end.le64(UInt64(record)); end.le32(1)
        }
        end.le32(0x0605_4B50); end.le16(0); end.le16(0)
        end.le16(zip64 ? 0xFFFF : UInt16(count)); end.le16(zip64 ? 0xFFFF : UInt16(count))
        end.le32(zip64 ? 0xFFFF_FFFF : UInt32(directorySize)); end.le32(zip64 ? 0xFFFF_FFFF : UInt32(directoryOffset))
        end.le16(0)
        add(.bytes(central + end), directorySize + Int64(end.count))
        self.pieces = pieces
        self.length = offset
        self.etag = "\"zip-" + hexString(digest.prefix(16)) + "\""
        self.modified = Date(timeIntervalSince1970: Double(members.map(\.modified).max() ?? 0) / 1e6)
    }

    /// Hands bytes `from` ..< `from + count` of the archive to `sink`, in order. A file shorter than its index
    /// says (deleted or replaced while the archive streams) ends with an error, never with wrong bytes.
    public func write(from: Int64, count: Int64, to sink: (Data) async throws -> Void) async throws {
        let to = from + count
        for (start, length, piece) in pieces where start < to && start + length > from {
            let a = max(from, start) - start, b = min(to, start + length) - start
            switch piece {
            case .bytes(let bytes):
                try await sink(Data(bytes[Int(a)..<Int(b)]))
            case .file(let path):
                try await sendFileRange(path, from: a, count: b - a, vanished: ArchiveError.vanished((path as NSString).lastPathComponent), to: sink)
            }
        }
    }

    public enum ArchiveError: Error, CustomStringConvertible {
        case vanished(String)
        public var description: String {
            switch self { case .vanished(let f): "\(f) changed or was deleted while the archive was being sent" }
        }
    }

    /// The members for `files` of `folder`: each one's size, time and CRC-32, taken from the folder's index
    /// where the size and time still match, computed otherwise (reading the file once), and the index then
    /// rewritten. Blocking: called off the server's threads.
    public static func members(folder: String, files: [String]) throws -> [Member] {
        let indexPath = (folder as NSString).appendingPathComponent(indexName)
        let known = (FileManager.default.contents(atPath: indexPath).flatMap { try? JSONDecoder().decode([Member].self, from: $0) }) ?? []
        var out: [Member] = []
        for name in files {
            let path = (folder as NSString).appendingPathComponent(name)
            let attrs = try FileManager.default.attributesOfItem(atPath: path)
            let size = (attrs[.size] as? NSNumber)?.int64Value ?? 0
            let modified = Int64((((attrs[.modificationDate] as? Date) ?? Date(timeIntervalSince1970: 0)).timeIntervalSince1970 * 1e6).rounded())
            if let m = known.first(where: { $0.name == name && $0.size == size && $0.modified == modified }) { out.append(m); continue }
            out.append(Member(name: name, size: size, modified: modified, crc32: try crc32(of: path)))
        }
        if out != known, let data = try? JSONEncoder().encode(out) {
            // An index that cannot be written (a read-only folder) only means the CRCs are computed again.
            try? data.write(to: URL(fileURLWithPath: indexPath), options: .atomic)
        }
        return out
    }

    /// `members`, off the caller's thread (it reads every file not in the index yet).
    public static func indexed(folder: String, files: [String]) async throws -> [Member] {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<[Member], Error>) in
            DispatchQueue.global().async { c.resume(with: Result { try members(folder: folder, files: files) }) }
        }
    }

    /// The CRC-32 of a file, read through one reused buffer.
    static func crc32(of path: String) throws -> UInt32 {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ArchiveError.vanished((path as NSString).lastPathComponent) }
        defer { close(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var crc: UInt32 = 0
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw ArchiveError.vanished((path as NSString).lastPathComponent) }
            if n == 0 { return crc }
            crc = crc32(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), continuing: crc)
        }
    }

    /// The zip format's CRC-32 (polynomial 0xEDB88320) of `data`, continuing `crc` (0 to start).
    public static func crc32(_ data: Data, continuing crc: UInt32 = 0) -> UInt32 {
        data.withUnsafeBytes { crc32($0, continuing: crc) }
    }

    /// The CRC-32 eight bytes a step ("slicing by 8"): 1.8 GB/s here, where ZIPFoundation's byte-wise table
    /// (its Linux build does not use zlib's) made the first download of a scene's archive wait tens of seconds.
    static func crc32(_ raw: UnsafeRawBufferPointer, continuing crc: UInt32) -> UInt32 {
        var c = ~crc
        Self.crcTables.withUnsafeBufferPointer { t in
            var p = 0
            let n = raw.count
            while n - p >= 8 {
                let lo = c ^ (UInt32(raw[p]) | UInt32(raw[p + 1]) << 8 | UInt32(raw[p + 2]) << 16 | UInt32(raw[p + 3]) << 24)
                let hi = UInt32(raw[p + 4]) | UInt32(raw[p + 5]) << 8 | UInt32(raw[p + 6]) << 16 | UInt32(raw[p + 7]) << 24
                c = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)] ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)] ^ t[256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                p += 8
            }
            while p < n { c = t[Int((c ^ UInt32(raw[p])) & 0xFF)] ^ (c >> 8); p += 1 }
        }
        return ~c
    }

    /// Table k holds the CRC of a byte followed by k zero bytes.
    static let crcTables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            t[i] = c
        }
        for k in 1..<8 { for i in 0..<256 { t[k * 256 + i] = t[(k - 1) * 256 + i] >> 8 ^ t[Int(t[(k - 1) * 256 + i] & 0xFF)] } }
        return t
    }()

    /// MS-DOS date and time fields of a time in microseconds since 1970, in UTC (1980-01-01 at the earliest).
    static func dosTime(_ microseconds: Int64) -> (time: UInt16, date: UInt16) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second],
                                        from: Date(timeIntervalSince1970: Double(microseconds) / 1e6))
        guard let year = c.year, year >= 1980 else { return (0, 1 << 5 | 1) }
        let date = UInt16(min(year - 1980, 127) << 9 | (c.month ?? 1) << 5 | (c.day ?? 1))
        let time = UInt16((c.hour ?? 0) << 11 | (c.minute ?? 0) << 5 | (c.second ?? 0) / 2)
        return (time, date)
    }
}

/// Hands bytes `from` ..< `from + count` of the file at `path` to `sink`, in reads of 256 KiB; a file missing,
/// unreadable or shorter than that throws (`vanished` when missing or short): a download ends with an error,
/// never with other bytes, and never takes the daemon down. Product downloads and the results archive.
func sendFileRange(_ path: String, from: Int64, count: Int64, vanished: @autoclosure () -> Error,
                   to sink: (Data) async throws -> Void) async throws {
    guard let h = FileHandle(forReadingAtPath: path) else { throw vanished() }
    defer { try? h.close() }
    try h.seek(toOffset: UInt64(from))
    var left = count
    while left > 0 {
        guard let chunk = try h.read(upToCount: Int(min(left, 256 << 10))), !chunk.isEmpty else { throw vanished() }
        try await sink(chunk)
        left -= Int64(chunk.count)
    }
}

extension Array where Element == UInt8 {
    /// Little-endian fields, as the zip format stores them.
    mutating func le16(_ v: UInt16) { append(UInt8(v & 0xFF)); append(UInt8(v >> 8)) }
    mutating func le32(_ v: UInt32) { for i in 0..<4 { append(UInt8((v >> (8 * UInt32(i))) & 0xFF)) } }
    mutating func le64(_ v: UInt64) { for i in 0..<8 { append(UInt8((v >> (8 * UInt64(i))) & 0xFF)) } }
}
