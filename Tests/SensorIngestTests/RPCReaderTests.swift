import DSMCore
import Foundation
import GDALKit
import SensorIngest
import TestSupport
import Testing

/// Sidecar RPC formats, written by GDAL's own GeoTIFF driver (RPB=YES, RPCTXT=YES) from a real Pléiades
/// RPC, read back by our parsers; broken files give specific errors.
@Suite struct RPCReaderTests {
    func reunionItems() throws -> [(String, String)] {
        try RasterDataset(path: try TestData.path("pleiades/reunion-pair/img_01.tif")).metadataItems(domain: "RPC")
    }

    /// A small GeoTIFF whose RPC lives only in a sidecar written by GDAL.
    func imageWithSidecar(_ option: String, in tmp: TemporaryFolder) throws -> String {
        let path = tmp.path("img.tif")
        try RasterWriter.write(path: path, width: 32, height: 32, bands: [[Float](repeating: 100, count: 1024)],
                               type: .uint16, metadata: ["RPC": try reunionItems()],
                               options: [("PROFILE", "BASELINE"), (option, "YES")])
        return path
    }

    func maxProjectionDifference(_ a: RPCModel, _ b: RPCModel) -> Double {
        var worst = 0.0
        var rng = SplitMix64(seed: 5)
        for _ in 0..<200 {
            let lon = a.longitudeNorm.offset + Double.random(in: -0.5...0.5, using: &rng) * a.longitudeNorm.scale
            let lat = a.latitudeNorm.offset + Double.random(in: -0.5...0.5, using: &rng) * a.latitudeNorm.scale
            let h = Double.random(in: a.heightRange, using: &rng)
            let p = a.project(longitude: lon, latitude: lat, height: h), q = b.project(longitude: lon, latitude: lat, height: h)
            worst = max(worst, hypot(p.column - q.column, p.row - q.row))
        }
        return worst
    }

    @Test func rpbSidecarWrittenByGDALIsRead() throws {
        let tmp = try TemporaryFolder()
        let path = try imageWithSidecar("RPB", in: tmp)
        #expect(FileManager.default.fileExists(atPath: tmp.path("img.RPB")))
        let img = try SensorImage.open(path)
        #expect(img.rpcSource == .rpb)
        let reference = try RPCDictionaryReader.model(from: Dictionary(uniqueKeysWithValues: try reunionItems()), file: "tags")
        #expect(maxProjectionDifference(img.model, reference) < 1e-6)
    }

    @Test func rpcTextSidecarWrittenByGDALIsRead() throws {
        let tmp = try TemporaryFolder()
        let path = try imageWithSidecar("RPCTXT", in: tmp)
        #expect(FileManager.default.fileExists(atPath: tmp.path("img_RPC.TXT")))
        let img = try SensorImage.open(path)
        #expect(img.rpcSource == .rpcText)
        let reference = try RPCDictionaryReader.model(from: Dictionary(uniqueKeysWithValues: try reunionItems()), file: "tags")
        #expect(maxProjectionDifference(img.model, reference) < 1e-6)
    }

    /// Rewrites one line of a GDAL-written _RPC.TXT and expects the matching error.
    func brokenRPCText(_ edit: (String) -> String) throws -> IngestError? {
        let tmp = try TemporaryFolder()
        let path = try imageWithSidecar("RPCTXT", in: tmp)
        let sidecar = tmp.path("img_RPC.TXT")
        let text = try String(contentsOfFile: sidecar, encoding: .utf8)
        try edit(text).write(toFile: sidecar, atomically: true, encoding: .utf8)
        do { _ = try SensorImage.open(path); return nil } catch let e as IngestError { return e }
    }

    @Test func missingCoefficientIsNamed() throws {
        let e = try brokenRPCText { $0.split(separator: "\n").filter { !$0.hasPrefix("LINE_NUM_COEFF_7:") }.joined(separator: "\n") }
        guard case .missingField(let file, let field) = e else { Issue.record("expected missingField, got \(String(describing: e))"); return }
        #expect(file.hasSuffix("img_RPC.TXT") && field == "LINE_NUM_COEFF_7")
    }

    @Test func nonNumericCoefficientIsNamed() throws {
        let e = try brokenRPCText { text in
            text.split(separator: "\n").map { $0.hasPrefix("SAMP_DEN_COEFF_3:") ? "SAMP_DEN_COEFF_3: abc" : String($0) }.joined(separator: "\n")
        }
        guard case .notANumber(let file, let field, let value) = e else { Issue.record("expected notANumber, got \(String(describing: e))"); return }
        #expect(file.hasSuffix("img_RPC.TXT") && field == "SAMP_DEN_COEFF_3" && value == "abc")
    }

    @Test func dimapXMLWithMissingCoefficientIsNamed() throws {
        let tmp = try TemporaryFolder()
        let src = try TestData.path("rpc-dimap/RPC_PHR1B_P_201308051042194_SEN_690908101-001.XML")
        var text = try String(contentsOfFile: src, encoding: .utf8)
        // Drop the inverse model's 3rd column numerator coefficient (the last SAMP_NUM_COEFF_3 in the file).
        let r = try #require(text.range(of: "<SAMP_NUM_COEFF_3>", options: .backwards))
        let end = try #require(text.range(of: "</SAMP_NUM_COEFF_3>", range: r.upperBound..<text.endIndex))
        text.removeSubrange(r.lowerBound..<end.upperBound)
        let broken = tmp.path("RPC_broken.XML")
        try text.write(toFile: broken, atomically: true, encoding: .utf8)
        #expect(throws: IngestError.missingField(file: broken, field: "SAMP_NUM_COEFF_3")) {
            _ = try DIMAPRPCReader.model(contentsOf: URL(fileURLWithPath: broken))
        }
        let garbage = tmp.path("RPC_garbage.XML")
        try "<Dimap_Document><Global_RFM>".write(toFile: garbage, atomically: true, encoding: .utf8)
        #expect(throws: IngestError.self) { _ = try DIMAPRPCReader.model(contentsOf: URL(fileURLWithPath: garbage)) }
        // A tag closed by another name: the message says so and where the parser stopped, without Foundation's
        // "could not be completed".
        let mismatched = tmp.path("RPC_mismatched.XML")
        try "<Dimap_Document>\n<Global_RFM><A>1</B>\n</Global_RFM></Dimap_Document>".write(toFile: mismatched, atomically: true, encoding: .utf8)
        do {
            _ = try DIMAPRPCReader.model(contentsOf: URL(fileURLWithPath: mismatched))
            Issue.record("a mismatched tag was read")
        } catch {
            let text = "\(error)"
            #expect(text.contains("not well-formed XML (a closing tag does not match the open element, XML parser error 76; the parser stopped at line")
                    && !text.contains("could not be completed"), "\(text)")
        }
    }

    @Test func zeroScaleIsRejected() throws {
        var items = Dictionary(uniqueKeysWithValues: try reunionItems())
        items["LAT_SCALE"] = "0"
        #expect(throws: IngestError.invalidValue(file: "x", field: "LAT_SCALE", reason: "a scale of 0 makes the model singular")) {
            _ = try RPCDictionaryReader.model(from: items, file: "x")
        }
        items["LAT_SCALE"] = "0.09"
        items["LINE_NUM_COEFF"] = "1 2 3"
        #expect(throws: IngestError.wrongCoefficientCount(file: "x", field: "LINE_NUM_COEFF", expected: 20, found: 3)) {
            _ = try RPCDictionaryReader.model(from: items, file: "x")
        }
    }

    @Test func dimapProductFolderIsDiscovered() throws {
        let tmp = try TemporaryFolder()
        for name in ["RPC_P1BP--2017092838284574CP.XML", "RPC_P1BP--2017092838319324CP.XML"] {
            let product = String(name.dropFirst(4).dropLast(4))
            let dir = tmp.url.appendingPathComponent("PROD_\(product)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: try TestData.path("rpc-dimap/\(name)"), toPath: dir.appendingPathComponent(name).path)
            try RasterWriter.write(path: dir.appendingPathComponent("IMG_\(product)_R1C1.TIF").path, width: 16, height: 16,
                                   bands: [[Float](repeating: 1, count: 256)], type: .uint16)
        }
        let found = try ProductDiscovery.expand([tmp.url.path])
        #expect(found.count == 2)
        let img = try SensorImage.open(found[0])
        #expect(img.rpcSource == .dimapXML && img.rpcFile.hasSuffix("RPC_P1BP--2017092838284574CP.XML"))
        // The DIMAP offsets are 1-based: a DIMAP RPC read by us and by GDAL project identically.
        let gdalItems = try RasterDataset(path: found[0]).metadataItems(domain: "RPC")
        let viaGDAL = try RPCDictionaryReader.model(from: Dictionary(uniqueKeysWithValues: gdalItems), file: "gdal")
        #expect(maxProjectionDifference(img.model, viaGDAL) < 1e-6)
    }
}

@Suite struct MetadataTests {
    @Test func phrDimapAcquisition() throws {
        let m = try PleiadesMetadataReader.read(contentsOf: URL(fileURLWithPath: try TestData.path("rpc-dimap/PHRDIMAP_P1BP--2017030824934340CP.XML")))
        // Middle of UTC_Acquisition_Range 06:55:34.306 – 06:55:38.309.
        let t = try #require(m.acquisitionTime)
        #expect(abs(t.timeIntervalSince1970 - 1_488_956_136.307) < 0.01)
        #expect(m.gsd == 0.5)
        #expect(m.platform == "PHR1B")
    }

    @Test func commercialDimapCentreValues() throws {
        let m = try PleiadesMetadataReader.read(contentsOf: URL(fileURLWithPath: TestData.fixture("dimap/DIM_SYNTHETIC_P_TEST.XML")))
        #expect(m.incidenceDeg == 3.83 && m.azimuthDeg == 114.1)
        #expect(m.sunAzimuthDeg == 151.2 && m.sunElevationDeg == 55.7)
        #expect(abs((m.gsd ?? 0) - (0.70 * 0.71).squareRoot()) < 1e-12)
        #expect(m.platform == "PHR 1A")
        let t = try #require(m.acquisitionTime)
        #expect(isoString(t) == "2013-04-17T10:36:55.400Z")
    }

    @Test func datasetNameInGeoTIFFGivesTheTime() throws {
        let img = try SensorImage.open(try TestData.path("pleiades/reunion-pair/img_02.tif"))
        let t = try #require(img.metadata?.acquisitionTime)
        #expect(isoString(t) == "2013-06-29T06:37:38.900Z")
        #expect(img.metadata?.platform == "PHR1B")
    }
}
