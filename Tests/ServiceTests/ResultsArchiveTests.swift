import Foundation
import JobService
import TestSupport
import Testing

/// The results archive (`GET /jobs/{id}/results.zip`) read back by real unzippers, Python's `zipfile` and
/// Info-ZIP's `unzip`, laid out as served and with its ZIP64 records forced on small files (a job's results
/// pass 4 GiB only at scene scale).
@Suite struct ResultsArchiveTests {
    /// Three files of different sizes (one empty), with set modification times.
    func folder() throws -> (TemporaryFolder, [String: Data]) {
        let t = try TemporaryFolder()
        var rng = SystemRandomNumberGenerator()
        let files: [String: Data] = ["dsm.tif": Data((0..<300_000).map { _ in UInt8.random(in: 0...255, using: &rng) }),
                                     "manifest.json": Data("{\"products\": []}".utf8), "empty.txt": Data()]
        for (name, data) in files {
            try data.write(to: URL(fileURLWithPath: t.path(name)))
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 1_790_000_000.5)], ofItemAtPath: t.path(name))
        }
        return (t, files)
    }

    func bytes(_ archive: ResultsArchive, from: Int64, count: Int64) async throws -> Data {
        var out = Data()
        try await archive.write(from: from, count: count) { out += $0 }
        return out
    }

    @Test(arguments: [ResultsArchive.zip64Limit, 0])
    func unzippersReadEveryFile(zip64Limit: Int64) async throws {
        let (t, files) = try folder()
        let names = ["dsm.tif", "empty.txt", "manifest.json"]
        let members = try ResultsArchive.members(folder: t.url.path, files: names)
        #expect(members.map(\.size) == names.map { Int64(files[$0]!.count) })
        let archive = ResultsArchive(folder: t.url.path, root: "dsmopt-job1", members: members, zip64Limit: zip64Limit)
        let whole = try await bytes(archive, from: 0, count: archive.length)
        #expect(Int64(whole.count) == archive.length)
        let zipPath = t.path("out.zip")
        try whole.write(to: URL(fileURLWithPath: zipPath))

        // Python: names, bytes, CRCs (testzip), the UTC time of the DOS fields, and ZIP64 where forced.
        let check = try run("/usr/bin/python3", ["-c", """
            import json, sys, zipfile
            z = zipfile.ZipFile(sys.argv[1])
            bad = z.testzip()
            out = {"bad": bad, "members": [{"name": i.filename, "size": i.file_size, "time": list(i.date_time),
                   "zip64": i.extract_version >= 45, "same": z.read(i) == open(sys.argv[2] + "/" + i.filename.split("/", 1)[1], "rb").read()}
                   for i in z.infolist()]}
            print(json.dumps(out))
            """, zipPath, t.url.path])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any], "\(check.stderr)")
        #expect(report["bad"] is NSNull, "\(report)")
        let read = (report["members"] as? [[String: Any]]) ?? []
        #expect(read.compactMap { $0["name"] as? String } == names.map { "dsmopt-job1/\($0)" }, "\(report)")
        #expect(read.allSatisfy { $0["same"] as? Bool == true }, "\(report)")
        // 1_790_000_000 s is 2026-09-21 14:13:20 UTC (DOS times count seconds in twos).
        #expect(read.allSatisfy { ($0["time"] as? [Int]) == [2026, 9, 21, 14, 13, 20] }, "\(report)")
        #expect(read.allSatisfy { $0["zip64"] as? Bool == (zip64Limit == 0) }, "\(report)")
        // Info-ZIP's unzip tests every CRC too, and lists the extended (UTC) time.
        let tested = try run("/usr/bin/unzip", ["-t", zipPath])
        #expect(tested.status == 0 && tested.stdout.contains("No errors detected"), "\(tested.stdout) \(tested.stderr)")

        // Any range is the same bytes as the whole archive's (what a resumed download relies on).
        for (from, count) in [(0, 10), (20, 200_000), (archive.length - 70, 70), (299_990, 400)] as [(Int64, Int64)] {
            let part = try await bytes(archive, from: from, count: count)
            #expect(part == whole.subdata(in: Int(from)..<Int(from + count)), "range \(from)+\(count)")
        }
    }

    /// The CRC-32 (sliced by 8) against its check value and zlib's, over lengths that leave 0–7 bytes over, and
    /// continued across a split.
    @Test func crc32AgreesWithZlib() throws {
        #expect(ResultsArchive.crc32(Data("123456789".utf8)) == 0xCBF4_3926)
        let data = Data((0..<1_037).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ $0 >> 3) })
        let t = try TemporaryFolder()
        try data.write(to: URL(fileURLWithPath: t.path("d")))
        let zlib = try run("/usr/bin/python3", ["-c", "import sys, zlib; d = open(sys.argv[1], 'rb').read(); print(' '.join(str(zlib.crc32(d[:n])) for n in range(1030, 1038)))", t.path("d")])
        let ours = (1030...1037).map { String(ResultsArchive.crc32(data.prefix($0))) }.joined(separator: " ")
        #expect(ours == zlib.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "\(ours) / \(zlib.stdout) \(zlib.stderr)")
        #expect(ResultsArchive.crc32(data.suffix(from: 333), continuing: ResultsArchive.crc32(data.prefix(333))) == ResultsArchive.crc32(data))
    }

    @Test func theIndexKeepsTheCRCsUntilAFileChanges() async throws {
        let (t, _) = try folder()
        let first = try ResultsArchive.members(folder: t.url.path, files: ["dsm.tif", "manifest.json"])
        let index = t.path(ResultsArchive.indexName)
        #expect(FileManager.default.fileExists(atPath: index))
        // A CRC in the index is used as it is while the file's size and time match.
        var planted = first
        planted[1].crc32 ^= 1
        try JSONEncoder().encode(planted).write(to: URL(fileURLWithPath: index))
        #expect(try ResultsArchive.members(folder: t.url.path, files: ["dsm.tif", "manifest.json"]) == planted)
        // A file rewritten since is read again, and the archive's ETag changes with it.
        try Data("{\"products\": [1]}".utf8).write(to: URL(fileURLWithPath: t.path("manifest.json")))
        let again = try ResultsArchive.members(folder: t.url.path, files: ["dsm.tif", "manifest.json"])
        #expect(again[0] == first[0] && again[1].size == 17 && again[1].crc32 != planted[1].crc32)
        let a = ResultsArchive(folder: t.url.path, root: "r", members: first), b = ResultsArchive(folder: t.url.path, root: "r", members: again)
        #expect(a.etag != b.etag && a.etag == ResultsArchive(folder: t.url.path, root: "r", members: first).etag)
        // A file deleted while the archive streams ends it with an error, not with other bytes.
        try FileManager.default.removeItem(atPath: t.path("dsm.tif"))
        await #expect(throws: ResultsArchive.ArchiveError.self) { _ = try await bytes(b, from: 0, count: b.length) }
    }
}
