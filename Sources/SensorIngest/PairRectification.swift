import DSMCore
import Foundation
import GDALKit

/// A rectified tile: its geometry, both resampled images and the measured epipolar residual.
public struct RectifiedTile: Sendable {
    public var geometry: EpipolarTile
    public var left: GrayImage
    public var right: GrayImage
    /// Residual vertical parallax measured by sparse 2-D matching before the pointing correction.
    public var parallaxBefore: (medianAbsolute: Double, median: Double, count: Int)
    /// The same after the correction (what the matcher sees).
    public var parallaxAfter: (medianAbsolute: Double, median: Double, count: Int)
}

/// Summary of a rectified tile, for JSON reports.
public struct RectifiedTileReport: Sendable, Codable {
    public var window: PixelWindow
    public var rectifiedSize: [Int]
    public var disparityRange: [Double]
    public var heightRange: [Double]
    public var modelResidualPx: Double
    public var pointingCorrectionPx: Double
    public var parallaxSamples: Int
    /// nil when no point correlated well enough to measure.
    public var medianAbsoluteRowResidualBeforePx: Double?
    public var medianAbsoluteRowResidualPx: Double?

    public init(_ t: RectifiedTile) {
        window = t.geometry.window
        rectifiedSize = [t.geometry.width, t.geometry.height]
        disparityRange = [t.geometry.disparityRange.lowerBound, t.geometry.disparityRange.upperBound]
        heightRange = [t.geometry.heightRange.lowerBound, t.geometry.heightRange.upperBound]
        modelResidualPx = t.geometry.modelResidual
        pointingCorrectionPx = t.geometry.pointingCorrection
        parallaxSamples = t.parallaxAfter.count
        medianAbsoluteRowResidualBeforePx = t.parallaxBefore.count > 0 ? t.parallaxBefore.medianAbsolute : nil
        medianAbsoluteRowResidualPx = t.parallaxAfter.count > 0 ? t.parallaxAfter.medianAbsolute : nil
    }
}

/// Epipolar resampling of a pair, tile by tile: each tile reads only the source windows it needs.
public struct PairRectification: Sendable {
    public let first: SensorImage
    public let second: SensorImage
    public var probe = VerticalParallaxProbe()
    /// Correct the right image's rows by the median vertical parallax measured by image matching (the
    /// relative pointing error of the two RPC models).
    public var correctPointing = true

    public init(first: SensorImage, second: SensorImage) {
        self.first = first
        self.second = second
    }

    /// Splits a window of the first image into tiles of at most `size` pixels, of equal sizes (no slivers).
    public static func tiles(_ roi: PixelWindow, size: Int) -> [PixelWindow] {
        func split(_ start: Int, _ length: Int) -> [(Int, Int)] {
            let n = max(1, (length + size - 1) / size)
            return (0..<n).map { i in
                let a = start + length * i / n, b = start + length * (i + 1) / n
                return (a, b - a)
            }
        }
        return split(roi.y, roi.height).flatMap { y in split(roi.x, roi.width).map { x in
            PixelWindow(x: x.0, y: y.0, width: x.1, height: y.1)
        } }
    }

    func read(_ image: SensorImage, toGrid: Affine2D, width: Int, height: Int, columnOffset: Int) throws -> GrayImage {
        guard let win = EpipolarResampler.sourceWindow(toGrid: toGrid, width: width, height: height, columnOffset: columnOffset,
                                                        imageWidth: image.width, imageHeight: image.height) else {
            return GrayImage(width: width, height: height, pixels: [Float](repeating: .nan, count: width * height))
        }
        let ds = try RasterDataset(path: image.path, drivers: SensorImage.inputDrivers)
        let px = try ds.read(column: win.x, row: win.y, width: win.width, height: win.height)
        let src = GrayImage(width: win.width, height: win.height, pixels: px)
        return EpipolarResampler.resample(src, origin: (win.x, win.y), toGrid: toGrid, width: width, height: height,
                                          columnOffset: columnOffset)
    }

    /// Rectifies a window of the first image. With `pointingCorrection` (rows, measured once for the scene
    /// by `measurePointing`), it is applied as given and nothing is measured: every tile of a scene then
    /// shares one relative orientation, whatever the tiling.
    public func rectify(_ window: PixelWindow, heights: ClosedRange<Double>, pointingCorrection: Double?) throws -> RectifiedTile {
        guard let correction = pointingCorrection else { return try rectify(window, heights: heights) }
        var g = try EpipolarRectifier(first: first.model, second: second.model).tile(window, heights: heights)
        if correction != 0 {
            g.right = g.right.translated(0, correction)
            g.pointingCorrection = correction
        }
        let left = try read(first, toGrid: g.left, width: g.width, height: g.height, columnOffset: 0)
        let right = try read(second, toGrid: g.right, width: g.rightWidth, height: g.height, columnOffset: 0)
        let none = (medianAbsolute: Double.nan, median: Double.nan, count: 0)
        return RectifiedTile(geometry: g, left: left, right: right, parallaxBefore: none, parallaxAfter: none)
    }

    /// The sample windows of a scene-wide pass over `region`: `samplesPerSide` per side (default 1 up to
    /// 1024 px, 2 up to 4096 px, 3 beyond) of `windowSize` pixels, spread from edge to edge (centred for one).
    public static func sampleWindows(over region: PixelWindow, samplesPerSide: Int? = nil, windowSize: Int = 512) -> [PixelWindow] {
        let side = max(region.width, region.height)
        let n = max(1, samplesPerSide ?? (side <= 1024 ? 1 : side <= 4096 ? 2 : 3))
        let w = min(windowSize, region.width), h = min(windowSize, region.height)
        var seen = Set<[Int]>(), out: [PixelWindow] = []
        for j in 0..<n {
            for i in 0..<n {
                let x = region.x + (n == 1 ? (region.width - w) / 2 : (region.width - w) * i / (n - 1))
                let y = region.y + (n == 1 ? (region.height - h) / 2 : (region.height - h) * j / (n - 1))
                if seen.insert([x, y]).inserted { out.append(PixelWindow(x: x, y: y, width: w, height: h)) }
            }
        }
        return out
    }

    /// The relative pointing error of the pair, measured once for a scene: the vertical parallax (rows of
    /// the rectified frame) of sparse 2-D matches in sample windows spread over `region`, combined by a
    /// median weighted by each window's match count. Returns the correction to apply and the samples.
    /// `samplesPerSide` (default: 1 up to 1024 px, 2 up to 4096 px, 3 beyond) windows per side.
    public func measurePointing(over region: PixelWindow, heights: ClosedRange<Double>, samplesPerSide: Int? = nil,
                                windowSize: Int = 512) throws -> (correction: Double, samples: [PointingSample]) {
        var samples: [PointingSample] = []
        for win in Self.sampleWindows(over: region, samplesPerSide: samplesPerSide, windowSize: windowSize) {
            let g = try EpipolarRectifier(first: first.model, second: second.model).tile(win, heights: heights)
            let left = try read(first, toGrid: g.left, width: g.width, height: g.height, columnOffset: 0)
            let right = try read(second, toGrid: g.right, width: g.rightWidth, height: g.height, columnOffset: 0)
            let m = VerticalParallaxProbe.summary(probe.measure(left: left, right: right, rightOffset: 0, disparities: g.disparityRange))
            samples.append(PointingSample(window: win, rowOffset: m.count > 0 ? m.median : nil, matches: m.count))
        }
        // Weighted median of the windows with enough matches.
        let good = samples.filter { $0.matches >= 10 && $0.rowOffset != nil }.sorted { $0.rowOffset! < $1.rowOffset! }
        let total = good.reduce(0) { $0 + $1.matches }
        guard total > 0 else { return (0, samples) }
        var acc = 0
        var median = good[0].rowOffset!
        for s in good {
            acc += s.matches
            if 2 * acc >= total { median = s.rowOffset!; break }
        }
        // Right row v + offset matches left row v: the right grid moves by −offset.
        return (abs(median) > 0.05 ? -median : 0, samples)
    }

    /// Sparse matches of first-image pixels in the second image, through a rectification of `window` with
    /// the models as they are (no pointing correction): per point, its second-image pixel, or nil where it
    /// has no texture or no clear match (the probe's correlation threshold and sub-pixel peak). The probe
    /// matches the rectified pixel nearest each point; the match is carried back to the point itself
    /// through the rectification's local linear map, so the same first-image points can be matched in
    /// several images (tie points of a triplet).
    public func matches(of points: [SIMD2<Double>], in window: PixelWindow, heights: ClosedRange<Double>) throws -> [SIMD2<Double>?] {
        let g = try EpipolarRectifier(first: first.model, second: second.model).tile(window, heights: heights)
        let left = try read(first, toGrid: g.left, width: g.width, height: g.height, columnOffset: 0)
        let right = try read(second, toGrid: g.right, width: g.rightWidth, height: g.height, columnOffset: 0)
        let nearest = points.map { p -> (u: Int, v: Int) in
            let q = g.left.apply(p.x, p.y)
            return (Int(q.x.rounded()), Int(q.y.rounded()))
        }
        let found = probe.measure(left: left, right: right, rightOffset: 0, disparities: g.disparityRange, at: nearest)
        let leftInverse = g.left.inverse, rightInverse = g.right.inverse
        // First-image pixel → second-image pixel at a constant disparity: the linear part of right⁻¹ ∘ left.
        let local = rightInverse.after(g.left)
        return zip(points, found).map { p, m -> SIMD2<Double>? in
            guard let m else { return nil }
            let matchedFirst = leftInverse.apply(m.u, m.v)
            let second = rightInverse.apply(m.u - m.disparity, m.v + m.rowOffset)
            let dx = p.x - matchedFirst.x, dy = p.y - matchedFirst.y
            return SIMD2(second.x + local.a * dx + local.b * dy, second.y + local.d * dx + local.e * dy)
        }
    }

    public func rectify(_ window: PixelWindow, heights: ClosedRange<Double>) throws -> RectifiedTile {
        var g = try EpipolarRectifier(first: first.model, second: second.model).tile(window, heights: heights)
        let left = try read(first, toGrid: g.left, width: g.width, height: g.height, columnOffset: 0)
        var right = try read(second, toGrid: g.right, width: g.rightWidth, height: g.height, columnOffset: 0)
        let before = VerticalParallaxProbe.summary(probe.measure(left: left, right: right, rightOffset: 0,
                                                                 disparities: g.disparityRange))
        var after = before
        if correctPointing, before.count >= 10, abs(before.median) > 0.05 {
            // Right row v + offset matches left row v: move the right grid by the offset.
            g.right = g.right.translated(0, -before.median)
            g.pointingCorrection = -before.median
            right = try read(second, toGrid: g.right, width: g.rightWidth, height: g.height, columnOffset: 0)
            after = VerticalParallaxProbe.summary(probe.measure(left: left, right: right, rightOffset: 0,
                                                                disparities: g.disparityRange))
        }
        return RectifiedTile(geometry: g, left: left, right: right, parallaxBefore: before, parallaxAfter: after)
    }
}


/// One sample window of the scene-wide pointing measurement.
public struct PointingSample: Sendable, Codable, Equatable {
    public var window: PixelWindow
    /// Median row offset of the right image's matches, rectified pixels (nil: nothing matched).
    public var rowOffset: Double?
    public var matches: Int
}
