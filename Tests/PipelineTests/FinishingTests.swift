import DSMCore
import DSMPipeline
import Foundation
import GDALKit
import SensorIngest
import TestSupport
import Testing

/// DSM-OPT's standard-mode options on the DSM: coregistration on a reference DEM, water masking, vertical
/// datum — through `dsmopt` as users run it.
@Suite struct FinishingTests {
    func dsmopt(_ args: [String]) throws -> ProcessResult { try run(try dsmoptExecutable(), args, timeout: 300) }

    func json(_ path: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    func expectFailure(_ r: ProcessResult, code: Int32, _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == code, "exit \(r.status), stderr: \(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.split(separator: "\n").filter { !$0.hasPrefix("[") }.count == 1, "expected one error line: \(r.stderr)", sourceLocation: sourceLocation)
        for f in fragments { #expect(r.stderr.contains(f), "'\(f)' not in: \(r.stderr)", sourceLocation: sourceLocation) }
    }

    // MARK: coregistration

    /// demcompare's sample: CNES demcompare 0.6.1 (Nuth & Kääb, 6 iterations) finds 3.0 px in x, 5.0 px in y
    /// and −0.018 m; recovered within 0.05 px and 0.05 m, with the NMAD before/after.
    @Test func coregisterRecoversDemcompareShift() throws {
        let tmp = try TemporaryFolder()
        let sec = try TestData.path("dem-coregistration/srtm_blurred_and_shifted.tif"), ref = try TestData.path("dem-coregistration/srtm_ref.tif")
        let r = try dsmopt(["coregister", sec, ref, "--out", tmp.path("out"), "--reference-datum", "egm96", "--dsm-datum", "egm96"])
        #expect(r.status == 0, "\(r.stderr)")
        let c = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let dxp = try #require(c["dxPixels"] as? Double), dyp = try #require(c["dyPixels"] as? Double), dz = try #require(c["dz"] as? Double)
        print("demcompare sample: dxPixels \(dxp), dyPixels \(dyp), dz \(dz), \(r.stderr)")
        #expect(abs(dxp - 3.0) < 0.05 && abs(dyp - 5.0) < 0.05, "\(dxp) \(dyp)")
        #expect(abs(dz - -0.018) < 0.05, "\(dz)")
        // Metres: 3 px of 0.000833° east at 39.6° N ≈ 214.9 m; 5 rows south ≈ −462.6 m.
        let dxm = try #require(c["dx"] as? Double), dym = try #require(c["dy"] as? Double)
        #expect(abs(dxm - 214.9) < 4 && abs(dym + 462.6) < 4, "\(dxm) \(dym)")
        let before = try #require(c["before"] as? [String: Any]), after = try #require(c["after"] as? [String: Any])
        let nb = try #require(before["nmad"] as? Double), na = try #require(after["nmad"] as? Double)
        #expect(na < nb / 10, "NMAD \(nb) → \(na)")
        // The coregistered DSM: the same cells, the georeferencing moved by the shift.
        let moved = try RasterDataset(path: tmp.path("out/dsm_coregistered.tif")), original = try RasterDataset(path: sec)
        let g = try #require(moved.geoTransform), o = try #require(original.geoTransform)
        #expect(abs((g[0] - o[0]) / o[1] - dxp) < 1e-6 && abs((g[3] - o[3]) / o[5] - dyp) < 1e-6)
        #expect(FileManager.default.fileExists(atPath: tmp.path("out/coregistration_difference.png")))
        #expect(FileManager.default.fileExists(atPath: tmp.path("out/coregistration.json")))
    }

    /// `--tilt` on demcompare's sample tilted by a known plane (0.1 m/km east, −0.05 m/km north about the
    /// DSM's centre): the plane is recovered, the shift unchanged, and the coregistered DSM has no tilt left.
    @Test func coregisterRemovesATilt() throws {
        let tmp = try TemporaryFolder()
        let sec = try RasterDataset(path: try TestData.path("dem-coregistration/srtm_blurred_and_shifted.tif"))
        let g = try #require(sec.geoTransform)
        // Metres per degree at the DSM's centre latitude (WGS84).
        let lat = (g[3] + Double(sec.height) / 2 * g[5]) * .pi / 180, a = 6378137.0, e2 = 0.00669437999014
        let n = a / (1 - e2 * sin(lat) * sin(lat)).squareRoot(), m = a * (1 - e2) / pow(1 - e2 * sin(lat) * sin(lat), 1.5)
        let mx = .pi / 180 * n * cos(lat), my = .pi / 180 * m
        let cx = g[0] + Double(sec.width) / 2 * g[1], cy = g[3] + Double(sec.height) / 2 * g[5]
        let z = try sec.read()
        var tilted = z
        for k in z.indices {
            let x = g[0] + (Double(k % sec.width) + 0.5) * g[1], y = g[3] + (Double(k / sec.width) + 0.5) * g[5]
            tilted[k] = z[k] + Float(1e-4 * (x - cx) * mx - 5e-5 * (y - cy) * my)
        }
        try RasterWriter.write(path: tmp.path("tilted.tif"), width: sec.width, height: sec.height, bands: [tilted], type: .float32,
                               geoTransform: g, projectionWKT: sec.projectionWKT)
        let r = try dsmopt(["coregister", tmp.path("tilted.tif"), try TestData.path("dem-coregistration/srtm_ref.tif"), "--out", tmp.path("out"),
                            "--dsm-datum", "egm96", "--tilt"])
        #expect(r.status == 0, "\(r.stderr)")
        let c = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let t = try #require(c["tilt"] as? [String: Any])
        let te = try #require(t["east"] as? Double), tn = try #require(t["north"] as? Double)
        print("tilt: east \(te), north \(tn), dz \(c["dz"] ?? ""), shift \(c["dxPixels"] ?? "") \(c["dyPixels"] ?? "")")
        #expect(abs(te + 1e-4) < 5e-6 && abs(tn - 5e-5) < 5e-6, "\(te) \(tn)")
        #expect(abs((c["dxPixels"] as? Double ?? 0) - 3) < 0.05 && abs((c["dyPixels"] as? Double ?? 0) - 5) < 0.05)
        #expect(abs(c["dz"] as? Double ?? 9) < 0.05)
        // Applied: the coregistered DSM equals the untilted one moved (same cells), within 5 cm over the
        // 58 × 92 km sample (measured 3.2 cm at the corners: the plane is recovered within 1 %).
        let out = try RasterDataset(path: tmp.path("out/dsm_coregistered.tif")).read()
        let dz = c["dz"] as? Double ?? 0
        let worst = zip(out, z).map { abs(Double($0 - $1) - dz) }.max() ?? 9
        #expect(worst < 0.05, "\(worst)")
    }

    /// Across resolutions, CRS and vertical datums: a 2 m DSM in UTM with ellipsoidal heights, displaced by
    /// (+7.3 m east, −4.1 m north, +1.2 m), against a ≈27 m reference in longitude/latitude with EGM96
    /// heights of the same terrain: the shift to apply is recovered within 0.05 reference px and 0.05 m.
    @Test func coregisterAcrossResolutionsAndDatums() throws {
        let tmp = try TemporaryFolder()
        func terrain(_ x: Double, _ y: Double) -> Double {
            900 + 140 * sin(x / 430) * cos(y / 510) + 70 * sin((x + y) / 300) + 30 * cos((x - 2 * y) / 190)
        }
        let epsg = 32740, x0 = 360000.0, y0 = 7652000.0, cell = 2.0, n = 1500
        let toUTM = try CoordinateTransform(fromEPSG: 4326, toEPSG: epsg), toGeo = try CoordinateTransform(fromEPSG: epsg, toEPSG: 4326)
        let geoid = try GeoidModel()
        // The DSM: ellipsoidal heights (terrain + geoid undulation), content displaced.
        var dsm = [Float](repeating: 0, count: n * n)
        for j in 0..<n {
            var xs = (0..<n).map { x0 + (Double($0) + 0.5) * cell }, ys = [Double](repeating: y0 - (Double(j) + 0.5) * cell, count: n)
            let ex = xs, ey = ys
            toGeo.transform(x: &xs, y: &ys)
            let und = try geoid.undulation(longitudes: xs, latitudes: ys)
            for i in 0..<n { dsm[j * n + i] = Float(terrain(ex[i] - 7.3, ey[i] + 4.1) + 1.2 + und[i]) }
        }
        try RasterWriter.write(path: tmp.path("dsm.tif"), width: n, height: n, bands: [dsm], type: .float32, noData: .nan,
                               geoTransform: [x0, cell, 0, y0, 0, -cell], projectionWKT: try SpatialReference.wkt(epsg: epsg))
        // The reference: 0.00025° cells over a larger area, EGM96 heights.
        guard let sw = toGeo.transform(x0 - 600, y0 - Double(n) * cell - 600), let ne = toGeo.transform(x0 + Double(n) * cell + 600, y0 + 600) else {
            Issue.record("cannot place the reference"); return
        }
        let d = 0.00025, rw = Int((ne.x - sw.x) / d), rh = Int((ne.y - sw.y) / d)
        var ref = [Float](repeating: 0, count: rw * rh)
        for j in 0..<rh {
            var xs = (0..<rw).map { sw.x + (Double($0) + 0.5) * d }, ys = [Double](repeating: ne.y - (Double(j) + 0.5) * d, count: rw)
            toUTM.transform(x: &xs, y: &ys)
            for i in 0..<rw { ref[j * rw + i] = Float(terrain(xs[i], ys[i])) }
        }
        try RasterWriter.write(path: tmp.path("ref.tif"), width: rw, height: rh, bands: [ref], type: .float32,
                               geoTransform: [sw.x, d, 0, ne.y, 0, -d], projectionWKT: try SpatialReference.wkt(epsg: 4326))
        let r = try dsmopt(["coregister", tmp.path("dsm.tif"), tmp.path("ref.tif"), "--out", tmp.path("out"), "--reference-datum", "egm96"])
        #expect(r.status == 0, "\(r.stderr)")
        let c = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let dx = try #require(c["dx"] as? Double), dy = try #require(c["dy"] as? Double), dz = try #require(c["dz"] as? Double)
        let px = try #require(c["referencePixelSizeM"] as? [Double])
        print("cross-resolution: dx \(dx) dy \(dy) dz \(dz) (reference cell \(px)), \(r.stderr)")
        #expect(abs(dx + 7.3) < 0.05 * px[0] && abs(dy - 4.1) < 0.05 * px[1], "\(dx) \(dy)")
        #expect(abs(dz + 1.2) < 0.05, "\(dz)")
        // In the DSM's own CRS (UTM metres) the shift is the same vector (up to the grid convergence).
        let shift = try #require(c["shiftInDSMUnits"] as? [Double])
        #expect(abs(shift[0] + 7.3) < 0.05 * px[0] && abs(shift[1] - 4.1) < 0.05 * px[1], "\(shift)")
    }

    /// A reference without CRS, one that misses the DSM, one that is nodata there: a specific error (exit 3)
    /// before any heavy work.
    @Test func badReferencesAreClearErrors() throws {
        let tmp = try TemporaryFolder()
        let dsm = try TestData.path("pleiades/reunion-pair/reference_dsm_cars.tif")
        try RasterWriter.write(path: tmp.path("nocrs.tif"), width: 50, height: 50, bands: [[Float](repeating: 1, count: 2500)], type: .float32)
        var ds = try RasterDataset(path: dsm)
        var gt = try #require(ds.geoTransform)
        try RasterWriter.write(path: tmp.path("nodata.tif"), width: 60, height: 60, bands: [[Float](repeating: -32768, count: 3600)], type: .int16,
                               noData: -32768, geoTransform: [gt[0] - 100, 20, 0, gt[3] + 100, 0, -20], projectionWKT: ds.projectionWKT)
        gt = []
        ds = try RasterDataset(path: try TestData.path("dem-coregistration/srtm_ref.tif"))
        for (ref, fragment) in [(tmp.path("nocrs.tif"), "no coordinate reference system"),
                                (try TestData.path("dem-coregistration/srtm_ref.tif"), "does not cover the DSM's area"),
                                (tmp.path("nodata.tif"), "nodata over the DSM's area")] {
            expectFailure(try dsmopt(["coregister", dsm, ref, "--out", tmp.path("out")]), code: 3, "reference DEM", fragment)
        }
        _ = ds
        // `run` checks the reference before matching anything.
        let run = try dsmopt(["run", try TestData.path("pleiades/reunion-pair/img_01.tif"), try TestData.path("pleiades/reunion-pair/img_02.tif"),
                              "--out", tmp.path("run"), "--coregister", "--reference-dem", try TestData.path("dem-coregistration/srtm_ref.tif")])
        expectFailure(run, code: 3, "reference DEM", "does not cover")
        #expect(!run.stderr.contains("] match:"), "\(run.stderr)")
    }

    /// The pipeline: `--coregister` on a copy of CARS's DSM moved by (+1.5 m, −1.0 m) and raised by 2 m
    /// (our DSM and CARS's agree within 0.03 m in every axis, measured), `--vertical-datum egm96`.
    /// ellipsoid − EGM96 equals PROJ's undulation at every cell (within 0.01 m); dsm.tif is
    /// dsm_uncoregistered.tif moved and raised; the CRS is compound.
    @Test func runCoregistersAndConvertsTheVerticalDatum() throws {
        let tmp = try TemporaryFolder()
        let img1 = try TestData.path("pleiades/reunion-pair/img_01.tif"), img2 = try TestData.path("pleiades/reunion-pair/img_02.tif")
        let cars = try RasterDataset(path: try TestData.path("pleiades/reunion-pair/reference_dsm_cars.tif"))
        var gt = try #require(cars.geoTransform)
        gt[0] += 1.5; gt[3] -= 1.0
        let nd = Float(try #require(cars.noDataValue()))
        try RasterWriter.write(path: tmp.path("moved_cars.tif"), width: cars.width, height: cars.height,
                               bands: [try cars.read().map { $0 == nd ? .nan : $0 + 2 }], type: .float32, noData: .nan,
                               geoTransform: gt, projectionWKT: cars.projectionWKT)
        let common = ["run", img1, img2, "--resolution", "0.5", "--roi", "200", "200", "500", "500", "--no-orthos"]
        let a = try dsmopt(common + ["--out", tmp.path("a")])
        #expect(a.status == 0, "\(a.stderr)")
        let b = try dsmopt(common + ["--out", tmp.path("b"), "--vertical-datum", "egm96", "--coregister", "--reference-dem", tmp.path("moved_cars.tif"),
                                     "--reference-datum", "ellipsoid"])
        #expect(b.status == 0, "\(b.stderr)")
        let m = try json(tmp.path("b/manifest.json"))
        let c = try #require(m["coregistration"] as? [String: Any])
        let dx = try #require(c["dx"] as? Double), dy = try #require(c["dy"] as? Double), dz = try #require(c["dz"] as? Double)
        print("run --coregister onto moved CARS: dx \(dx) dy \(dy) dz \(dz)")
        #expect(abs(dx - 1.5) < 0.1 && abs(dy + 1.0) < 0.1 && abs(dz - 2.0) < 0.1, "\(dx) \(dy) \(dz)")
        #expect((m["verticalDatum"] as? String) == "egm96")
        let files = Set(((m["products"] as? [[String: Any]]) ?? []).compactMap { $0["file"] as? String })
        for f in ["dsm.tif", "dsm_uncoregistered.tif", "coregistration_difference.png", "hillshade.tif", "ortho_mosaic.tif"] {
            #expect(files.contains(f) && FileManager.default.fileExists(atPath: tmp.path("b/\(f)")), "\(f)")
        }
        // Vertical datum: a (ellipsoid) − b's uncoregistered DSM (EGM96) = N from PROJ, cell by cell.
        let ell = try RasterDataset(path: tmp.path("a/dsm.tif")), orth = try RasterDataset(path: tmp.path("b/dsm_uncoregistered.tif"))
        #expect(ell.geoTransform == orth.geoTransform)
        let za = try ell.read(), zb = try orth.read()
        let g = try #require(ell.geoTransform), w = ell.width
        let toGeo = try CoordinateTransform(fromEPSG: 32740, toEPSG: 4326)
        var worst = 0.0, compared = 0
        for k in stride(from: 0, to: za.count, by: 97) where za[k].isFinite && zb[k].isFinite {
            let i = k % w, j = k / w
            guard let p = toGeo.transform(g[0] + (Double(i) + 0.5) * g[1], g[3] + (Double(j) + 0.5) * g[5]) else { continue }
            let n = try GeoidModel().undulation(longitudes: [p.x], latitudes: [p.y])[0]
            worst = max(worst, abs(Double(za[k] - zb[k]) - n))
            compared += 1
        }
        #expect(compared > 500 && worst < 0.01, "\(compared) cells, worst |ellipsoid − EGM96 − N| = \(worst)")
        // dsm.tif = dsm_uncoregistered.tif + dz on the same cells, its origin moved by the shift.
        let final = try RasterDataset(path: tmp.path("b/dsm.tif"))
        let zf = try final.read(), gf = try #require(final.geoTransform)
        let shift = try #require(c["shiftInDSMUnits"] as? [Double])
        #expect(abs(gf[0] - g[0] - shift[0]) < 1e-6 && abs(gf[3] - g[3] - shift[1]) < 1e-6)
        #expect(zip(zf, zb).allSatisfy { $0.isNaN == $1.isNaN && (!$0.isFinite || abs(Double($0 - $1) - dz) < 1e-3) })
        #expect(final.projectionWKT.contains("EGM96 height"))
        #expect(!ell.projectionWKT.contains("EGM96"))
        let mosaic = try #require(try RasterDataset(path: tmp.path("b/ortho_mosaic.tif")).geoTransform)
        #expect(abs(mosaic[0] - gf[0]) < 1e-6 && abs(mosaic[3] - gf[3]) < 1e-6, "orthos move with the DSM")
    }

    // MARK: water

    /// A synthetic scene with a lake (flat, untextured water; a multispectral image where water is dark in the
    /// near infrared): water cells flat (one level, within 0.25 m of the true level — a fence, measured
    /// 0.10 m) or nodata as asked; no land cell masked; land cells untouched.
    @Test func waterIsMaskedFromGeoJSONOrNDWI() throws {
        let tmp = try TemporaryFolder()
        var p = SyntheticProduct()
        p.size = 256; p.lake = true
        let d = try p.write(to: tmp.path("scene"))
        let v1 = tmp.path("scene/view_1.tif"), v2 = tmp.path("scene/view_2.tif")
        let common = ["run", v1, v2, "--resolution", "0.5", "--no-orthos", "--no-mosaic"]
        let plain = try dsmopt(common + ["--out", tmp.path("plain")])
        #expect(plain.status == 0, "\(plain.stderr)")
        let runs = [("flat", ["--water-mask", tmp.path("scene/lake.geojson"), "--water-fill", "flat"]),
                    ("nodata", ["--water-mask", tmp.path("scene/lake.geojson")]),
                    ("ndwi", ["--multispectral", tmp.path("scene/ms.tif"), "--water-fill", "flat"])]
        let base = try RasterDataset(path: tmp.path("plain/dsm.tif")).read()
        let g = try #require(try RasterDataset(path: tmp.path("plain/dsm.tif")).geoTransform)
        // Distance of each cell centre to the lake's centre, metres.
        let toUTM = try CoordinateTransform(fromEPSG: 4326, toEPSG: 32631)
        let centre = try #require(toUTM.transform(d.lakeCentre![0], d.lakeCentre![1]))
        let w = try RasterDataset(path: tmp.path("plain/dsm.tif")).width
        func distance(_ k: Int) -> Double {
            let x = g[0] + (Double(k % w) + 0.5) * g[1] - centre.x, y = g[3] + (Double(k / w) + 0.5) * g[5] - centre.y
            return (x * x + y * y).squareRoot()
        }
        let radius = try #require(d.lakeRadius), level = try #require(d.lakeLevel)
        let lakeCells = base.indices.filter { distance($0) <= radius }.count
        for (name, args) in runs {
            let r = try dsmopt(common + ["--out", tmp.path(name), "--mask-water"] + args)
            #expect(r.status == 0, "\(name): \(r.stderr)")
            let z = try RasterDataset(path: tmp.path("\(name)/dsm.tif")).read()
            let mask = try RasterDataset(path: tmp.path("\(name)/water_mask.tif")).read().map { $0 > 0 }
            let water = mask.indices.filter { mask[$0] }
            // No land cell masked: inside the lake (GeoJSON: cell centres inside the outline; NDWI from
            // 4× coarser pixels: within one cell of the shore), and most of the lake found.
            let slack = name == "ndwi" ? 0.5 : 0.01
            #expect(water.allSatisfy { distance($0) <= radius + slack }, "\(name): a land cell is masked")
            // Measured: GeoJSON 2,969 of 2,975 lake cells; NDWI 2,723 (its 2 m pixels mix water and shore): fences.
            #expect(Double(water.count) >= (name == "ndwi" ? 0.85 : 0.97) * Double(lakeCells), "\(name): \(water.count) of \(lakeCells) lake cells")
            // Land untouched.
            #expect(mask.indices.allSatisfy { mask[$0] || (z[$0].isNaN && base[$0].isNaN) || z[$0] == base[$0] }, "\(name): land changed")
            let values = water.map { z[$0] }
            if name == "nodata" {
                let allEmpty = values.allSatisfy { $0.isNaN }
                #expect(allEmpty)
            } else {
                let finite = values.filter(\.isFinite)
                #expect(finite.count == values.count)
                let spread = Double((finite.max() ?? 0) - (finite.min() ?? 0))
                #expect(spread <= 0.1, "\(name): water spread \(spread) m")
                #expect(abs(Double(finite.first ?? 0) - level) < 0.25, "\(name): level \(finite.first ?? 0), true \(level)")
                print("lake (\(name)): \(water.count) cells of \(lakeCells), level \(finite.first ?? 0) vs true \(level)")
            }
            let manifest = try json(tmp.path("\(name)/manifest.json"))
            let wm = try #require(manifest["waterMask"] as? [String: Any])
            let source = wm["source"] as? String ?? ""
            #expect(source.contains(name == "ndwi" ? "NDWI" : "lake.geojson"), "\(source)")
        }
    }

    /// A preset may set standard options (the coastal preset masks water, flat); the job's own value wins,
    /// and a preset asking for water masking without any source is refused like a job would be.
    @Test func coastalPresetMasksWater() throws {
        let tmp = try TemporaryFolder()
        var p = SyntheticProduct()
        p.size = 128; p.lake = true
        try p.write(to: tmp.path("scene"))
        let common = ["run", tmp.path("scene/view_1.tif"), tmp.path("scene/view_2.tif"), "--preset", "coastal", "--no-orthos", "--no-mosaic"]
        let a = try dsmopt(common + ["--out", tmp.path("a"), "--water-mask", tmp.path("scene/lake.geojson")])
        #expect(a.status == 0, "\(a.stderr)")
        #expect((try json(tmp.path("a/manifest.json"))["waterMask"] as? [String: Any])?["fill"] as? String == "flat")
        let b = try dsmopt(common + ["--out", tmp.path("b"), "--water-mask", tmp.path("scene/lake.geojson"), "--water-fill", "nodata"])
        #expect(b.status == 0, "\(b.stderr)")
        #expect((try json(tmp.path("b/manifest.json"))["waterMask"] as? [String: Any])?["fill"] as? String == "nodata")
        expectFailure(try dsmopt(common + ["--out", tmp.path("c")]), code: 2, "mask-water", "none is available")
    }

    /// A mask that misses the DSM, a file that is neither raster nor GeoJSON, no source at all: clear errors.
    @Test func badWaterMasksAreClearErrors() throws {
        let tmp = try TemporaryFolder()
        var p = SyntheticProduct()
        p.size = 128
        try p.write(to: tmp.path("scene"))
        let common = ["run", tmp.path("scene/view_1.tif"), tmp.path("scene/view_2.tif"), "--out", tmp.path("out"), "--mask-water"]
        let far = #"{"type":"Polygon","coordinates":[[[10,10],[10.01,10],[10.01,10.01],[10,10.01],[10,10]]]}"#
        try far.write(toFile: tmp.path("far.geojson"), atomically: true, encoding: .utf8)
        try "{ this is not geojson".write(toFile: tmp.path("bad.geojson"), atomically: true, encoding: .utf8)
        expectFailure(try dsmopt(common + ["--water-mask", tmp.path("far.geojson")]), code: 3, "water mask", "no overlap")
        expectFailure(try dsmopt(common + ["--water-mask", tmp.path("bad.geojson")]), code: 3, "water mask", "neither a georeferenced raster nor valid GeoJSON")
        expectFailure(try dsmopt(common), code: 2, "mask-water", "none is available")
        expectFailure(try dsmopt(common.dropLast() + ["--coregister"]), code: 2, "coregister", "reference DEM")
    }
}
