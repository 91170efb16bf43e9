import Foundation

/// How object names follow a table that is cloned under another name.
public enum NameMapping {
    /// PostgreSQL truncates identifiers to 63 bytes.
    static let maximumIdentifierBytes = 63

    /// `customers_pkey` for `customers` → `customers_backup` becomes
    /// `customers_backup_pkey`; a name that does not mention the table as a word of its own
    /// (between `_`s, or at an end) gets the new table name appended (`special_idx` of table
    /// `e` is not `sp3ecial_idx`; round 37). Same name when the table keeps its name.
    static func rename(_ name: String, table: String, to newTable: String) -> String {
        guard table != newTable, !table.isEmpty else { return name }
        var renamed = name + "_" + newTable
        var searchFrom = name.startIndex
        while let range = name.range(of: table, range: searchFrom..<name.endIndex) {
            let startsWord = range.lowerBound == name.startIndex || name[name.index(before: range.lowerBound)] == "_"
            let endsWord = range.upperBound == name.endIndex || name[range.upperBound] == "_"
            if startsWord && endsWord {
                renamed = name.replacingCharacters(in: range, with: newTable)
                break
            }
            searchFrom = name.index(after: range.lowerBound)
        }
        return truncate(renamed)
    }

    public static func truncate(_ name: String) -> String {
        var result = ""
        for character in name {
            if result.utf8.count + String(character).utf8.count > maximumIdentifierBytes { break }
            result.append(character)
        }
        return result
    }
}

extension String {
    /// Replaces the first occurrence of `target` (plain text, no patterns).
    func replacingFirst(_ target: String, with replacement: String) -> String? {
        guard let range = range(of: target) else { return nil }
        return replacingCharacters(in: range, with: replacement)
    }

}
