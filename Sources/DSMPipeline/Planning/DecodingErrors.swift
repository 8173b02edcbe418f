import Foundation

extension DecodingError {
    /// The error in the terms of the JSON file it came from — the field's path (`defaultQuota.storageBytes`,
    /// `hosts[1]`) and what it should hold —, for the people who wrote the file (configuration, presets).
    public var plainDescription: String {
        func path(_ c: Context, _ last: CodingKey? = nil) -> String {
            (c.codingPath + (last.map { [$0] } ?? [])).map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
                .joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        }
        func kind(_ t: Any.Type) -> String {
            switch t {
            case is Int.Type, is Int64.Type: return "a whole number"
            case is Double.Type, is Float.Type: return "a number"
            case is Bool.Type: return "true or false"
            case is String.Type: return "a string"
            case is [String].Type: return "a list of strings"
            default: return "a \(t)"
            }
        }
        switch self {
        case .typeMismatch(let t, let c): return "\(path(c)) must be \(kind(t))"
        case .valueNotFound(let t, let c): return "\(path(c)) must be \(kind(t)), not null"
        case .keyNotFound(let k, let c): return "\(path(c, k)) is missing"
        case .dataCorrupted(let c): return c.codingPath.isEmpty ? c.debugDescription : "\(path(c)): \(c.debugDescription)"
        @unknown default: return String(describing: self)
        }
    }
}
