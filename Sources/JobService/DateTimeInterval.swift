import DSMPipeline
import Foundation

/// An RFC 3339 date-time, or an interval `start/end` with `..` (or nothing) for an open end: the `datetime`
/// of a catalogue search (STAC API) and of the job list (OGC API – Processes).
enum DateTimeInterval {
    /// The interval's ends (both the same instant for a date-time; nil for an open end).
    static func parse(_ text: String, field: String) throws -> (start: Date?, end: Date?) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        func instant(_ s: String) throws -> Date? {
            if s.isEmpty || s == ".." { return nil }
            guard let d = STACItem.date(s) else { throw APIProblem.badRequest("\(field) \(s) is not an RFC 3339 date-time (e.g. 2013-06-29T06:37:00Z)") }
            return d
        }
        switch parts.count {
        case 1:
            guard let d = try instant(parts[0]) else { throw APIProblem.badRequest("\(field) must be a date-time or an interval start/end") }
            return (d, d)
        case 2:
            let start = try instant(parts[0]), end = try instant(parts[1])
            guard start != nil || end != nil else { throw APIProblem.badRequest("\(field): an interval needs at least one end") }
            if let s = start, let e = end, s > e { throw APIProblem.badRequest("\(field): the interval's start is after its end") }
            return (start, end)
        default: throw APIProblem.badRequest("\(field) must be a date-time or an interval start/end")
        }
    }
}
