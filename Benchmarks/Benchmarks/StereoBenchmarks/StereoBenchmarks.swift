import Benchmark
import DSMCore
import Foundation
import SensorIngest

/// Benchmarks of the stereo core. Besides package-benchmark's wall clock, CPU time and peak memory,
/// each matcher benchmark records throughput in million cost-volume cells per second (`Mcells/s`, per
/// run, all threads) — cells are rows × columns × disparity labels, margins and coarse passes included.
///
/// Test data: `$DSMOPT_TEST_DATA` or ../../shared/data beside the project.
func dataPath(_ rel: String) -> String {
    let root = ProcessInfo.processInfo.environment["DSMOPT_TEST_DATA"]
        ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("shared/data").path
    return (root as NSString).appendingPathComponent(rel)
}

/// A synthetic rectified pair: right(x, y) = left(x + d(x, y), y) with d a smooth field in [0, 120].
func syntheticPair(size: Int) -> (GrayImage, GrayImage) {
    let scene = SyntheticScene(centre: GeoPoint(longitude: 0, latitude: 0), hills: [], textureScale: 2)
    var l = [Float](repeating: 0, count: size * size), r = l
    for y in 0..<size {
        for x in 0..<size {
            let d = 60 + 55 * sin(Double(x) / 300) * cos(Double(y) / 400)
            l[y * size + x] = Float(scene.texture(east: Double(x), north: Double(y)))
            r[y * size + x] = Float(scene.texture(east: Double(x) + d, north: Double(y)))
        }
    }
    return (GrayImage(width: size, height: size, pixels: l), GrayImage(width: size, height: size, pixels: r))
}

let mcells = BenchmarkMetric.custom("Mcells/s", polarity: .prefersLarger, useScalingFactor: false)

let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .cpuTotal, .peakMemoryResident, .throughput, mcells]

    Benchmark("Cones 450×375, disparities 0–64, defaults (step 0.4 px)",
              configuration: .init(metrics: metrics, maxDuration: .seconds(20), maxIterations: 20)) { benchmark in
        let left = try readGrayImage(dataPath("middlebury-cones/Cones_LEFT.tif"))
        let right = try readGrayImage(dataPath("middlebury-cones/Cones_RIGHT.tif"))
        benchmark.startMeasurement()
        let start = DispatchTime.now().uptimeNanoseconds
        let (map, report) = try DenseMatcher().matchWithReport(left: left, right: right, minDisparity: 0, maxDisparity: 64)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        benchmark.stopMeasurement()
        blackHole(map)
        benchmark.measurement(mcells, Int(Double(report.cells) / seconds / 1e6))
    }

    Benchmark("Synthetic 2048×2048, 128 disparities (step 1 px)",
              configuration: .init(metrics: metrics, maxDuration: .seconds(60), maxIterations: 3)) { benchmark in
        let (left, right) = syntheticPair(size: 2048)
        var p = MatchingParameters()
        p.precision = 1
        var matcher = DenseMatcher(parameters: p)
        matcher.coarseToFineLabels = 1000  // measure the full 128-label search, no narrowing
        benchmark.startMeasurement()
        let start = DispatchTime.now().uptimeNanoseconds
        let (map, report) = try matcher.matchWithReport(left: left, right: right, minDisparity: 0, maxDisparity: 127)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        benchmark.stopMeasurement()
        blackHole(map)
        benchmark.measurement(mcells, Int(Double(report.cells) / seconds / 1e6))
    }

    Benchmark("Epipolar resampling, La Réunion pair, 512×512 tile",
              configuration: .init(metrics: [.wallClock, .cpuTotal, .peakMemoryResident], maxDuration: .seconds(20), maxIterations: 10)) { benchmark in
        let a = try SensorImage.open(dataPath("pleiades/reunion-pair/img_01.tif"))
        let b = try SensorImage.open(dataPath("pleiades/reunion-pair/img_02.tif"))
        var r = PairRectification(first: a, second: b)
        r.correctPointing = false
        benchmark.startMeasurement()
        let t = try r.rectify(PixelWindow(x: 256, y: 256, width: 512, height: 512), heights: 2230...2410)
        benchmark.stopMeasurement()
        blackHole(t.left)
    }
}
