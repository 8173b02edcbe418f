import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import DSMPipeline
import JobService
import TestSupport
import Testing

/// Several processes on one PostgreSQL store and one shared data folder, as several machines would be:
/// an API without workers, and workers that come and go.
@Suite(.serialized) struct ScaleOutTests {
    /// A worker on the data folder; with `host`, inside that network namespace, reaching the store `url`
    /// through the namespace's link.
    func worker(_ data: TemporaryFolder, slots: Int, on host: NetworkHost? = nil, store url: String? = nil) throws -> Process {
        let arguments = ["worker", "--data", data.url.path, "--slots", "\(slots)"] + (host.flatMap { h in url.map { ["--store", h.storeURL($0)] } } ?? [])
        let p: Process
        if let host {
            p = host.process(try dsmoptExecutable(), arguments)
        } else {
            p = Process()
            p.executableURL = URL(fileURLWithPath: try dsmoptExecutable())
            p.arguments = arguments
        }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// Uploads the La Réunion pair for `token`; returns a function that submits a job of it (region, cell size,
    /// no orthos) and returns the job's id.
    func pairSubmitter(_ s: ServerProcess, token: String) async throws -> ([Int], Double) async throws -> String {
        let img1 = try TestData.path("pleiades/reunion-pair/img_01.tif"), img2 = try TestData.path("pleiades/reunion-pair/img_02.tif")
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        return { roi, resolution in
            let r = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                                   body: json(["images": [["upload": u1], ["upload": u2]], "parameters": ["roi": roi, "resolution": resolution, "orthos": false]]))
            return try #require(r.json?["jobID"] as? String, "\(r.text)")
        }
    }

    /// A worker on a machine without the shared data folder fails the job it claims with a message naming
    /// the missing input (not a hang, not a crash); a worker of another dsmopt version refuses a job.
    @Test func workersRefuseJobsTheyCannotRunFaithfully() async throws {
        let url = try StoreKind.newDatabase(prefix: "r_")
        let s = try ServerProcess(workers: 0, config: #"{"leaseSeconds": 3, "store": "\#(url)"}"#)
        let token = try s.user("alice")
        let img1 = try TestData.path("pleiades/reunion-pair/img_01.tif"), img2 = try TestData.path("pleiades/reunion-pair/img_02.tif")
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let r = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                               body: json(["images": [["upload": u1], ["upload": u2]], "parameters": ["roi": [350, 350, 300, 300], "resolution": 1.0]]))
        let id = try #require(r.json?["jobID"] as? String, "\(r.text)")
        // Another machine's data folder: same store, none of the shared files.
        let elsewhere = try TemporaryFolder()
        try #"{"leaseSeconds": 3, "store": "\#(url)"}"#.write(toFile: elsewhere.path("dsmopt.json"), atomically: true, encoding: .utf8)
        let stray = try worker(elsewhere, slots: 1)
        defer { kill(stray.processIdentifier, SIGKILL); stray.waitUntilExit() }
        let j = try await waitFor(s, token: token, job: id, states: ["failed", "successful"], timeout: 60)
        let error = j["error"] as? String ?? ""
        #expect(j["status"] as? String == "failed" && error.contains("cannot see the job's input uploads/\(u1)/a.tif")
                && error.contains("shared data folder") && !error.contains(s.data.url.path), "\(j)")
        kill(stray.processIdentifier, SIGKILL); stray.waitUntilExit()
        // A job accepted by another version (as a daemon of that version would have written it).
        let store = try await PostgresJobStore(url: url)
        var request: [String: Any] = ["images": [["upload": u1], ["upload": u2]]]
        request["acceptedBy"] = ["version": "0.1.0", "jobFormat": 1]
        request["resolvedImagePaths"] = [s.data.path("uploads/\(u1)/a.tif"), s.data.path("uploads/\(u2)/b.tif")]
        let users = try await store.users()
        let alice = try #require(users.first { $0.name == "alice" })
        let old = Job(id: UUID().uuidString.lowercased(), userId: alice.id, name: "old", request: String(decoding: try JSONSerialization.data(withJSONObject: request), as: UTF8.self), createdAt: Date())
        try await store.createJob(old, inputBytes: [], quota: alice.quota, now: Date())
        let local = try worker(s.data, slots: 1)
        defer { kill(local.processIdentifier, SIGKILL); local.waitUntilExit() }
        let o = try await waitFor(s, token: token, job: old.id, states: ["failed", "successful"], timeout: 60)
        #expect(o["status"] as? String == "failed" && (o["error"] as? String ?? "").contains("accepted by dsmopt 0.1.0"), "\(o)")
    }

    @Test func workersComeAndGoOnOneQueue() async throws {
        let url = try StoreKind.newDatabase(prefix: "s_")
        // serve, worker and admin all read the store from the data folder's config file.
        let s = try ServerProcess(workers: 0, config: #"{"leaseSeconds": 3, "store": "\#(url)"}"#)
        let token = try s.user("alice", quota: ["--max-concurrent-jobs", "3"])
        let submit = try await pairSubmitter(s, token: token)
        let long = try await submit([0, 0, 1024, 1024], 0.5)
        let short = try await submit([350, 350, 300, 300], 1.0)
        // The API alone runs nothing.
        try await Task.sleep(nanoseconds: 1_500_000_000)
        #expect(try await http("GET", "\(s.base)/jobs/\(long)", token: token).json?["status"] as? String == "accepted")
        // A first worker (one slot) takes the oldest job; it dies with it (kill -9).
        let a = try worker(s.data, slots: 1)
        _ = try await waitFor(s, token: token, job: long, states: ["running"], timeout: 60)
        try await Task.sleep(nanoseconds: 1_000_000_000)
        kill(a.processIdentifier, SIGKILL)
        a.waitUntilExit()
        // A second worker with two slots arrives: it re-queues the dead worker's job once its lease expires
        // and runs both jobs.
        let b = try worker(s.data, slots: 2)
        defer { b.terminate(); b.waitUntilExit() }
        let j1 = try await waitFor(s, token: token, job: long, states: ["successful", "failed"], timeout: 240)
        let j2 = try await waitFor(s, token: token, job: short, states: ["successful", "failed"], timeout: 240)
        #expect(j1["status"] as? String == "successful" && j1["attempts"] as? Int == 2, "\(j1)")
        #expect(j2["status"] as? String == "successful" && j2["attempts"] as? Int == 1, "\(j2)")
        // Both charged to Alice, results served by the API from the shared folder.
        #expect((j1["cpuSeconds"] as? Double ?? 0) > 0.5 && (j2["cpuSeconds"] as? Double ?? 0) > 0.1)
        #expect(try await http("HEAD", "\(s.base)/jobs/\(long)/results/dsm.tif", token: token).status == 200)
        // SIGTERM: the worker stops promptly.
        b.terminate()
        let t0 = Date()
        b.waitUntilExit()
        #expect(Date().timeIntervalSince(t0) < 10)
    }

    /// PostgreSQL restarted in the middle of a job (`pg_ctl restart -m fast`: every connection dropped): the
    /// API and the worker reconnect, the running job finishes in its first attempt, the queued one runs,
    /// and a job submitted after the restart runs too. Nothing lost, nothing run twice.
    @Test func postgresRestartMidJobLosesNothing() async throws {
        let dir = try #require(ProcessInfo.processInfo.environment["DSMOPT_TEST_POSTGRES_DIR"],
                               "DSMOPT_TEST_POSTGRES_DIR is not set: run scripts/test.sh (it starts the private cluster this test restarts)")
        let url = try StoreKind.newDatabase(prefix: "p_")
        let s = try ServerProcess(workers: 0, config: #"{"store": "\#(url)"}"#)
        let token = try s.user("alice", quota: ["--max-concurrent-jobs", "4"])
        let submit = try await pairSubmitter(s, token: token)
        let long = try await submit([0, 0, 1024, 1024], 0.5)
        let queued = try await submit([350, 350, 300, 300], 1.0)
        let w = try worker(s.data, slots: 1)
        defer { w.terminate(); w.waitUntilExit() }
        _ = try await waitFor(s, token: token, job: long, states: ["running"], timeout: 60)
        try await Task.sleep(nanoseconds: 1_000_000_000)
        // The restarted server must not inherit this process's pipes (their reader would never see their end):
        // every descriptor above 2 is closed and the standard ones go to /dev/null before the script runs.
        let script = TestData.packageRoot.appendingPathComponent("scripts/pg-cluster.sh").path
        let restart = try run("/bin/bash", ["-c", "for fd in $(ls /proc/$$/fd); do [ \"$fd\" -gt 2 ] && eval \"exec $fd>&-\" 2>/dev/null; done; "
                                                 + "exec bash '\(script)' restart '\(dir)' </dev/null >/dev/null 2>&1"], timeout: 120)
        #expect(restart.status == 0, "pg_ctl restart failed (see \(dir)/server.log)")
        // The API answers again (a new connection) within seconds.
        var answered = false
        for _ in 0..<60 where !answered {
            answered = (try? await http("GET", "\(s.base)/jobs/\(long)", token: token).status) == 200
            if !answered { try await Task.sleep(nanoseconds: 500_000_000) }
        }
        #expect(answered, "the API did not reconnect to PostgreSQL")
        let after = try await submit([500, 500, 200, 200], 1.0)
        for id in [long, queued, after] {
            let j = try await waitFor(s, token: token, job: id, states: ["successful", "failed"], timeout: 240)
            #expect(j["status"] as? String == "successful" && j["attempts"] as? Int == 1, "\(j)")
        }
        #expect(w.isRunning, "the worker survived the restart")
    }
}

extension ScaleOutTests {
    /// One tri-stereo job spread over 3 worker processes (separate processes sharing one data folder; the
    /// API runs none): every tile of every stage computed exactly once (counted in the store) by several
    /// workers, one of them killed with `kill -9` in the middle of a tile (claimed again after its lease, the
    /// job completes), and products byte-identical to a single-process run of the same job file.
    @Test func oneTripletOverThreeWorkers() async throws {
        let url = try StoreKind.newDatabase(prefix: "t_")
        let s = try ServerProcess(workers: 0, config: #"{"leaseSeconds": 4, "store": "\#(url)", "tileCells": 160}"#)
        let token = try s.user("alice")
        let d = "pleiades/marseille-triplet"
        var ids: [String] = []
        for (k, f) in ["img_02.tif", "img_01.tif", "img_03.tif"].enumerated() {
            ids.append(try await upload(s, token: token, path: try TestData.path("\(d)/\(f)"), name: "v\(k + 1).tif"))
        }
        let r = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                               body: json(["images": ids.map { ["upload": $0] }, "parameters": ["roi": [250, 250, 500, 500], "resolution": 0.5]]))
        let id = try #require(r.json?["jobID"] as? String, "\(r.text)")
        // Each worker in a network namespace of its own, as its own host, when `ip netns` can be used here.
        let (made, why) = NetworkHost.make(count: 3)
        let hosts = made ?? []
        defer { for h in hosts { h.remove() } }
        print(hosts.isEmpty ? "triplet over 3 workers: separate processes (no network namespaces: \(why))"
                            : "triplet over 3 workers: each in its own network namespace (\(hosts.map(\.namespace).joined(separator: ", ")))")
        var workers = try (0..<3).map { k in
            try hosts.isEmpty ? worker(s.data, slots: 1) : worker(s.data, slots: 1, on: hosts[k], store: url)
        }
        defer { for w in workers where w.isRunning { kill(w.processIdentifier, SIGKILL); w.waitUntilExit() } }
        let store = try await PostgresJobStore(url: url)
        // Kill a worker that is not the coordinator while it computes a match tile.
        var killed: (pid: Int32, tile: Int)?
        let t0 = Date()
        while killed == nil && Date().timeIntervalSince(t0) < 120 {
            // Worker names are HOST-PID-RANDOM-SLOT.
            func pid(_ name: String?) -> Int32? { name.flatMap { $0.split(separator: "-").dropLast(2).last.flatMap { Int32($0) } } }
            guard let coordinator = pid(try await store.job(id: id)?.worker) else { try await Task.sleep(nanoseconds: 100_000_000); continue }
            for t in try await store.tasks(jobId: id) where t.state == .running && t.stage == "match" {
                guard let w = pid(t.worker), w != coordinator, let p = workers.first(where: { $0.processIdentifier == w }) else { continue }
                try await Task.sleep(nanoseconds: 300_000_000)
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                killed = (p.processIdentifier, t.tile)
                break
            }
            if killed == nil { try await Task.sleep(nanoseconds: 100_000_000) }
        }
        let dead = try #require(killed, "no helper worker was seen running a match tile")
        workers.removeAll { $0.processIdentifier == dead.pid }
        let j = try await waitFor(s, token: token, job: id, states: ["successful", "failed"], timeout: 400)
        #expect(j["status"] as? String == "successful" && j["attempts"] as? Int == 1, "\(j)")
        // Every tile of every stage: done, completed once; the killed one after a second attempt.
        let tasks = try await store.tasks(jobId: id)
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: s.data.url.appendingPathComponent("jobs/\(id)/attempt-1/out/manifest.json"))) as? [String: Any])
        let tiling = try #require(manifest["tiling"] as? [String: Any])
        let tiles = try #require(tiling["tiles"] as? Int), rows = try #require(tiling["rows"] as? Int), columns = try #require(tiling["columns"] as? Int)
        #expect(tiles >= 6, "\(tiling)")
        // One task per block of neighbouring tiles (TileStage.taskBlock), every block done exactly once.
        for stage in [TileStage.match, .fuse, .ortho] {
            let these = tasks.filter { $0.stage == stage.rawValue }
            let (br, bc) = stage.taskBlock
            let blocks = ((rows + br - 1) / br) * ((columns + bc - 1) / bc)
            #expect(these.count == blocks && these.allSatisfy { $0.state == .done && $0.completions == 1 }, "\(stage): \(these)")
        }
        let redone = try #require(tasks.first { $0.stage == "match" && $0.tile == dead.tile })
        #expect(redone.attempts == 2 && redone.doneBy?.contains("-\(dead.pid)-") == false, "\(redone)")
        let pids = Set(tasks.compactMap { $0.doneBy?.split(separator: "-").dropLast(2).last })
        #expect(pids.count >= 2, "tiles done by \(pids)")
        if !hosts.isEmpty {
            // Worker names begin with their host's name: every tile was done by one of the namespaces' hosts.
            let names = Set(hosts.map(\.namespace))
            let doers = Set(tasks.compactMap { $0.doneBy.map { $0.split(separator: "-").dropLast(3).joined(separator: "-") } })
            #expect(doers.isSubset(of: names) && doers.count >= 2, "tiles done by hosts \(doers)")
        }
        print("triplet over 3 workers: \(tiles) tiles × 3 stages in \(tasks.count) tasks; tasks done per worker pid: "
              + Dictionary(grouping: tasks, by: { String($0.doneBy?.split(separator: "-").dropLast(2).last ?? "?") }).map { "\($0.key): \($0.value.count)" }.sorted().joined(separator: ", ")
              + "; worker \(dead.pid) killed during match task \(dead.tile) (redone in attempt \(redone.attempts)); job CPU \(j["cpuSeconds"] ?? "?") s")
        // Charged: the tiles' CPU and the coordinator's steps.
        #expect((j["cpuSeconds"] as? Double ?? 0) >= tasks.reduce(0) { $0 + $1.cpuSeconds } && tasks.allSatisfy { $0.cpuSeconds > 0 })
        // The same job file run by one process gives the same products, byte for byte.
        let single = try TemporaryFolder()
        let one = try run(try dsmoptExecutable(), ["run", "--job", s.data.path("jobs/\(id)/attempt-1/job.json"), "--out", single.path("out")], timeout: 400)
        #expect(one.status == 0, "\(one.stderr)")
        let products = try FileManager.default.contentsOfDirectory(atPath: s.data.path("jobs/\(id)/attempt-1/out")).filter { $0.hasSuffix(".tif") || $0.hasSuffix(".png") }
        #expect(products.count >= 10 && !products.contains { $0.contains(".part-") })
        for f in products {
            let a = try Data(contentsOf: s.data.url.appendingPathComponent("jobs/\(id)/attempt-1/out/\(f)"))
            let b = try Data(contentsOf: single.url.appendingPathComponent("out/\(f)"))
            #expect(a == b, "\(f) differs from the single-process run")
        }
    }
}

extension ScaleOutTests {
    /// Two API daemons on one PostgreSQL store and one data folder, 200 jobs submitted through both
    /// (alternately, 10 at a time), 4 worker processes: every job found in the store, every one successful
    /// in its first attempt, one attempt folder each — none lost, none run twice. The jobs are small
    /// multi-date differences (300 × 300 cells) so that the queue, not the maths, is what is exercised.
    @Test func twoAPIsFourWorkersTwoHundredJobs() async throws {
        let url = try StoreKind.newDatabase(prefix: "q_")
        let a = try ServerProcess(workers: 0, config: #"{"store": "\#(url)"}"#)
        let b = try ServerProcess(workers: 0, config: nil, sharing: a.data)
        let token = try a.user("alice", quota: ["--max-concurrent-jobs", "250"])
        let tmp = try TemporaryFolder()
        try writeChangePair(to: tmp.path("scenes"), size: 300, flowCentre: [150, 160], flowAxes: [60, 30])
        let ua = try await upload(a, token: token, path: tmp.path("scenes/dsm_a.tif"), name: "dsm_a.tif")
        let ub = try await upload(b, token: token, path: tmp.path("scenes/dsm_b.tif"), name: "dsm_b.tif")
        var ids: [String] = []
        for batch in 0..<20 {
            ids += try await withThrowingTaskGroup(of: String.self) { group in
                for k in 0..<10 {
                    let api = (batch * 10 + k) % 2 == 0 ? a : b
                    group.addTask {
                        let r = try await http("POST", "\(api.base)/processes/dsm-difference/execution", token: token,
                                               body: json(["dsms": [["upload": ua], ["upload": ub]]]), headers: ["Content-Type": "application/json"])
                        return try #require(r.json?["jobID"] as? String, "\(r.status) \(r.text)")
                    }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
        }
        #expect(ids.count == 200 && Set(ids).count == 200)
        var workers = try (0..<4).map { _ in try worker(a.data, slots: 1) }
        defer { for w in workers { w.terminate(); w.waitUntilExit() }; workers = [] }
        let store = try await PostgresJobStore(url: url)
        let t0 = Date()
        var counts: [JobStatus: Int] = [:]
        while Date().timeIntervalSince(t0) < 600 {
            counts = try await store.jobCounts()
            if (counts[.successful] ?? 0) + (counts[.failed] ?? 0) + (counts[.dismissed] ?? 0) >= 200 { break }
            try await Task.sleep(nanoseconds: 500_000_000)
        }
        print("two APIs, 4 workers: 200 jobs done in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s: \(counts)")
        #expect(counts[.successful] == 200, "\(counts)")
        for id in ids {
            let j = try #require(try await store.job(id: id), "job \(id) lost")
            #expect(j.status == .successful && j.attempts == 1 && j.resultAttempt == 1, "\(j)")
            let folders = try FileManager.default.contentsOfDirectory(atPath: a.data.path("jobs/\(id)")).filter { $0.hasPrefix("attempt-") }
            #expect(folders == ["attempt-1"], "\(id): \(folders)")
        }
        // Both APIs serve every job's results.
        #expect(try await http("HEAD", "\(b.base)/jobs/\(ids[0])/results/manifest.json", token: token).status == 200)
        #expect(try await http("HEAD", "\(a.base)/jobs/\(ids[199])/results/manifest.json", token: token).status == 200)
    }
}

/// The deployment files name commands and options that exist.
@Suite struct DeploymentFilesTests {
    @Test func deploymentFilesUseRealCommands() throws {
        let root = TestData.packageRoot.appendingPathComponent("deploy")
        let compose = try run("/usr/bin/python3", ["-c", """
            import json, yaml
            d = yaml.safe_load(open("\(root.path)/compose.yaml"))
            print(json.dumps({k: v.get("command") or v.get("entrypoint") for k, v in d["services"].items()}))
            """])
        #expect(compose.status == 0, "\(compose.stderr)")
        let services = try #require(try JSONSerialization.jsonObject(with: Data(compose.stdout.utf8)) as? [String: Any])
        #expect(Set(services.keys).isSuperset(of: ["postgres", "api", "worker"]))
        let exe = try dsmoptExecutable()
        let serveHelp = try run(exe, ["serve", "--help"]).stdout, workerHelp = try run(exe, ["worker", "--help"]).stdout
        #expect(serveHelp.contains("--workers") && serveHelp.contains("--store") && workerHelp.contains("--slots") && workerHelp.contains("--store"))
        for file in ["systemd/dsmopt-serve.service", "systemd/dsmopt-worker@.service", "slurm/dsmopt-workers.sbatch"] {
            let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
            #expect(text.contains("dsmopt serve") || text.contains(" worker --data"), "\(file)")
        }
        #expect(try run("/bin/bash", ["-n", root.appendingPathComponent("slurm/dsmopt-workers.sbatch").path]).status == 0)
    }
}
