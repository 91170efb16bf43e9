@testable import CloneEngine
import Testing

struct RangePlannerTests {
    @Test func smallTablesAndSingleWorkersAreNotSplit() {
        #expect(RangePlanner.partCount(bytes: 10 << 20, threshold: 64 << 20, workers: 4) == 0)
        #expect(RangePlanner.partCount(bytes: 1 << 30, threshold: 64 << 20, workers: 1) == 0)
        #expect(RangePlanner.partCount(bytes: 1 << 30, threshold: 64 << 20, workers: 2) == 4)
        // No part smaller than 8 MB.
        #expect(RangePlanner.partCount(bytes: 20 << 20, threshold: 1 << 20, workers: 8) == 2)
    }

    @Test func integerRangesCoverEveryValueOnceWithOpenEnds() {
        let predicates = RangePlanner.predicates(.integer(column: "id", min: 1, max: 100), parts: 4)
        #expect(predicates == [
            "\"id\" < 26",
            "\"id\" >= 26 AND \"id\" < 51",
            "\"id\" >= 51 AND \"id\" < 76",
            "\"id\" >= 76",
        ])
        // Every value in exactly one range.
        for value in -5...120 {
            let matching = [value < 26, value >= 26 && value < 51, value >= 51 && value < 76, value >= 76].filter { $0 }.count
            #expect(matching == 1)
        }
    }

    @Test func degenerateKeysGiveNoSplit() {
        #expect(RangePlanner.predicates(.integer(column: "id", min: 7, max: 7), parts: 4).isEmpty)
        #expect(RangePlanner.predicates(.integer(column: "id", min: Int64.min, max: Int64.max), parts: 4).isEmpty)
        #expect(RangePlanner.predicates(.integer(column: "id", min: 1, max: 2), parts: 4) == ["\"id\" < 2", "\"id\" >= 2"])
        #expect(RangePlanner.predicates(.pages(1), parts: 4).isEmpty)
        #expect(RangePlanner.predicates(.pages(1000), parts: 1).isEmpty)
    }

    @Test func pageRangesAreTIDRanges() {
        #expect(RangePlanner.predicates(.pages(10), parts: 3) == [
            "ctid < '(4,0)'::pg_catalog.tid",
            "ctid >= '(4,0)'::pg_catalog.tid AND ctid < '(8,0)'::pg_catalog.tid",
            "ctid >= '(8,0)'::pg_catalog.tid",
        ])
    }

    @Test func quotedColumnNames() {
        #expect(RangePlanner.predicates(.integer(column: "Order Id", min: 0, max: 9), parts: 2) == ["\"Order Id\" < 5", "\"Order Id\" >= 5"])
    }
}

struct SplitOptionTests {
    @Test func sizesParseWithUnits() throws {
        #expect(try CloneOptions.parse(#"{"split_larger_than": 1048576}"#).splitLargerThan == 1 << 20)
        #expect(try CloneOptions.parse(#"{"split_larger_than": "256MB"}"#).splitLargerThan == 256 << 20)
        #expect(try CloneOptions.parse(#"{"split_larger_than": "1 GB"}"#).splitLargerThan == 1 << 30)
        #expect(try CloneOptions.parse(#"{"split_larger_than": "512kB"}"#).splitLargerThan == 512 << 10)
        #expect(try CloneOptions.parse("{}").splitLargerThan == nil)
        for bad in [#""lots""#, "-1", "1.5", #""12 parsecs""#, "true", #""99999999999TB""#] {
            #expect(throws: CloneError.self) { try CloneOptions.parse("{\"split_larger_than\": \(bad)}") }
        }
    }

    @Test func maintenanceWorkMemIsASizeOfAtLeastOneMegabyteOrZero() throws {
        #expect(try CloneOptions.parse("{}").maintenanceWorkMem == 1 << 30)
        #expect(try CloneOptions.parse(#"{"maintenance_work_mem": "512MB"}"#).maintenanceWorkMem == 512 << 20)
        #expect(try CloneOptions.parse(#"{"maintenance_work_mem": 0}"#).maintenanceWorkMem == 0)
        #expect(try CloneOptions.parse(#"{"maintenance_work_mem": "1TB"}"#).maintenanceWorkMem == 1 << 40)
        for bad in [#""100kB""#, #""2TB""#, "-1", #""lots""#, "true"] {
            #expect(throws: CloneError.self) { try CloneOptions.parse("{\"maintenance_work_mem\": \(bad)}") }
        }
    }
}
