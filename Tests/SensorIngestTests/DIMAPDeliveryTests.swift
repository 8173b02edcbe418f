import DSMCore
import Foundation
import GDALKit
import SensorIngest
import TestSupport
import Testing

/// Real Pléiades deliveries: a DIMAP V2 product split into JPEG2000 tiles is ONE image, whichever way it
/// is given (DIM file, product folder, delivery root), and reads the same as the image it was made from.
@Suite(.serialized) struct DIMAPDeliveryTests {
    static let sources = ["pleiades/reunion-pair/img_01.tif", "pleiades/reunion-pair/img_02.tif"]

    /// The La Réunion pair repackaged as two 2×2-tile JP2 products with a VOL_PHR.XML.
    func delivery(_ tmp: TemporaryFolder) throws -> (root: String, dims: [String]) {
        let root = tmp.path("delivery")
        let dims = try DIMAPDeliveryWriter().write(images: try Self.sources.map { try TestData.path($0) }, to: root)
        return (root, dims)
    }

    @Test func everyInputFormGivesTheSameInspection() throws {
        let tmp = try TemporaryFolder()
        let (root, dims) = try delivery(tmp)
        let reference = try StereoInspector().inspect(try Self.sources.map { try TestData.path($0) })
        let forms: [[String]] = [dims, dims.map { ($0 as NSString).deletingLastPathComponent }, [root], [root + "/VOL_PHR.XML"]]
        for form in forms {
            let paths = try ProductDiscovery.expand(form)
            #expect(paths == dims, "\(form) expanded to \(paths)")
            let r = try StereoInspector().inspect(paths)
            #expect(r.images.count == 2)
            #expect(r.images.map(\.rpcSource) == ["dimap-rpc-xml", "dimap-rpc-xml"])
            #expect(r.images.map(\.width) == reference.images.map(\.width) && r.images.map(\.height) == reference.images.map(\.height))
            #expect(r.images.map(\.acquisitionTime) == reference.images.map(\.acquisitionTime) && r.images[0].acquisitionTime != nil)
            // Same geometry and the same scene heights: nothing depends on the container (JP2 resolution
            // levels are not used as overviews).
            #expect(r.pairs.map(\.baseToHeight) == reference.pairs.map(\.baseToHeight))
            #expect(r.sceneHeight.low == reference.sceneHeight.low && r.sceneHeight.high == reference.sceneHeight.high
                    && r.sceneHeight.median == reference.sceneHeight.median)
        }
        // The mosaic's pixels are the source's (lossless JPEG2000).
        let a = try RasterDataset(path: dims[1]).read(column: 500, row: 540, width: 40, height: 30)
        let b = try RasterDataset(path: try TestData.path(Self.sources[1])).read(column: 500, row: 540, width: 40, height: 30)
        #expect(a == b)
    }

    @Test func aLoneTileGetsItsShiftedModel() throws {
        let tmp = try TemporaryFolder()
        let (_, dims) = try delivery(tmp)
        let product = try DIMAPProduct.read(dims[0])
        let tile = try #require(product.tiles.first { $0.row == 2 && $0.column == 2 })
        let mosaic = try SensorImage.open(dims[0]), lone = try SensorImage.open(tile.path)
        #expect(lone.width == 512 && lone.height == 512 && product.offset(of: tile.path)! == (512, 512))
        // A ground point seen in the tile projects 512 pixels up and left of where the mosaic sees it.
        let g = try mosaic.model.localize(column: 700.25, row: 650.5, height: 2300)
        let p = lone.model.project(longitude: g.longitude, latitude: g.latitude, height: 2300)
        #expect(abs(p.column - 188.25) < 1e-6 && abs(p.row - 138.5) < 1e-6, "\(p)")
    }

    @Test func brokenProductsAreNamed() throws {
        let tmp = try TemporaryFolder()
        let (root, dims) = try delivery(tmp)
        let product = try DIMAPProduct.read(dims[0])
        let fm = FileManager.default
        func tile(_ r: Int, _ c: Int) -> String { product.tiles.first { $0.row == r && $0.column == c }!.path }
        func expectError(_ fragment: String, naming file: String, _ body: () throws -> Void) {
            do { try body(); Issue.record("accepted: expected \(fragment)") } catch {
                let text = "\(error)"
                #expect(text.contains(fragment) && text.contains((file as NSString).lastPathComponent), "\(text)")
            }
        }
        let inspect = { _ = try StereoInspector().inspect(try ProductDiscovery.expand([root])) }

        // A tile the DIM file names is missing.
        try fm.moveItem(atPath: tile(2, 1), toPath: tmp.path("aside.jp2"))
        expectError("is missing", naming: tile(2, 1), inspect)
        try fm.moveItem(atPath: tmp.path("aside.jp2"), toPath: tile(2, 1))
        // A tile of the wrong size.
        try fm.moveItem(atPath: tile(1, 2), toPath: tmp.path("aside.jp2"))
        try GeoProducts.translate(source: tmp.path("aside.jp2"), destination: tile(1, 2),
                                  arguments: ["-of", "JP2OpenJPEG", "-srcwin", "0", "0", "100", "100", "-co", "REVERSIBLE=YES"])
        expectError("the product says 512×512", naming: tile(1, 2), inspect)
        try fm.removeItem(atPath: tile(1, 2))
        try fm.moveItem(atPath: tmp.path("aside.jp2"), toPath: tile(1, 2))
        // A truncated JP2.
        let whole = try Data(contentsOf: URL(fileURLWithPath: tile(2, 2)))
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: tile(2, 2)))
        expectError("truncated or corrupt", naming: tile(2, 2), inspect)
        try whole.write(to: URL(fileURLWithPath: tile(2, 2)))
        // The RPC file is missing.
        let rpc = try #require(product.rpcFile)
        try fm.moveItem(atPath: rpc, toPath: tmp.path("aside.xml"))
        expectError("no RPC camera model", naming: rpc, inspect)
        try fm.moveItem(atPath: tmp.path("aside.xml"), toPath: rpc)
        // The volume index names a product that is not there.
        let vol = root + "/VOL_PHR.XML"
        let text = try String(contentsOfFile: vol, encoding: .utf8)
        try text.replacingOccurrences(of: "PROD_2_PAN/", with: "PROD_9_PAN/").write(toFile: vol, atomically: true, encoding: .utf8)
        expectError("which is not there", naming: vol, inspect)
        try text.write(toFile: vol, atomically: true, encoding: .utf8)
        // Repaired, it inspects again.
        try inspect()
    }

    @Test func panchromaticIsMatchedInABundle() throws {
        let tmp = try TemporaryFolder()
        let (root, dims) = try delivery(tmp)
        // Add a multispectral product beside each panchromatic one (same files, MS settings).
        for dim in dims {
            let ms = dim.replacingOccurrences(of: "_P_", with: "_MS_")
            let text = try String(contentsOfFile: dim, encoding: .utf8).replacingOccurrences(of: "<SPECTRAL_PROCESSING>PAN", with: "<SPECTRAL_PROCESSING>MS")
            try text.write(toFile: ms, atomically: true, encoding: .utf8)
        }
        try FileManager.default.removeItem(atPath: root + "/VOL_PHR.XML")
        #expect(try ProductDiscovery.expand([root]) == dims)
    }
}
