import DSMPipeline
import Foundation

/// Why a job cannot be published (mapped to HTTP at the API's edge).
public enum PublishError: Error, Equatable, CustomStringConvertible {
    case notSuccessful(jobId: String, status: String)
    case purged(jobId: String)
    /// Results written before the catalogue existed carry no STAC item.
    case noItem(jobId: String)
    case storage(String)

    public var description: String {
        switch self {
        case .notSuccessful(let id, let s): return "job \(id) cannot be published: only a successful job's products can (status \(s))"
        case .purged(let id): return "job \(id) cannot be published: its results were purged after the retention period"
        case .noItem(let id): return "job \(id) cannot be published: its results predate the catalogue (no item.json); run the job again"
        case .storage(let m): return "the products could not be copied into the catalogue: \(m)"
        }
    }
}

/// The DSM catalogue: published jobs' products in catalogue storage (`DATA/catalogue/<job id>/`, never
/// touched by the job purge), one STAC item each in the `dsm-opt` collection.
///
/// Storage policy: publishing links the job's files (hard links; a copy across file systems), so it costs
/// no extra disk while the job's results exist. The published bytes count against the job owner's storage
/// quota from then on — in place of the job's results, never twice — including after the job's purge date,
/// until the item is withdrawn (by its owner, an operator or an admin).
public struct Catalogue: Sendable {
    public static let collectionId = "dsm-opt"
    public static let license = "CC-BY-NC-4.0"
    let store: JobStore
    let config: ServiceConfiguration

    public init(store: JobStore, config: ServiceConfiguration) { self.store = store; self.config = config }

    func folder(_ id: String) -> String { (config.catalogueDirectory as NSString).appendingPathComponent(id) }

    /// Publishes a successful job's products; returns the publication and whether it is new (a job already
    /// published is returned as it is).
    public func publish(job: Job, by user: User, now: Date = Date()) async throws -> (Publication, created: Bool) {
        if let p = try await store.publication(id: job.id) { return (p, false) }
        guard job.status == .successful else { throw PublishError.notSuccessful(jobId: job.id, status: job.status.rawValue) }
        guard !job.purged, let results = config.resultsDirectory(job) else { throw PublishError.purged(jobId: job.id) }
        let itemPath = (results as NSString).appendingPathComponent("item.json")
        guard let data = FileManager.default.contents(atPath: itemPath),
              var item = try? JSONSerialization.jsonObject(with: data) as? [String: Any], var props = item["properties"] as? [String: Any],
              let bbox = item["bbox"] as? [Double], bbox.count == 4 else { throw PublishError.noItem(jobId: job.id) }
        let fm = FileManager.default
        let staging = (config.catalogueDirectory as NSString).appendingPathComponent(".publishing-\(job.id)-\(UUID().uuidString.prefix(8))")
        var bytes: Int64 = 0
        do {
            try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
            for name in try fm.contentsOfDirectory(atPath: results) where !name.hasPrefix(".") {
                let src = (results as NSString).appendingPathComponent(name), dst = (staging as NSString).appendingPathComponent(name)
                var isDir: ObjCBool = false
                guard fm.fileExists(atPath: src, isDirectory: &isDir), !isDir.boolValue else { continue }
                try linkOrCopy(src, dst)
                bytes += ((try fm.attributesOfItem(atPath: dst))[.size] as? NSNumber)?.int64Value ?? 0
            }
            // The job's zip index: its CRC-32s stand for the files linked here (the same size and time), so the
            // item's zip starts at once; a file copied instead, and the item's own item.json, are read at its
            // first download.
            try? fm.copyItem(atPath: (results as NSString).appendingPathComponent(ResultsArchive.indexName),
                             toPath: (staging as NSString).appendingPathComponent(ResultsArchive.indexName))
            // The catalogue's item: the job's id and name, the licence, the collection. Written by rename, so
            // the job's own item.json (a hard link until then) is left as it was.
            item["id"] = job.id
            item["collection"] = Self.collectionId
            props["title"] = job.name
            props["license"] = Self.license
            props["dsmopt:published"] = STACItem.iso(now)
            item["properties"] = props
            let itemData = try JSONSerialization.data(withJSONObject: item, options: [.sortedKeys, .withoutEscapingSlashes])
            try itemData.write(to: URL(fileURLWithPath: (staging as NSString).appendingPathComponent("item.json")), options: .atomic)
            let target = folder(job.id)
            // Leftovers of a publication that crashed before it was recorded.
            if fm.fileExists(atPath: target), try await store.publication(id: job.id) == nil { try? fm.removeItem(atPath: target) }
            try fm.moveItem(atPath: staging, toPath: target)
            let times = Self.timeSpan(props)
            let p = Publication(id: job.id, ownerId: job.userId, publishedBy: user.id, publishedAt: now, bytes: bytes, bbox: bbox,
                                start: times.start, end: times.end, item: String(decoding: itemData, as: UTF8.self))
            do {
                if try await store.publish(p) { return (p, true) }
            } catch {
                try? fm.removeItem(atPath: target)
                throw error
            }
            // Published concurrently by another request: that publication stands.
            return (try await store.publication(id: job.id) ?? p, false)
        } catch let e as PublishError {
            try? fm.removeItem(atPath: staging)
            throw e
        } catch let e as CocoaError {
            try? fm.removeItem(atPath: staging)
            if let p = try await store.publication(id: job.id) { return (p, false) }
            throw PublishError.storage(e.localizedDescription.replacingOccurrences(of: config.dataDirectory, with: ""))
        } catch {
            try? fm.removeItem(atPath: staging)
            throw error
        }
    }

    /// Withdraws an item: its record, then its files.
    public func withdraw(id: String) async throws -> Publication? {
        guard let p = try await store.withdraw(id: id) else { return nil }
        try? FileManager.default.removeItem(atPath: folder(id))
        return p
    }

    static func timeSpan(_ props: [String: Any]) -> (start: Date?, end: Date?) {
        let dt = (props["datetime"] as? String).flatMap(STACItem.date)
        let s = (props["start_datetime"] as? String).flatMap(STACItem.date) ?? dt
        let e = (props["end_datetime"] as? String).flatMap(STACItem.date) ?? dt
        return (s, e)
    }
}
