import DSMCore
import Foundation
import GDALKit
import SensorIngest
import TestSupport
import Testing

/// The synthetic product generator and the fixtures it made.
@Suite struct SyntheticProductTests {
    @Test func committedFixturesAreReproducible() throws {
        // Fixtures/synthetic-pair was written by `dsmopt synth --out Fixtures/synthetic-pair`.
        let tmp = try TemporaryFolder()
        try SyntheticProduct().write(to: tmp.url.path)
        for name in ["view_1.tif", "view_2.tif", "truth_dsm.tif"] {
            let a = try RasterDataset(path: tmp.path(name)).read()
            let b = try RasterDataset(path: TestData.fixture("synthetic-pair/\(name)")).read()
            #expect(a == b, "\(name) differs from a fresh `dsmopt synth`")
        }
    }

    @Test func syntheticGeometryIsRecovered() throws {
        let dir = TestData.fixture("synthetic-triplet")
        let r = try StereoInspector().inspect((1...3).map { "\(dir)/view_\($0).tif" })
        #expect(r.images.map(\.rpcSource) == ["geotiff-rpc-tags", "rpb", "rpc-txt"])
        let wide = try #require(r.pairs.first { $0.images == [0, 2] })
        #expect(abs(wide.baseToHeight - 0.25) < 0.005)
        for img in r.images { #expect(abs(img.gsd - 0.5) < 0.005) }
        // The coarse correlation finds heights inside the true DSM's range (297–379 m).
        #expect(r.sceneHeight.source == "correlation")
        #expect(r.sceneHeight.low >= 290 && r.sceneHeight.high <= 385)
        #expect(Set(r.selected.map { Set($0) }).isSuperset(of: [Set([0, 1]), Set([1, 2])]))
    }
}
