import Foundation

/// In-process metrics exposed as Prometheus text at `/metrics`: HTTP latencies per route, pipeline stage
/// durations (from this process's workers: a job's stages in one process; for a job spread over workers,
/// each claim of tile tasks under its stage and the coordinator's plan, offsets and products steps), tiles
/// finished; job counts and queue length come from the store at scrape time.
public final class ServiceMetrics: @unchecked Sendable {
    private let lock = NSLock()
    static let buckets: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    private struct Histogram { var counts = [Int](repeating: 0, count: ServiceMetrics.buckets.count); var sum = 0.0; var count = 0 }
    private var http: [String: Histogram] = [:]
    private var stages: [String: (sum: Double, count: Int)] = [:]
    private var requests: [String: Int] = [:]
    private var tiles: [String: (count: Int, cpu: Double)] = [:]
    private var purgeReminders = (sent: 0, failed: 0)

    public init() {}

    func observeRequest(method: String, route: String, status: Int, seconds: Double) {
        lock.withLock {
            let key = "method=\"\(method)\",route=\"\(route)\""
            var h = http[key] ?? Histogram()
            for (i, b) in Self.buckets.enumerated() where seconds <= b { h.counts[i] += 1 }
            h.sum += seconds; h.count += 1
            http[key] = h
            requests["method=\"\(method)\",route=\"\(route)\",status=\"\(status)\"", default: 0] += 1
        }
    }

    func observeStage(_ stage: String, seconds: Double) {
        lock.withLock {
            var s = stages[stage] ?? (0, 0)
            s.sum += seconds; s.count += 1
            stages[stage] = s
        }
    }

    /// Tiles of a job spread over workers, finished by this process's workers (one claim's tiles and their CPU).
    func observeTiles(_ stage: String, count: Int, cpuSeconds: Double) {
        lock.withLock {
            var t = tiles[stage] ?? (0, 0)
            t.count += count; t.cpu += cpuSeconds
            tiles[stage] = t
        }
    }

    /// An attempt of this process at a purge reminder (`PurgeReminderSender`): sent, or not (refused for good, or
    /// tried again later while the results are kept).
    func observePurgeReminder(sent: Bool) {
        lock.withLock {
            if sent { purgeReminders.sent += 1 } else { purgeReminders.failed += 1 }
        }
    }

    /// A label value as Prometheus' text format escapes it (backslash, double quote, line feed).
    static func labelValue(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// `invalidPresets`: the presets whose file in the data folder is invalid now (an operator's edit; jobs
    /// naming them are refused) — one series each, to alert on.
    /// `deliveries`: callbacks and mails of ended jobs by state (`Store.deliveryCounts`): `failed` ones rising,
    /// or `pending` ones piling up, say that a subscriber or the mail server is not taking them.
    func render(jobCounts: [JobStatus: Int], deliveries: [DeliveryChannel: [DeliveryState.State: Int]], invalidPresets: [String] = []) -> String {
        lock.withLock {
            var out = "# HELP dsmopt_jobs Jobs by state.\n# TYPE dsmopt_jobs gauge\n"
            for s in JobStatus.allCases { out += "dsmopt_jobs{state=\"\(s.rawValue)\"} \(jobCounts[s] ?? 0)\n" }
            out += "# HELP dsmopt_deliveries Callbacks, mails and purge reminders of the ended jobs still on record, by state (pending: not delivered yet, retried).\n# TYPE dsmopt_deliveries gauge\n"
            for c in DeliveryChannel.allCases {
                for s in DeliveryState.State.allCases { out += "dsmopt_deliveries{channel=\"\(c.rawValue)\",state=\"\(s.rawValue)\"} \(deliveries[c]?[s] ?? 0)\n" }
            }
            out += "# HELP dsmopt_purge_reminders_total Attempts of this process at mailing owners a reminder of a purge date (failed: refused or unreachable; tried again as the end mail is, see dsmopt_deliveries{channel=\"reminder\"}).\n# TYPE dsmopt_purge_reminders_total counter\n"
            out += "dsmopt_purge_reminders_total{outcome=\"sent\"} \(purgeReminders.sent)\ndsmopt_purge_reminders_total{outcome=\"failed\"} \(purgeReminders.failed)\n"
            out += "# HELP dsmopt_presets_invalid Preset files of the data folder that are invalid (jobs naming them are refused until they are mended).\n# TYPE dsmopt_presets_invalid gauge\n"
            out += "dsmopt_presets_invalid \(invalidPresets.count)\n"
            for name in invalidPresets.sorted() { out += "dsmopt_preset_invalid{preset=\"\(Self.labelValue(name))\"} 1\n" }
            out += "# HELP dsmopt_queue_length Jobs accepted and waiting for a worker.\n# TYPE dsmopt_queue_length gauge\n"
            out += "dsmopt_queue_length \(jobCounts[.accepted] ?? 0)\n"
            out += "# HELP dsmopt_stage_seconds Time spent in each pipeline stage by this process's workers.\n# TYPE dsmopt_stage_seconds summary\n"
            for (k, v) in stages.sorted(by: { $0.key < $1.key }) {
                out += "dsmopt_stage_seconds_sum{stage=\"\(k)\"} \(v.sum)\ndsmopt_stage_seconds_count{stage=\"\(k)\"} \(v.count)\n"
            }
            out += "# HELP dsmopt_tiles_total Tiles of jobs spread over workers (tile tasks) finished by this process's workers.\n# TYPE dsmopt_tiles_total counter\n"
            for (k, v) in tiles.sorted(by: { $0.key < $1.key }) { out += "dsmopt_tiles_total{stage=\"\(k)\"} \(v.count)\n" }
            out += "# HELP dsmopt_tile_cpu_seconds_total CPU seconds of those tiles.\n# TYPE dsmopt_tile_cpu_seconds_total counter\n"
            for (k, v) in tiles.sorted(by: { $0.key < $1.key }) { out += "dsmopt_tile_cpu_seconds_total{stage=\"\(k)\"} \(v.cpu)\n" }
            out += "# HELP dsmopt_http_requests_total HTTP requests by route and status.\n# TYPE dsmopt_http_requests_total counter\n"
            for (k, v) in requests.sorted(by: { $0.key < $1.key }) { out += "dsmopt_http_requests_total{\(k)} \(v)\n" }
            out += "# HELP dsmopt_http_request_duration_seconds HTTP request latency.\n# TYPE dsmopt_http_request_duration_seconds histogram\n"
            for (k, h) in http.sorted(by: { $0.key < $1.key }) {
                for (i, b) in Self.buckets.enumerated() { out += "dsmopt_http_request_duration_seconds_bucket{\(k),le=\"\(b)\"} \(h.counts[i])\n" }
                out += "dsmopt_http_request_duration_seconds_bucket{\(k),le=\"+Inf\"} \(h.count)\n"
                out += "dsmopt_http_request_duration_seconds_sum{\(k)} \(h.sum)\ndsmopt_http_request_duration_seconds_count{\(k)} \(h.count)\n"
            }
            return out
        }
    }
}
