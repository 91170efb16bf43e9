import ArgumentParser

extension Pgclone {
    struct Policy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Work with masking policy files.",
            subcommands: [Check.self]
        )
    }
}
