// swift-tools-version:6.1
// Speed and memory benchmarks of dsmopt's stereo core (package-benchmark). Run from this folder:
//   DSMOPT_TEST_DATA=../../shared/data swift package --disable-sandbox benchmark
// They are not part of the test suite: timing targets live here, not in unit tests.
import PackageDescription

let package = Package(
    name: "dsmopt-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "dsmopt", path: ".."),
        .package(url: "https://github.com/ordo-one/package-benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "StereoBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "DSMCore", package: "dsmopt"),
                .product(name: "SensorIngest", package: "dsmopt"),
            ],
            path: "Benchmarks/StereoBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
    ]
)
