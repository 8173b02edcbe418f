import DSMCore
import Foundation
import Testing

/// Nuth & Kääb on synthetic DEMs whose shift is known exactly.
@Suite struct CoregistrationTests {
    /// Smooth relief with slopes in every direction (metres, at local east/north metres).
    static func terrain(_ e: Double, _ n: Double) -> Double {
        800 + 120 * sin(e / 410) * cos(n / 530) + 60 * sin((e + n) / 290) + 25 * cos((e - 2 * n) / 170)
    }

    /// A secondary DEM showing the terrain displaced by a sub-pixel amount and raised: the fit recovers the
    /// shift within 0.05 px and the bias within 0.05 m, and the NMAD drops.
    @Test(arguments: [(0.37, -0.61, 1.25), (-2.3, 1.7, -0.4)])
    func recoversAKnownShift(_ shift: (Double, Double, Double)) throws {
        let (cs, rs, bias) = shift
        let w = 300, h = 260, pw = 10.0, ph = 12.0
        var ref = [Float](repeating: 0, count: w * h), sec = ref
        for j in 0..<h {
            for i in 0..<w {
                // Cell (i, j) centre: east = i·pw, north = −j·ph.
                ref[j * w + i] = Float(Self.terrain(Double(i) * pw, -Double(j) * ph))
                // Content displaced by (cs, rs) cells: the secondary at (i, j) shows the terrain of (i − cs, j − rs).
                sec[j * w + i] = Float(Self.terrain((Double(i) - cs) * pw, -(Double(j) - rs) * ph) + bias)
            }
        }
        let r = try NuthKaab.estimate(reference: ref, secondary: sec, width: w, height: h, pixelWidth: pw, pixelHeight: ph)
        // The shift to apply is the opposite of the displacement.
        #expect(abs(r.columns + cs) < 0.05, "columns \(r.columns), expected \(-cs)")
        #expect(abs(r.rows + rs) < 0.05, "rows \(r.rows), expected \(-rs)")
        #expect(abs(r.dz + bias) < 0.05, "dz \(r.dz), expected \(-bias)")
        #expect(r.after.nmad < r.before.nmad / 5, "NMAD \(r.before.nmad) → \(r.after.nmad)")
        #expect(r.iterations >= 2 && r.iterations <= 30)
    }

    /// With a tilt: a plane left after the shift (e.g. a roll of the satellite's attitude) is recovered and
    /// removed; dz is then the correction at the grid's centre.
    @Test func recoversATilt() throws {
        let w = 240, h = 240, p = 10.0, east = 3e-4, north = -2e-4, bias = 0.8
        var ref = [Float](repeating: 0, count: w * h), sec = ref
        for j in 0..<h {
            for i in 0..<w {
                ref[j * w + i] = Float(Self.terrain(Double(i) * p, -Double(j) * p))
                let e = (Double(i) - Double(w - 1) / 2) * p, n = -(Double(j) - Double(h - 1) / 2) * p
                sec[j * w + i] = Float(Self.terrain((Double(i) - 0.4) * p, -Double(j) * p) + bias + east * e + north * n)
            }
        }
        var settings = NuthKaab.Settings()
        settings.tilt = true
        let r = try NuthKaab.estimate(reference: ref, secondary: sec, width: w, height: h, pixelWidth: p, pixelHeight: p, settings: settings)
        let t = try #require(r.tilt)
        #expect(abs(t.east + east) < 2e-5 && abs(t.north + north) < 2e-5, "tilt \(t)")
        #expect(abs(r.columns + 0.4) < 0.05 && abs(r.rows) < 0.05 && abs(r.dz + bias) < 0.05, "\(r.columns) \(r.rows) \(r.dz)")
        #expect(r.after.nmad < 0.05, "\(r.after.nmad)")
        // Without the tilt option the plane stays in the differences.
        let plain = try NuthKaab.estimate(reference: ref, secondary: sec, width: w, height: h, pixelWidth: p, pixelHeight: p)
        #expect(plain.tilt == nil && plain.after.nmad > 5 * r.after.nmad)
    }

    /// Excluded cells (water) are never stable terrain: a secondary that is wrong only there is fitted as if
    /// they were absent.
    @Test func excludedCellsAreIgnored() throws {
        let w = 200, h = 200, p = 10.0
        var ref = [Float](repeating: 0, count: w * h), sec = ref
        var excluded = [Bool](repeating: false, count: w * h)
        for j in 0..<h {
            for i in 0..<w {
                ref[j * w + i] = Float(Self.terrain(Double(i) * p, -Double(j) * p))
                sec[j * w + i] = Float(Self.terrain((Double(i) - 1.2) * p, -Double(j) * p))
                if i < 80 { excluded[j * w + i] = true; sec[j * w + i] += 35 }
            }
        }
        let r = try NuthKaab.estimate(reference: ref, secondary: sec, width: w, height: h, pixelWidth: p, pixelHeight: p, excluded: excluded)
        #expect(abs(r.columns + 1.2) < 0.05 && abs(r.rows) < 0.05 && abs(r.dz) < 0.05, "\(r.columns) \(r.rows) \(r.dz)")
    }

    /// Flat terrain gives no slope to fit: a clear error, not a made-up shift.
    @Test func flatTerrainIsAnError() throws {
        let flat = [Float](repeating: 100, count: 100 * 100)
        #expect(throws: NuthKaab.Failure.self) {
            try NuthKaab.estimate(reference: flat, secondary: flat, width: 100, height: 100, pixelWidth: 10, pixelHeight: 10)
        }
    }
}
