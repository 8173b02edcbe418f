import DSMPipeline
import Foundation
import GDALKit
import Testing
import TestSupport

/// Multi-date differencing (`dsmopt diff`, the `dsm-difference` process) on synthetic DSMs with a known
/// lava flow and a known georeferencing shift between the dates.
@Suite struct DifferencingTests {
    @Test func lavaFlowVolumeAndShiftAreRecovered() throws {
        let tmp = try TemporaryFolder()
        let truth = try SyntheticChange().write(to: tmp.path("scenes"))
        var o = DifferenceOptions(a: tmp.path("scenes/dsm_a.tif"), b: tmp.path("scenes/dsm_b.tif"), output: tmp.path("out"))
        let bb = truth.flowBoundingBox
        o.aoi = .boundingBox(bb[0], bb[1], bb[2], bb[3])
        let m = try DSMDifference.run(o)
        // The issue's target: the volume within 3 % and the shift recovered.
        let v = m.volumes
        #expect(abs(v.netM3 - truth.volumeM3) / truth.volumeM3 < 0.03, "net \(v.netM3) m³ vs \(truth.volumeM3)")
        #expect(abs(m.coregistration.dx - truth.shift[0]) < 0.05 && abs(m.coregistration.dy - truth.shift[1]) < 0.05,
                "shift \(m.coregistration.dx), \(m.coregistration.dy) vs \(truth.shift)")
        #expect(abs(m.coregistration.dz - truth.shift[2]) < 0.05, "dz \(m.coregistration.dz) vs \(truth.shift[2])")
        // The uncertainty is stated and not absurd (noise 0.25 m per DSM; volume errors of a few hundred m³).
        #expect(v.netUncertaintyM3 > 10 && v.netUncertaintyM3 < 0.03 * truth.volumeM3, "σ_V \(v.netUncertaintyM3)")
        #expect(m.stableTerrain.nmad > 0.15 && m.stableTerrain.nmad < 0.45, "stable NMAD \(m.stableTerrain.nmad)")
        #expect(m.stableTerrain.definition.contains("outside the area of interest"))
        #expect(v.gainM3 > 0.9 * truth.volumeM3 && v.lossM3 < 0.05 * truth.volumeM3, "gain \(v.gainM3), loss \(v.lossM3)")
        #expect(v.coverage > 0.99)
        // Products: the difference on A's grid, the coloured map with its legend, the manifest and a valid STAC item.
        let d = try RasterDataset(path: tmp.path("out/difference.tif"))
        let a = try RasterDataset(path: tmp.path("scenes/dsm_a.tif"))
        #expect(d.width == a.width && d.height == a.height && d.geoTransform == a.geoTransform && d.dataType() == .float32)
        let png = try RasterDataset(path: tmp.path("out/difference.png"))
        #expect(png.bandCount == 4 && png.height > png.width - 320 + 1)
        let (valid, report) = try STACValidation.validate([tmp.path("out/item.json")])
        #expect(valid, "\(report)")
        #expect(!FileManager.default.fileExists(atPath: tmp.path("out/.difference-work")))

        // Without an AOI or a mask: the flow is found in B − A after a first coregistration and left out of
        // the stable terrain, so it does not pull the vertical alignment (it did by 17 mm, 9 % of the volume,
        // before); gain is summed over the changes found only (the flow covers (π·220·90) m²).
        let whole = try DSMDifference.run(DifferenceOptions(a: tmp.path("scenes/dsm_a.tif"), b: tmp.path("scenes/dsm_b.tif"), output: tmp.path("whole")))
        #expect(abs(whole.coregistration.dz - truth.shift[2]) < 0.01, "dz \(whole.coregistration.dz)")
        #expect(abs(whole.volumes.netM3 - truth.volumeM3) / truth.volumeM3 < 0.03, "net \(whole.volumes.netM3)")
        #expect(abs(whole.volumes.gainM3 - truth.volumeM3) / truth.volumeM3 < 0.03, "gain \(whole.volumes.gainM3)")
        let flowArea = Double.pi * 220 * 90
        #expect(abs(whole.volumes.changedAreaM2 - flowArea) / flowArea < 0.1, "changed area \(whole.volumes.changedAreaM2) vs \(flowArea)")
        #expect(whole.stableTerrain.automaticChangeAreaM2 > flowArea && whole.stableTerrain.automaticChangeAreaM2 < 1.5 * flowArea)
    }

    /// Cells of B holding an undeclared no-data value (−9999, as many DEMs write it without saying so) or an
    /// absurd one (3.4e38) are no heights: before, the 3.4e38 cells made a volume of change of 1e42 m³.
    @Test func undeclaredNoDataIsNoHeight() throws {
        let tmp = try TemporaryFolder()
        var c = SyntheticChange()
        c.size = 500
        c.flowCentre = [250, 260]; c.flowAxes = [110, 45]
        let truth = try c.write(to: tmp.path("scenes"))
        let src = try RasterDataset(path: tmp.path("scenes/dsm_b.tif"))
        var z = try src.read()
        let sw = src.width, sh = src.height
        for y in 20..<60 { for x in 20..<60 { z[y * sw + x] = -9999 } }
        for y in (sh - 70)..<(sh - 30) { for x in (sw - 80)..<(sw - 40) { z[y * sw + x] = 3.4e38 } }
        let bad = tmp.path("b_bad.tif")
        let w = try WindowedRasterWriter(path: bad, width: src.width, height: src.height, bands: 1, type: .float32,
                                         geoTransform: src.geoTransform!, projectionWKT: src.projectionWKT, noData: nil)
        try w.write(band: 1, x: 0, y: 0, width: src.width, height: src.height, values: z)
        try w.close()
        let m = try DSMDifference.run(DifferenceOptions(a: tmp.path("scenes/dsm_a.tif"), b: bad, output: tmp.path("out")))
        #expect(abs(m.volumes.netM3 - truth.volumeM3) / truth.volumeM3 < 0.03, "net \(m.volumes.netM3) vs \(truth.volumeM3)")
        #expect(abs(m.coregistration.dz - truth.shift[2]) < 0.05, "dz \(m.coregistration.dz)")
        // The two blocks (2 × 1,600 cells of B's) are left out of the coverage, and only they.
        let clean = try DSMDifference.run(DifferenceOptions(a: tmp.path("scenes/dsm_a.tif"), b: tmp.path("scenes/dsm_b.tif"), output: tmp.path("clean")))
        #expect(m.volumes.coverage < clean.volumes.coverage && m.volumes.coverage > clean.volumes.coverage - 0.03,
                "coverage \(m.volumes.coverage) vs \(clean.volumes.coverage)")
    }

    @Test func dsmsThatDoNotOverlapAreRefused() throws {
        let tmp = try TemporaryFolder()
        var c = SyntheticChange()
        c.size = 300
        c.flowCentre = [150, 150]; c.flowAxes = [60, 30]
        try c.write(to: tmp.path("scenes"))
        // B moved 5 km east: no common area.
        let far = tmp.path("far.tif")
        let b = try RasterDataset(path: tmp.path("scenes/dsm_b.tif"))
        let gt = b.geoTransform!
        try GeoProducts.translate(source: tmp.path("scenes/dsm_b.tif"), destination: far,
                                  arguments: ["-a_ullr", "\(gt[0] + 5000)", "\(gt[3])", "\(gt[0] + 5000 + Double(b.width) * gt[1])", "\(gt[3] + Double(b.height) * gt[5])"])
        let o = DifferenceOptions(a: tmp.path("scenes/dsm_a.tif"), b: far, output: tmp.path("out"))
        do {
            _ = try DSMDifference.run(o)
            Issue.record("two DSMs 5 km apart were differenced")
        } catch let e as DifferenceError {
            guard case .noOverlap(let m) = e else { Issue.record("wrong error \(e)"); return }
            #expect(m.contains("do not overlap") && m.contains("dsm_a.tif") && m.contains("far.tif"), "\(m)")
        }
        #expect(!FileManager.default.fileExists(atPath: tmp.path("out/difference.tif")))
        // An AOI outside both: refused with its own message.
        var o2 = DifferenceOptions(a: tmp.path("scenes/dsm_a.tif"), b: tmp.path("scenes/dsm_b.tif"), output: tmp.path("out2"))
        o2.aoi = .boundingBox(10, 10, 10.01, 10.01)
        #expect(throws: DifferenceError.self) { try DSMDifference.run(o2) }
        // Through the CLI: one line naming both files, the geometry exit code (4), nothing written.
        let r = try run(try dsmoptExecutable(), ["diff", tmp.path("scenes/dsm_a.tif"), far, "--out", tmp.path("cli")])
        #expect(r.status == 4 && r.stderr.contains("do not overlap"), "\(r.status) \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: tmp.path("cli/difference.tif")))
    }
}
