// swift-tools-version:6.1
// dsmopt — an open, self-hostable stereo-photogrammetry DSM service.
//
// Module layering (each arrow is a dependency):
//   dsmopt (CLI) → SensorIngest → GDALKit → CGDAL (the only module that sees GDAL's C API)
//                              ↘ DSMCore → LinearAlgebra → CLinAlg (the only module that sees BLAS/LAPACKE)
// DSMCore is the numeric core: no I/O, no server dependency, so it builds and tests on its own.
import PackageDescription

import Foundation

// Release builds target the build machine's CPU (AVX2 etc.) unless DSMOPT_TARGET_CPU names another
// (e.g. "x86-64" for a portable binary, as the Dockerfile does).
let targetCPU = ProcessInfo.processInfo.environment["DSMOPT_TARGET_CPU"] ?? "native"
// Every module keeps Swift's overflow and bounds checks, the numeric kernels too: an indexing mistake then
// stops with a trap naming the line instead of corrupting the heap of a long-lived daemon. Measured on the
// whole La Réunion pair at 0.5 m (Benchmarks/README.md, "Compiler checks"): about 7 % more CPU than with
// the numeric kernels unchecked, the DSM bit-identical.
let numeric: [SwiftSetting] = [
    .unsafeFlags(["-wmo", "-target-cpu", targetCPU], .when(configuration: .release)),
]
let checked = numeric

let package = Package(
    name: "dsmopt",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "dsmopt", targets: ["dsmopt"]),
        .library(name: "DSMCore", targets: ["DSMCore"]),
        .library(name: "SensorIngest", targets: ["SensorIngest"]),
        .library(name: "DSMPipeline", targets: ["DSMPipeline"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The job service only; the numeric core and the pipeline do not depend on these.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
        // The PostgreSQL job store (several workers and machines on one queue).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
        // Mail on a job's end (SMTP, with TLS); both are already in the graph through Hummingbird and PostgresNIO.
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.30.0"),
    ],
    targets: [
        .systemLibrary(name: "CGDAL", pkgConfig: "gdal", providers: [.apt(["libgdal-dev"])]),
        .systemLibrary(name: "CLinAlg", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]),
        .target(name: "LinearAlgebra", dependencies: ["CLinAlg"], swiftSettings: numeric),
        .target(name: "DSMCore", dependencies: ["LinearAlgebra"], swiftSettings: numeric),
        .target(name: "GDALKit", dependencies: ["CGDAL"], swiftSettings: checked),
        .target(name: "SensorIngest", dependencies: ["DSMCore", "GDALKit"], swiftSettings: checked),
        // The DSM pipeline (`dsmopt run`): no server dependency either (swift-crypto: the inputs' SHA-256 in the manifest).
        .target(name: "DSMPipeline", dependencies: ["SensorIngest", "DSMCore", "GDALKit", .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: checked),
        // The job service (`dsmopt serve`, `worker`, `admin`): REST API, SQLite store, workers, quotas.
        .target(
            name: "JobService",
            dependencies: [
                "DSMPipeline", "SensorIngest", "DSMCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            // The web portal's HTML/CSS/JS, served from the source tree or an installed copy (see PortalRoutes.swift).
            exclude: ["Portal/web"]
        ),
        .executableTarget(
            name: "dsmopt",
            dependencies: [
                "SensorIngest", "DSMCore", "GDALKit", "DSMPipeline", "JobService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: checked
        ),
        // Helpers shared by the test targets: test-data location (../shared/data or $DSMOPT_TEST_DATA), temp folders.
        .target(name: "TestSupport"),
        .testTarget(name: "DSMCoreTests", dependencies: ["DSMCore", "TestSupport"]),
        .testTarget(name: "SensorIngestTests", dependencies: ["SensorIngest", "DSMCore", "GDALKit", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["SensorIngest", "GDALKit", "TestSupport", "dsmopt"]),
        .testTarget(name: "PipelineTests", dependencies: ["DSMPipeline", "SensorIngest", "DSMCore", "GDALKit", "TestSupport", "dsmopt"]),
        .testTarget(name: "ServiceTests", dependencies: ["TestSupport", "dsmopt", "JobService", "DSMPipeline"]),
    ],
    swiftLanguageModes: [.v6]
)
