import Foundation

extension RPCModel {
    /// An exact RPC for an idealised parallel-projection (pushbroom-like) view of a small scene, used for
    /// synthetic scenes with known truth.
    ///
    /// The image is north-up: columns go east, rows go south, one pixel is `gsd` metres. A point raised by
    /// one metre moves on the ground by `tan(incidence)` metres towards the satellite azimuth, so the pixel
    /// that sees (E, N, h) is the pixel that sees (E − dE·(h − h₀), N − dN·(h − h₀), h₀). Longitude and
    /// latitude are linearised at the centre, which makes the model a first-order RPC (denominators 1).
    public static func affineView(centre: GeoPoint, width: Int, height: Int, gsd: Double,
                                  incidenceDeg: Double, azimuthDeg: Double, heightScale: Double = 500) -> RPCModel {
        let radii = WGS84.radiiOfCurvature(latitude: centre.latitude)
        let metresPerDegLon = radii.east * .pi / 180
        let metresPerDegLat = radii.north * .pi / 180
        let t = tan(incidenceDeg * .pi / 180), az = azimuthDeg * .pi / 180
        let dE = t * sin(az), dN = t * cos(az)
        let lonScale = Double(width) * gsd / metresPerDegLon
        let latScale = Double(height) * gsd / metresPerDegLat
        let cx = Double(width - 1) / 2, cy = Double(height - 1) / 2
        // col = cx + (E − dE·h̃)/gsd with E = x·lonScale·mpdLon, h̃ = z·heightScale; normalised by colScale.
        let colScale = Double(width), rowScale = Double(height)
        var cn = [Double](repeating: 0, count: 20), rn = [Double](repeating: 0, count: 20)
        var den = [Double](repeating: 0, count: 20)
        den[0] = 1
        cn[1] = lonScale * metresPerDegLon / gsd / colScale
        cn[3] = -dE * heightScale / gsd / colScale
        rn[2] = -latScale * metresPerDegLat / gsd / rowScale
        rn[3] = dN * heightScale / gsd / rowScale
        return RPCModel(
            column: RationalFunction(numerator: cn, denominator: den),
            row: RationalFunction(numerator: rn, denominator: den),
            longitudeNorm: Normalisation(offset: centre.longitude, scale: lonScale),
            latitudeNorm: Normalisation(offset: centre.latitude, scale: latScale),
            heightNorm: Normalisation(offset: centre.height, scale: heightScale),
            columnNorm: Normalisation(offset: cx, scale: colScale),
            rowNorm: Normalisation(offset: cy, scale: rowScale),
            imageDomain: ImageDomain(width: width, height: height))
    }
}
