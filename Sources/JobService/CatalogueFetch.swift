import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Why the service will not fetch something for the catalogue.
struct FetchError: Error, CustomStringConvertible { let description: String }

/// Which hosts the service fetches from. A URL whose host resolves to a loopback, private, link-local,
/// shared (CGNAT), multicast or unspecified address is refused — the service must not be a proxy into its
/// own network — unless the host is on the operator's allow-list (the real catalogue's store, which may
/// be internal).
struct FetchPolicy: Sendable {
    var allowedHosts: Set<String>
    var timeoutSeconds: Double
    var maxBytes: Int64

    func check(_ url: URL) throws {
        guard let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme), let host = url.host, !host.isEmpty else {
            throw FetchError(description: "expected an http(s) URL")
        }
        guard url.user == nil, url.password == nil else { throw FetchError(description: "URLs with credentials are not accepted") }
        if allowedHosts.contains(host.lowercased()) { return }
        if let bad = try Self.internalAddress(of: host) {
            throw FetchError(description: "\(host) resolves to \(bad), an internal address: the service fetches only from public hosts (or the operator's allow-list)")
        }
    }

    /// The first internal address (`isInternal`) `host` resolves to, or nil when all are public; throws when it
    /// does not resolve.
    static func internalAddress(of host: String) throws -> String? {
        let addresses = try resolve(host)
        guard !addresses.isEmpty else { throw FetchError(description: "\(host) does not resolve") }
        return addresses.first(where: isInternal)
    }

    /// Every address a host name resolves to (IPv4 and IPv6), as text.
    static func resolve(_ host: String) throws -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { throw FetchError(description: "\(host) does not resolve") }
        defer { freeaddrinfo(first) }
        var out: [String] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let a = p {
            var buf = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(a.pointee.ai_addr, a.pointee.ai_addrlen, &buf, socklen_t(buf.count), nil, 0, NI_NUMERICHOST) == 0 {
                out.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            p = a.pointee.ai_next
        }
        return out
    }

    /// Loopback, private, link-local, CGNAT, multicast, unspecified or reserved (IPv4 and IPv6, including
    /// IPv4-mapped IPv6).
    static func isInternal(_ address: String) -> Bool {
        let a = address.lowercased().split(separator: "%").first.map(String.init) ?? address
        if a.hasPrefix("::ffff:"), a.contains(".") { return isInternal(String(a.dropFirst(7))) }
        if a.contains(":") {
            if a == "::" || a == "::1" { return true }
            let first = UInt16(a.split(separator: ":", omittingEmptySubsequences: false).first.flatMap { UInt16($0, radix: 16) } ?? 0)
            return (first & 0xFE00) == 0xFC00 || (first & 0xFFC0) == 0xFE80 || (first & 0xFF00) == 0xFF00
        }
        let o = a.split(separator: ".").compactMap { Int($0) }
        guard o.count == 4 else { return true }
        switch (o[0], o[1]) {
        case (0, _), (10, _), (127, _): return true
        case (100, 64...127): return true
        case (169, 254), (192, 168): return true
        case (172, 16...31): return true
        case (192, 0) where o[2] == 0 || o[2] == 2: return true
        case (198, 18...19): return true
        case (224...255, _): return true
        default: return false
        }
    }
}

/// Downloads one URL to a file: redirects refused, the body streamed to disk and stopped at a byte cap,
/// idle and total timeouts. The file is removed on any failure.
final class StreamingDownload: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let lock = NSLock()
    private var handle: FileHandle?
    private var written: Int64 = 0
    private var failure: FetchError?
    private var continuation: CheckedContinuation<Int64, Error>?
    let limit: Int64
    let url: URL

    init(url: URL, limit: Int64) {
        self.url = url
        self.limit = limit
    }

    static func fetch(_ url: URL, to path: String, policy: FetchPolicy) async throws -> Int64 {
        try policy.check(url)
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw FetchError(description: "cannot store the download")
        }
        let d = StreamingDownload(url: url, limit: policy.maxBytes)
        d.handle = h
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = min(60, policy.timeoutSeconds)
        config.timeoutIntervalForResource = policy.timeoutSeconds
        config.httpShouldSetCookies = false
        config.urlCache = nil
        let session = URLSession(configuration: config, delegate: d, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        do {
            let n = try await withCheckedThrowingContinuation { (c: CheckedContinuation<Int64, Error>) in
                d.lock.withLock { d.continuation = c }
                session.dataTask(with: URLRequest(url: url)).resume()
            }
            try h.close()
            return n
        } catch {
            try? h.close()
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
    }

    private func fail(_ e: FetchError, _ task: URLSessionTask) {
        lock.withLock { if failure == nil { failure = e } }
        task.cancel()
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        lock.withLock { if failure == nil { failure = FetchError(description: "GET \(url) answered a redirect (\(response.statusCode)); redirects are not followed") } }
        completionHandler(nil)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        let code = (response as? HTTPURLResponse)?.statusCode ?? 0
        if code != 200 {
            lock.withLock { if failure == nil { failure = FetchError(description: "GET \(url) answered \(code)") } }
            completionHandler(.cancel)
            return
        }
        if response.expectedContentLength > limit {
            lock.withLock { if failure == nil { failure = FetchError(description: "\(url.lastPathComponent) is \(response.expectedContentLength) bytes, above the \(limit) bytes allowed") } }
            completionHandler(.cancel)
            return
        }
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let over: Bool = lock.withLock {
            written += Int64(data.count)
            return written > limit
        }
        if over { fail(FetchError(description: "\(url.lastPathComponent) is larger than the \(limit) bytes allowed"), dataTask); return }
        do { try handle?.write(contentsOf: data) } catch { fail(FetchError(description: "cannot store the download (disk full?)"), dataTask) }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        let (c, f, n) = lock.withLock { () -> (CheckedContinuation<Int64, Error>?, FetchError?, Int64) in
            let c = continuation
            continuation = nil
            return (c, failure, written)
        }
        if let f { c?.resume(throwing: f) }
        else if let error { c?.resume(throwing: FetchError(description: "GET \(url) failed: \(error.localizedDescription)")) }
        else if (task.response as? HTTPURLResponse)?.statusCode != 200 {
            c?.resume(throwing: FetchError(description: "GET \(url) answered \((task.response as? HTTPURLResponse)?.statusCode ?? 0)"))
        } else { c?.resume(returning: n) }
    }
}
