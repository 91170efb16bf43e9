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
                "bad.yaml:4: unknown key \"colums\" (known: table, unmasked_roles, masked_roles, columns)",
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
    ])
    func qualifiedNamesFoldLikePostgreSQL(_ text: String, _ expected: (String, String)) throws {
        let parsed = try #require(PolicyLoader.splitQualifiedName(text))
        #expect(parsed.0 == expected.0 && parsed.1 == expected.1)
    }

    @Test(arguments: ["nodot", "a.b.c", ".t", "s.", "\"open.t", "a b.c"])
    func malformedQualifiedNames(_ text: String) {
        #expect(PolicyLoader.splitQualifiedName(text) == nil)
    }
}
