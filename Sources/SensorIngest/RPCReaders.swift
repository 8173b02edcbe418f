import DSMCore
import Foundation

/// Errors of product ingestion. Every case names the file and what is wrong with it.
public enum IngestError: Error, Equatable, CustomStringConvertible {
    case notAnImage(file: String, detail: String)
    case unreadableImage(file: String, detail: String)
    case noRPC(file: String, lookedFor: [String])
    case missingField(file: String, field: String)
    case notANumber(file: String, field: String, value: String)
    case wrongCoefficientCount(file: String, field: String, expected: Int, found: Int)
    case invalidValue(file: String, field: String, reason: String)
    case malformed(file: String, reason: String)
    case noImagesInFolder(folder: String)

    public var description: String {
        switch self {
        case .notAnImage(let f, let d): return "\(f): not a raster image (\(d))"
        case .unreadableImage(let f, let d): return "\(f): image data cannot be read, the file may be truncated or corrupt (\(d))"
        case .noRPC(let f, let l): return "\(f): no RPC camera model found (looked for \(l.joined(separator: ", ")))"
        case .missingField(let f, let k): return "\(f): RPC field \(k) is missing"
        case .notANumber(let f, let k, let v): return "\(f): RPC field \(k) is not a number ('\(v)')"
        case .wrongCoefficientCount(let f, let k, let e, let n): return "\(f): RPC field \(k) has \(n) coefficients, expected \(e)"
        case .invalidValue(let f, let k, let r): return "\(f): RPC field \(k) is invalid: \(r)"
        case .malformed(let f, let r): return "\(f): \(r)"
        case .noImagesInFolder(let f): return "\(f): no Pléiades image (IMG_*.TIF/JP2 with an RPC) found in this folder"
        }
    }
}

/// Where an RPC model was read from.
public enum RPCSource: String, Sendable, Codable {
    case geotiffTags = "geotiff-rpc-tags"
    case dimapXML = "dimap-rpc-xml"
    case phrDimap = "phr-dimap"
    case rpb = "rpb"
    case rpcText = "rpc-txt"
    case gdalMetadata = "gdal-rpc-metadata"
}

func parseNumber(_ s: String, file: String, field: String) throws -> Double {
    let token = s.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init) ?? ""
    guard let v = Double(token), v.isFinite else { throw IngestError.notANumber(file: file, field: field, value: s) }
    return v
}

/// Builds an `RPCModel` from RPC items named as in GDAL's "RPC" metadata domain (LINE_OFF, SAMP_SCALE,
/// LINE_NUM_COEFF as 20 numbers or LINE_NUM_COEFF_1 … _20, ...). Image offsets are taken as the RPC00B
/// convention (pixel centre at integer coordinates), which is the core's convention.
public enum RPCDictionaryReader {
    public static let scalarFields = ["LINE_OFF", "SAMP_OFF", "LAT_OFF", "LONG_OFF", "HEIGHT_OFF",
                                      "LINE_SCALE", "SAMP_SCALE", "LAT_SCALE", "LONG_SCALE", "HEIGHT_SCALE"]
    public static let coefficientFields = ["LINE_NUM_COEFF", "LINE_DEN_COEFF", "SAMP_NUM_COEFF", "SAMP_DEN_COEFF"]

    public static func model(from items: [String: String], file: String) throws -> RPCModel {
        func scalar(_ k: String) throws -> Double {
            guard let s = items[k] else { throw IngestError.missingField(file: file, field: k) }
            return try parseNumber(s, file: file, field: k)
        }
        func coefficients(_ k: String) throws -> [Double] {
            if let s = items[k] {
                let tokens = s.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," || $0 == "\n" })
                guard tokens.count == 20 else {
                    throw IngestError.wrongCoefficientCount(file: file, field: k, expected: 20, found: tokens.count)
                }
                return try tokens.map { try parseNumber(String($0), file: file, field: k) }
            }
            return try (1...20).map { i in
                let name = "\(k)_\(i)"
                guard let s = items[name] else { throw IngestError.missingField(file: file, field: name) }
                return try parseNumber(s, file: file, field: name)
            }
        }
        let v = try Dictionary(uniqueKeysWithValues: scalarFields.map { ($0, try scalar($0)) })
        for k in scalarFields where k.hasSuffix("SCALE") && v[k]! == 0 {
            throw IngestError.invalidValue(file: file, field: k, reason: "a scale of 0 makes the model singular")
        }
        let c = try Dictionary(uniqueKeysWithValues: coefficientFields.map { ($0, try coefficients($0)) })
        for k in ["LINE_DEN_COEFF", "SAMP_DEN_COEFF"] where c[k]!.allSatisfy({ $0 == 0 }) {
            throw IngestError.invalidValue(file: file, field: k, reason: "all denominator coefficients are 0")
        }
        return RPCModel(
            column: RationalFunction(numerator: c["SAMP_NUM_COEFF"]!, denominator: c["SAMP_DEN_COEFF"]!),
            row: RationalFunction(numerator: c["LINE_NUM_COEFF"]!, denominator: c["LINE_DEN_COEFF"]!),
            longitudeNorm: Normalisation(offset: v["LONG_OFF"]!, scale: v["LONG_SCALE"]!),
            latitudeNorm: Normalisation(offset: v["LAT_OFF"]!, scale: v["LAT_SCALE"]!),
            heightNorm: Normalisation(offset: v["HEIGHT_OFF"]!, scale: v["HEIGHT_SCALE"]!),
            columnNorm: Normalisation(offset: v["SAMP_OFF"]!, scale: v["SAMP_SCALE"]!),
            rowNorm: Normalisation(offset: v["LINE_OFF"]!, scale: v["LINE_SCALE"]!))
    }

    /// The model as GDAL "RPC" metadata items (full precision), e.g. to hand it to GDAL's transformer.
    public static func items(of m: RPCModel) -> [(String, String)] {
        func s(_ v: Double) -> String { String(format: "%.17g", v) }
        func list(_ c: [Double]) -> String { c.map(s).joined(separator: " ") }
        return [
            ("LINE_OFF", s(m.rowNorm.offset)), ("SAMP_OFF", s(m.columnNorm.offset)),
            ("LAT_OFF", s(m.latitudeNorm.offset)), ("LONG_OFF", s(m.longitudeNorm.offset)),
            ("HEIGHT_OFF", s(m.heightNorm.offset)),
            ("LINE_SCALE", s(m.rowNorm.scale)), ("SAMP_SCALE", s(m.columnNorm.scale)),
            ("LAT_SCALE", s(m.latitudeNorm.scale)), ("LONG_SCALE", s(m.longitudeNorm.scale)),
            ("HEIGHT_SCALE", s(m.heightNorm.scale)),
            ("LINE_NUM_COEFF", list(m.row.numerator)), ("LINE_DEN_COEFF", list(m.row.denominator)),
            ("SAMP_NUM_COEFF", list(m.column.numerator)), ("SAMP_DEN_COEFF", list(m.column.denominator)),
        ]
    }
}

/// `_RPC.TXT` sidecars (one "KEY: value [unit]" per line, coefficients as KEY_1 … KEY_20).
public enum RPCTextReader {
    public static func model(contentsOf url: URL) throws -> RPCModel {
        let file = url.path
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw IngestError.malformed(file: file, reason: "cannot be read as text")
        }
        var items: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces).uppercased()
            items[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard !items.isEmpty else { throw IngestError.malformed(file: file, reason: "no 'KEY: value' RPC lines") }
        return try RPCDictionaryReader.model(from: items, file: file)
    }
}

/// `.RPB` sidecars (DigitalGlobe/ODL style: `lineOffset = …;`, `lineNumCoef = ( …, … );`).
public enum RPBReader {
    static let names: [String: String] = [
        "lineoffset": "LINE_OFF", "sampoffset": "SAMP_OFF", "latoffset": "LAT_OFF", "longoffset": "LONG_OFF",
        "heightoffset": "HEIGHT_OFF", "linescale": "LINE_SCALE", "sampscale": "SAMP_SCALE", "latscale": "LAT_SCALE",
        "longscale": "LONG_SCALE", "heightscale": "HEIGHT_SCALE", "linenumcoef": "LINE_NUM_COEFF",
        "linedencoef": "LINE_DEN_COEFF", "sampnumcoef": "SAMP_NUM_COEFF", "sampdencoef": "SAMP_DEN_COEFF",
    ]

    public static func model(contentsOf url: URL) throws -> RPCModel {
        let file = url.path
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw IngestError.malformed(file: file, reason: "cannot be read as text")
        }
        var items: [String: String] = [:]
        // Statements end with ';' and may span lines (coefficient lists in parentheses).
        for statement in text.split(separator: ";") {
            guard let eq = statement.firstIndex(of: "=") else { continue }
            let key = statement[..<eq].trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
            guard let name = names[key] else { continue }
            var value = statement[statement.index(after: eq)...].trimmingCharacters(in: .whitespacesAndNewlines)
            value = value.replacingOccurrences(of: "(", with: " ").replacingOccurrences(of: ")", with: " ")
            if name.hasSuffix("COEFF") {
                value = value.replacingOccurrences(of: ",", with: " ")
                    .split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
            }
            items[name] = value.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard !items.isEmpty else { throw IngestError.malformed(file: file, reason: "no RPB statements (e.g. 'lineOffset = …;')") }
        return try RPCDictionaryReader.model(from: items, file: file)
    }
}

/// Pléiades DIMAP V2 RPC models: `RPC_*.XML` (Global_RFM with Direct_Model, Inverse_Model, RFM_Validity)
/// and the `Rational_Sensor_Model` of `PHRDIMAP_*.XML` (F_COL/F_ROW/F_LON/F_LAT lists, A/B scale-offset).
/// DIMAP counts pixels from 1; one is subtracted from the image offsets, as GDAL does.
public enum DIMAPRPCReader {
    public static func model(contentsOf url: URL) throws -> (RPCModel, RPCSource) {
        let file = url.path
        guard let data = try? Data(contentsOf: url) else { throw IngestError.malformed(file: file, reason: "cannot be read") }
        let xml = try XMLLeaves(data: data, file: file)
        if xml.contains(element: "Rational_Sensor_Model") { return (try phrDimap(xml, file: file), .phrDimap) }
        if xml.contains(element: "Global_RFM") { return (try rpcXML(xml, file: file), .dimapXML) }
        throw IngestError.malformed(file: file, reason: "no Global_RFM or Rational_Sensor_Model element: not a Pléiades RPC file")
    }

    static func number(_ d: [String: String], _ k: String, file: String) throws -> Double {
        guard let s = d[k] else { throw IngestError.missingField(file: file, field: k) }
        return try parseNumber(s, file: file, field: k)
    }

    static func coefficients(_ d: [String: String], _ prefix: String, file: String) throws -> [Double] {
        try (1...20).map { try number(d, "\(prefix)_\($0)", file: file) }
    }

    static func rpcXML(_ xml: XMLLeaves, file: String) throws -> RPCModel {
        let direct = xml.children(of: "Direct_Model")
        let inverse = xml.children(of: "Inverse_Model")
        let validity = xml.children(of: "RFM_Validity")
        guard !inverse.isEmpty else { throw IngestError.missingField(file: file, field: "Inverse_Model") }
        guard !validity.isEmpty else { throw IngestError.missingField(file: file, field: "RFM_Validity") }
        func n(_ k: String) throws -> Double { try number(validity, k, file: file) }
        var model = RPCModel(
            column: RationalFunction(numerator: try coefficients(inverse, "SAMP_NUM_COEFF", file: file),
                                     denominator: try coefficients(inverse, "SAMP_DEN_COEFF", file: file)),
            row: RationalFunction(numerator: try coefficients(inverse, "LINE_NUM_COEFF", file: file),
                                  denominator: try coefficients(inverse, "LINE_DEN_COEFF", file: file)),
            longitudeNorm: Normalisation(offset: try n("LONG_OFF"), scale: try n("LONG_SCALE")),
            latitudeNorm: Normalisation(offset: try n("LAT_OFF"), scale: try n("LAT_SCALE")),
            heightNorm: Normalisation(offset: try n("HEIGHT_OFF"), scale: try n("HEIGHT_SCALE")),
            columnNorm: Normalisation(offset: try n("SAMP_OFF") - 1, scale: try n("SAMP_SCALE")),
            rowNorm: Normalisation(offset: try n("LINE_OFF") - 1, scale: try n("LINE_SCALE")))
        if !direct.isEmpty {
            // In the direct model SAMP_* holds longitude and LINE_* latitude, with (col, row, h) as variables.
            model.directLongitude = RationalFunction(numerator: try coefficients(direct, "SAMP_NUM_COEFF", file: file),
                                                     denominator: try coefficients(direct, "SAMP_DEN_COEFF", file: file))
            model.directLatitude = RationalFunction(numerator: try coefficients(direct, "LINE_NUM_COEFF", file: file),
                                                    denominator: try coefficients(direct, "LINE_DEN_COEFF", file: file))
        }
        try readValidityDomains(xml, into: &model, file: file)
        try validate(model, file: file)
        return model
    }

    static func phrDimap(_ xml: XMLLeaves, file: String) throws -> RPCModel {
        let direct = xml.children(of: "Direct_Model", under: "Rational_Sensor_Model")
        let inverse = xml.children(of: "Inverse_Model", under: "Rational_Sensor_Model")
        func list(_ d: [String: String], _ k: String) throws -> (RationalFunction) {
            guard let s = d[k] else { throw IngestError.missingField(file: file, field: k) }
            let tokens = s.split(whereSeparator: { $0.isWhitespace })
            guard tokens.count == 40 else {
                throw IngestError.wrongCoefficientCount(file: file, field: k, expected: 40, found: tokens.count)
            }
            let v = try tokens.map { try parseNumber(String($0), file: file, field: k) }
            return RationalFunction(numerator: Array(v[0..<20]), denominator: Array(v[20..<40]))
        }
        func ab(_ parent: String) throws -> Normalisation {
            let d = xml.children(of: parent, under: "RFM_Validity")
            return Normalisation(offset: try number(d, "B", file: file), scale: try number(d, "A", file: file))
        }
        var col = try ab("Col"), row = try ab("Row")
        col.offset -= 1
        row.offset -= 1
        var model = RPCModel(column: try list(inverse, "F_COL"), row: try list(inverse, "F_ROW"),
                             longitudeNorm: try ab("Lon"), latitudeNorm: try ab("Lat"), heightNorm: try ab("Alt"),
                             columnNorm: col, rowNorm: row,
                             directLongitude: try list(direct, "F_LON"), directLatitude: try list(direct, "F_LAT"))
        try readValidityDomains(xml, into: &model, file: file)
        try validate(model, file: file)
        return model
    }

    /// The image and ground validity domains (DIMAP pixels count from 1).
    static func readValidityDomains(_ xml: XMLLeaves, into model: inout RPCModel, file: String) throws {
        let imageDomain = xml.children(of: "Direct_Model_Validity_Domain")
        let groundDomain = xml.children(of: "Inverse_Model_Validity_Domain")
        if !imageDomain.isEmpty {
            model.imageDomain = ImageDomain(
                firstColumn: try number(imageDomain, "FIRST_COL", file: file) - 1,
                firstRow: try number(imageDomain, "FIRST_ROW", file: file) - 1,
                lastColumn: try number(imageDomain, "LAST_COL", file: file) - 1,
                lastRow: try number(imageDomain, "LAST_ROW", file: file) - 1)
        }
        if !groundDomain.isEmpty {
            model.groundDomain = GroundDomain(
                minLongitude: try number(groundDomain, "FIRST_LON", file: file),
                minLatitude: try number(groundDomain, "FIRST_LAT", file: file),
                maxLongitude: try number(groundDomain, "LAST_LON", file: file),
                maxLatitude: try number(groundDomain, "LAST_LAT", file: file))
        }
    }

    static func validate(_ m: RPCModel, file: String) throws {
        let scales = [("LONG_SCALE", m.longitudeNorm.scale), ("LAT_SCALE", m.latitudeNorm.scale),
                      ("HEIGHT_SCALE", m.heightNorm.scale), ("SAMP_SCALE", m.columnNorm.scale), ("LINE_SCALE", m.rowNorm.scale)]
        for (k, v) in scales where v == 0 {
            throw IngestError.invalidValue(file: file, field: k, reason: "a scale of 0 makes the model singular")
        }
    }
}
