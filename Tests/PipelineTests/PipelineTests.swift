import DSMCore
import DSMPipeline
import Foundation
import GDALKit
import SensorIngest
import TestSupport
import Testing

/// `dsmopt run` end to end: quality against references and synthetic truth, products, bad input.
@Suite(.serialized) struct PipelineTests {
    static let presets = TestData.packageRoot.appendingPathComponent("Presets").path

    func options(_ images: [String], out: String) -> PipelineOptions {
        var o = PipelineOptions(images: images, output: out)
        o.presetFolder = Self.presets
        return o
    }

    /// Writes a synthetic product into `tmp/scene` and runs its two views at 0.5 m without orthos into `tmp/out`.
    @discardableResult
    func runSynthetic(_ product: SyntheticProduct, in tmp: TemporaryFolder) throws -> (scene: SyntheticProduct.Description, manifest: Manifest) {
        let d = try product.write(to: tmp.path("scene"))
        var o = options([tmp.path("scene/view_1.tif"), tmp.path("scene/view_2.tif")], out: tmp.path("out"))
        o.resolution = 0.5
        o.orthoImages = false
        o.orthoMosaic = false
        return (d, try DSMPipelineRunner(options: o).run())
    }

    /// ../shared/tools/dsm_compare.py (Debian's python3 with GDAL) as JSON.
    func compare(_ candidate: String, _ reference: String) throws -> [String: Double] {
        let r = try run("/usr/bin/python3", [TestData.root.deletingLastPathComponent().appendingPathComponent("tools/dsm_compare.py").path,
                                             candidate, reference, "--json"])
        #expect(r.status == 0, "dsm_compare.py failed: \(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        return json.compactMapValues { ($0 as? NSNumber)?.doubleValue }
    }

    @Test func reunionPairMatchesTheReference() throws {
        let tmp = try TemporaryFolder()
        var o = options([try TestData.path("pleiades/reunion-pair/img_01.tif"), try TestData.path("pleiades/reunion-pair/img_02.tif")],
                        out: tmp.path("out"))
        o.roi = PixelWindow(x: 150, y: 150, width: 700, height: 700)
        o.resolution = 0.5
        o.pointCloud = true
        let manifest = try DSMPipelineRunner(options: o).run()
        let s = try compare(tmp.path("out/dsm.tif"), try TestData.path("pleiades/reunion-pair/reference_dsm_s2p.tif"))
        print("La Réunion vs S2P reference: \(s.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.4f", $0.value))" }.joined(separator: ", "))")
        // ROI of the pair: measured NMAD 0.33 m (CARS 1.3.0: 0.37), completeness 0.98, bias −0.05 m, no cell
        // off by more than 20 m (NMAD 0.375 m and 741 such cells before the speckle filter, the sub-pixel
        // window and the edge-preserving denoising). Regression fences, not the targets:
        #expect(try #require(s["nmad_m"]) <= 0.35)
        #expect(try #require(s["over_20m"]) == 0)
        #expect(try #require(s["completeness"]) >= 0.95)
        #expect(abs(try #require(s["bias_m"])) <= 0.3)
        // Every matched cell has its uncertainty: the matches without a measurable correlation peak (no σ) are
        // left out (item 20; before, 1.2 % of the whole pair's matched cells had a height and no σ).
        let heights = try RasterDataset(path: tmp.path("out/dsm.tif")).read()
        let filledMask = try RasterDataset(path: tmp.path("out/dsm_filled_mask.tif")).read()
        let sigmas = try RasterDataset(path: tmp.path("out/dsm_uncertainty.tif")).read()
        let matched = heights.indices.filter { !heights[$0].isNaN && filledMask[$0] == 0 }
        let withoutSigma = matched.filter { sigmas[$0].isNaN || sigmas[$0] <= 0 }.count
        #expect(matched.count > heights.count / 2 && withoutSigma == 0, "\(withoutSigma) of \(matched.count) matched cells without σ")
        // No cell's σ exceeds the uncertainty threshold's height (0.5 px × GSD ÷ B/H, item 21): the cell's σ is
        // the median (or a weighted mean) of its matches', each within the threshold. Before: up to 301 m on the
        // whole pair. 1 % for the manifest's rounding of the GSD and B/H.
        let gsd = try #require(manifest.provenance?.inputs.compactMap(\.gsd).max())
        let limit = MatchingParameters.defaults.uncertaintyThreshold * gsd / manifest.pairOffsets[0].baseToHeight * 1.01
        let largest = matched.map { Double(sigmas[$0]) }.max() ?? .nan
        #expect(largest <= limit && largest > limit / 2, "largest σ \(largest) m, threshold \(limit) m")
        // The regularisation adapts to the pair's matching noise (AdaptiveRegularisation): La Réunion's matches
        // cost 0.07 (median 1 − ZNCC of the sample windows, measured), a clean match 0.01, so the pair is
        // matched with 0.025 × 7 and large jumps cost √7 times as much; parameters.json and the manifest say so.
        let pointing = try #require(manifest.pointing.first)
        let cost = try #require(pointing.matchingCost)
        #expect(cost > 0.03 && cost < 0.15 && (pointing.matchingCostSamples ?? 0) >= AdaptiveRegularisation.minimumMatches, "\(pointing)")
        let adapted = AdaptiveRegularisation.adapted(.defaults, typicalCost: cost)
        #expect(pointing.regularisation == adapted.regularisation && adapted.regularisation > 0.1, "\(pointing)")
        #expect(pointing.jumpPenaltyRatio == adapted.jumpPenaltyRatio && adapted.jumpPenaltyRatio < 8, "\(pointing)")
        let resolved = try JSONDecoder().decode(ResolvedParameters.self, from: Data(contentsOf: URL(fileURLWithPath: tmp.path("out/parameters.json"))))
        #expect(resolved.regularisationByPair == [adapted.regularisation] && resolved.jumpPenaltyRatioByPair == [adapted.jumpPenaltyRatio])
        #expect(resolved.matching == .defaults, "the settings themselves are kept as given")
        // Every product of the DSM-OPT set is listed and present.
        let files = Set(manifest.products.map(\.file))
        for f in ["correlation_score.tif", "dsm_raw.tif", "dsm.tif", "dsm_filled_mask.tif", "hillshade.tif",
                  "hillshade_multidirectional.tif", "ortho_1_forward.tif", "ortho_2_backward.tif", "ortho_mosaic.tif",
                  "pointcloud.las", "preview.png", "parameters.json"] {
            #expect(files.contains(f), "\(f) missing from the manifest")
            #expect(FileManager.default.fileExists(atPath: tmp.path("out/\(f)")), "\(f) not written")
        }
        #expect(FileManager.default.fileExists(atPath: tmp.path("out/manifest.json")))
        // Provenance: the software and its GDAL, every input with the SHA-256 `sha256sum` gives and its
        // acquisition, the times and CPU seconds.
        let prov = try #require(manifest.provenance)
        #expect(prov.software.name == "dsmopt" && prov.software.gdal == GDAL.version && !prov.software.version.isEmpty)
        #expect(prov.inputs.count == 2 && prov.inputs.allSatisfy { $0.acquisitionTime?.hasPrefix("2013-06-29") == true && $0.platform == "PHR1B" })
        for (k, name) in ["img_01.tif", "img_02.tif"].enumerated() {
            let sum = try run("/usr/bin/sha256sum", [try TestData.path("pleiades/reunion-pair/\(name)")]).stdout.split(separator: " ").first.map(String.init)
            #expect(prov.inputs[k].file == name && prov.inputs[k].files.first?.sha256 == sum, "\(prov.inputs[k])")
        }
        #expect((prov.cpuSeconds ?? 0) > 0 && (prov.wallSeconds ?? 0) > 0 && prov.started != nil && prov.finished != nil)
        #expect(Set(manifest.products.map(\.code)).isSuperset(of: ["A1", "A2", "A3", "B2", "B4", "C1", "C2", "C4", "D1"]))
        #expect(manifest.crs == "EPSG:32740")
        try checkProducts(folder: tmp.path("out"), epsg: 32740)
        // The folder's STAC item: valid (stac-validator, official schemas), one asset per product, the
        // acquisition's time span, the pair's B/H, footprint over the DSM.
        let (valid, report) = try STACValidation.validate([tmp.path("out/item.json")])
        #expect(valid, "\(report)")
        let item = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tmp.path("out/item.json")))) as? [String: Any])
        let props = try #require(item["properties"] as? [String: Any]), assets = try #require(item["assets"] as? [String: Any])
        #expect(Set(assets.keys).isSuperset(of: manifest.products.map { ($0.file as NSString).deletingPathExtension }))
        #expect((props["start_datetime"] as? String)?.hasPrefix("2013-06-29T06:37:14") == true && (props["end_datetime"] as? String)?.hasPrefix("2013-06-29T06:37:38") == true)
        #expect((props["dsmopt:pairs"] as? [[String: Any]])?.first?["base_to_height"] as? Double == manifest.pairOffsets[0].baseToHeight)
        #expect(props["proj:epsg"] as? Int == 32740 && props["constellation"] as? String == "pleiades")
        let bbox = try #require(item["bbox"] as? [Double])
        #expect(bbox.count == 4 && bbox[0] > 55.6 && bbox[2] < 55.7 && bbox[1] > -21.3 && bbox[3] < -21.2, "\(bbox)")
        // No staging folder is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path("out")).allSatisfy { !$0.hasPrefix(".") })
    }

    func checkProducts(folder: String, epsg: Int) throws {
        let dsm = try RasterDataset(path: "\(folder)/dsm.tif")
        #expect(dsm.metadata(domain: "IMAGE_STRUCTURE")["LAYOUT"] == "COG")
        #expect(dsm.noDataValue()?.isNaN == true && dsm.dataType() == .float32)
        #expect(dsm.projectionWKT.contains("\"EPSG\",\"\(epsg)\"") || dsm.projectionWKT.contains("EPSG\",\(epsg)"))
        #expect(dsm.metadata()["VERTICAL_REFERENCE"] == "WGS84 ellipsoid")
        let hs = try RasterDataset(path: "\(folder)/hillshade.tif")
        #expect(hs.bandCount == 4 && hs.dataType() == .byte && hs.width == dsm.width && hs.noDataValue() == nil)
        // The alpha band, not a colour, says where the DSM has no height.
        let alpha = try hs.read(band: 4), heights = try dsm.read()
        #expect(zip(alpha, heights).allSatisfy { ($0 == 255) == $1.isFinite }, "alpha = 255 exactly where the DSM has a height")
        let score = try RasterDataset(path: "\(folder)/correlation_score.tif").read().filter { !$0.isNaN }
        #expect(!score.isEmpty && score.allSatisfy { (0...1).contains($0) })
        // The ortho is the image resampled on the DSM: its valid pixels carry image values.
        let ortho = try RasterDataset(path: "\(folder)/ortho_mosaic.tif")
        #expect(ortho.bandCount == 2)
        let o = try ortho.read()
        #expect(Double(o.filter { $0 > 0 }.count) / Double(o.count) > 0.5)
        // Hidden cells are marked by a validity mask (kept through the COG), not by a nodata value.
        #expect(ortho.noDataValue() == nil && ortho.hasDatasetMask)
        let valid = try ortho.readValidity()
        #expect(zip(valid, o).allSatisfy { $0 == ($1 > 0) }, "mask = cells with a digital number")
        #expect(valid.contains(false), "some cells are hidden or outside every view")
        // parameters.json holds the resolved parameters.
        let p = try JSONDecoder().decode(ResolvedParameters.self, from: Data(contentsOf: URL(fileURLWithPath: "\(folder)/parameters.json")))
        #expect(p.matching == MatchingParameters.defaults && p.preset == "default" && p.epsg == epsg)
        if FileManager.default.fileExists(atPath: "\(folder)/pointcloud.las") {
            let las = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/pointcloud.las"))
            #expect(las.prefix(4) == Data("LASF".utf8) && las[24] == 1 && las[25] == 4 && las[104] == 6)
            let count = las.subdata(in: 247..<255).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            let offset = las.subdata(in: 96..<100).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            #expect(Int(offset) + Int(count) * 34 == las.count)
            #expect(Int(count) == (try dsm.read()).filter { !$0.isNaN }.count)
        }
    }

    @Test func marseilleTripletMatchesTheReference() throws {
        let tmp = try TemporaryFolder()
        let d = "pleiades/marseille-triplet"
        // S2P's reference uses img_02 as the reference image of the ROI.
        var o = options([try TestData.path("\(d)/img_02.tif"), try TestData.path("\(d)/img_01.tif"), try TestData.path("\(d)/img_03.tif")],
                        out: tmp.path("out"))
        o.roi = PixelWindow(x: 150, y: 150, width: 700, height: 700)
        o.resolution = 0.5
        let manifest = try DSMPipelineRunner(options: o).run()
        let s = try compare(tmp.path("out/dsm.tif"), try TestData.path("\(d)/reference_dsm_s2p.tif"))
        print("Marseille vs S2P reference: \(s.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.4f", $0.value))" }.joined(separator: ", "))")
        // Measured NMAD 0.451 m, RMSE 0.60 m, completeness 0.990, 238 cells off by > 5 m (2026-11-26; issue
        // 10's targets 0.50 / 1.0 m; 0.546 / 0.89 m before the speckle filter, the sub-pixel window and the
        // edge-preserving denoising; CARS: 0.76; 321 cells off by > 5 m before lone heights were judged,
        // item 23). Regression fences:
        #expect(try #require(s["nmad_m"]) <= 0.51)
        #expect(try #require(s["rmse_debiased_m"]) <= 0.8)
        #expect(try #require(s["over_20m"]) == 0)
        #expect(try #require(s["over_5m"]) <= 290)
        #expect(try #require(s["completeness"]) >= 0.95)
        #expect(manifest.parameters.pairs.count == 3)
        #expect(Set(manifest.products.map(\.code)).isSuperset(of: ["C1", "C2", "C3", "C4"]))
        // Cells of the fused DSM record which pairs contributed; the pairs agree, so most cells get all three.
        let bits = try RasterDataset(path: tmp.path("out/pair_contributions.tif")).read()
        #expect(Double(bits.filter { $0 == 7 }.count) / Double(bits.filter { $0 > 0 }.count) > 0.6)
        // One consistent orientation: the three images are adjusted together on tie points seen in all
        // three, so the pairs' DSMs agree without a vertical offset (the nadir image's pairs were ±2.4 m
        // apart with the delivered RPCs; measured 0.00/0.01 m after, tie-point RMS 0.59 → 0.15 px).
        let orientation = try #require(manifest.orientation)
        print("Marseille orientation: \(orientation)")
        #expect(orientation.multiViewTiePoints >= 100 && orientation.rmsAfterPx < 0.25 && orientation.rmsAfterPx < orientation.rmsBeforePx / 2)
        #expect(manifest.pairOffsets.count == 3 && manifest.pairOffsets.allSatisfy { abs($0.verticalOffsetM ?? 9) <= 0.3 },
                "\(manifest.pairOffsets)")
    }

    /// Buildings in the synthetic scene (vertical walls, flat weakly textured roofs, occlusions): the
    /// truth has them, and the DSM finds their roofs at their height with the ground beside them.
    @Test func syntheticBuildingsAreRecovered() throws {
        let tmp = try TemporaryFolder()
        var product = SyntheticProduct()
        product.size = 384
        product.buildings = 6
        let (d, manifest) = try runSynthetic(product, in: tmp)
        let buildings = try #require(d.buildings), centre = try #require(d.centre)
        #expect(buildings.count == 6)
        let dsm = try RasterDataset(path: tmp.path("out/dsm.tif"))
        let gt = try #require(dsm.geoTransform), v = try dsm.read()
        let frame = LocalFrame(longitude: centre[0], latitude: centre[1], height: 0)
        let toGrid = try CoordinateTransform(fromEPSG: 4326, toEPSG: manifest.grid.epsg)
        func sample(_ e: Double, _ n: Double) -> Double? {
            let g = frame.geodetic(SIMD3(e, n, 0))
            guard let q = toGrid.transform(g.longitude, g.latitude) else { return nil }
            let x = Int(((q.x - gt[0]) / gt[1]).rounded(.down)), y = Int(((q.y - gt[3]) / gt[5]).rounded(.down))
            guard x >= 0, y >= 0, x < dsm.width, y < dsm.height, !v[y * dsm.width + x].isNaN else { return nil }
            return Double(v[y * dsm.width + x])
        }
        var roofsFound = 0
        for b in buildings {
            // Roof cells 2 m inside the walls, ground cells 3–5 m outside them.
            var roof: [Double] = [], ground: [Double] = []
            for fy in stride(from: -1.0, through: 1.0, by: 0.1) {
                for fx in stride(from: -1.0, through: 1.0, by: 0.1) {
                    if let h = sample(b.east + fx * (b.halfEast - 2), b.north + fy * (b.halfNorth - 2)) { roof.append(h) }
                }
            }
            for t in stride(from: -1.0, through: 1.0, by: 0.25) {
                for (e, n) in [(b.east + t * b.halfEast, b.north + b.halfNorth + 4), (b.east - b.halfEast - 4, b.north + t * b.halfNorth)] {
                    if let h = sample(e, n) { ground.append(h) }
                }
            }
            guard roof.count >= 10, ground.count >= 4 else { continue }
            let roofMedian = roof.sorted()[roof.count / 2], groundMedian = ground.sorted()[ground.count / 2]
            print(String(format: "building %.0f×%.0f m, roof %.1f m: DSM roof %.2f m, ground beside %.2f m", 2 * b.halfEast, 2 * b.halfNorth,
                         b.roof, roofMedian, groundMedian))
            if abs(roofMedian - b.roof) < 1.5 && groundMedian < b.roof - 4 { roofsFound += 1 }
        }
        // Measured: every building whose roof is in the imaged area (regression fence: at least 4 of 6).
        #expect(roofsFound >= 4, "\(roofsFound) of \(buildings.count) roofs found at their height")
    }

    /// A pair at B/H 0.08 (weak geometry) gets a wider denoising, stated in parameters.json with why.
    @Test func weakGeometryIsAdaptedAndStated() throws {
        let tmp = try TemporaryFolder()
        var product = SyntheticProduct()
        product.size = 320
        product.baseToHeight = 0.08
        product.noise = 15
        let manifest = try runSynthetic(product, in: tmp).manifest
        let p = try JSONDecoder().decode(ResolvedParameters.self, from: Data(contentsOf: URL(fileURLWithPath: tmp.path("out/parameters.json"))))
        let weak = try #require(p.weakGeometry)
        #expect(weak.contains("B/H 0.080") && weak.contains("×3.1"), "\(weak)")
        let d = try #require(p.denoising)
        #expect(abs(d.sigma - 6.25) < 0.01 && d.radius == 13 && d.range == 4, "\(d)")
        #expect(manifest.parameters.weakGeometry == weak)
        let s = try compare(tmp.path("out/dsm.tif"), tmp.path("scene/truth_dsm.tif"))
        print("weak geometry (B/H 0.08, noise 15 DN) vs truth: NMAD \(s["nmad_m"] ?? .nan), RMSE \(s["rmse_debiased_m"] ?? .nan)")
        // Regression fence, not the target (this 320² scene 0.197 m, 0.194 m with the former ⌈1.5σ⌉ radius; 1024² measured
        // 0.118 m with σ ∝ 1 ÷ B/H and ⌈2σ⌉, 0.173 m with the former √(0.25 ÷ B/H) rule, 0.282 m without the adaptation).
        #expect(try #require(s["nmad_m"]) <= 0.3)
        // A pair at B/H ≥ 0.12 is not weak.
        #expect(DSMFilter.Denoising.forScene(resolution: 0.5, gsd: 0.5, baseToHeight: 0.26).sigma == 2)
    }

    @Test func syntheticSceneMatchesTheTruth() throws {
        let tmp = try TemporaryFolder()
        var product = SyntheticProduct()
        product.size = 384
        product.baseToHeight = 0.25
        product.gsd = 0.5
        try runSynthetic(product, in: tmp)
        // Compare on the truth cells both views see (10 pixels inside each image).
        let truth = try RasterDataset(path: tmp.path("scene/truth_dsm.tif"))
        let tgt = try #require(truth.geoTransform)
        let tv = try truth.read()
        let dsm = try RasterDataset(path: tmp.path("out/dsm.tif"))
        let dgt = try #require(dsm.geoTransform)
        let dv = try dsm.read()
        let views = try [tmp.path("scene/view_1.tif"), tmp.path("scene/view_2.tif")].map { try SensorImage.open($0) }
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: URL(fileURLWithPath: tmp.path("out/manifest.json"))))
        // Clean synthetic images: their matches cost less than the reference cost, the regularisation stays as set.
        #expect((manifest.pointing.first?.matchingCost ?? 1) < AdaptiveRegularisation.referenceCost && manifest.pointing.first?.regularisation == 0.025
                && manifest.pointing.first?.jumpPenaltyRatio == 16)
        let epsg = manifest.grid.epsg
        let toGrid = try CoordinateTransform(fromEPSG: 4326, toEPSG: epsg)
        var errors: [Double] = [], seen = 0
        for j in 0..<truth.height {
            for i in 0..<truth.width {
                let lon = tgt[0] + (Double(i) + 0.5) * tgt[1], lat = tgt[3] + (Double(j) + 0.5) * tgt[5]
                let h = Double(tv[j * truth.width + i])
                let inside = views.allSatisfy { v in
                    let p = v.model.project(longitude: lon, latitude: lat, height: h)
                    return p.column >= 10 && p.row >= 10 && p.column <= Double(v.width - 11) && p.row <= Double(v.height - 11)
                }
                guard inside, let q = toGrid.transform(lon, lat) else { continue }
                seen += 1
                let x = (q.x - dgt[0]) / dgt[1] - 0.5, y = (q.y - dgt[3]) / dgt[5] - 0.5
                let x0 = Int(x.rounded(.down)), y0 = Int(y.rounded(.down))
                guard x0 >= 0, y0 >= 0, x0 + 1 < dsm.width, y0 + 1 < dsm.height else { continue }
                let fx = x - Double(x0), fy = y - Double(y0)
                let a = dv[y0 * dsm.width + x0], b = dv[y0 * dsm.width + x0 + 1], c = dv[(y0 + 1) * dsm.width + x0], e = dv[(y0 + 1) * dsm.width + x0 + 1]
                guard !a.isNaN, !b.isNaN, !c.isNaN, !e.isNaN else { continue }
                let v = (Double(a) * (1 - fx) + Double(b) * fx) * (1 - fy) + (Double(c) * (1 - fx) + Double(e) * fx) * fy
                errors.append(v - h)
            }
        }
        let sorted = errors.sorted()
        let median = sorted[sorted.count / 2]
        let nmad = 1.4826 * sorted.map { abs($0 - median) }.sorted()[sorted.count / 2]
        let completeness = Double(errors.count) / Double(seen)
        // The uncertainty layer ranks the matched heights' errors and gives their size: the NMAD of
        // error ÷ σ near 1 (measured 1.08 at 1024² with 15 DN of noise; here noiseless), and the fifth of the
        // cells with the largest σ err more than the fifth with the smallest.
        let raw = try RasterDataset(path: tmp.path("out/dsm_raw.tif")).read()
        let unc = try RasterDataset(path: tmp.path("out/dsm_uncertainty.tif")).read()
        #expect(unc.contains { !$0.isNaN } && unc.allSatisfy { $0.isNaN || $0 > 0 })
        var pairs: [(error: Double, sigma: Double)] = []
        for j in stride(from: 0, to: truth.height, by: 2) {
            for i in stride(from: 0, to: truth.width, by: 2) {
                let lon = tgt[0] + (Double(i) + 0.5) * tgt[1], lat = tgt[3] + (Double(j) + 0.5) * tgt[5]
                guard let q = toGrid.transform(lon, lat) else { continue }
                let x = Int(((q.x - dgt[0]) / dgt[1]).rounded(.down)), y = Int(((q.y - dgt[3]) / dgt[5]).rounded(.down))
                guard x >= 0, y >= 0, x < dsm.width, y < dsm.height else { continue }
                let r = raw[y * dsm.width + x], u = unc[y * dsm.width + x]
                guard !r.isNaN, !u.isNaN else { continue }
                pairs.append((Double(r) - Double(tv[j * truth.width + i]), Double(u)))
            }
        }
        let bySigma = pairs.sorted { $0.sigma < $1.sigma }
        let fifth = bySigma.count / 5
        let low = TestSupport.nmad(bySigma.prefix(fifth).map(\.error)), high = TestSupport.nmad(bySigma.suffix(fifth).map(\.error))
        let ratio = TestSupport.nmad(pairs.map { $0.error / $0.sigma })
        print(String(format: "uncertainty layer: NMAD(error/σ) %.2f, NMAD of the errors in the lowest/highest σ fifth %.3f / %.3f m over %d cells", ratio, low, high, pairs.count))
        #expect(pairs.count > 1000 && high > low && (0.5...2).contains(ratio))
        print(String(format: "synthetic truth (B/H 0.25, GSD 0.5 m): NMAD %.3f m, bias %.3f m, completeness %.4f over %d cells", nmad, median, completeness, seen))
        #expect(nmad <= 0.15)
        #expect(abs(median) <= 0.1)
        #expect(completeness >= 0.98)
    }

    // MARK: bad input — a clear error before heavy work, nothing left as if it were a result

    func expectRefused<E: Error & Equatable>(_ o: PipelineOptions, _ expected: E) throws {
        #expect(throws: expected) { try DSMPipelineRunner(options: o).run() }
        let left = (try? FileManager.default.contentsOfDirectory(atPath: o.output)) ?? []
        #expect(left.isEmpty, "output folder holds \(left)")
    }

    @Test func badInputIsRefusedBeforeHeavyWork() throws {
        let tmp = try TemporaryFolder()
        let a = try TestData.path("pleiades/reunion-pair/img_01.tif"), b = try TestData.path("pleiades/reunion-pair/img_02.tif")
        // Images that do not overlap.
        let m = try TestData.path("pleiades/marseille-triplet/img_01.tif")
        try expectRefused(options([a, m], out: tmp.path("o1")), InspectionError.noOverlap(a, m))
        // An unknown preset.
        var o = options([a, b], out: tmp.path("o2"))
        o.preset = "lunar"
        #expect(throws: PresetError.self) { try DSMPipelineRunner(options: o).run() }
        // Out-of-range parameters, all listed.
        o = options([a, b], out: tmp.path("o3"))
        o.overrides["window"] = 16
        o.overrides["regularisation"] = -1
        o.resolution = -2
        do { try DSMPipelineRunner(options: o).run(); Issue.record("accepted invalid parameters") } catch let PipelineError.invalidParameters(p) {
            #expect(Set(p.map(\.field)) == ["window", "regularisation", "resolution"])
        }
        // An AOI outside the footprint.
        o = options([a, b], out: tmp.path("o4"))
        o.aoi = .boundingBox(10, 10, 10.01, 10.01)
        try expectRefused(o, PipelineError.aoiOutsideFootprint)
        // An unwritable output folder (below a regular file).
        let file = tmp.path("plain-file")
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        o = options([a, b], out: file + "/out")
        #expect(throws: PipelineError.outputNotWritable(file + "/out", "cannot be created")) { try DSMPipelineRunner(options: o).run() }
        // An EPSG code outside the table's range, and one in range that PROJ does not know.
        o = options([a, b], out: tmp.path("o5"))
        o.epsg = 999_999
        #expect(throws: PipelineError.invalidParameters([ParameterProblem(field: "epsg", value: "999999", expected: "an integer from 1024 to 32767")])) {
            try DSMPipelineRunner(options: o).run()
        }
        o.epsg = 1025
        #expect(throws: GDALError.self) { try DSMPipelineRunner(options: o).run() }
        // A CRS that cannot hold a grid of square metres: geographic (EPSG:4326 had given one cell of 1°),
        // geocentric (EPSG:4978 had ended in "no pixel correlated"), projected in feet.
        for (code, why) in [(4326, "geographic, in degrees"), (4978, "not a projected CRS"), (2263, "in units of 0.3048")] {
            o.epsg = code
            do { try DSMPipelineRunner(options: o).run(); Issue.record("accepted EPSG:\(code)") } catch let PipelineError.invalidParameters(p) {
                #expect(p.map(\.field) == ["epsg"] && p[0].expected.contains(why) && p[0].expected.contains("projected in metres"), "\(p)")
            }
        }
        #expect(OutputCRS.problem(epsg: 32740) == nil && OutputCRS.problem(epsg: 2154) == nil && OutputCRS.problem(epsg: 3857) == nil)
        // A cell finer than half the first image's GSD (0.506 m): 1e-9 m had stopped the run on an integer
        // overflow, 1e-4 m ran on without end.
        for fine in [1e-9, 1e-4, 0.24] {
            o = options([a, b], out: tmp.path("o6"))
            o.resolution = fine
            do { try DSMPipelineRunner(options: o).run(); Issue.record("accepted resolution \(fine)") } catch let PipelineError.invalidParameters(p) {
                #expect(p.map(\.field) == ["resolution"] && p[0].expected.contains("at least 0.5 × the first image's GSD (0.506 m), 0.25 m"), "\(p)")
            }
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: o.output)) ?? []).isEmpty)
        }
        // The finest the resolution factor allows (0.5, which gives 0.25 m) passes, given either way.
        o = options([a, b], out: tmp.path("o7"))
        o.resolutionFactor = 0.5
        #expect(try DSMPipelineRunner(options: o).prepare().parameters.resolution == 0.25)
        o.resolutionFactor = nil
        o.resolution = 0.25
        #expect(try DSMPipelineRunner(options: o).prepare().parameters.resolution == 0.25)
        // Positions that are not longitudes and latitudes: refused where the area is read (a vertex at 1e308°
        // had stopped the run converting its projection to a pixel).
        for (text, why) in [(#"{"type":"Polygon","coordinates":[[[55.6,-21.2],[1e308,2],[55.7,-21.3],[55.6,-21.2]]]}"#, "longitude 1e+308 outside −180…180"),
                            ("55.6,-95,55.7,95", "latitude -95.0 outside −90…90"),
                            ("55.6,-21.3,nan,-21.2", "a position is not a number (nan, -21.3)")] {
            #expect(throws: PipelineError.invalidAOI(why)) { _ = try AreaOfInterest.parse(text) }
        }
        // The same in a job file (what the job service hands over), and the window of a projection beyond
        // Int's range is empty, not a crash.
        #expect(throws: DecodingError.self) { _ = try JSONDecoder().decode(AreaOfInterest.self, from: Data(#"{"bbox": [55.6, -21.3, 55.7, 91]}"#.utf8)) }
        #expect(throws: DecodingError.self) {
            _ = try JSONDecoder().decode(AreaOfInterest.self, from: Data(#"{"type":"Polygon","coordinates":[[[1e300,0],[1,2],[3,4]]]}"#.utf8))
        }
        let image = try SensorImage.open(a)
        #expect(DSMPipelineRunner.clippedWindow(columns: [0, 1e300], rows: [0, 10], in: image) == PixelWindow(x: 0, y: 0, width: image.width, height: 11))
        #expect(DSMPipelineRunner.clippedWindow(columns: [0, .nan], rows: [0, 10], in: image) == nil)
    }

    @Test func aoiSelectsTheRegion() throws {
        let tmp = try TemporaryFolder()
        var o = options([try TestData.path("pleiades/reunion-pair/img_01.tif"), try TestData.path("pleiades/reunion-pair/img_02.tif")],
                        out: tmp.path("out"))
        o.aoi = try AreaOfInterest.parse(#"{"type":"Polygon","coordinates":[[[55.649,-21.2315],[55.6505,-21.2315],[55.6505,-21.2300],[55.649,-21.2300],[55.649,-21.2315]]]}"#)
        o.orthoImages = false
        let prepared = try DSMPipelineRunner(options: o).prepare()
        // About 155 m × 166 m at ~0.5 m pixels: a few hundred pixels each way, inside the image.
        #expect((200...450).contains(prepared.parameters.roi.width) && (200...450).contains(prepared.parameters.roi.height))
        // The default cell is 2 × GSD (0.506 m) rounded to a clean 1.0 m, on a grid whose origin is a whole
        // number of cells (so it overlays other DEMs without resampling).
        #expect(prepared.parameters.resolution == 1.0)
        #expect(prepared.grid.originX.truncatingRemainder(dividingBy: 1) == 0 && prepared.grid.originY.truncatingRemainder(dividingBy: 1) == 0)
        #expect(DSMPipelineRunner.cleanResolution(0.506) == 0.5 && DSMPipelineRunner.cleanResolution(1.517) == 1.5
                && DSMPipelineRunner.cleanResolution(0.01) == 0.05 && DSMPipelineRunner.cleanResolution(23.4) == 23)
        #expect(prepared.parameters.epsg == 32740)
        #expect(throws: PipelineError.self) { _ = try AreaOfInterest.parse("not json") }
        #expect(try AreaOfInterest.parse("55.6,-21.3,55.7,-21.2") == .boundingBox(55.6, -21.3, 55.7, -21.2))
    }

    @Test func everyPresetLoadsAndValidates() throws {
        let lib = try PresetLibrary(folder: Self.presets)
        #expect(Set(lib.presets.keys).isSuperset(of: ["default", "urban", "mountain", "forest", "flat", "snow-ice"]))
        #expect(try lib.preset("default").parameters == MatchingParameters.defaults)
        for p in lib.presets.values { #expect(p.parameters.validate().isEmpty && !p.description.isEmpty) }
        // A preset with a misspelt key, in its parameters or of its own, or a value of the wrong type, is
        // refused, naming the file and the field.
        // The folder refuses it (requireValid, what a daemon checks at start), the preset itself is unavailable
        // with that reason, and the folder's valid presets stay usable.
        #expect(lib.problems.isEmpty)
        for (json, reason) in [(#"{"name":"bad","description":"x","resolutionFactor":2,"parameters":{"windw":5}}"#, "unknown parameter(s): windw"),
                               (#"{"name":"bad","description":"x","resolutionfactor":2}"#, "unknown field(s) resolutionfactor (a preset has name, description, resolution-factor"),
                               (#"{"name":"bad","description":"x","resolution-factor":"2"}"#, "resolution-factor must be a number"),
                               (#"{"name":"bad"}"#, "description is missing"),
                               (#"{"name":"bad","description":"x""#, "not valid JSON")] {
            let tmp = try TemporaryFolder()
            try json.write(toFile: tmp.path("bad.json"), atomically: true, encoding: .utf8)
            try FileManager.default.copyItem(atPath: (Self.presets as NSString).appendingPathComponent("urban.json"), toPath: tmp.path("urban.json"))
            let partial = try PresetLibrary(folder: tmp.url.path)
            #expect(partial.presets.keys.sorted() == ["urban"] && partial.problems.keys.sorted() == ["bad"], "\(json)")
            for attempt in [{ try partial.requireValid() }, { _ = try partial.preset("bad") }] {
                do {
                    try attempt()
                    Issue.record("accepted: \(json)")
                } catch let e as PresetError {
                    #expect(e.description.contains("bad.json: invalid preset: ") && e.description.contains(reason), "\(json): \(e)")
                }
            }
            #expect(try partial.preset("urban") == lib.preset("urban"))
        }
    }
}
