import ArgumentParser
import Proxy

@main
struct Pgclone: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pgclone",
        abstract: "A PostgreSQL sidecar that masks sensitive columns and clones data with masking applied.",
        version: PgcloneVersion.display,
        subcommands: [Serve.self, Table.self, Schema.self, Functions.self, Database.self, Roles.self, Verify.self, Diff.self, Preflight.self, Policy.self, Jobs.self]
    )
}
