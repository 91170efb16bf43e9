// swift-tools-version:6.0
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "pgclone",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "pgclone", targets: ["pgclone"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // Pure PostgreSQL v3 wire protocol: framing and message types, no I/O.
        .target(
            name: "PostgresWire",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        // A strict JSON reader/writer (exact integers and booleans; clear errors).
        .target(name: "JSON", swiftSettings: swiftSettings),
        // Mask strategies: one SQL-expression builder each, shared by clone, mask_in_place, views and the proxy.
        .target(name: "Masking", dependencies: ["JSON", "PQ", .product(name: "Yams", package: "Yams")], swiftSettings: swiftSettings),
        // Catalog introspection, DDL in dependency order, COPY streams, verify.
        .target(name: "CloneEngine", dependencies: ["PQ", "Masking", "JSON", "SQLParser"], swiftSettings: swiftSettings),
        // libpq, PostgreSQL's client library, as a Swift module.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // libpg_query: PostgreSQL's own parser as a C library (Debian's libpg-query-dev).
        .systemLibrary(name: "CPgQuery", providers: [.apt(["libpg-query-dev"])]),
        // A small safe wrapper over libpq: one thread at a time per connection, threads from one injected pool.
        .target(
            name: "PQ",
            dependencies: [
                "CLibPQ",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Parser wrapper used to recognise admin calls and rewrite masked statements.
        .target(name: "SQLParser", dependencies: ["CPgQuery", "JSON"], swiftSettings: swiftSettings),
        .target(
            name: "Proxy",
            dependencies: [
                "PostgresWire", "PQ", "SQLParser", "JSON", "Masking", "CloneEngine",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "pgclone",
            dependencies: [
                "Proxy", "PQ", "CloneEngine", "Masking", "JSON",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PostgresWireTests",
            dependencies: ["PostgresWire", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "SQLParserTests", dependencies: ["SQLParser"], swiftSettings: swiftSettings),
        .testTarget(name: "MaskingTests", dependencies: ["Masking", "JSON", "SQLParser"], swiftSettings: swiftSettings),
        .testTarget(name: "CloneEngineTests", dependencies: ["CloneEngine", "PQ", "JSON"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ProxyTests",
            dependencies: [
                "Proxy", "PostgresWire", "Masking", "CloneEngine", "SQLParser", "JSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "PQ", "Proxy", "PostgresWire", "Masking",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            exclude: ["python"],
            swiftSettings: swiftSettings
        ),
    ]
)
