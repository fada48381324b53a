// swift-tools-version:6.0
// ExpertMesh: expert-parallel serving of Mixture-of-Experts language models.
// Module layout follows DESIGN.md §3; system libraries come in through pkg-config module maps.
import PackageDescription

let release: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "ExpertMesh",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "expertmesh", targets: ["expertmesh"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "MeshTensors", dependencies: ["COpenBLAS"], swiftSettings: release),
        .target(name: "MeshTokenizers", swiftSettings: release),
        .target(name: "MeshModels", dependencies: ["MeshTensors"], swiftSettings: release),
        .executableTarget(
            name: "expertmesh",
            dependencies: [
                "MeshTensors", "MeshTokenizers", "MeshModels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: release),
        .testTarget(name: "MeshTensorsTests", dependencies: ["MeshTensors"]),
        .testTarget(name: "MeshTokenizersTests", dependencies: ["MeshTokenizers"],
                    resources: []),
        .testTarget(name: "MeshModelsTests", dependencies: ["MeshModels", "MeshTokenizers"]),
    ]
)
