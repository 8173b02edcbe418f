import Foundation

/// Acquisition facts a product's metadata states (as opposed to what the RPC geometry gives).
public struct AcquisitionMetadata: Sendable, Codable, Equatable {
    public var source: String
    public var platform: String?
    public var acquisitionTime: Date?
    public var incidenceDeg: Double?
    public var azimuthDeg: Double?
    public var sunAzimuthDeg: Double?
    public var sunElevationDeg: Double?
    /// Nominal ground sampling distance stated by the product, metres.
    public var gsd: Double?

    public init(source: String) { self.source = source }
}

enum DateParsing {
    /// ISO 8601 with or without fractional seconds and zone (DIMAP writes both forms); UTC when no zone.
    static func iso(_ s: String) -> Date? {
        var t = s.trimmingCharacters(in: .whitespaces)
        if !t.hasSuffix("Z") && !t.contains("+") { t += "Z" }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: t) { return d }
        // Foundation accepts at most millisecond fractions on some platforms: trim longer fractions.
        if let dot = t.firstIndex(of: "."), let z = t.lastIndex(of: "Z") {
            let frac = t[t.index(after: dot)..<z]
            let seconds = Double("0." + frac) ?? 0
            let base = String(t[..<dot]) + "Z"
            f.formatOptions = [.withInternetDateTime]
            return f.date(from: base).map { $0.addingTimeInterval(seconds) }
        }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: t)
    }

    /// Acquisition time from a Pléiades dataset name, e.g. DS_PHR1B_201306290637144_FR1_…
    /// (YYYYMMDDhhmmss followed by tenths of a second).
    static func fromDatasetName(_ text: String) -> (platform: String, date: Date)? {
        guard let r = text.range(of: #"DS_(PHR1[AB]|PNEO[34]|SPOT[67])_(\d{14})(\d)"#, options: .regularExpression) else { return nil }
        let m = text[r]
        let parts = m.split(separator: "_")
        guard parts.count >= 3 else { return nil }
        let digits = String(parts[2])
        let y = digits.prefix(4), mo = digits.dropFirst(4).prefix(2), d = digits.dropFirst(6).prefix(2)
        let h = digits.dropFirst(8).prefix(2), mi = digits.dropFirst(10).prefix(2), s = digits.dropFirst(12).prefix(2)
        let tenth = digits.dropFirst(14).prefix(1)
        guard let date = iso("\(y)-\(mo)-\(d)T\(h):\(mi):\(s).\(tenth)Z") else { return nil }
        return (String(parts[1]), date)
    }
}

/// Reads Pléiades product metadata: commercial DIMAP V2 `DIM_*.XML` and system `PHRDIMAP_*.XML`.
public enum PleiadesMetadataReader {
    public static func read(contentsOf url: URL) throws -> AcquisitionMetadata {
        let file = url.path
        guard let data = try? Data(contentsOf: url) else { throw IngestError.malformed(file: file, reason: "cannot be read") }
        let xml = try XMLLeaves(data: data, file: file)
        var m = AcquisitionMetadata(source: url.lastPathComponent)
        m.platform = xml.first("MISSION").map { mission in
            (xml.first("MISSION_INDEX")).map { "\(mission) \($0)" } ?? mission
        } ?? xml.first("PLATFORM_NAME").map { name in
            (xml.first("PLATFORM_SERIAL_NUMBER")).map { "\(name)\($0)" } ?? name
        }
        // Commercial DIMAP V2: values at the scene centre (Located_Geometric_Values with LOCATION_TYPE Center).
        var centre: [String: String] = [:]
        var inCentre = false
        for leaf in xml.leaves where leaf.path.contains("Located_Geometric_Values") {
            if leaf.path.last == "LOCATION_TYPE" { inCentre = leaf.text.lowercased() == "center"; continue }
            if inCentre { centre[leaf.path.last!] = leaf.text }
        }
        func value(_ k: String) -> Double? { (centre[k] ?? xml.first(k)).flatMap { Double($0) } }
        if let t = centre["TIME"] { m.acquisitionTime = DateParsing.iso(t) }
        if m.acquisitionTime == nil, let d = xml.first("IMAGING_DATE"), let t = xml.first("IMAGING_TIME") {
            m.acquisitionTime = DateParsing.iso("\(d)T\(t)")
        }
        if m.acquisitionTime == nil, let s = xml.first("UTC_Acquisition_Range", "START").flatMap(DateParsing.iso),
           let e = xml.first("UTC_Acquisition_Range", "END").flatMap(DateParsing.iso) {
            m.acquisitionTime = s.addingTimeInterval(e.timeIntervalSince(s) / 2)
        }
        m.incidenceDeg = value("INCIDENCE_ANGLE")
        m.azimuthDeg = value("AZIMUTH_ANGLE")
        m.sunAzimuthDeg = value("SUN_AZIMUTH")
        m.sunElevationDeg = value("SUN_ELEVATION")
        if let a = value("GSD_ACROSS_TRACK"), let b = value("GSD_ALONG_TRACK") {
            m.gsd = (a * b).squareRoot()
        } else if let r = xml.first("Product_Image_Characteristics", "THEORETICAL_RESOLUTION").flatMap({ Double($0) }) {
            m.gsd = r
        }
        return m
    }
}
