import Foundation
import Masking
import Testing

@Suite struct PolicyLoaderTests {
    @Test func designExampleParses() throws {
        let policies = try PolicyLoader.parse("""
            policies:
              - table: test_schema.employees     # schema-qualified
                unmasked_roles: [data_admin]
                columns:
                  email: email
                  full_name: name
                  phone: phone
                  ssn: "null"
                  salary: { type: random_int, min: 40000, max: 200000 }
                  notes: { type: constant, value: REDACTED }
                  iban:  { type: partial, prefix: 2, suffix: 4 }
            """, file: "p.yaml")
        #expect(policies.count == 1)
        let policy = try #require(policies.first)
        #expect(policy.schema == "test_schema" && policy.table == "employees")
        #expect(policy.unmaskedRoles == ["data_admin"])
        #expect(policy.maskedRoles == nil)
        #expect(policy.columns.map(\.name) == ["email", "full_name", "phone", "ssn", "salary", "notes", "iban"])
        #expect(policy.strategy(for: "salary") == .randomInt(min: 40000, max: 200000))
        #expect(policy.strategy(for: "notes") == .constant("REDACTED"))
        #expect(policy.strategy(for: "iban") == .partial(prefix: 2, suffix: 4))
        #expect(policy.strategy(for: "ssn") == .null)
        #expect(policy.source == "p.yaml:2")
    }

    @Test func everyProblemIsReportedWithItsLine() {
        do {
            _ = try PolicyLoader.parse("""
                policies:
                  - table: test_schema.customers
                    unmasked_roles: [x]
                    colums:
                      email: email
                  - table: nodot
                    columns:
                      a: email
                  - table: s.t
                    columns:
                      a: bogus
                      b: email
                      b: name
                """, file: "bad.yaml")
            Issue.record("expected errors")
        } catch {
            #expect(error.errors.map(\.description) == [
                "bad.yaml:4: unknown key \"colums\" (known: table, unmasked_roles, masked_roles, columns, allowed_functions)",
                "bad.yaml:2: policy for test_schema.customers needs \"columns\": a mapping of column name to strategy",
                "bad.yaml:6: malformed table name \"nodot\": expected schema.table",
                "bad.yaml:11: unknown mask strategy \"bogus\" for column \"a\" (Known strategies: \(MaskStrategy.names.joined(separator: ", ")).)",
                "bad.yaml:13: duplicate column \"b\" in the policy for s.t",
            ])
        }
    }

    @Test func invalidYAMLNamesTheLine() {
        do {
            _ = try PolicyLoader.parse("policies:\n  - table: [unclosed\n", file: "broken.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.errors.count == 1)
            #expect(error.errors[0].description.hasPrefix("broken.yaml:"))
            #expect(error.errors[0].message.hasPrefix("invalid YAML: "))
        }
    }

    @Test(arguments: [
        ("test_schema.employees", ("test_schema", "employees")),
        ("Test_Schema.Employees", ("test_schema", "employees")),
        ("\"Mixed Case\".\"Order Lines\"", ("Mixed Case", "Order Lines")),
        ("\"a\"\"b\".c", ("a\"b", "c")),
        // Only ASCII letters fold: ÉTAT names the table "État" (Unicode lowering gave "état").
        ("o8.ÉTAT", ("o8", "État")),
    ])
    func qualifiedNamesFoldLikePostgreSQL(_ text: String, _ expected: (String, String)) throws {
        let parsed = try #require(PolicyLoader.splitQualifiedName(text))
        #expect(parsed.0.unicodeScalars.elementsEqual(expected.0.unicodeScalars) && parsed.1.unicodeScalars.elementsEqual(expected.1.unicodeScalars), "\(parsed)")
    }

    @Test(arguments: ["nodot", "a.b.c", ".t", "s.", "\"open.t", "a b.c"])
    func malformedQualifiedNames(_ text: String) {
        #expect(PolicyLoader.splitQualifiedName(text) == nil)
    }

    /// A truncated write must not turn masking off: an empty file, or a directory without files,
    /// is an error (the caller keeps its last good set); `policies: []` says "none" on purpose.
    @Test(arguments: ["", "   \n\t\n", "# only a comment\n"])
    func emptyFilesAreErrors(_ text: String) {
        do {
            let policies = try PolicyLoader.parse(text, file: "empty.yaml")
            Issue.record("accepted as \(policies)")
        } catch {
            #expect(error.errors.map(\.description) == ["empty.yaml: the file is empty; write `policies: []` for a file that holds no policies"])
        }
    }

    @Test func anExplicitEmptyListMeansNoPolicies() throws {
        #expect(try PolicyLoader.parse("policies: []\n", file: "none.yaml").isEmpty)
    }

    @Test func aDirectoryWithoutPolicyFilesIsAnError() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pgclone-empty-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "not a policy".write(to: directory.appendingPathComponent("README.txt"), atomically: true, encoding: .utf8)
        do {
            let policies = try PolicyLoader.load(directory: directory.path)
            Issue.record("accepted as \(policies)")
        } catch {
            #expect(error.errors.map(\.message) == ["no *.yaml policy files; a file with `policies: []` says there are none"])
        }
        try "policies: []\n".write(to: directory.appendingPathComponent("none.yaml"), atomically: true, encoding: .utf8)
        #expect(try PolicyLoader.load(directory: directory.path).isEmpty)
    }
}
