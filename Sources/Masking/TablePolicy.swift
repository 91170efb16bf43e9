/// Who sees what for one table: its masked columns and the roles that are exempt.
public struct TablePolicy: Sendable, Hashable {
    public struct Column: Sendable, Hashable {
        public var name: String
        public var strategy: MaskStrategy
        public init(name: String, strategy: MaskStrategy) {
            self.name = name
            self.strategy = strategy
        }
    }

    public var schema: String
    public var table: String
    /// Members of these roles (and superusers) see real values.
    public var unmaskedRoles: [String]
    /// When set, only members of these roles are masked (still minus superusers and unmasked roles).
    public var maskedRoles: [String]?
    public var columns: [Column]
    /// Where the policy comes from: `file.yaml:line` or `stateDatabaseSource`.
    public var source: String
    /// The `source` of policies kept in the state database (made by create_masking_policy).
    public static let stateDatabaseSource = "state database"
    public var isFromStateDatabase: Bool { source == Self.stateDatabaseSource }
    /// The database the policy is for; `nil` (file policies) means every database.
    public var database: String?
    /// Functions masked roles may call even though pgclone cannot prove they read no sensitive
    /// column (a SECURITY DEFINER function whose owner can, or any function while the server
    /// does not back the policy up): the policy's author vouches for them.
    public var allowedFunctions: [String] = []

    public init(schema: String, table: String, unmaskedRoles: [String], maskedRoles: [String]? = nil, columns: [Column], source: String, database: String? = nil) {
        self.database = database
        self.schema = schema
        self.table = table
        self.unmaskedRoles = unmaskedRoles
        self.maskedRoles = maskedRoles
        self.columns = columns
        self.source = source
    }

    public var qualifiedName: String { "\(schema).\(table)" }

    public func strategy(for column: String) -> MaskStrategy? {
        columns.first(where: { $0.name == column })?.strategy
    }
}

/// A validated set of policies with a version that changes on every successful reload.
public struct PolicySet: Sendable, Hashable {
    public var policies: [TablePolicy]
    public var version: Int

    public init(policies: [TablePolicy], version: Int) {
        self.policies = policies
        self.version = version
    }

    public static let empty = PolicySet(policies: [], version: 0)

    public func policy(schema: String, table: String) -> TablePolicy? {
        policies.first(where: { $0.schema == schema && $0.table == table })
    }

    public var isEmpty: Bool { policies.isEmpty }
}

/// A policy file problem, located by file and line.
public struct PolicyError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var message: String

    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String {
        line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)"
    }
}

/// Every problem found in a set of policy files.
public struct PolicyErrors: Error, Sendable, Hashable, CustomStringConvertible {
    public var errors: [PolicyError]
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
