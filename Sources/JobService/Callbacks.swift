import Crypto
import Foundation
import DSMPipeline
import Hummingbird
import ServiceLifecycle
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// OGC API – Processes callbacks: a job submitted with a `subscriber` has its outcome POSTed to it when it
// ends — the results document to `successUri`, the job's status document to `failedUri` (failed or
// dismissed). The job's row is the outbox: whichever process ends the job (a worker's finish, a cancel, the
// lease sweep failing it), any daemon or worker process sends the callback, at least once. Every callback is
// signed with its owner's key (`CallbackSignature`), so that a receiver can tell it comes from this service.

extension ServiceAPI {
    /// A request's subscriber as the job keeps it: a URI whose host is an internal address written out (or
    /// `localhost`) refused unless the host is on `callbackAllowedHosts`. Host names are resolved, and
    /// internal addresses refused, when the callback is sent (a submission makes no DNS query).
    func checkedSubscriber(_ s: Subscriber) -> (Subscriber?, [FieldError]) {
        var errors: [FieldError] = []
        for (field, uri) in [("successUri", s.successUri), ("failedUri", s.failedUri)] {
            guard let uri, let host = URLComponents(string: uri)?.host?.lowercased() else { continue }
            if let problem = CallbackSender.internalLiteral(host, allowed: config.callbackAllowedHosts) {
                errors.append(.init(field: "subscriber.\(field)", message: problem))
            }
        }
        return (errors.isEmpty ? s : nil, errors)
    }

    /// `GET` / `POST /me/callback-secret`: the user's signing secret, as its receivers need it, and until when
    /// callbacks also carry the signature of the one a renewal replaced.
    func callbackSecret(for user: User, renew: Bool) async throws -> Response {
        let now = Date()
        guard let secrets = try await store.callbackSecrets(userId: user.id, renewKeepingPreviousUntil: renew ? now.addingTimeInterval(config.callbackSecretGraceSeconds) : nil)
        else { throw APIProblem.notFound("no such user") }
        struct Secret: Encodable { var secret: String; var previousSecretSignsUntil: Date?; var scheme: String; var specification: String }
        // (A grace of 0 ends now: not shown, though the stored date may round a hair later.)
        let until = secrets.signing(at: now.addingTimeInterval(1)).count > 1 ? secrets.previousUntil : nil
        return jsonResponse(Secret(secret: secrets.current, previousSecretSignsUntil: until,
                                   scheme: "Standard Webhooks v1 (HMAC-SHA256 of webhook-id.webhook-timestamp.body)",
                                   specification: "https://www.standardwebhooks.com"), status: renew ? .created : .ok)
    }

    func checkedSubscriber(_ value: JSONValue) -> (Subscriber?, [FieldError]) {
        let (parsed, errors) = Subscriber.parse(value)
        guard let parsed else { return (nil, errors) }
        return checkedSubscriber(parsed)
    }

    /// The base of the links in an ended job's callback and mail, which have no request to take it from:
    /// `publicURL`, else the base the job was submitted under, else (a job recorded without one) the
    /// listening address.
    func linkBase(_ request: ExecutionRequest?) -> String {
        config.publicBase ?? request?.linkBase ?? "http://\(config.host):\(config.port)"
    }
}

/// Sends the callbacks of ended jobs (`DeliverySender`), every second, from every `serve` and `worker`
/// process. A POST answered 2xx delivers it; anything else (an error status, a redirect — never followed —,
/// no answer within `timeoutSeconds`, a host that does not resolve) is tried again after
/// `callbackRetrySeconds`, doubling, until `callbackAttempts`; a URI that leads to an internal address not on
/// `callbackAllowedHosts` fails at once.
public final class CallbackSender: Service, DeliverySender, @unchecked Sendable {
    let store: JobStore
    let config: ServiceConfiguration
    let api: ServiceAPI
    /// Longest a receiver may take to answer.
    static let timeoutSeconds = 30.0
    let channel = DeliveryChannel.callback
    let claimSeconds = 2 * timeoutSeconds + 5
    let logName = "callback of"
    var attemptLimit: Int { config.callbackAttempts }
    var retrySeconds: Double { config.callbackRetrySeconds }

    public init(store: JobStore, config: ServiceConfiguration, api: ServiceAPI) {
        self.store = store
        self.config = config
        self.api = api
    }

    public func run() async throws { await sendUntilShutdown() }

    func send(_ job: Job) async {
        let attempt = job.callback?.attempts ?? 1
        let request = try? JSONDecoder().decode(ExecutionRequest.self, from: Data(job.request.utf8))
        let success = job.status == .successful
        guard let uri = success ? request?.subscriber?.successUri : request?.subscriber?.failedUri, let url = URL(string: uri) else {
            return await finishAttempt(job, attempt: attempt, state: .skipped,
                                       error: "the subscriber gave no \(success ? "successUri" : "failedUri") for a \(job.status.rawValue) job")
        }
        let base = api.linkBase(request)
        var outcome: (state: DeliveryState.State, error: String?)
        do {
            try check(url)
            let body = try payload(job, base: base, ownerName: try await store.user(id: job.userId)?.name)
            guard let secrets = try await store.callbackSecrets(userId: job.userId, renewKeepingPreviousUntil: nil) else {
                throw CallbackRefused(description: "the job's owner \(job.userId) is no longer a user: no key to sign its callback with")
            }
            var headers = ["Link": "<\(base)/jobs/\(job.id)>; rel=\"status\"", "User-Agent": "dsmopt/\(Provenance.Software.currentVersion)"]
            let now = Date()
            headers.merge(try CallbackSignature.headers(secrets: secrets.signing(at: now), id: job.id, timestamp: Int(now.timeIntervalSince1970), body: body)) { $1 }
            let status = try await CallbackPost.post(body, to: url, timeout: Self.timeoutSeconds, headers: headers)
            outcome = (200..<300).contains(status) ? (.delivered, nil) : (.pending, "POST \(uri) answered \(status)")
        } catch let e as CallbackRefused {
            outcome = (.failed, e.description)
        } catch {
            outcome = (.pending, String(describing: error))
        }
        await finishAttempt(job, attempt: attempt, state: outcome.state, error: outcome.error)
    }

    /// What is POSTed: a successful job's results document (OGC), else — or when its results are gone — its
    /// status document.
    func payload(_ job: Job, base: String, ownerName: String?) throws -> Data {
        if job.status == .successful, !job.purged, let document = try? api.resultsDocument(job, base: base) {
            return try jsonBody(object: document)
        }
        return try jsonBody(ServiceAPI.view(job, base: base, ownerName: ownerName))
    }

    /// Refuses a URI whose host is, or resolves to, an internal address not on the allow-list (a host that
    /// does not resolve is an error worth retrying).
    func check(_ url: URL) throws {
        guard let host = url.host?.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]")), !host.isEmpty else {
            throw CallbackRefused(description: "\(url) has no host")
        }
        if Self.isAllowed(host, config.callbackAllowedHosts) { return }
        if let problem = Self.internalLiteral(host, allowed: []) { throw CallbackRefused(description: problem) }
        if let bad = try FetchPolicy.internalAddress(of: host) {
            throw CallbackRefused(description: "\(host) resolves to \(bad), an internal address: callbacks go to public hosts only (or the operator's callbackAllowedHosts)")
        }
    }

    static func isAllowed(_ host: String, _ allowed: [String]) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return allowed.contains { $0.lowercased() == h }
    }

    /// Why `host`, an address written out or `localhost`, may not receive callbacks (nil: a host name to
    /// resolve when sending, a public address, or one on `allowed`).
    static func internalLiteral(_ host: String, allowed: [String]) -> String? {
        if isAllowed(host, allowed) { return nil }
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if h == "localhost" || h.hasSuffix(".localhost") {
            return "\(h) is this machine: callbacks go to public hosts only (or the operator's callbackAllowedHosts)"
        }
        var v4 = in_addr(), v6 = in6_addr()
        let literal = inet_pton(AF_INET, h, &v4) == 1 || inet_pton(AF_INET6, h, &v6) == 1
        if literal, FetchPolicy.isInternal(h) {
            return "\(h) is an internal address: callbacks go to public hosts only (or the operator's callbackAllowedHosts)"
        }
        return nil
    }
}

/// Callback signatures as the Standard Webhooks specification (v1, https://www.standardwebhooks.com) has
/// them, so that receivers can check them with its libraries: `webhook-id` (the job's id, the same in every
/// attempt: the key to deduplicate on, delivery being at least once), `webhook-timestamp` (Unix seconds at
/// sending, for the receiver's replay window) and `webhook-signature` `v1,` + base64 HMAC-SHA256 of
/// "id.timestamp.body" under the key the secret (`whsec_` + base64) holds. One secret per user, shown to them by
/// `GET /me/callback-secret`, replaced by `POST /me/callback-secret` (`CallbackSecrets`).
public enum CallbackSignature {
    static let prefix = "whsec_"

    /// A new secret: 32 random bytes.
    static func newSecret() -> String {
        var g = SystemRandomNumberGenerator()
        return prefix + Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }).base64EncodedString()
    }

    /// The `webhook-signature` value (`v1,` + base64) of a message.
    public static func signature(secret: String, id: String, timestamp: Int, body: Data) throws -> String {
        guard secret.hasPrefix(prefix), let key = Data(base64Encoded: String(secret.dropFirst(prefix.count))), !key.isEmpty else {
            throw CallbackRefused(description: "the signing secret is not a whsec_ key")
        }
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(id).\(timestamp).".utf8) + body, using: SymmetricKey(data: key))
        return "v1," + Data(mac).base64EncodedString()
    }

    /// The three headers of a signed callback: one signature per secret, space-separated (the
    /// specification's form during a rotation; a receiver accepts the message when one of them checks out).
    static func headers(secrets: [String], id: String, timestamp: Int, body: Data) throws -> [String: String] {
        ["webhook-id": id, "webhook-timestamp": String(timestamp),
         "webhook-signature": try secrets.map { try signature(secret: $0, id: id, timestamp: timestamp, body: body) }.joined(separator: " ")]
    }
}

/// A user's callback signing secrets: the current one and, for a while after a renewal
/// (`callbackSecretGraceSeconds`), the one it replaced, so that receivers can move to the new one without
/// missing a callback.
public struct CallbackSecrets: Sendable, Equatable {
    public var current: String
    public var previous: String?
    /// The end of the previous secret's grace: callbacks sent before it carry its signature too.
    public var previousUntil: Date?

    public init(current: String, previous: String? = nil, previousUntil: Date? = nil) {
        self.current = current
        self.previous = previous
        self.previousUntil = previousUntil
    }

    /// The secrets a callback sent at `now` is signed with: the current one, then the previous one while it
    /// is honoured.
    public func signing(at now: Date) -> [String] {
        guard let previous, let until = previousUntil, until > now, previous != current else { return [current] }
        return [current, previous]
    }
}

/// A callback the service will not send (tried no more).
struct CallbackRefused: Error, CustomStringConvertible { let description: String }

/// One POST of a callback: redirects refused, the answer's body read up to 64 KiB and discarded, one timeout
/// for the whole exchange. Returns the answer's status.
final class CallbackPost: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Int, Error>?
    private var received = 0
    static let maxAnswerBytes = 64 << 10

    static func post(_ body: Data, to url: URL, timeout: Double, headers: [String: String]) async throws -> Int {
        let p = CallbackPost()
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.timeoutIntervalForResource = timeout
        config.httpShouldSetCookies = false
        config.urlCache = nil
        let session = URLSession(configuration: config, delegate: p, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<Int, Error>) in
            p.lock.withLock { p.continuation = c }
            session.dataTask(with: request).resume()
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(nil)  // the redirect's own status is the answer
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let over: Bool = lock.withLock {
            received += data.count
            return received > Self.maxAnswerBytes
        }
        if over { dataTask.cancel() }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        let c: CheckedContinuation<Int, Error>? = lock.withLock {
            let c = continuation
            continuation = nil
            return c
        }
        if let status = (task.response as? HTTPURLResponse)?.statusCode { c?.resume(returning: status) }
        else { c?.resume(throwing: FetchError(description: "POST \(task.originalRequest?.url?.absoluteString ?? "") failed: \(error?.localizedDescription ?? "no answer")")) }
    }
}
