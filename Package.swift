// swift-tools-version:6.0
// ExpertMesh: expert-parallel serving of Mixture-of-Experts language models.
// Module layout follows DESIGN.md §3; system libraries come in through pkg-config module maps.
import PackageDescription

// Numeric code is built with bounds checks off and, on x86-64, for AVX2 + FMA + F16C (Haswell and
// later; every machine this project runs on), so the SIMD kernels use 256-bit fused multiply-adds.
#if arch(x86_64)
let cpuFlags = ["-target-cpu", "haswell"]
let cKernelFlags = ["-march=haswell"]
#else
let cpuFlags: [String] = []
let cKernelFlags: [String] = []
#endif
let release: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"] + cpuFlags, .when(configuration: .release))]

let package = Package(
    name: "ExpertMesh",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "expertmesh", targets: ["expertmesh"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .target(name: "ExpertMeshProtoC", linkerSettings: [.linkedLibrary("protobuf-c")]),
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-ffp-contract=off"] + cKernelFlags)]),
        .target(name: "MeshTensors", dependencies: ["COpenBLAS", "CKernels"], swiftSettings: release),
        .target(name: "MeshTokenizers", swiftSettings: release),
        .target(name: "MeshChat", swiftSettings: release),
        .target(name: "MeshModels", dependencies: ["MeshTensors"], swiftSettings: release),
        .target(name: "MeshEngine", dependencies: ["MeshModels", "MeshTensors"], swiftSettings: release),
        .target(name: "MeshServer",
                dependencies: [
                    "MeshEngine", "MeshModels", "MeshTokenizers", "MeshChat",
                    .product(name: "Hummingbird", package: "hummingbird"),
                    .product(name: "HummingbirdCore", package: "hummingbird"),
                    .product(name: "NIOCore", package: "swift-nio"),
                    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                    .product(name: "Logging", package: "swift-log"),
                    .product(name: "CoreMetrics", package: "swift-metrics"),
                ],
                swiftSettings: release),
        .target(name: "MeshWire", dependencies: ["ExpertMeshProtoC", "MeshTensors", "MeshModels"], swiftSettings: release),
        .target(name: "MeshTransport", dependencies: ["CZeroMQ", .product(name: "Logging", package: "swift-log")],
                swiftSettings: release),
        .target(name: "MeshWorker",
                dependencies: ["MeshModels", "MeshWire", "MeshTransport", .product(name: "Logging", package: "swift-log")],
                swiftSettings: release),
        .target(name: "MeshCoordinator",
                dependencies: ["MeshModels", "MeshEngine", "MeshServer", "MeshWire", "MeshTransport", "MeshTokenizers",
                               .product(name: "CoreMetrics", package: "swift-metrics"),
                               .product(name: "Logging", package: "swift-log")],
                swiftSettings: release),
        .executableTarget(
            name: "expertmesh",
            dependencies: [
                "MeshTensors", "MeshTokenizers", "MeshChat", "MeshModels", "MeshEngine", "MeshServer", "MeshWire", "MeshTransport", "MeshWorker", "MeshCoordinator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: release),
        .testTarget(name: "MeshTensorsTests", dependencies: ["MeshTensors"]),
        .testTarget(name: "MeshTokenizersTests", dependencies: ["MeshTokenizers"]),
        .testTarget(name: "MeshModelsTests", dependencies: ["MeshModels", "MeshEngine", "MeshTokenizers"]),
        .testTarget(name: "MeshEngineTests", dependencies: ["MeshEngine", "MeshModels", "MeshTensors"]),
        .testTarget(name: "MeshServerTests", dependencies: ["MeshServer", "MeshTokenizers"]),
        .testTarget(name: "MeshChatTests", dependencies: ["MeshChat"], exclude: ["Templates", "Conversations"]),
        .testTarget(name: "MeshWireTests", dependencies: ["MeshWire", "MeshTransport"]),
        .testTarget(name: "CoordinatorTests", dependencies: ["MeshCoordinator", "MeshModels", "MeshWire"]),
        .testTarget(name: "ClusterTests", dependencies: ["MeshModels", "MeshEngine", "MeshTensors", "MeshWire", "MeshTransport"]),
    ]
)
