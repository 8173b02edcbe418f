import Crypto
import Foundation

/// A download link: a job's results (each product, the manifest, the zip) readable without a token until a
/// date, for a browser's plain link (which streams to disk and resumes, where a download through `fetch`
/// holds the whole file in memory), a mail, GDAL's `/vsicurl/`, or a colleague without an account.
///
/// The link's query — `user`, `expires` (Unix seconds) and `signature` — is signed by the user who asked for
/// it: base64url HMAC-SHA256 of "dsmopt-results-v1\n{job}\n{user}\n{expires}" under a key derived from the
/// stored hash of that user's token. So a link stops working when it expires, when that user's token is
/// rotated or revoked, when the user may no longer read the job, and when the results are purged; it reads
/// that one job's results and nothing else. The service keeps no record of the links it signs.
public struct DownloadLink: Equatable, Sendable {
    public var jobId: String
    public var userId: String
    /// Whole seconds since 1970, UTC.
    public var expires: Int64
    public var signature: String

    /// The longest a link may be asked for (`POST /jobs/{id}/download-links`): 30 days. A link never outlives
    /// the job's results either.
    public static let maxSeconds: Int64 = 30 * 86_400
    /// A link asked for without a duration: one day.
    public static let defaultSeconds: Int64 = 86_400
    /// The query parameters a link adds to the address of a result.
    public static let parameters = ["user", "expires", "signature"]

    /// A link to `jobId`'s results for `userId` until `expires`, signed with their token's hash.
    public init(jobId: String, userId: String, expires: Int64, tokenHash: String) {
        self.jobId = jobId
        self.userId = userId
        self.expires = expires
        signature = Self.sign(jobId: jobId, userId: userId, expires: expires, tokenHash: tokenHash)
    }

    /// A link as a request carries it (`verify` checks it).
    public init(jobId: String, userId: String, expires: Int64, signature: String) {
        self.jobId = jobId; self.userId = userId; self.expires = expires; self.signature = signature
    }

    /// The query string (without "?") to append to the address of any of the job's results.
    public var query: String { "user=\(userId)&expires=\(expires)&signature=\(signature)" }

    public var expiryDate: Date { Date(timeIntervalSince1970: TimeInterval(expires)) }

    /// Why a link is refused: each a 403 at the API's edge, with its reason.
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        /// A parameter missing, given twice or unreadable.
        case malformed(String)
        case expired(Date)
        /// The signature does not match: the link was altered, or the token that signed it was rotated or
        /// revoked, or its user deleted.
        case badSignature

        public var description: String {
            switch self {
            case .malformed(let why): return "this download link is incomplete: \(why)"
            case .expired(let d):
                return "this download link expired at \(ISO8601DateFormatter().string(from: d)); ask for a new one (POST /jobs/{id}/download-links)"
            case .badSignature:
                return "this download link's signature does not match: the link was altered, or the token that signed it was rotated or revoked"
            }
        }
    }

    /// The link a request's query carries for `jobId`, or nil when it carries none (no `signature`).
    /// Its signature is not checked here (`verify`).
    /// `query`: a parameter's values, as given.
    public static func parse(jobId: String, query: (String) -> [String]) throws(Refusal) -> DownloadLink? {
        guard !query("signature").isEmpty else { return nil }
        var values: [String: String] = [:]
        for name in parameters {
            let given = query(name)
            guard given.count == 1, let v = given.first, !v.isEmpty else {
                throw .malformed(given.isEmpty ? "it has no \(name)" : "\(name) is given \(given.count > 1 ? "more than once" : "empty")")
            }
            values[name] = v
        }
        guard let expires = Int64(values["expires"]!), expires > 0 else { throw .malformed("expires must be whole seconds since 1970") }
        return DownloadLink(jobId: jobId, userId: values["user"]!, expires: expires, signature: values["signature"]!)
    }

    /// Checks the link at `now` against the stored hash of its user's token (nil: no such user, or revoked).
    public func verify(tokenHash: String?, now: Date) throws(Refusal) {
        // The signature first: an altered expiry is a bad signature, not an expired link.
        guard let tokenHash, Self.equal(signature, Self.sign(jobId: jobId, userId: userId, expires: expires, tokenHash: tokenHash)) else {
            throw .badSignature
        }
        guard TimeInterval(expires) > now.timeIntervalSince1970 else { throw .expired(expiryDate) }
    }

    static func sign(jobId: String, userId: String, expires: Int64, tokenHash: String) -> String {
        // A key of its own, derived from the token's hash (never the hash itself).
        let key = SymmetricKey(data: SHA256.hash(data: Data("dsmopt download links\n\(tokenHash)".utf8)))
        let mac = HMAC<SHA256>.authenticationCode(for: Data("dsmopt-results-v1\n\(jobId)\n\(userId)\n\(expires)".utf8), using: key)
        return Data(mac).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Constant-time comparison of two signatures.
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
