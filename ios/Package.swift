// swift-tools-version:5.9
// The Swift side of framecache: a thin wrapper over the C ABI (engine/ffi), built into an
// XCFramework by ./build-xcframework.sh. The demo app (FrameCacheDemo/) is generated into an
// Xcode project by XcodeGen from project.yml; see README.md "iOS".
import PackageDescription

let package = Package(
    name: "FrameCache",
    platforms: [.iOS(.v16)],
    products: [
        .library(name: "FrameCache", targets: ["FrameCache"]),
    ],
    targets: [
        .binaryTarget(name: "FrameCacheFFI", path: "build/FrameCacheFFI.xcframework"),
        .target(name: "FrameCache", dependencies: ["FrameCacheFFI"], path: "Sources/FrameCache"),
    ]
)
