import Foundation
import GDALKit
import Testing
import TestSupport

@Suite struct VerticalDatumTests {
    /// PROJ's EGM96 grid through GDAL: the undulation at La Réunion is what `cs2cs EPSG:4979 EPSG:4326+5773`
    /// prints there (2.3725 m at 55.5 E, 21 S: an ellipsoidal height of 0 is −2.37 m orthometric).
    @Test func geoidUndulationComesFromPROJsGrid() throws {
        let geoid = try GeoidModel()
        let n = try geoid.undulation(longitudes: [55.5, 0, 147], latitudes: [-21, 0, -43])
        #expect(abs(n[0] - 2.3725) < 0.001)
        // Gulf of Guinea ≈ +17 m, Tasmania ≈ −?: different places give different values (not a constant).
        #expect(abs(n[1] - n[0]) > 5)
    }

    /// Orthometric height products carry their vertical reference in the GeoTIFF's CRS (compound, EGM96
    /// height EPSG:5773); ellipsoidal ones keep the horizontal CRS alone (GDAL 3.6's GeoTIFF keys cannot
    /// hold an ellipsoidal axis) and say so in metadata.
    @Test(arguments: [VerticalDatum.ellipsoid, .egm96])
    func heightCRSRoundTripsThroughGeoTIFF(_ datum: VerticalDatum) throws {
        let dir = try TemporaryFolder()
        let path = dir.path("h.tif")
        let wkt = try SpatialReference.heightWKT(epsg: 32740, datum: datum)
        let w = try WindowedRasterWriter(path: path, width: 8, height: 8, bands: 1, type: .float32, geoTransform: [300000, 1, 0, 7700000, 0, -1],
                                         projectionWKT: wkt, noData: .nan)
        try w.write(band: 1, x: 0, y: 0, width: 8, height: 8, values: [Float](repeating: 1, count: 64))
        try w.close()
        let back = try RasterDataset(path: path).projectionWKT
        #expect(back.contains("UTM zone 40S"), "\(wkt)")
        switch datum {
        case .ellipsoid: #expect(!back.contains("VERTCRS") && !back.contains("VERT_CS"), "\(back)")
        case .egm96: #expect(back.contains("EGM96 height"), "\(back)")
        }
    }
}
