import DSMPipeline
import Foundation
import ServiceLifecycle

/// Mails a job's owner when the job ends, as DSM-OPT does: its outcome, how long it ran, where its results
/// are and until when. A job gets a mail when its owner had an address (`PUT /me/email`) and the service a
/// mail server (`smtpURL`) at its submission; the job's row is the outbox (`DeliveryChannel.mail`), so
/// whichever process ends the job, any `serve` or `worker` process with a mail server sends the mail, at
/// least once, to the owner's address at that time. A job its owner dismissed is not mailed about.
public final class MailSender: Service, @unchecked Sendable {
    let store: JobStore
    let config: ServiceConfiguration
    let api: ServiceAPI
    let settings: SMTPSettings
    /// Longest the server may take over one reply.
    static let timeoutSeconds = 30.0
    /// Mails claimed per round.
    static let batch = 8

    public init(store: JobStore, config: ServiceConfiguration, api: ServiceAPI, settings: SMTPSettings) {
        self.store = store
        self.config = config
        self.api = api
        self.settings = settings
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await sendDue(now: Date())
            try? await Task.sleep(nanoseconds: 1_000_000_000)
        }
    }

    /// One round: the due mails, sent concurrently.
    func sendDue(now: Date) async {
        // A session has seven replies to wait for; the claim outlasts them all with a margin.
        guard let jobs = try? await store.claimDeliveries(.mail, now: now, leaseUntil: now.addingTimeInterval(8 * Self.timeoutSeconds + 5), limit: Self.batch),
              !jobs.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            for job in jobs { group.addTask { await self.send(job) } }
        }
    }

    func send(_ job: Job) async {
        let attempt = job.mail?.attempts ?? 1
        func record(_ state: DeliveryState.State, _ error: String?, retry: Date? = nil) async {
            try? await store.recordDelivery(.mail, jobId: job.id, attempt: attempt, state: state, error: error, nextAttempt: retry)
        }
        guard job.status != .dismissed else { return await record(.skipped, "dismissed: no mail") }
        guard let owner = try? await store.user(id: job.userId), let to = owner.email else {
            return await record(.skipped, "the owner has no email address any more")
        }
        let message = JobMail.message(job, owner: owner, to: to, from: config.mailSender, base: config.publicBase ?? "http://\(config.host):\(config.port)",
                                      results: job.status == .successful && !job.purged ? try? api.resultsDocument(job, base: config.publicBase ?? "http://\(config.host):\(config.port)") : nil)
        do {
            try await SMTPClient.send(message, settings: settings, timeout: Self.timeoutSeconds)
            await record(.delivered, nil)
        } catch {
            let e = error as? SMTPError ?? .connection(String(describing: error))
            var state: DeliveryState.State = e.permanent ? .failed : .pending
            var text = e.description
            if state == .pending && attempt >= config.mailAttempts {
                state = .failed
                text += " (attempt \(attempt) of \(config.mailAttempts): given up)"
            }
            let retry = state == .pending ? Date().addingTimeInterval(min(3600, config.mailRetrySeconds * pow(2, Double(attempt - 1)))) : nil
            await record(state, text, retry: retry)
            FileHandle.standardError.write(Data("dsmopt: mail about job \(job.id), attempt \(attempt): \(text)\(retry.map { " (next attempt at \(ISO8601DateFormatter().string(from: $0)))" } ?? "")\n".utf8))
        }
    }
}

/// What the mail about an ended job says.
enum JobMail {
    static func message(_ job: Job, owner: User, to: String, from: String, base: String, results: [String: Any]?) -> MailMessage {
        let outcome = job.status == .successful ? "finished" : job.status.rawValue
        let subject = "[dsmopt] \(job.name): \(outcome)"
        var lines = ["Hello \(owner.name),", ""]
        let ran = duration(from: job.startedAt, to: job.finishedAt)
        switch job.status {
        case .successful:
            lines.append("your job \"\(job.name)\" (\(job.id)) finished successfully\(ran.map { " after \($0)" } ?? "") (\(cpu(job.cpuSeconds))).")
        default:
            lines.append("your job \"\(job.name)\" (\(job.id)) failed\(ran.map { " after \($0)" } ?? "").")
            if let e = job.error { lines += ["", "Reason: \(e)"] }
        }
        lines += ["", "Status: \(base)/jobs/\(job.id)", "In the portal: \(base)/#/job/\(job.id)"]
        if job.status == .successful {
            if let purge = job.purgeAt { lines += ["", "Its results are kept until \(stamp(purge)); download what you need before then."] }
            if let results, !results.isEmpty {
                lines += ["", "Results:"]
                var links: [(String, String)] = []
                for (key, value) in results {
                    for link in (value as? [[String: Any]]) ?? [value as? [String: Any]].compactMap({ $0 }) {
                        if let href = link["href"] as? String { links.append(((link["title"] as? String) ?? key, href)) }
                    }
                }
                for (title, href) in links.sorted(by: { $0.1 < $1.1 }) { lines.append("- \(title): \(href)") }
            }
        } else {
            lines += ["", "Its log: \(base)/jobs/\(job.id)/logs"]
        }
        lines += ["", "Requests to the API need your token (Authorization: Bearer …), as in the portal.", "", "-- ",
                  "dsmopt \(Provenance.Software.currentVersion), DSM service. You get this mail because your account",
                  "has an email address; DELETE /me/email stops it."]
        let domain = from.split(separator: "@").last.map(String.init) ?? "localhost"
        return MailMessage(from: from, to: to, subject: subject, body: lines.joined(separator: "\n"),
                           messageID: "\(job.id).\(job.status.rawValue)@\(domain)")
    }

    static func duration(from start: Date?, to end: Date?) -> String? {
        guard let start, let end, end >= start else { return nil }
        let s = Int(end.timeIntervalSince(start).rounded())
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        return "\(s / 3600) h \((s % 3600) / 60) min"
    }

    static func cpu(_ seconds: Double) -> String {
        seconds < 3600 ? String(format: "%.1f CPU-s", seconds) : String(format: "%.2f CPU-h", seconds / 3600)
    }

    static func stamp(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm 'UTC'"
        return f.string(from: date)
    }
}
