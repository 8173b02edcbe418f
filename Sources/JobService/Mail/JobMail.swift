import DSMPipeline
import Foundation
import ServiceLifecycle

/// Mails a job's owner when the job ends, as DSM-OPT does: its outcome, how long it ran, where its results
/// are and until when. A job gets a mail when its owner had an address (`PUT /me/email`) and the service a
/// mail server (`smtpURL`) at its submission; the job's row is the outbox (`DeliveryChannel.mail`), so
/// whichever process ends the job, any `serve` or `worker` process with a mail server sends the mail, at
/// least once, to the owner's address at that time. A job its owner dismissed is not mailed about. Its loop
/// also sends the reminders of purge dates (`PurgeReminderSender`).
public final class MailSender: Service, DeliverySender, @unchecked Sendable {
    let store: JobStore
    let config: ServiceConfiguration
    let api: ServiceAPI
    let settings: SMTPSettings
    /// Longest the server may take over one reply.
    static let timeoutSeconds = 30.0
    let channel = DeliveryChannel.mail
    /// A session has seven replies to wait for; the claim outlasts them all with a margin.
    let claimSeconds = 8 * timeoutSeconds + 5
    let logName = "mail about"
    var attemptLimit: Int { config.mailAttempts }
    var retrySeconds: Double { config.mailRetrySeconds }

    public init(store: JobStore, config: ServiceConfiguration, api: ServiceAPI, settings: SMTPSettings) {
        self.store = store
        self.config = config
        self.api = api
        self.settings = settings
    }

    public func run() async throws {
        let reminders = PurgeReminderSender(mail: self)
        await sendUntilShutdown(alsoEachRound: { now in await reminders.queueAndSend(now: now) })
    }

    func send(_ job: Job) async {
        let attempt = job.mail?.attempts ?? 1
        guard job.status != .dismissed else {
            return await finishAttempt(job, attempt: attempt, state: .skipped, error: "dismissed: no mail")
        }
        guard let owner = try? await store.user(id: job.userId), let to = owner.email else {
            return await finishAttempt(job, attempt: attempt, state: .skipped, error: "the owner has no email address any more")
        }
        let (base, results, link) = await api.mailedResults(job, owner: owner, now: Date())
        let outcome = await deliver(JobMail.message(job, owner: owner, to: to, from: config.mailSender, base: base, results: results, link: link))
        await finishAttempt(job, attempt: attempt, state: outcome.state, error: outcome.error)
    }

    /// Sends `message`: delivered, or, by the server's answer, failed for good (5xx) or pending (tried again).
    func deliver(_ message: MailMessage) async -> (state: DeliveryState.State, error: String?) {
        do {
            try await SMTPClient.send(message, settings: settings, timeout: Self.timeoutSeconds)
            return (.delivered, nil)
        } catch {
            let e = error as? SMTPError ?? .connection(String(describing: error))
            return (e.permanent ? .failed : .pending, e.description)
        }
    }
}

/// The purge reminders (`DeliveryChannel.reminder`), sent by the mail sender's loop after the end mails: the
/// jobs whose reminder fell due are queued (`JobStore.queuePurgeReminders`), then each is claimed and mailed
/// like an end mail — a server that says "later" or cannot be reached is tried again (`mailAttempts`,
/// `mailRetrySeconds`), one that refuses the mailbox is not. A reminder still unsent when the results are
/// purged is skipped.
struct PurgeReminderSender: DeliverySender {
    let mail: MailSender
    var store: JobStore { mail.store }
    let channel = DeliveryChannel.reminder
    var claimSeconds: Double { mail.claimSeconds }
    let logName = "purge reminder about"
    var attemptLimit: Int { mail.config.mailAttempts }
    var retrySeconds: Double { mail.config.mailRetrySeconds }

    func queueAndSend(now: Date) async {
        if mail.config.purgeReminderSeconds > 0 { _ = try? await store.queuePurgeReminders(now: now, lead: mail.config.purgeReminderSeconds) }
        await sendDue(now: now)
    }

    func send(_ job: Job) async {
        let attempt = job.reminder?.attempts ?? 1
        let now = Date()
        guard !job.purged, let purge = job.purgeAt, purge > now else {
            return await finishAttempt(job, attempt: attempt, state: .skipped, error: "the results were purged before the reminder was sent")
        }
        guard let owner = try? await store.user(id: job.userId), let to = owner.email else {
            return await finishAttempt(job, attempt: attempt, state: .skipped, error: "the owner has no email address any more")
        }
        let api = mail.api, config = mail.config
        let (base, results, link) = await api.mailedResults(job, owner: owner, now: now)
        let published = (try? await store.publication(id: job.id)) != nil
        let outcome = await mail.deliver(JobMail.purgeReminder(job, owner: owner, to: to, from: config.mailSender, base: base, results: results,
                                                               link: link, published: published, now: now))
        api.metrics.observePurgeReminder(sent: outcome.state == .delivered)
        await finishAttempt(job, attempt: attempt, state: outcome.state, error: outcome.error)
    }
}

extension ServiceAPI {
    /// What a mail about `job` links to: the base of its addresses (`linkBase`), the results document of a
    /// successful job whose results are kept, and the owner's download link for them, signed until the purge
    /// (nil when the owner's token is revoked: the addresses then need a token).
    func mailedResults(_ job: Job, owner: User, now: Date) async -> (base: String, results: [String: Any]?, link: DownloadLink?) {
        let base = linkBase(try? JSONDecoder().decode(ExecutionRequest.self, from: Data(job.request.utf8)))
        guard job.status == .successful, !job.purged, let results = try? resultsDocument(job, base: base) else { return (base, nil, nil) }
        return (base, results, try? await downloadLink(job, for: owner, seconds: DownloadLink.maxSeconds, now: now))
    }
}

/// What the mail about an ended job says.
enum JobMail {
    /// `link`: the owner's download link for the results' addresses (nil: plain addresses, which need the token).
    static func message(_ job: Job, owner: User, to: String, from: String, base: String, results: [String: Any]?,
                        link: DownloadLink? = nil) -> MailMessage {
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
            if let purge = job.purgeAt { lines += ["", "Its results are kept until \(utcText(purge, "yyyy-MM-dd HH:mm 'UTC'")); download what you need before then."] }
            lines += resultLines(results, job: job, base: base, link: link)
        } else {
            lines += ["", "Its log: \(base)/jobs/\(job.id)/logs"]
        }
        lines += footer
        return MailMessage(from: from, to: to, subject: subject, body: lines.joined(separator: "\n"),
                           messageID: "\(job.id).\(job.status.rawValue)@\(domain(from))")
    }

    /// The reminder, `purgeReminderSeconds` before the purge, that a job's results are about to be deleted.
    static func purgeReminder(_ job: Job, owner: User, to: String, from: String, base: String, results: [String: Any]?,
                              link: DownloadLink? = nil, published: Bool, now: Date) -> MailMessage {
        let purge = job.purgeAt ?? now
        let day = utcText(purge, "yyyy-MM-dd")
        var lines = ["Hello \(owner.name),", "",
                     "the results of your job \"\(job.name)\" (\(job.id)) will be deleted on \(utcText(purge, "yyyy-MM-dd HH:mm 'UTC'"))",
                     "(in \(remaining(purge.timeIntervalSince(now)))). Download what you need before then."]
        lines += published
            ? ["", "Its products are published in the DSM catalogue (item \(job.id)): they stay there until withdrawn."]
            : ["", "To keep its products, publish them in the DSM catalogue (the job's page in the portal, or",
               "POST \(base)/jobs/\(job.id)/publish): they then stay until withdrawn."]
        lines += ["", "Status: \(base)/jobs/\(job.id)", "In the portal: \(base)/#/job/\(job.id)"]
        lines += resultLines(results, job: job, base: base, link: link) + footer
        return MailMessage(from: from, to: to, subject: "[dsmopt] \(job.name): results deleted on \(day)", body: lines.joined(separator: "\n"),
                           messageID: "\(job.id).purge-reminder@\(domain(from))")
    }

    /// The results document's links, one a line, by address, after the link to all of them in one zip; each
    /// signed by `link`, when given, so that it opens without the token.
    static func resultLines(_ results: [String: Any]?, job: Job, base: String, link: DownloadLink?) -> [String] {
        guard var results, !results.isEmpty else { return [] }
        var zip = "\(base)/jobs/\(job.id)/results.zip"
        if let link { results = ServiceAPI.signed(results, link: link); zip += "?\(link.query)" }
        var links: [(String, String)] = []
        for (key, value) in results {
            for l in (value as? [[String: Any]]) ?? [value as? [String: Any]].compactMap({ $0 }) {
                if let href = l["href"] as? String { links.append(((l["title"] as? String) ?? key, href)) }
            }
        }
        let opening = link.map {
            ["", "These links open without your token until \(utcText($0.expiryDate, "yyyy-MM-dd HH:mm 'UTC'")) (they are signed with it:",
             "rotating or revoking your token voids them). Keep them to yourself, or share them with whoever should",
             "have the results."]
        } ?? []
        return opening + ["", "Results (all of them in one zip: \(zip)):"] + links.sorted(by: { $0.1 < $1.1 }).map { "- \($0.0): \($0.1)" }
    }

    static let footer = ["", "Requests to the API need your token (Authorization: Bearer …), as in the portal.", "", "-- ",
                         "dsmopt \(Provenance.Software.currentVersion), DSM service. You get this mail because your account",
                         "has an email address; DELETE /me/email stops it."]

    static func domain(_ from: String) -> String { from.split(separator: "@").last.map(String.init) ?? "localhost" }

    /// "3 days", "5 hours", "12 minutes": what is left before a date, rounded down, at least a minute.
    static func remaining(_ seconds: Double) -> String {
        func n(_ v: Int, _ unit: String) -> String { "\(v) \(unit)\(v == 1 ? "" : "s")" }
        if seconds >= 2 * 86_400 { return n(Int(seconds / 86_400), "day") }
        if seconds >= 2 * 3600 { return n(Int(seconds / 3600), "hour") }
        return n(max(1, Int(seconds / 60)), "minute")
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

}
