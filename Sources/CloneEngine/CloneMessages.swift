/// Result texts shared by the SQL API and the CLI.
public enum CloneMessages {
    public static func table(_ outcome: TableCloneOutcome) -> String {
        if outcome.action == .skipped {
            return "OK: skipped \(outcome.target) (already exists)"
        }
        var head = "OK: cloned \(outcome.source)"
        if outcome.target != outcome.source { head += " to \(outcome.target)" }
        var details: [String] = []
        if let rows = outcome.rows { details.append("\(rows) \(rows == 1 ? "row" : "rows")") } else { details.append("structure only") }
        if outcome.replacedExisting { details.append("replaced existing table") }
        if let renamed = outcome.renamedExistingTo { details.append("existing table renamed to \(renamed)") }
        return head + " (" + details.joined(separator: ", ") + ")"
    }
}
