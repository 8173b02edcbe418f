import Foundation

/// A plain-text mail (RFC 5322, MIME): UTF-8 text in base64, a subject in an RFC 2047 encoded word when it
/// is not plain ASCII — nothing a job's name holds can add a header line.
public struct MailMessage: Sendable, Equatable {
    public var from: String
    public var fromName: String
    public var to: String
    public var subject: String
    public var body: String
    public var date: Date
    /// Without the angle brackets.
    public var messageID: String

    public init(from: String, fromName: String = "dsmopt", to: String, subject: String, body: String, date: Date = Date(), messageID: String) {
        self.from = from; self.fromName = fromName; self.to = to; self.subject = subject; self.body = body; self.date = date; self.messageID = messageID
    }

    /// The message as sent, lines ending in CRLF.
    public func rendered() -> String {
        let text = body.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\n", with: "\r\n")
        let encoded = Data(text.utf8).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
        return [
            "From: \(Self.headerText(fromName)) <\(from)>",
            "To: <\(to)>",
            "Subject: \(Self.headerText(subject))",
            "Date: \(utcText(date, "EEE, dd MMM yyyy HH:mm:ss Z"))",
            "Message-ID: <\(messageID)>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64",
            "Auto-Submitted: auto-generated",
            "",
            encoded,
        ].joined(separator: "\r\n") + "\r\n"
    }

    /// `rendered()` as DATA carries it: a line that starts with a dot gets a second one (RFC 5321 4.5.2).
    func dotStuffed() -> String {
        rendered().components(separatedBy: "\r\n").map { $0.hasPrefix(".") ? "." + $0 : $0 }.joined(separator: "\r\n")
    }

    /// Printable ASCII as it is; anything else as RFC 2047 encoded words (B encoding), each under 76
    /// characters, split between characters.
    static func headerText(_ s: String) -> String {
        if s.unicodeScalars.allSatisfy({ (0x20...0x7E).contains($0.value) }) && !s.contains("=?") { return s }
        var words: [String] = [], chunk = ""
        for ch in s {
            let piece = (ch == "\r" || ch == "\n" || ch == "\t") ? " " : String(ch)
            if (chunk + piece).utf8.count > 45 { words.append(chunk); chunk = "" }
            chunk += piece
        }
        if !chunk.isEmpty { words.append(chunk) }
        return words.map { "=?UTF-8?B?\(Data($0.utf8).base64EncodedString())?=" }.joined(separator: "\r\n ")
    }

    /// Whether `address` is one this service sends to: local@domain, at most 254 characters, no spaces,
    /// quotes, angle brackets or control characters (a reason otherwise).
    public static func addressProblem(_ address: String) -> String? {
        guard address.utf8.count <= 254 else { return "an email address has at most 254 characters" }
        let parts = address.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return "'\(address.prefix(80))' is not an email address (local@domain)" }
        let forbidden = CharacterSet(charactersIn: " \"<>()[],;:\\").union(.controlCharacters).union(.whitespacesAndNewlines)
        guard address.unicodeScalars.allSatisfy({ !forbidden.contains($0) }) else {
            return "an email address here has no spaces, quotes, brackets, commas or control characters"
        }
        let domain = parts[1]
        guard domain.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ !$0.isEmpty && !$0.hasPrefix("-") && !$0.hasSuffix("-") }) else {
            return "'\(domain.prefix(80))' is not a mail domain"
        }
        return nil
    }
}
