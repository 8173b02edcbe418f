import Foundation
import ServiceLifecycle

/// What ended jobs send — their callbacks (`CallbackSender`), the mail to their owners (`MailSender`), the
/// reminder of their purge date (`PurgeReminderSender`) — from every `serve` and `worker` process: every
/// second the due ones of `channel` are claimed (`JobStore.claimDeliveries`) and sent concurrently, and each
/// attempt's outcome is recorded on the job (`finishAttempt`), with the next attempt's time while it is
/// still pending.
protocol DeliverySender: Sendable {
    var store: JobStore { get }
    var channel: DeliveryChannel { get }
    /// How long a claim holds a job: longer than an attempt may take, so that a process that dies
    /// mid-attempt leaves the job to another one after that.
    var claimSeconds: Double { get }
    /// What the channel is called in the daemon's log ("callback of job …").
    var logName: String { get }
    /// Attempts before a delivery that keeps failing is given up, and the wait before the second one.
    var attemptLimit: Int { get }
    var retrySeconds: Double { get }
    func send(_ job: Job) async
}

extension DeliverySender {
    /// The service's loop; `alsoEachRound` runs after each round's sending (the mail's purge reminders).
    func sendUntilShutdown(alsoEachRound: (Date) async -> Void = { _ in }) async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let now = Date()
            await sendDue(now: now)
            await alsoEachRound(now)
            try? await Task.sleep(nanoseconds: 1_000_000_000)
        }
    }

    /// One round: up to eight due jobs, sent concurrently.
    func sendDue(now: Date) async {
        guard let jobs = try? await store.claimDeliveries(channel, now: now, leaseUntil: now.addingTimeInterval(claimSeconds), limit: 8),
              !jobs.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            for job in jobs { group.addTask { await self.send(job) } }
        }
    }

    /// Records an attempt's outcome. One that is still `pending` (worth trying again) is tried again after
    /// `retrySeconds`, doubling with each attempt (at most an hour), until `attemptLimit` attempts are spent:
    /// then it `failed`, the reason saying so. What did not deliver is also written to the daemon's log.
    func finishAttempt(_ job: Job, attempt: Int, state: DeliveryState.State, error: String?) async {
        var (state, error) = (state, error)
        if state == .pending && attempt >= attemptLimit {
            (state, error) = (.failed, "\(error ?? "not delivered") (attempt \(attempt) of \(attemptLimit): given up)")
        }
        let retry = state == .pending ? Date().addingTimeInterval(min(3600, retrySeconds * pow(2, Double(attempt - 1)))) : nil
        try? await store.recordDelivery(channel, jobId: job.id, attempt: attempt, state: state, error: error, nextAttempt: retry)
        if state == .pending || state == .failed {
            FileHandle.standardError.write(Data("dsmopt: \(logName) job \(job.id), attempt \(attempt): \(error ?? state.rawValue)\(retry.map { " (next attempt at \(ISO8601DateFormatter().string(from: $0)))" } ?? "")\n".utf8))
        }
    }
}
