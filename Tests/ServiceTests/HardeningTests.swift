import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TestSupport
import Testing

/// Hostile and unlucky requests: none takes the daemon down, none leaves anything half-stored; and a job
/// never runs twice over its own results.
@Suite(.serialized) struct HardeningTests {
    let img1: String
    let img2: String

    init() throws {
        img1 = try TestData.path("pleiades/reunion-pair/img_01.tif")
        img2 = try TestData.path("pleiades/reunion-pair/img_02.tif")
    }

    func python(_ script: String, timeout: Double = 120) throws -> ProcessResult {
        try run("/usr/bin/python3", ["-c", script], timeout: timeout)
    }

    func alive(_ s: ServerProcess) async throws -> Bool {
        (try? await http("GET", "\(s.base)/health").status) == 200 && s.process?.isRunning == true
    }

    func uploadFile(_ s: ServerProcess, token: String, path: String, name: String) async throws -> HTTPResult {
        try await http("POST", "\(s.base)/uploads?name=\(name)", token: token, body: try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    func leftovers(_ s: ServerProcess) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: s.data.path("uploads"))
    }

    @Test func hostileRequestsNeverTakeTheDaemonDown() async throws {
        let s = try ServerProcess(workers: 0, extra: ["--max-upload-bytes", "3000000"])
        let token = try s.user("mallory")
        // Paging arithmetic: an offset near Int.max used to trap on `offset + limit`. In-range values are
        // clamped (200); what is not an integer of at most 2^53 − 1 is a 400 that says so (the OpenAPI schema's range).
        for q in ["offset=-1&limit=-5", "offset=9007199254740991&limit=9007199254740991"] {
            let r = try await http("GET", "\(s.base)/jobs?\(q)", token: token)
            #expect(r.status == 200, "\(q): \(r.status) \(r.text)")
        }
        for q in ["offset=9223372036854775807", "limit=9223372036854775807&offset=9223372036854775000", "offset=abc", "all=maybe"] {
            let r = try await http("GET", "\(s.base)/jobs?\(q)", token: token)
            #expect(r.status == 400 && (r.json?["detail"] as? String ?? "").contains("must be"), "\(q): \(r.status) \(r.text)")
        }
        #expect(try await alive(s))
        let tmp = try TemporaryFolder()
        // Archives: a ZIP64 entry declaring 2^64−1 bytes; a bomb whose headers lie (inflates to 200 MB, declares
        // 1 kB); an honest bomb; a symbolic link; too many entries; an entry escaping the folder.
        let made = try python(#"""
            import struct, zipfile, zlib, sys
            out = "\#(tmp.url.path)/"
            def stored_zip64(path, name, data, declared):
                n = name.encode(); crc = zlib.crc32(data)
                extra_l = struct.pack("<HHQQ", 1, 16, len(data), len(data))
                lfh = struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(n), len(extra_l)) + n + extra_l
                extra_c = struct.pack("<HHQQQ", 1, 24, declared, len(data), 0)
                cd = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(n), len(extra_c), 0, 0, 0, 0, 0) + n + extra_c
                body = lfh + data
                eocd = struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 1, 1, len(cd), len(body), 0)
                open(path, "wb").write(body + cd + eocd)
            stored_zip64(out + "zip64.zip", "PRODUCT/a.tif", b"II*\x00" + b"\x00" * 60, 2**64 - 1)
            # A lying bomb: deflated zeros, sizes patched to 1000 in the local and central headers.
            z = zipfile.ZipFile(out + "liar.zip", "w", zipfile.ZIP_DEFLATED); z.writestr("PRODUCT/a.tif", b"\x00" * (200 << 20)); z.close()
            b = bytearray(open(out + "liar.zip", "rb").read())
            lfh = b.find(b"PK\x03\x04"); struct.pack_into("<I", b, lfh + 22, 1000)
            cdh = b.find(b"PK\x01\x02"); struct.pack_into("<I", b, cdh + 24, 1000)
            open(out + "liar.zip", "wb").write(bytes(b))
            z = zipfile.ZipFile(out + "bomb.zip", "w", zipfile.ZIP_DEFLATED); z.writestr("PRODUCT/a.tif", b"\x00" * (100 << 20)); z.close()
            z = zipfile.ZipFile(out + "link.zip", "w")
            i = zipfile.ZipInfo("PRODUCT/a.tif"); i.create_system = 3; i.external_attr = (0o120777 << 16); z.writestr(i, "/etc/passwd"); z.close()
            z = zipfile.ZipFile(out + "many.zip", "w")
            for k in range(2100): z.writestr("PRODUCT/f%d.txt" % k, b"x")
            z.close()
            z = zipfile.ZipFile(out + "escape.zip", "w"); z.writestr("../../escape.tif", b"II*\x00"); z.close()
            """#)
        #expect(made.status == 0, "\(made.stderr)")
        let before = try #require(try await http("GET", "\(s.base)/me", token: token).json?["usage"] as? [String: Any])
        for (file, statuses, fragment) in [("zip64.zip", [413, 422], ""), ("liar.zip", [413, 422], ""), ("bomb.zip", [413], "bytes"),
                                           ("link.zip", [422], "symbolic link"), ("many.zip", [422], "more than"), ("escape.zip", [422], "outside")] {
            let r = try await uploadFile(s, token: token, path: tmp.path(file), name: file)
            #expect(statuses.contains(r.status) && (fragment.isEmpty || r.text.contains(fragment)), "\(file): \(r.status) \(r.text)")
            #expect(try await alive(s), "the daemon died on \(file)")
        }
        let left = try leftovers(s)
        #expect(left.isEmpty, "left behind: \(left)")
        #expect(!FileManager.default.fileExists(atPath: s.data.path("escape.tif")) && !FileManager.default.fileExists(atPath: s.data.url.deletingLastPathComponent().appendingPathComponent("escape.tif").path))
        let after = try #require(try await http("GET", "\(s.base)/me", token: token).json?["usage"] as? [String: Any])
        #expect(before["storageBytes"] as? Int == after["storageBytes"] as? Int)
        // Metrics labels stay bounded: unknown paths and ids share one label.
        for i in 0..<20 { _ = try await http("GET", "\(s.base)/no/such/path-\(i)-\(UUID().uuidString)") }
        let admin = try s.user("root", role: "admin")
        let metrics = try await http("GET", "\(s.base)/metrics", token: admin).text
        #expect(metrics.contains("route=\"unmatched\"") && !metrics.contains("path-1"), "\(metrics)")
    }

    /// Slow clients and parallel uploads: a stalled body is cut after the idle timeout; a user streams at
    /// most `maxConcurrentUploads` at once; the storage quota holds across uploads in flight.
    @Test func slowClientsAndParallelUploads() async throws {
        let s = try ServerProcess(workers: 0, config: #"{"idleTimeoutSeconds": 2, "maxConcurrentUploads": 2}"#)
        let token = try s.user("sam", quota: ["--storage-bytes", "900000"])
        let port = try #require(URL(string: s.base)?.port)
        let r = try python(#"""
            import socket, time
            def start(length, body):
                c = socket.create_connection(("127.0.0.1", \#(port)))
                c.sendall(("POST /uploads?name=x.tif HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \#(token)\r\nContent-Length: %d\r\n\r\n" % length).encode() + body)
                return c
            def answer(c):
                c.settimeout(10)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = c.recv(4096)
                        if not chunk: break
                        data += chunk
                except Exception as e:
                    return "error " + str(e)
                return data.split(b"\r\n")[0].decode() if data else "closed"
            a = start(300000, b"II*\x00" + b"\x00" * 1000)
            b = start(300000, b"II*\x00" + b"\x00" * 1000)
            time.sleep(0.5)
            c = start(10, b"II*\x00" + b"\x00" * 6)
            print("third:", answer(c))
            t0 = time.time()
            print("stalled:", answer(a), round(time.time() - t0, 1))
            b.close()
            # The quota counts what uploads in flight have received: a 600 kB upload does not fit beside 400 kB in flight under 900 kB.
            d = start(600000, b"II*\x00" + b"\x00" * 399996)
            time.sleep(1.0)
            e = start(600000, b"II*\x00" + b"\x00" * 599996)
            print("over quota:", answer(e))
            d.close()
            """#)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first { $0.hasPrefix("third:") }?.contains("429") == true, "\(r.stdout)")
        // The stalled upload is closed by the server after ~2 s idle (an answer or a closed connection).
        let stalled = try #require(lines.first { $0.hasPrefix("stalled:") })
        let seconds = Double(stalled.split(separator: " ").last ?? "") ?? 99
        #expect(seconds < 6, "\(stalled)")
        #expect(lines.first { $0.hasPrefix("over quota:") }?.contains("403") == true, "\(r.stdout)")
        #expect(try await alive(s))
        try await Task.sleep(nanoseconds: 500_000_000)
        let left = try leftovers(s)
        #expect(left.isEmpty, "left behind: \(left)")
    }

    /// A nearly full disk: uploads are refused with 507 and a clear problem document.
    @Test func fullDiskIsRefusedWith507() async throws {
        let s = try ServerProcess(workers: 1, config: #"{"minFreeBytes": 1000000000000000000}"#)
        let token = try s.user("dora")
        let r = try await uploadFile(s, token: token, path: img1, name: "a.tif")
        #expect(r.status == 507 && r.headers["content-type"] == "application/problem+json" && r.text.contains("disk is nearly full"), "\(r.status) \(r.text)")
        #expect(try leftovers(s).isEmpty)
    }

    /// Tokens are revoked and rotated at once; operators see every job but only owners and admins cancel or
    /// delete; 500s and job errors never show server paths.
    @Test func tokensAndRoles() async throws {
        let s = try ServerProcess(workers: 0)
        let admin = try s.user("root", role: "admin"), op = try s.user("olga", role: "operator"), rita = try s.user("rita")
        let u1 = try await upload(s, token: rita, path: img1, name: "a.tif"), u2 = try await upload(s, token: rita, path: img2, name: "b.tif")
        let job = try #require(try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: rita,
                                              body: json(["images": [["upload": u1], ["upload": u2]]])).json?["jobID"] as? String)
        #expect(try await http("GET", "\(s.base)/jobs/\(job)", token: op).status == 200)
        let denied = try await http("DELETE", "\(s.base)/jobs/\(job)", token: op)
        #expect(denied.status == 403 && denied.text.contains("owner"), "\(denied.text)")
        #expect(try await http("GET", "\(s.base)/jobs/\(job)", token: rita).json?["status"] as? String == "accepted")
        // Rotation through REST: the new token works, the old one is refused at once.
        let users = try JSONSerialization.jsonObject(with: try await http("GET", "\(s.base)/admin/users", token: admin).body) as? [[String: Any]] ?? []
        let ritaId = try #require(users.first { $0["name"] as? String == "rita" }?["id"] as? String)
        let rotated = try await http("POST", "\(s.base)/admin/users/\(ritaId)/token", token: admin)
        let fresh = try #require(rotated.json?["token"] as? String)
        #expect(rotated.status == 201 && fresh != rita)
        #expect(try await http("GET", "\(s.base)/me", token: rita).status == 401)
        #expect(try await http("GET", "\(s.base)/me", token: fresh).status == 200)
        // Revocation from the CLI, while the daemon runs.
        _ = try s.admin(["revoke-token", "rita"])
        #expect(try await http("GET", "\(s.base)/me", token: fresh).status == 401)
        let again = try s.admin(["rotate-token", "rita"])
        #expect(try await http("GET", "\(s.base)/me", token: again).status == 200)
        // Self-rotation.
        let mine = try #require(try await http("POST", "\(s.base)/me/token", token: again).json?["token"] as? String)
        let oldOne = try await http("GET", "\(s.base)/me", token: again).status, newOne = try await http("GET", "\(s.base)/me", token: mine).status
        #expect(oldOne == 401 && newOne == 200)
        // The owner cancels; an admin may too.
        #expect(try await http("DELETE", "\(s.base)/jobs/\(job)", token: admin).status == 202)
    }

    /// A worker that stalls loses its lease: another worker runs the job as attempt 2 in its own folder;
    /// when the stalled one wakes up, its late finish is refused (fenced) and it deletes nothing.
    @Test func aStalledWorkerNeverOverwritesTheNextAttempt() async throws {
        let config = #"{"leaseSeconds": 3}"#
        let a = try ServerProcess(workers: 1, config: config)
        let token = try a.user("alice")
        let u1 = try await upload(a, token: token, path: img1, name: "a.tif"), u2 = try await upload(a, token: token, path: img2, name: "b.tif")
        let created = try await http("POST", "\(a.base)/processes/dsm-opt/execution", token: token,
                                     body: json(["images": [["upload": u1], ["upload": u2]], "parameters": ["roi": [0, 0, 1024, 1024], "resolution": 0.5]]))
        let id = try #require(created.json?["jobID"] as? String, "\(created.text)")
        _ = try await waitFor(a, token: token, job: id, states: ["running"])
        try await Task.sleep(nanoseconds: 500_000_000)
        // The first daemon stalls (its child runs on); a second one on the same store takes over.
        let stalled = try #require(a.process?.processIdentifier)
        kill(stalled, SIGSTOP)
        defer { kill(stalled, SIGCONT) }
        let b = try ServerProcess(workers: 1, config: nil, sharing: a.data)
        let j = try await waitFor(b, token: token, job: id, states: ["successful", "failed"], timeout: 240)
        #expect(j["status"] as? String == "successful" && j["attempts"] as? Int == 2, "\(j)")
        // The stalled worker wakes up: its finish is fenced off, the promoted results stay.
        kill(stalled, SIGCONT)
        try await Task.sleep(nanoseconds: 6_000_000_000)
        let after = try await http("GET", "\(b.base)/jobs/\(id)", token: token).json
        #expect(after?["status"] as? String == "successful" && after?["attempts"] as? Int == 2, "\(after ?? [:])")
        let dsm = try await http("HEAD", "\(b.base)/jobs/\(id)/results/dsm.tif", token: token)
        #expect(dsm.status == 200)
        #expect(FileManager.default.fileExists(atPath: a.data.path("jobs/\(id)/attempt-2/out/dsm.tif")))
        let log = try await http("GET", "\(b.base)/jobs/\(id)/logs", token: token).text
        #expect(log.contains("==> attempt 1") && log.contains("==> attempt 2 (results)"), "\(log.prefix(300))")
        a.stop(signal: SIGKILL)
    }

    /// An operator's `executable`: a wrapper around dsmopt whose job runs do `body` instead (a misbehaving run
    /// no real run produces on demand), having written "SHELL-PID CHILD-PID" of a `sleep 600` it starts to `pids`.
    func misbehavingRun(_ body: String, in scratch: TemporaryFolder) throws -> (wrapper: String, pids: String) {
        let wrapper = scratch.path("dsmopt-wrapper"), pids = scratch.path("pids")
        try """
            #!/bin/sh
            if [ "$1" = run ]; then
              prev=""; for a in "$@"; do [ "$prev" = --events ] && events=$a; prev=$a; done
              \(body)
              sleep 600 & echo "$$ $!" > \(pids)
              wait
              exit 0
            fi
            exec \(try dsmoptExecutable()) "$@"
            """.write(toFile: wrapper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper)
        return (wrapper, pids)
    }

    /// Whether the processes written to `pids` are gone (or zombies waiting for their reaper).
    func ended(_ pids: String) throws -> Bool {
        let both = try String(contentsOfFile: pids, encoding: .utf8).split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        return both.count == 2 && both.allSatisfy { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return true }
            return stat[stat.index(after: close)...].split(separator: " ").first == "Z"
        }
    }

    func submitPair(_ s: ServerProcess, token: String) async throws -> String {
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let created = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                                     body: json(["images": [["upload": u1], ["upload": u2]], "parameters": ["roi": [350, 350, 300, 300], "resolution": 1.0]]))
        return try #require(created.json?["jobID"] as? String, "\(created.text)")
    }

    /// A run that reports its end and then does not exit (stuck on its way out) is killed, with every process
    /// it started, 10 s later: the job ends with the reported error instead of holding its worker for ever.
    @Test func aRunStuckAfterReportingItsEndIsKilled() async throws {
        let scratch = try TemporaryFolder()
        let run = try misbehavingRun(#"printf '{"event":"failed","code":"internal","message":"stuck on the way out","cpuSeconds":0.2}\n' >> "$events""#, in: scratch)
        let s = try ServerProcess(workers: 1, config: #"{"executable": "\#(run.wrapper)"}"#)
        let token = try s.user("alice")
        let id = try await submitPair(s, token: token)
        let started = Date()
        let j = try await waitFor(s, token: token, job: id, states: ["failed", "successful"], timeout: 60)
        let waited = Date().timeIntervalSince(started)
        #expect(j["status"] as? String == "failed" && (j["error"] as? String ?? "").contains("stuck on the way out"), "\(j)")
        #expect(waited >= 10 && waited < 30, "ended \(waited) s after submission")
        let log = try await http("GET", "\(s.base)/jobs/\(id)/logs", token: token).text
        #expect(log.contains("reported its end but had not exited 10 s later; killed"), "\(log.suffix(400))")
        // The wrapper and the child it waited on are both gone (the run's process group was killed).
        #expect(try ended(run.pids))
        #expect(try await alive(s))
    }

    /// A run that uses no CPU for `stallSeconds` (here 3 s: a run waiting on nothing) is killed and its job
    /// fails with that reason.
    @Test func aStalledRunIsKilled() async throws {
        let scratch = try TemporaryFolder()
        let run = try misbehavingRun(":", in: scratch)
        let s = try ServerProcess(workers: 1, config: #"{"executable": "\#(run.wrapper)", "stallSeconds": 3}"#)
        let token = try s.user("alice")
        let id = try await submitPair(s, token: token)
        let started = Date()
        let j = try await waitFor(s, token: token, job: id, states: ["failed", "successful"], timeout: 60)
        let waited = Date().timeIntervalSince(started)
        #expect(j["status"] as? String == "failed" && j["error"] as? String == "stopped: the run used no CPU for 3 s (stalled)", "\(j)")
        #expect(waited >= 3 && waited < 20, "ended \(waited) s after submission")
        #expect(try ended(run.pids))
        #expect(try await alive(s))
    }

    /// Cancelling a run that ignores SIGTERM: SIGKILL follows 3 s later, to its whole process group.
    @Test func aRunIgnoringSIGTERMIsKilledWhenCancelled() async throws {
        let scratch = try TemporaryFolder()
        let run = try misbehavingRun("trap '' TERM", in: scratch)
        let s = try ServerProcess(workers: 1, config: #"{"executable": "\#(run.wrapper)"}"#)
        let token = try s.user("alice")
        let id = try await submitPair(s, token: token)
        _ = try await waitFor(s, token: token, job: id, states: ["running"])
        while !FileManager.default.fileExists(atPath: run.pids) { try await Task.sleep(nanoseconds: 100_000_000) }
        #expect(try await http("DELETE", "\(s.base)/jobs/\(id)", token: token).status == 202)
        let start = Date()
        let j = try await waitFor(s, token: token, job: id, states: ["dismissed", "successful", "failed"], timeout: 30)
        let waited = Date().timeIntervalSince(start)
        #expect(j["status"] as? String == "dismissed", "\(j)")
        // Seen at the next heartbeat (≤ 2 s), SIGTERM ignored, SIGKILL 3 s later.
        #expect(waited >= 3 && waited < 8, "dismissed \(waited) s after the request")
        #expect(try ended(run.pids))
        #expect(try await alive(s))
    }

    /// A job whose worker keeps dying fails after `maxAttempts`, with the reason.
    @Test func attemptsAreCapped() async throws {
        let s = try ServerProcess(workers: 1, config: #"{"leaseSeconds": 3, "maxAttempts": 1}"#)
        let token = try s.user("alice")
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let id = try #require(try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                                             body: json(["images": [["upload": u1], ["upload": u2]], "parameters": ["roi": [0, 0, 1024, 1024], "resolution": 0.5]])).json?["jobID"] as? String)
        _ = try await waitFor(s, token: token, job: id, states: ["running"])
        s.stop(signal: SIGKILL)
        try s.start()
        let j = try await waitFor(s, token: token, job: id, states: ["failed", "successful"], timeout: 60)
        #expect(j["status"] as? String == "failed" && (j["error"] as? String ?? "").contains("worker stopped responding"), "\(j)")
    }

    /// Housekeeping runs without workers too: orphaned job folders and abandoned uploads are swept, fresh
    /// ones are left alone.
    @Test func housekeepingSweepsOrphans() async throws {
        let s = try ServerProcess(workers: 0, config: #"{"sweepSeconds": 1, "orphanAgeSeconds": 3600}"#)
        let fm = FileManager.default
        let old = Date().addingTimeInterval(-7200)
        for dir in ["jobs/orphan-job/attempt-1/out", "uploads/abandoned", "jobs/fresh-job", "uploads/fresh"] {
            try fm.createDirectory(atPath: s.data.path(dir), withIntermediateDirectories: true)
        }
        try Data("x".utf8).write(to: URL(fileURLWithPath: s.data.path("uploads/abandoned/a.tif.part")))
        for dir in ["jobs/orphan-job", "uploads/abandoned"] { try fm.setAttributes([.modificationDate: old], ofItemAtPath: s.data.path(dir)) }
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, fm.fileExists(atPath: s.data.path("jobs/orphan-job")) || fm.fileExists(atPath: s.data.path("uploads/abandoned")) {
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        #expect(!fm.fileExists(atPath: s.data.path("jobs/orphan-job")) && !fm.fileExists(atPath: s.data.path("uploads/abandoned")))
        #expect(fm.fileExists(atPath: s.data.path("jobs/fresh-job")) && fm.fileExists(atPath: s.data.path("uploads/fresh")))
    }

    /// Files users send are opened with the input drivers only, by a child process: a VRT is refused at
    /// upload, a VRT disguised as a GeoTIFF is not interpreted, a DIMAP product naming files outside its
    /// folder is refused; the API stays up and no message names a server path.
    @Test func untrustedFilesAreNeverInterpreted() async throws {
        let s = try ServerProcess(workers: 0)
        let token = try s.user("eve")
        let tmp = try TemporaryFolder()
        let vrt = #"<?xml version="1.0"?><VRTDataset rasterXSize="10" rasterYSize="10"><VRTRasterBand dataType="Byte" band="1"><SimpleSource><SourceFilename>/etc/hosts</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>"#
        try vrt.write(toFile: tmp.path("evil.vrt"), atomically: true, encoding: .utf8)
        let plainVRT = try await http("POST", "\(s.base)/uploads?name=evil.xml", token: token, body: Data(vrt.utf8))
        #expect(plainVRT.status == 415, "\(plainVRT.text)")
        // Inside zips, where the upload's signature check cannot see them.
        let f = TestData.fixture("synthetic-pair")
        let delivery = tmp.path("deliv")
        let made = try run(try dsmoptExecutable(), ["make-delivery", "\(f)/view_2.tif", "--out", delivery, "--tiles", "1x1"])
        #expect(made.status == 0, "\(made.stderr)")
        let zipped = try python(#"""
            import glob, re, zipfile
            d = "\#(delivery)"
            dim = glob.glob(d + "/PROD_1_PAN/DIM_*.XML")[0]
            text = open(dim).read()
            z = zipfile.ZipFile("\#(tmp.path("escape.zip"))", "w")
            z.writestr("PROD/" + dim.split("/")[-1], re.sub(r'DATA_FILE_PATH href="[^"]+"', 'DATA_FILE_PATH href="../../../../../etc/hosts"', text))
            for other in glob.glob(d + "/PROD_1_PAN/RPC_*.XML"): z.write(other, "PROD/" + other.split("/")[-1])
            z.close()
            z = zipfile.ZipFile("\#(tmp.path("disguised.zip"))", "w"); z.writestr("PROD/image.tif", open("\#(tmp.path("evil.vrt"))").read()); z.close()
            """#)
        #expect(zipped.status == 0, "\(zipped.stderr)")
        let plain = try await upload(s, token: token, path: "\(f)/view_1.tif", name: "view_1.tif")
        for (file, fragment) in [("escape.zip", "outside the product's folder"), ("disguised.zip", "not a raster image")] {
            let u = try await upload(s, token: token, path: tmp.path(file), name: file)
            let r = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                                   body: json(["images": [["upload": plain], ["upload": u]]]))
            #expect(r.status == 422 && r.text.contains(fragment), "\(file): \(r.status) \(r.text)")
            #expect(!r.text.contains(s.data.url.path), "\(file): a server path leaked: \(r.text)")
            #expect(try await alive(s))
        }
    }

    /// `dsmopt admin backup` copies the embedded store while the daemon runs a job (its worker writing
    /// heartbeats): the copy passes its integrity check and never overwrites a file; restored with the data
    /// folder copied after it, a daemon serves the user, the finished job and its products. A PostgreSQL store
    /// is sent to pg_dump.
    @Test func theStoreIsBackedUpWhileTheServiceRuns() async throws {
        let s = try ServerProcess(workers: 1)
        let token = try s.user("dora")
        let id = try await submitPair(s, token: token)
        _ = try await waitFor(s, token: token, job: id, states: ["running", "successful"])
        let exe = try dsmoptExecutable()
        let copies = try TemporaryFolder()
        var summaries: [[String: Any]] = []
        for k in 0..<3 {
            let r = try run(exe, ["admin", "--data", s.data.url.path, "backup", "--to", copies.path("b\(k).sqlite")])
            #expect(r.status == 0, "\(r.stderr)")
            summaries.append(try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)"))
        }
        #expect(summaries.allSatisfy { $0["integrity"] as? String == "ok" && $0["users"] as? Int == 1 && $0["jobs"] as? Int == 1 && $0["uploads"] as? Int == 2 },
                "\(summaries)")
        let done = try await waitFor(s, token: token, job: id, states: ["successful", "failed"])
        #expect(done["status"] as? String == "successful", "\(done)")
        let last = copies.path("last.sqlite")
        #expect(try run(exe, ["admin", "--data", s.data.url.path, "backup", "--to", last]).status == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: last))
        let again = try run(exe, ["admin", "--data", s.data.url.path, "backup", "--to", last])
        #expect(again.status == 2 && again.stderr.contains("never overwrites"), "\(again.status) \(again.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: last)) == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: copies.url.path).sorted() == ["b0.sqlite", "b1.sqlite", "b2.sqlite", "last.sqlite"])
        let dsm = try await http("GET", "\(s.base)/jobs/\(id)/results/dsm.tif", token: token)
        #expect(dsm.status == 200)

        // Restored: the backup as the store of a new data folder, with the uploads and results copied.
        let restored = try TemporaryFolder()
        try FileManager.default.copyItem(atPath: last, toPath: restored.path("dsmopt.sqlite"))
        for folder in ["uploads", "jobs"] { try FileManager.default.copyItem(atPath: s.data.path(folder), toPath: restored.path(folder)) }
        s.stop(signal: SIGKILL)
        let t = try ServerProcess(workers: 0, sharing: restored)
        let job = try await http("GET", "\(t.base)/jobs/\(id)", token: token)
        #expect(job.status == 200 && job.json?["status"] as? String == "successful", "\(job.text)")
        let copy = try await http("GET", "\(t.base)/jobs/\(id)/results/dsm.tif", token: token)
        #expect(copy.status == 200 && copy.body == dsm.body, "\(copy.status): \(copy.body.count) bytes, \(dsm.body.count) before")
        let uploads = try await http("GET", "\(t.base)/uploads", token: token)
        #expect(uploads.status == 200 && (uploads.json?["uploads"] as? [Any])?.count == 2, "\(uploads.text.prefix(300))")

        let pg = try TemporaryFolder()
        try #"{"store": "postgresql://dsmopt@127.0.0.1:1/dsmopt"}"#.write(toFile: pg.path("dsmopt.json"), atomically: true, encoding: .utf8)
        let refused = try run(exe, ["admin", "--data", pg.url.path, "backup", "--to", copies.path("pg.sqlite")])
        #expect(refused.status == 2 && refused.stderr.contains("pg_dump"), "\(refused.status) \(refused.stderr)")
    }
}
