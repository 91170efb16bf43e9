@testable import CloneEngine
import Masking
import Testing

struct SensitivityRulesTests {
    /// The category a column's name gives, nil when the name says nothing (or says "not sensitive").
    func category(_ name: String, _ typeCategory: String = "S") -> String? {
        SensitivityRules.byName(name, typeCategory: typeCategory).flatMap { $0?.category }
    }

    @Test func namesAreSplitOnUnderscoresAndCamelCase() {
        #expect(SensitivityRules.words("fullName") == ["full", "name"])
        #expect(SensitivityRules.words("ahv_nr") == ["ahv", "nr"])
        #expect(SensitivityRules.words("Date-Of Birth") == ["date", "of", "birth"])
    }

    /// Round 33: these were missed, or taken for phone numbers by their values (and a phone
    /// mask keeps the last four characters of an identity or account number).
    @Test func identityAndAccountNumbersOfOtherCountriesByName() {
        for name in ["codice_fiscale", "dni", "nino", "ahv_nr", "bsn", "cpf", "personnummer", "steuer_id", "svnr", "nir", "tfn", "passport_no", "national_id"] {
            #expect(category(name) == "National ID", "\(name)")
        }
        for name in ["kontonummer", "iban", "account_no", "bank_account"] {
            #expect(category(name) == "Bank Account", "\(name)")
        }
        for name in ["telefono", "tel", "mobile"] {
            #expect(category(name) == "Phone", "\(name)")
        }
    }

    @Test func datesOfBirthByName() {
        for name in ["birthdate", "geburtsdatum", "dob", "date_of_birth", "birthDate", "fecha_nacimiento"] {
            #expect(category(name, "D") == "Date of Birth", "\(name)")
        }
        // A date keeps its year; the same name on a text column is nulled.
        #expect(SensitivityRules.byName("birthdate", typeCategory: "D")??.strategy == .truncateDate(unit: .year))
        #expect(SensitivityRules.byName("birthdate", typeCategory: "S")??.strategy == .null)
    }

    @Test func knownHarmlessNamesAndUnrelatedOnesAreNotFlagged() {
        #expect(SensitivityRules.byName("company_name", typeCategory: "S") == .some(nil))
        #expect(category("ip_address") == "Network Address")
        #expect(category("created_at", "D") == nil)
        #expect(category("status") == nil)
        #expect(category("tiny") == nil)
    }
}
