import Foundation
import PQ

/// Roles the integration tests log in as; created once per run on the target.
///
/// pg_hba.conf of the test clusters maps auth_trust to trust, auth_clear to
/// cleartext password and auth_md5 to md5; everyone else uses SCRAM.
enum TargetRoles {
    static let clearPassword = "clear-pw"
    static let md5Password = "md5-pw"
    static let scramUser = "app_user"
    static let scramPassword = "app-pw 'quoted'"

    private static let setup = Task<Void, any Error> {
        let environment = try TestEnvironment.require()
        let connection = try await PQConnection.connect(environment.directTarget())
        try await connection.exec("""
            DO $$
            BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auth_trust') THEN CREATE ROLE auth_trust LOGIN; END IF;
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auth_clear') THEN CREATE ROLE auth_clear LOGIN; END IF;
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auth_md5') THEN CREATE ROLE auth_md5 LOGIN; END IF;
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_user') THEN CREATE ROLE app_user LOGIN; END IF;
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'data_admin') THEN CREATE ROLE data_admin WITH LOGIN PASSWORD 'admin123'; END IF;
            END $$;
            """)
        try await connection.exec("ALTER ROLE auth_clear PASSWORD \(quoteLiteral(clearPassword))")
        try await connection.exec("ALTER ROLE app_user PASSWORD \(quoteLiteral(scramPassword))")
        try await connection.exec("GRANT pg_signal_backend TO app_user")
        try await connection.exec("SET password_encryption = 'md5'")
        try await connection.exec("ALTER ROLE auth_md5 PASSWORD \(quoteLiteral(md5Password))")
        try await connection.exec("GRANT ALL ON SCHEMA public TO PUBLIC")
        // The state database of the pgclone binaries tests launch: apart from the one the
        // in-process proxies share, so that their backstops (which look after every database)
        // do not pick up the policies other tests create with create_masking_policy.
        if try await connection.exec("SELECT 1 FROM pg_database WHERE datname = '\(cliStateDatabase)'").rows.isEmpty {
            _ = try? await connection.exec("CREATE DATABASE \(cliStateDatabase)")
        }
    }

    static let cliStateDatabase = "pgclone_cli_state"

    static func ensure() async throws {
        try await setup.value
    }

    static func quoteLiteral(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
