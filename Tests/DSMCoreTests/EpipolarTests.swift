import DSMCore
import Foundation
import Testing

@Suite struct EpipolarTests {
    let centre = GeoPoint(longitude: 5.5, latitude: 43.3, height: 300)

    @Test func affineAlgebra() {
        let a = Affine2D.similarity(angle: 0.3, scale: 1.7, tx: 5, ty: -2)
        let p = a.inverse.after(a).apply(12.5, -7)
        #expect(abs(p.x - 12.5) < 1e-12 && abs(p.y + 7) < 1e-12)
    }

    @Test func syntheticPairDisparityFollowsHeight() throws {
        // Forward/backward views with B/H 0.25 at 0.5 m GSD: one metre of height is 0.5 px of disparity,
        // and the epipolar lines are exactly rows.
        let inc = atan(0.125) * 180 / .pi
        let a = RPCModel.affineView(centre: centre, width: 400, height: 400, gsd: 0.5, incidenceDeg: inc, azimuthDeg: 30)
        let b = RPCModel.affineView(centre: centre, width: 400, height: 400, gsd: 0.5, incidenceDeg: inc, azimuthDeg: 210)
        let r = EpipolarRectifier(first: a, second: b)
        let t = try r.tile(PixelWindow(x: 0, y: 0, width: 400, height: 400), heights: 250...350)
        #expect(t.modelResidual < 1e-6)
        // 100 m of heights → 50 px of disparities, plus the margins, rounded outwards to whole pixels.
        let span = t.disparityRange.upperBound - t.disparityRange.lowerBound
        #expect(span >= 50 + 2 * r.disparityMargin - 1e-6 && span <= 50 + 2 * r.disparityMargin + 2)
        // A ground point at two heights: its disparity changes by −0.5 px per metre.
        func disparity(_ h: Double) throws -> Double {
            let p1 = a.project(longitude: 5.5005, latitude: 43.3003, height: h)
            let p2 = b.project(longitude: 5.5005, latitude: 43.3003, height: h)
            let u = t.left.apply(p1.column, p1.row), v = t.right.apply(p2.column, p2.row)
            #expect(abs(u.y - v.y) < 1e-6)
            return u.x - v.x
        }
        let d300 = try disparity(300), d320 = try disparity(320)
        #expect(abs((d320 - d300) / 20 + 0.5) < 0.005)
        #expect(t.disparityRange.contains(d300))
    }
}
