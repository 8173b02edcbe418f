import DSMCore
import Foundation
import GDALKit
import SensorIngest
import TestSupport
import Testing

/// Differential tests: the project's RPC model against GDAL's RPC transformer, for every RPC in the
/// shared data, on random points across each model's validity domain. Pixel coordinates compared in
/// GDAL's convention (ours + 0.5), as `gdaltransform -rpc` prints them.
@Suite struct GDALAgreementTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        /// Builds (our model, GDAL's RPC metadata items, image domain in our convention).
        let testDescription: String
    }

    struct Loaded {
        let model: RPCModel
        let gdalItems: [(String, String)]
        let domain: ImageDomain
        let note: String
    }

    static let geotiffs = ["pleiades/reunion-pair/img_01.tif", "pleiades/reunion-pair/img_02.tif",
                           "pleiades/marseille-triplet/img_01.tif", "pleiades/marseille-triplet/img_02.tif",
                           "pleiades/marseille-triplet/img_03.tif"]
    static let dimapRPC = ["RPC_P1BP--2017092838284574CP.XML", "RPC_P1BP--2017092838319324CP.XML",
                           "RPC_PHR1B_P_201308051042194_SEN_690908101-001.XML",
                           "RPC_PHR1B_P_201709281038045_SEN_PRG_FC_178608-001.XML",
                           "RPC_PHR1B_P_201709281038393_SEN_PRG_FC_178609-001.XML"]
    static let phrDimap = ["PHRDIMAP_P1BP--2017030824934340CP.XML", "PHRDIMAP_P1BP--2018122638935449CP.XML"]

    /// GeoTIFF RPC tags: GDAL reads the tags itself.
    func loadGeoTIFF(_ rel: String) throws -> Loaded {
        let path = try TestData.path(rel)
        let img = try SensorImage.open(path)
        let items = try RasterDataset(path: path).metadataItems(domain: "RPC")
        return Loaded(model: img.model, gdalItems: items, domain: ImageDomain(width: img.width, height: img.height), note: "tags")
    }

    /// DIMAP RPC_*.XML: GDAL reads it through its Pléiades metadata reader, beside a dummy image named
    /// like the product's image (IMG_<product>_R1C1.TIF).
    func loadDIMAP(_ name: String, in tmp: TemporaryFolder) throws -> Loaded {
        let src = try TestData.path("rpc-dimap/\(name)")
        let (model, source) = try DIMAPRPCReader.model(contentsOf: URL(fileURLWithPath: src))
        #expect(source == .dimapXML)
        let product = String(name.dropFirst(4).dropLast(4))
        let dir = tmp.url.appendingPathComponent(product)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: src, toPath: dir.appendingPathComponent(name).path)
        let image = dir.appendingPathComponent("IMG_\(product)_R1C1.TIF").path
        try RasterWriter.write(path: image, width: 8, height: 8, bands: [[Float](repeating: 0, count: 64)], type: .uint16)
        let items = try RasterDataset(path: image).metadataItems(domain: "RPC")
        #expect(!items.isEmpty, "GDAL's Pléiades reader found no RPC for \(name)")
        return Loaded(model: model, gdalItems: items, domain: try #require(model.imageDomain), note: "GDAL Pléiades reader")
    }

    /// PHRDIMAP: GDAL has no reader for it; our parsed coefficients are handed to GDAL's transformer,
    /// which checks the evaluation (not the parsing) independently.
    func loadPHR(_ name: String) throws -> Loaded {
        let (model, source) = try DIMAPRPCReader.model(contentsOf: URL(fileURLWithPath: try TestData.path("rpc-dimap/\(name)")))
        #expect(source == .phrDimap)
        return Loaded(model: model, gdalItems: RPCDictionaryReader.items(of: model),
                      domain: try #require(model.imageDomain), note: "our coefficients, GDAL evaluation")
    }

    struct Figures {
        var maxProjection = 0.0
        var maxLocalisationPixels = 0.0
        var maxRoundTrip = 0.0
        var points = 0
    }

    func compare(_ l: Loaded, label: String, points: Int = 2000, seed: UInt64) throws -> Figures {
        let gdal = try GDALRPCTransformer(rpcMetadata: l.gdalItems, pixelErrorThreshold: 1e-8)
        var rng = SplitMix64(seed: seed)
        let hr = l.model.heightRange
        // Random image points (GDAL convention) and heights across the validity domain.
        let samples: [(Double, Double, Double)] = (0..<points).map { _ in
            (Double.random(in: l.domain.firstColumn...(l.domain.lastColumn + 1), using: &rng),
             Double.random(in: l.domain.firstRow...(l.domain.lastRow + 1), using: &rng),
             Double.random(in: hr, using: &rng))
        }
        let gdalGround = gdal.localize(samples.map { (col: $0.0, row: $0.1, h: $0.2) })
        // Ground equivalent of a pixel, at the domain centre.
        let cc = (l.domain.firstColumn + l.domain.lastColumn) / 2, cr = (l.domain.firstRow + l.domain.lastRow) / 2
        let gsd = try l.model.groundSampling(column: cc, row: cr, height: l.model.heightNorm.offset).mean
        var f = Figures()
        var groundPoints: [(lon: Double, lat: Double, h: Double)] = []
        for (k, s) in samples.enumerated() {
            let g = try #require(gdalGround[k], "GDAL did not localise \(s) for \(label)")
            let ours = try l.model.localize(column: s.0 - 0.5, row: s.1 - 0.5, height: s.2)
            let frame = LocalFrame(longitude: g.lon, latitude: g.lat, height: s.2)
            let d = frame.enu(longitude: ours.longitude, latitude: ours.latitude, height: s.2)
            f.maxLocalisationPixels = max(f.maxLocalisationPixels, (d.x * d.x + d.y * d.y).squareRoot() / gsd)
            let back = l.model.project(longitude: ours.longitude, latitude: ours.latitude, height: s.2)
            f.maxRoundTrip = max(f.maxRoundTrip, hypot(back.column + 0.5 - s.0, back.row + 0.5 - s.1))
            groundPoints.append((g.lon, g.lat, s.2))
        }
        let gdalPixels = gdal.project(groundPoints)
        for (k, g) in groundPoints.enumerated() {
            let p = try #require(gdalPixels[k])
            let ours = l.model.project(longitude: g.lon, latitude: g.lat, height: g.h)
            f.maxProjection = max(f.maxProjection, hypot(ours.column + 0.5 - p.col, ours.row + 0.5 - p.row))
        }
        f.points = points
        print(String(format: "GDAL agreement %@ (%@): %d points, projection max %.2e px, localisation max %.2e px (ground), round trip max %.2e px",
                     label, l.note, points, f.maxProjection, f.maxLocalisationPixels, f.maxRoundTrip))
        return f
    }

    func check(_ f: Figures, _ label: String) {
        #expect(f.maxProjection <= 0.001, "\(label): projection differs from GDAL by \(f.maxProjection) px")
        #expect(f.maxLocalisationPixels <= 0.01, "\(label): localisation differs from GDAL by \(f.maxLocalisationPixels) px on the ground")
        #expect(f.maxRoundTrip <= 0.001, "\(label): localise → project round trip off by \(f.maxRoundTrip) px")
    }

    @Test(arguments: geotiffs)
    func geotiffRPCAgreesWithGDAL(_ rel: String) throws {
        check(try compare(try loadGeoTIFF(rel), label: rel, seed: 1), rel)
    }

    @Test(arguments: dimapRPC)
    func dimapRPCAgreesWithGDAL(_ name: String) throws {
        let tmp = try TemporaryFolder()
        check(try compare(try loadDIMAP(name, in: tmp), label: name, seed: 2), name)
    }

    @Test(arguments: phrDimap)
    func phrDimapRPCAgreesWithGDAL(_ name: String) throws {
        check(try compare(try loadPHR(name), label: name, seed: 3), name)
    }

    /// The DIMAP direct model (image → ground) agrees with the inverse one: this pins the coefficient
    /// order of the direct model, which GDAL does not read.
    @Test(arguments: dimapRPC + phrDimap)
    func directModelIsConsistentWithInverse(_ name: String) throws {
        let (model, _) = try DIMAPRPCReader.model(contentsOf: URL(fileURLWithPath: try TestData.path("rpc-dimap/\(name)")))
        let domain = try #require(model.imageDomain)
        var rng = SplitMix64(seed: 4)
        var worst = 0.0
        for _ in 0..<500 {
            let c = Double.random(in: domain.firstColumn...domain.lastColumn, using: &rng)
            let r = Double.random(in: domain.firstRow...domain.lastRow, using: &rng)
            let h = Double.random(in: model.heightRange, using: &rng)
            let g = try #require(model.localizeDirect(column: c, row: r, height: h))
            let p = model.project(longitude: g.longitude, latitude: g.latitude, height: h)
            worst = max(worst, hypot(p.column - c, p.row - r))
        }
        print("direct vs inverse model \(name): max \(worst) px")
        // The two models are separate fits; Pléiades states their mutual precision well below a pixel.
        #expect(worst < 0.1, "direct and inverse models of \(name) disagree by \(worst) px")
    }
}

/// The lattice-and-bilinear shortcut for a grid's cell centres (true orthos) against PROJ on every cell.
@Suite struct GridTransformTests {
    @Test(arguments: [(32631, 703_449.0, 4_794_945.5, 0.5), (32740, 340_000.0, 7_660_000.0, 0.5), (32633, 500_000.0, 8_800_000.0, 2.0)])
    func gridTransformMatchesExact(epsg: Int, originX: Double, originY: Double, resolution: Double) throws {
        let t = try CoordinateTransform(fromEPSG: epsg, toEPSG: 4326)
        let w = 1_093, h = 1_057  // an ortho tile with its margins, not a multiple of the lattice step
        let fast = try #require(t.transformCellCentres(originX: originX, originY: originY, resolution: resolution, width: w, height: h))
        var x = [Double](), y = [Double]()
        for j in 0..<h { for i in 0..<w { x.append(originX + (Double(i) + 0.5) * resolution); y.append(originY - (Double(j) + 0.5) * resolution) } }
        t.transform(x: &x, y: &y)
        var worst = 0.0
        for c in 0..<(w * h) { worst = max(worst, abs(fast.x[c] - x[c]), abs(fast.y[c] - y[c])) }
        // 1e-9° is 0.1 mm on the ground (the cells are 0.5–2 m); PROJ's own round trip is ~1e-12°.
        #expect(worst < 1e-9, "largest difference \(worst)° (EPSG:\(epsg))")
        // One row, one column, one cell.
        for (ww, hh) in [(1, 1), (1, 40), (40, 1)] {
            let f = try #require(t.transformCellCentres(originX: originX, originY: originY, resolution: resolution, width: ww, height: hh))
            let e = try #require(t.transform(originX + 0.5 * resolution, originY - 0.5 * resolution))
            #expect(f.x.count == ww * hh && abs(f.x[0] - e.x) < 1e-12 && abs(f.y[0] - e.y) < 1e-12)
        }
    }
}
