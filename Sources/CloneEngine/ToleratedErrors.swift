import PQ

extension PQConnection {
    /// Runs `statements`; an error whose SQLSTATE is in `codes` undoes just them (back to a
    /// savepoint, inside a transaction) and is returned instead of thrown, so that the caller
    /// can report it and go on. Any other error is thrown.
    func executeTolerating(_ codes: Set<String>, _ statements: [String], inTransaction: Bool = true) async throws -> PQError? {
        if inTransaction { try await execute("SAVEPOINT pgclone_step") }
        do {
            for statement in statements { try await execute(statement) }
            if inTransaction { try await execute("RELEASE SAVEPOINT pgclone_step") }
            return nil
        } catch let error as PQError where codes.contains(error.sqlState ?? "") {
            // Released too: left inside the savepoint, a later COPY ... FREEZE of a table made in
            // this transaction is refused (round 43 N3).
            if inTransaction {
                try await execute("ROLLBACK TO SAVEPOINT pgclone_step")
                try await execute("RELEASE SAVEPOINT pgclone_step")
            }
            return error
        }
    }
}
