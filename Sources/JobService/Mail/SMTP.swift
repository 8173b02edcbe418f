import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// Where the service hands its mail over: `smtpURL` in the configuration.
/// - `smtp://host[:port]` (port 25): plain SMTP, for a relay on the machine or the centre's network;
/// - `smtp+starttls://host[:port]` (port 587): the session is upgraded to TLS before anything else is said
///   (STARTTLS required: a server that does not offer it is an error, never a silent fallback to plain text);
/// - `smtps://host[:port]` (port 465): TLS from the first byte.
/// `user:password@` (percent-encoded) authenticates with AUTH PLAIN. TLS checks the server's certificate
/// against the system's roots and `smtpCAFile`'s (a PEM file: a centre's own authority) and its name (or
/// address) against the host.
public struct SMTPSettings: Sendable, Equatable {
    public enum Security: String, Sendable { case plain, startTLS, tls }
    public var host: String
    public var port: Int
    public var security: Security
    public var user: String?
    public var password: String?
    public var caFile: String?

    /// Reads `url`; the reason it cannot be used otherwise.
    public init(url: String, caFile: String? = nil) throws {
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased() else {
            throw SMTPError.settings("smtpURL '\(SMTPSettings.hidingPassword(url))' is not a URL (smtp://, smtp+starttls:// or smtps://host[:port])")
        }
        switch scheme {
        case "smtp": (security, port) = (.plain, c.port ?? 25)
        case "smtp+starttls": (security, port) = (.startTLS, c.port ?? 587)
        case "smtps": (security, port) = (.tls, c.port ?? 465)
        default: throw SMTPError.settings("smtpURL's scheme must be smtp, smtp+starttls or smtps, not '\(scheme)'")
        }
        guard let h = c.host, !h.isEmpty else { throw SMTPError.settings("smtpURL names no host") }
        guard (1...65535).contains(port) else { throw SMTPError.settings("smtpURL's port must be 1 to 65535") }
        guard c.path.isEmpty || c.path == "/", c.query == nil, c.fragment == nil else {
            throw SMTPError.settings("smtpURL takes no path, query or fragment")
        }
        host = h.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        user = c.user?.removingPercentEncoding
        password = c.password?.removingPercentEncoding
        guard (user == nil) == (password == nil) else { throw SMTPError.settings("smtpURL gives a user without a password (user:password@host)") }
        if let caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else { throw SMTPError.settings("smtpCAFile \(caFile) cannot be read") }
            self.caFile = caFile
        }
    }

    /// `url` with its password (if any) replaced by `hidden`, to be shown.
    public static func hidingPassword(_ url: String) -> String {
        guard let at = url.range(of: "@"), let scheme = url.range(of: "://"), scheme.upperBound < at.lowerBound else { return url }
        let credentials = url[scheme.upperBound..<at.lowerBound]
        guard let colon = credentials.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":hidden" + String(url[at.lowerBound...])
    }
}

/// Why a message was not handed over. `permanent`: the server refused it for good (a 5xx reply: no such
/// mailbox, authentication refused) — trying again would not help; anything else (no connection, a 4xx
/// reply, a timeout) may.
public enum SMTPError: Error, CustomStringConvertible, Equatable {
    case settings(String)
    case reply(command: String, code: Int, text: String)
    case connection(String)

    public var permanent: Bool {
        switch self {
        case .settings: true
        case .reply(_, let code, _): code >= 500
        case .connection: false
        }
    }

    public var description: String {
        switch self {
        case .settings(let s): s
        case .reply(let command, let code, let text): "the mail server answered \(command) with \(code) \(text)"
        case .connection(let s): s
        }
    }
}

/// One SMTP session (RFC 5321) that hands one message to the server: greeting, EHLO, STARTTLS (and EHLO
/// again) when asked for, AUTH PLAIN when credentials are given, MAIL FROM, RCPT TO, DATA (dot-stuffed),
/// QUIT. Every reply is awaited for at most `timeout` seconds.
public enum SMTPClient {
    /// This machine's name as EHLO gives it and a default sender's domain take it: a fully qualified one, else
    /// `localhost`. Looked up once.
    static let localName: String = Host.current().name.flatMap { $0.contains(".") ? $0 : nil } ?? "localhost"

    public static func send(_ message: MailMessage, settings: SMTPSettings, timeout: Double = 30) async throws {
        let tls: NIOSSLContext? = settings.security == .plain ? nil : try {
            var c = TLSConfiguration.makeClientConfiguration()
            if let ca = settings.caFile { c.additionalTrustRoots = [.file(ca)] }
            return try NIOSSLContext(configuration: c)
        }()
        // SNI takes a name, not an address (an address is checked against the peer's without it).
        let serverName: String? = settings.host.contains(where: { $0.isLetter }) && !settings.host.contains(":") ? settings.host : nil
        let replies = SMTPReplies()
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(Int64(timeout * 1000)))
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        if settings.security == .tls, let tls {
                            try ch.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: serverName))
                        }
                        try ch.pipeline.syncOperations.addHandler(replies)
                    }
                }
                .connect(host: settings.host, port: settings.port).get()
        } catch {
            throw SMTPError.connection("cannot connect to the mail server \(settings.host):\(settings.port) (\(error))")
        }
        let session = SMTPSession(channel: channel, replies: replies, timeout: timeout)
        do {
            try await session.expect("the greeting", 220)
            var features = try await session.command("EHLO \(localName)", 250)
            if settings.security == .startTLS, let tls {
                guard features.contains(where: { $0.uppercased().hasPrefix("STARTTLS") }) else {
                    throw SMTPError.connection("the mail server \(settings.host):\(settings.port) does not offer STARTTLS, which smtp+starttls:// requires")
                }
                _ = try await session.command("STARTTLS", 220)
                // The handler is made and added on the channel's loop (it is not Sendable).
                try await channel.eventLoop.submit {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: serverName), position: .first)
                }.get()
                features = try await session.command("EHLO \(localName)", 250)
            }
            if let user = settings.user, let password = settings.password {
                guard features.contains(where: { $0.uppercased().hasPrefix("AUTH") && $0.uppercased().contains("PLAIN") }) else {
                    throw SMTPError.connection("the mail server \(settings.host):\(settings.port) does not offer AUTH PLAIN\(settings.security == .plain ? " without TLS (smtp+starttls:// or smtps://)" : "")")
                }
                let token = Data("\0\(user)\0\(password)".utf8).base64EncodedString()
                _ = try await session.command("AUTH PLAIN \(token)", 235, shown: "AUTH PLAIN")
            }
            _ = try await session.command("MAIL FROM:<\(message.from)>", 250)
            _ = try await session.command("RCPT TO:<\(message.to)>", 250, 251)
            _ = try await session.command("DATA", 354)
            _ = try await session.command(message.dotStuffed() + ".", 250, shown: "the message")
            _ = try? await session.command("QUIT", 221)
        } catch {
            try? await channel.close()
            throw error
        }
        try? await channel.close()
    }
}

/// The session's side of the conversation: a command written, its reply awaited.
struct SMTPSession {
    let channel: Channel
    let replies: SMTPReplies
    let timeout: Double

    /// Writes `line` (CRLF added) and returns the reply's lines when its code is one of `codes`.
    @discardableResult
    func command(_ line: String, _ codes: Int..., shown: String? = nil) async throws -> [String] {
        do { try await channel.writeAndFlush(ByteBuffer(string: line + "\r\n")).get() } catch {
            // The connection failed before the write (a TLS handshake refused): that reason, not the write's.
            let loop = channel.eventLoop, replies = self.replies
            throw try await loop.submit { replies.failure }.get() ?? SMTPError.connection("cannot write to the mail server (\(error))")
        }
        return try await expect(shown ?? String(line.prefix(while: { $0 != " " && $0 != ":" })), codes)
    }

    @discardableResult
    func expect(_ what: String, _ codes: Int...) async throws -> [String] { try await expect(what, codes) }

    func expect(_ what: String, _ codes: [Int]) async throws -> [String] {
        let loop = channel.eventLoop
        let replies = self.replies
        let timeout = self.timeout
        let reply = try await loop.flatSubmit { replies.next(on: loop, timeout: timeout) }.get()
        guard codes.contains(reply.code) else {
            throw SMTPError.reply(command: what, code: reply.code, text: reply.lines.joined(separator: " / "))
        }
        return reply.lines
    }
}

/// The replies the server sends, assembled from their lines ("250-…" continues, "250 …" ends one) and handed
/// out in order. Used on its channel's event loop only.
final class SMTPReplies: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    struct Reply { var code: Int; var lines: [String] }

    private var text = ""
    private var lines: [String] = []
    private var ready: [Reply] = []
    private var waiting: [EventLoopPromise<Reply>] = []
    /// Why the connection failed, once it has.
    private(set) var failure: Error?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        text += buffer.readString(length: buffer.readableBytes) ?? ""
        while let end = text.range(of: "\r\n") ?? text.range(of: "\n") {
            let line = String(text[..<end.lowerBound])
            text.removeSubrange(..<end.upperBound)
            guard line.count >= 3, let code = Int(line.prefix(3)) else {
                fail(SMTPError.connection("the mail server sent a line that is not an SMTP reply: \(line.prefix(80))"))
                context.close(promise: nil)
                return
            }
            lines.append(line.count > 4 ? String(line.dropFirst(4)) : "")
            if line.count == 3 || line[line.index(line.startIndex, offsetBy: 3)] != "-" {
                deliver(Reply(code: code, lines: lines))
                lines = []
            }
        }
        if text.utf8.count > 65_536 {
            fail(SMTPError.connection("the mail server sent a line longer than 64 KiB"))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(SMTPError.connection("the mail server closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let text = String(describing: error)
        fail(SMTPError.connection(text.contains("CERTIFICATE_VERIFY_FAILED")
            ? "the mail server's TLS certificate is not trusted, or not for its name (smtpCAFile names the authority a private certificate comes from): \(text)"
            : "the connection to the mail server failed: \(text)"))
        context.close(promise: nil)
    }

    /// The next reply, or a failure after `timeout` seconds.
    func next(on loop: EventLoop, timeout: Double) -> EventLoopFuture<Reply> {
        if !ready.isEmpty { return loop.makeSucceededFuture(ready.removeFirst()) }
        if let failure { return loop.makeFailedFuture(failure) }
        let promise = loop.makePromise(of: Reply.self)
        waiting.append(promise)
        let timer = loop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) { [self] in
            if let i = waiting.firstIndex(where: { $0.futureResult === promise.futureResult }) {
                waiting.remove(at: i)
                promise.fail(SMTPError.connection("the mail server did not answer within \(Int(timeout)) s"))
            }
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        return promise.futureResult
    }

    private func deliver(_ reply: Reply) {
        if waiting.isEmpty { ready.append(reply) } else { waiting.removeFirst().succeed(reply) }
    }

    private func fail(_ error: Error) {
        if failure == nil { failure = error }
        let w = waiting
        waiting = []
        w.forEach { $0.fail(error) }
    }
}
