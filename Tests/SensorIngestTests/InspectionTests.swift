import DSMCore
import Foundation
import GDALKit
import SensorIngest
import TestSupport
import Testing

/// Pair/triplet inspection on the real Pléiades crops.
@Suite struct InspectionTests {
    /// B/H computed independently of our model: GDAL's RPC transformer localises the overlap centre's
    /// pixel at two heights in each image; the horizontal over vertical run of each line of sight gives
    /// tan(incidence) as a vector, and B/H is the length of their difference.
    func independentBaseToHeight(_ a: String, _ b: String, at p: GeoPoint) throws -> Double {
        let frame = LocalFrame(longitude: p.longitude, latitude: p.latitude, height: p.height)
        var slopes: [SIMD2<Double>] = []
        for path in [a, b] {
            let gdal = try GDALRPCTransformer(rpcMetadata: try RasterDataset(path: path).metadataItems(domain: "RPC"))
            let px = try #require(gdal.project([(p.longitude, p.latitude, p.height)])[0])
            let low = try #require(gdal.localize([(px.col, px.row, p.height - 200)])[0])
            let high = try #require(gdal.localize([(px.col, px.row, p.height + 200)])[0])
            let u = frame.enu(longitude: high.lon, latitude: high.lat, height: p.height + 200)
                - frame.enu(longitude: low.lon, latitude: low.lat, height: p.height - 200)
            slopes.append(SIMD2(u.x / u.z, u.y / u.z))
        }
        let d = slopes[0] - slopes[1]
        return (d * d).sum().squareRoot()
    }

    @Test func reunionPair() throws {
        let a = try TestData.path("pleiades/reunion-pair/img_01.tif"), b = try TestData.path("pleiades/reunion-pair/img_02.tif")
        let r = try StereoInspector().inspect([a, b])
        #expect(r.images.count == 2 && r.pairs.count == 1)
        #expect(r.selected == [[0, 1]])
        // The terrain is about 2,260–2,380 m above the ellipsoid (shared data README).
        #expect(r.sceneHeight.source == "correlation" && r.sceneHeight.samples >= 20)
        #expect((2250...2400).contains(r.sceneHeight.median))
        let pair = r.pairs[0]
        let centre = try #require(pair.overlapCentre)
        let reference = try independentBaseToHeight(a, b, at: centre)
        print("La Réunion B/H: ours \(pair.baseToHeight), independent (GDAL lines of sight) \(reference)")
        #expect(abs(pair.baseToHeight - reference) / reference < 0.02)
        #expect(pair.convergenceDeg < 20 && pair.overlap > 0.9)
        for img in r.images {
            #expect((0.45...0.6).contains(img.gsd), "Pléiades panchromatic GSD is about 0.5 m")
            #expect(img.footprint.count == 5 && img.footprint.first == img.footprint.last)
            #expect(img.acquisitionTime?.hasPrefix("2013-06-29T06:37") == true)
            #expect(img.dataType == "UInt16" && img.bands == 1)
        }
        #expect(r.images[1].width == 1031 && r.images[1].height == 1102)
    }

    @Test func marseilleTriplet() throws {
        let paths = try (1...3).map { try TestData.path("pleiades/marseille-triplet/img_0\($0).tif") }
        let r = try StereoInspector().inspect(paths)
        #expect(r.pairs.count == 3)
        // img_02 is the near-nadir view: both pairs through it are selected.
        let nadir = r.images.indices.min { r.images[$0].incidenceDeg < r.images[$1].incidenceDeg }
        #expect(nadir == 1)
        let selected = Set(r.selected.map { Set($0) })
        #expect(selected.contains([0, 1]) && selected.contains([1, 2]))
        #expect(r.reason.contains("nadir image 1"))
        // Best first.
        let scores = r.selected.map { s in r.pairs.first { $0.images == s }!.score }
        #expect(scores == scores.sorted(by: >))
        for p in r.pairs {
            #expect(p.convergenceDeg < 20 && p.overlap > 0.8 && p.baseToHeight > 0.05)
            let c = try #require(p.overlapCentre)
            let reference = try independentBaseToHeight(paths[p.images[0]], paths[p.images[1]], at: c)
            #expect(abs(p.baseToHeight - reference) / reference < 0.02)
        }
    }

    @Test func nonOverlappingImagesAreRefused() throws {
        let a = try TestData.path("pleiades/reunion-pair/img_01.tif"), b = try TestData.path("pleiades/marseille-triplet/img_01.tif")
        #expect(throws: InspectionError.noOverlap(a, b)) { try StereoInspector().inspect([a, b]) }
    }

    @Test func imageCountIsChecked() throws {
        let a = try TestData.path("pleiades/reunion-pair/img_01.tif")
        #expect(throws: InspectionError.self) { try StereoInspector().inspect([a]) }
        #expect(throws: InspectionError.self) { try StereoInspector().inspect([a, a, a, a]) }
    }
}
