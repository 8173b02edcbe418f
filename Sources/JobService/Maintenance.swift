import Foundation
import ServiceLifecycle

/// The service's housekeeping, run by every `serve` (workers or not) and `worker` process; every step is
/// idempotent, so several processes sharing a store may run it at once.
/// - re-queues jobs whose worker stopped heart-beating (or fails them after `maxAttempts`);
/// - purges results past their retention, and marks them purged only once they are gone (a failed
///   deletion is retried on the next round);
/// - deletes job records (and their logs) a grace period after their results were purged;
/// - sweeps what nothing refers to: job folders without a job, upload folders without an upload (abandoned
///   `.part` files), and the run folders of attempts that were not promoted, once their job has ended.
public final class Maintenance: Service, @unchecked Sendable {
    let store: JobStore
    let config: ServiceConfiguration
    /// Seconds between sweeps of the folders (the queue and the purge run every second).
    let sweepInterval: Double
    /// Folders younger than this are never swept (an upload or a job being created right now).
    let sweepAge: Double

    public init(store: JobStore, config: ServiceConfiguration, sweepInterval: Double = 60, sweepAge: Double = 600) {
        self.store = store
        self.config = config
        self.sweepInterval = sweepInterval
        self.sweepAge = sweepAge
    }

    public func run() async throws {
        var lastSweep = Date.distantPast
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let now = Date()
            if let ids = try? await store.requeueExpired(now: now, maxAttempts: config.maxAttempts), !ids.isEmpty {
                log("re-queued (or failed after \(config.maxAttempts) attempts) \(ids.count) job(s) whose worker stopped: \(ids.joined(separator: ", "))")
            }
            if let n = try? await store.requeueExpiredTasks(now: now, maxAttempts: config.maxAttempts), n > 0 {
                log("re-queued (or failed after \(config.maxAttempts) attempts) \(n) tile task(s) whose worker stopped")
            }
            await purgeResults(now: now)
            if now.timeIntervalSince(lastSweep) >= sweepInterval {
                await deleteOldRecords(now: now)
                await sweep(now: now)
                lastSweep = now
            }
            try? await Task.sleep(nanoseconds: 1_000_000_000)
        }
    }

    func log(_ s: String) { FileHandle.standardError.write(Data("dsmopt: \(s)\n".utf8)) }

    /// Removes a folder; true when it is gone (or was never there).
    func remove(_ path: String) -> Bool {
        let fm = FileManager.default
        if !fm.fileExists(atPath: path) { return true }
        do { try fm.removeItem(atPath: path); return true } catch {
            log("cannot delete \(path): \(error) (retried later)")
            return false
        }
    }

    func purgeResults(now: Date) async {
        for job in (try? await store.jobsToPurge(now: now)) ?? [] {
            // Every run folder of the job (the promoted one and any left by other attempts); logs stay until
            // the record goes.
            let folders = (1...max(1, job.attempts)).map { config.runDirectory(job.id, $0) }
            if folders.map(remove).allSatisfy({ $0 }) { try? await store.markPurged(jobId: job.id) }
        }
    }

    func deleteOldRecords(now: Date) async {
        guard let ids = try? await store.deleteJobRecords(purgedBefore: now.addingTimeInterval(-config.jobRecordSeconds)) else { return }
        for id in ids { _ = remove(config.jobDirectory(id)) }  // what fails here, the orphan sweep retries
    }

    func age(_ path: String, now: Date) -> Double {
        let m = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
        return m.map { now.timeIntervalSince($0) } ?? 0
    }

    func sweep(now: Date) async {
        let fm = FileManager.default
        if let jobs = try? await store.allJobIds(), let folders = try? fm.contentsOfDirectory(atPath: config.jobsDirectory) {
            for f in folders {
                let path = config.jobDirectory(f)
                guard let jobId = jobs.contains(f) ? f : nil else {
                    if age(path, now: now) > sweepAge { _ = remove(path) }
                    continue
                }
                guard let job = try? await store.job(id: jobId), [.successful, .failed, .dismissed].contains(job.status) else { continue }
                // Inputs linked at submission, of a job that ended without its worker removing them (dismissed
                // while queued, refused).
                _ = remove(config.inputsDirectory(jobId))
                // Attempts that were not promoted, once the job has ended: nothing will resume from them.
                guard job.attempts > 0 else { continue }
                for a in 1...job.attempts where a != job.resultAttempt { _ = remove(config.runDirectory(jobId, a)) }
            }
        }
        if let uploads = try? await store.allUploadIds(), let folders = try? fm.contentsOfDirectory(atPath: config.uploadsDirectory) {
            for f in folders where !uploads.contains(f) {
                let path = (config.uploadsDirectory as NSString).appendingPathComponent(f)
                if age(path, now: now) > sweepAge { _ = remove(path) }
            }
        }
        // Catalogue folders without a publication: a publication that crashed before it was recorded, or a
        // withdrawal that could not delete its files.
        if let items = try? await store.allPublicationIds(), let folders = try? fm.contentsOfDirectory(atPath: config.catalogueDirectory) {
            for f in folders where !items.contains(f) {
                let path = (config.catalogueDirectory as NSString).appendingPathComponent(f)
                if age(path, now: now) > sweepAge { _ = remove(path) }
            }
        }
    }
}
