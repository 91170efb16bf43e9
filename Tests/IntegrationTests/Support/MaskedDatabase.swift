import Foundation
import PQ
import Proxy
import Testing

/// A throwaway target database with roles, tables and a policy file, and a proxy in front of
/// it: the setting of the masking tests. Role names carry a random suffix (roles are shared by
/// the whole cluster); every role logs in with the password `pw`.
struct MaskedDatabase: Sendable {
    let environment: TestEnvironment
    let proxy: RunningProxy
    let database: String
    let suffix: String
    let policyDirectory: String

    /// The cluster-wide name of a test role.
    func role(_ base: String) -> String { "\(base)_\(suffix)" }

    /// A session straight to the server (around the proxy), as `user` or as the superuser.
    func direct(_ user: String? = nil) async throws -> PQConnection {
        try await PQConnection.connect(directInfo(user))
    }

    func directInfo(_ user: String? = nil) -> String {
        user.map { "host=\(environment.host) port=\(environment.targetPort) dbname=\(database) user=\($0) password=pw" }
            ?? environment.directTarget(database: database)
    }

    /// A session through the proxy, as `user` (password `pw`) or as the superuser.
    func throughProxy(_ user: String? = nil) async throws -> PQConnection {
        try await PQConnection.connect(proxyInfo(user))
    }

    func proxyInfo(_ user: String? = nil, extra: String = "") -> String {
        user.map { environment.throughProxy(proxy.port, user: $0, password: "pw", database: database, extra: extra) }
            ?? environment.throughProxy(proxy.port, database: database, extra: extra)
    }

    /// Replaces the policy file and reloads; with a backstop, the server follows before this returns.
    func writePolicies(_ yaml: String) async throws {
        try yaml.write(toFile: policyDirectory + "/policies.yaml", atomically: true, encoding: .utf8)
        #expect(proxy.server.policies.reload() == nil)
        await proxy.backstop?.reconcile(database: database)
    }

    /// Creates the database and `roles` (base names), runs `setup` in the database (given the
    /// suffixed role name for each base name), writes `policies`, starts a proxy, runs `body`,
    /// and removes it all again.
    static func with(
        roles: [String],
        setup: (_ role: (String) -> String) -> String,
        policies: (_ role: (String) -> String) -> String,
        backstop: Bool = true,
        readsStateDatabase: Bool = false,
        backend: String? = nil,
        databasePrefix: String = "masked",
        _ body: (MaskedDatabase) async throws -> Void
    ) async throws {
        let environment = try TestEnvironment.require()
        let suffix = String(UInt32.random(in: 0...UInt32.max))
        let database = "\(databasePrefix)_\(suffix)"
        let name = { (base: String) in "\(base)_\(suffix)" }
        // Connections for setting up and tearing down are closed at once: tests run in parallel,
        // and the server's connection slots are shared.
        do {
            let admin = try await PQConnection.connect(environment.directTarget())
            try await admin.exec("CREATE DATABASE \(database)")
            for role in roles { try await admin.exec("CREATE ROLE \(name(role)) LOGIN PASSWORD 'pw'") }
        }
        var proxy: RunningProxy?
        var failure: (any Error)?
        do {
            do {
                let connection = try await PQConnection.connect(environment.directTarget(database: database))
                try await connection.exec(setup(name))
            }
            let directory = URL(fileURLWithPath: environment.directory).appendingPathComponent("policies-\(suffix)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try policies(name).write(to: directory.appendingPathComponent("policies.yaml"), atomically: true, encoding: .utf8)
            let running = try await RunningProxy.start(environment, backend: backend, backstopDatabases: backstop ? [database] : [],
                                                       readsStateDatabase: readsStateDatabase) { $0.policiesDirectory = directory.path }
            proxy = running
            try await body(MaskedDatabase(environment: environment, proxy: running, database: database, suffix: suffix, policyDirectory: directory.path))
        } catch {
            failure = error
        }
        try? await proxy?.stop()
        let admin = try await PQConnection.connect(environment.directTarget())
        _ = try? await admin.exec("DROP DATABASE \(database) WITH (FORCE)")
        for role in roles.reversed() { _ = try? await admin.exec("DROP ROLE \(name(role))") }
        if let failure { throw failure }
    }
}
