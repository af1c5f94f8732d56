// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "moerec",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "moerec", targets: ["moerec"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // MARK: C modules
        .target(name: "COpenBLAS", linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]),
        .target(name: "CKernels", dependencies: ["COpenBLAS"], exclude: ["kernel_body.inc"],
                linkerSettings: [.linkedLibrary("m")]),
        .systemLibrary(name: "CZlib"),
        .systemLibrary(name: "CSQLite"),

        // MARK: Errors (below every Swift module: the exit meaning each library error carries)
        .target(name: "MoeErrors"),

        // MARK: JSON (value, canonical writer, parser, printers)
        .target(name: "MoeJSON", dependencies: ["MoeErrors"]),

        // MARK: Numerics
        .target(name: "MoeKernels", dependencies: ["MoeErrors", "COpenBLAS", "CKernels"]),
        .target(name: "MoeModel", dependencies: ["MoeErrors", "MoeKernels", "CKernels"]),

        // MARK: Metric and split names (shared by the writers and readers of metrics)
        .target(name: "MoeMetricNames"),

        // MARK: Data and training
        .target(name: "MoeData", dependencies: ["MoeErrors", "MoeJSON", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "MoeTrain", dependencies: ["MoeErrors", "MoeModel", "MoeData", "MoeMetricNames", "CKernels"]),

        // MARK: Store, checkpoints, reports
        .target(name: "MoeStore", dependencies: ["MoeErrors", "MoeJSON", "CSQLite", "MoeMetricNames",
                                                 .product(name: "Crypto", package: "swift-crypto")],
                resources: []),
        .target(name: "MoeCheckpoint", dependencies: ["MoeErrors", "MoeJSON", "CZlib", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "MoeReport", dependencies: ["MoeErrors", "MoeJSON", "MoeStore", "MoeMetricNames"]),

        // MARK: Experiments (config resolution, run execution, reproduce, diff)
        .target(name: "MoeExperiment", dependencies: [
            "MoeErrors", "MoeJSON", "MoeTrain", "MoeData", "MoeStore", "MoeCheckpoint", "MoeMetricNames",
            .product(name: "Yams", package: "Yams"),
        ]),

        // MARK: Executable
        .executableTarget(name: "moerec", dependencies: [
            "MoeErrors", "MoeJSON", "MoeKernels", "MoeModel", "MoeData", "MoeTrain", "MoeStore", "MoeCheckpoint", "MoeReport", "MoeExperiment",
            "MoeMetricNames",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // MARK: Tests
        .target(name: "MoeTestSupport", dependencies: ["MoeKernels"], path: "Tests/MoeTestSupport"),
        .testTarget(name: "MoeJSONTests", dependencies: ["MoeJSON"]),
        .testTarget(name: "MoeKernelsTests", dependencies: ["MoeKernels", "CKernels", "MoeTestSupport"]),
        .testTarget(name: "MoeModelTests", dependencies: ["MoeModel", "MoeTestSupport"]),
        .testTarget(name: "MoeDataTests", dependencies: ["MoeData", "MoeTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "MoeTrainTests", dependencies: ["MoeTrain", "MoeMetricNames", "MoeTestSupport"]),
        .testTarget(name: "MoeStoreTests", dependencies: ["MoeJSON", "MoeStore", "MoeMetricNames", "MoeTestSupport"]),
        .testTarget(name: "MoeCheckpointTests", dependencies: ["MoeCheckpoint", "MoeTestSupport"]),
        .testTarget(name: "MoeReportTests", dependencies: ["MoeJSON", "MoeReport", "MoeStore", "MoeMetricNames", "MoeTestSupport"]),
        .testTarget(name: "MoeExperimentTests", dependencies: ["MoeErrors", "MoeJSON", "MoeExperiment", "MoeMetricNames", "MoeTestSupport"]),
        .testTarget(name: "MoeCLITests", dependencies: ["MoeTestSupport"]),
        // moerec's forward pass against the NumPy reference in Tests/Reference (python3-numpy).
        .testTarget(name: "MoeReferenceTests", dependencies: ["MoeModel", "MoeTrain", "MoeCheckpoint", "MoeExperiment",
                                                              "MoeJSON", "MoeTestSupport"]),
        .testTarget(name: "MoeFaultTests", dependencies: ["MoeTestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
