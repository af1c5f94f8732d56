import Foundation
import MoeStore
import XCTest

final class WhereFilterTests: XCTestCase {
    func testParsesComparisonsIntoBoundSQL() throws {
        let f = try WhereFilter("regime=non-moe and experts>=4")
        XCTAssertEqual(f.sql, "(json_extract(r.config_json, ?) = ? AND json_extract(r.config_json, ?) >= ?)")
        XCTAssertEqual(f.parameters, ["$.regime", "non-moe", "$.experts", 4])

        let g = try WhereFilter("status = completed AND (seed=0 OR seed == 1) and lr < 1e-3")
        XCTAssertEqual(g.parameters, ["completed", "$.seed", 0, "$.seed", 1, "$.lr", 0.001])
        XCTAssertTrue(g.sql.contains(" OR "))

        XCTAssertEqual(try WhereFilter("task='wn pos'").parameters, ["$.task", "wn pos"])
        XCTAssertEqual(try WhereFilter(#"name="say \"hi\"""#).parameters, ["$.name", #"say "hi""#])
        XCTAssertEqual(try WhereFilter("seed='3'").parameters, ["$.seed", "3"], "quoted values stay strings")
        XCTAssertEqual(try WhereFilter("flag=true").parameters, ["$.flag", true])
        XCTAssertEqual(try WhereFilter("x=nan").parameters, ["$.x", "nan"], "not a number")
    }

    func testMalformedExpressionsNameTheOffendingToken() {
        let cases: [(String, String)] = [
            ("a;DROP TABLE runs", ";"),
            ("experts >> 4", ">>"),
            ("experts => 4", "=>"),
            ("regime='all", "'all"),
            ("regime", "regime"),
            ("regime=", "="),
            ("=4", "="),
            ("9lives=1", "9lives"),
            ("a-b=1", "a-b"),
            ("experts=4 and", ""),
            ("experts=4 regime=all", "regime"),
            ("(experts=4", ""),
            ("experts=4)", ")"),
            ("status=complted", "complted"),
            ("kind=distill", "distill"),
            ("status>queued", ">"),
            ("hash=xyz", "xyz"),
            ("tag<a", "<"),
            ("", ""),
            ("seed=1 -- comment", "--"),
        ]
        for (expression, token) in cases {
            XCTAssertThrowsError(try WhereFilter(expression), expression) { error in
                guard case let .invalidWhere(e, t, _)? = error as? StoreError else { return XCTFail("\(expression): \(error)") }
                XCTAssertEqual(e, expression)
                XCTAssertEqual(t, token, expression)
            }
        }
    }

    func testFiltersSelectRunsAndInjectionStaysInert() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.file("moerec.sqlite"))
        let parent = try store.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil,
                                         datasetFingerprint: fingerprint, numericsVersion: 1)
        var finetunes: [String: RunRecord] = [:]
        for (regime, experts) in [("all", 8), ("moe", 8), ("ffn", 4), ("non-moe", 1)] {
            finetunes[regime] = try store.insertRun(kind: .finetune, config: sampleConfig(regime: regime, experts: experts),
                                                    parentHash: parent.hash, datasetFingerprint: fingerprint, numericsVersion: 1)
        }
        try store.addTag(runHash: finetunes["moe"]!.hash, tag: "paper")
        try store.markRunning(hash: finetunes["ffn"]!.hash, environment: RunEnvironment())
        try store.markCompleted(hash: finetunes["ffn"]!.hash, wallSeconds: 1, steps: 10)

        func hashes(_ expression: String) throws -> Set<String> {
            Set(try store.listRuns(filter: try WhereFilter(expression)).map(\.hash))
        }
        let h = { (regime: String) in finetunes[regime]!.hash }
        XCTAssertEqual(try hashes("kind=pretrain"), [parent.hash])
        XCTAssertEqual(try hashes("experts>=8 and kind=finetune"), [h("all"), h("moe")])
        XCTAssertEqual(try hashes("regime=ffn or regime=non-moe"), [h("ffn"), h("non-moe")])
        XCTAssertEqual(try hashes("status=completed"), [h("ffn")])
        XCTAssertEqual(try hashes("status!=queued"), [h("ffn")])
        XCTAssertEqual(try hashes("tag=paper"), [h("moe")])
        XCTAssertEqual(try hashes("tag!=paper and kind=finetune"), [h("all"), h("ffn"), h("non-moe")])
        XCTAssertEqual(try hashes("parent=\(parent.hash.prefix(6))"), Set(finetunes.values.map(\.hash)))
        XCTAssertEqual(try hashes("parent=null"), [parent.hash])
        XCTAssertEqual(try hashes("hash=\(h("moe").prefix(10))"), [h("moe")])
        XCTAssertEqual(try hashes("regime~moe"), [h("moe"), h("non-moe")])
        XCTAssertEqual(try hashes("lr=0.001 and experts<4"), [h("non-moe")])
        XCTAssertEqual(try hashes("dropout!=0.1"), Set(finetunes.values.map(\.hash) + [parent.hash]), "a missing key is 'not equal'")
        XCTAssertEqual(try hashes("dropout=null"), Set(finetunes.values.map(\.hash) + [parent.hash]))

        // Injection attempts are either rejected or compared as plain strings.
        let inert = [
            "regime='x'' OR 1=1 --'",
            "regime=\"'; DROP TABLE runs; --\"",
            "regime='all) OR (1=1'",
            "tag='paper'' OR ''1''=''1'",
            "task=\"wn-supersense' OR 'a'='a\"",
        ]
        for expression in inert {
            XCTAssertEqual(try hashes(expression), [], expression)
        }
        for expression in ["a;DROP TABLE runs", "regime=all; DROP TABLE runs", "x=1) OR (1=1", "regime=all' OR '1'='1",
                           "experts=4 UNION SELECT hash FROM runs"] {
            XCTAssertThrowsError(try WhereFilter(expression), expression)
        }
        XCTAssertEqual(try count(store, "SELECT count(*) FROM runs"), 5, "runs table intact")
        XCTAssertEqual(try store.allRuns(filter: try WhereFilter("regime=all")).map(\.hash), [parent.hash, h("all")])
    }

    /// The config keys the CLI passes in (a few, with the types `RunConfig.schema` gives them).
    static let keys: [String: WhereFilter.KeyType] = [
        "seed": .int, "experts": .int, "lr": .float, "dropout": .float, "task": .string,
        "regime": .choice(["all", "non-moe", "moe", "attention", "ffn"]), "groups": .choices(["attn", "ffn", "router", "experts"]),
    ]

    func testKnownKeysAndTypesAreEnforcedByName() {
        let refused: [(String, String, String)] = [
            ("stepz=1", "stepz", "unknown key"),
            ("seed=0 or Seed=1", "Seed", "unknown key"),
            ("(regime=all and regimes=moe)", "regimes", "unknown key"),
            ("seed=1.5", "1.5", "seed is an integer"),
            ("seed='3'", "'3'", "seed is an integer"),
            ("experts>=true", "true", "experts is an integer"),
            ("lr<fast", "fast", "lr is a number"),
            ("dropout='0.1'", "'0.1'", "dropout is a number"),
            ("groups<attn", "<", "list"),
            ("regime=nonsense", "nonsense", "regime is one of all, "),
            ("regime!=\"x' OR '1'='1\"", "'x' OR '1'='1'", "regime is one of"),
            ("groups=wings", "wings", "groups is one of"),
        ]
        for (expression, token, reason) in refused {
            XCTAssertThrowsError(try WhereFilter(expression, configKeys: Self.keys), expression) { error in
                guard case let .invalidWhere(_, t, r)? = error as? StoreError else { return XCTFail("\(expression): \(error)") }
                XCTAssertEqual(t, token, expression)
                XCTAssertTrue(r.contains(reason), "\(expression): \(r)")
                XCTAssertEqual((error as? StoreError)?.exitMeaning.exitCode, 2)
            }
        }
        // Run columns, null and text keys given bare numbers stay valid.
        for expression in ["status=completed and kind=finetune", "tag=paper or sweep=3", "hash=abc", "parent=null", "seed=null",
                           "lr<1 and lr>=1e-4 and experts=8", "task=5", "task=\"x' OR '1'='1\"", "regime~x", "task~sup", "groups~att"] {
            XCTAssertNoThrow(try WhereFilter(expression, configKeys: Self.keys), expression)
        }
        XCTAssertEqual(try WhereFilter("task=5", configKeys: Self.keys).parameters, ["$.task", "5"], "a bare word is text for a text key")
    }

    func testExpressionSizeIsBoundedAndTheBoundRuns() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.file("moerec.sqlite"))
        _ = try store.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil, datasetFingerprint: fingerprint, numericsVersion: 1)
        let n = WhereFilter.maxComparisons
        let shapes: [(String, (Int) -> String)] = [
            (" or ", { "seed=\($0)" }), (" and ", { "seed!=\($0 + 1)" }), (" or ", { "tag=t\($0)" }),
            (" and ", { "sweep!=\($0)" }), (" or ", { "groups~g\($0)" }), (" and ", { "lr>=0.000\($0 % 10)1" }),
        ]
        for (join, term) in shapes {
            let largest = (0..<n).map(term).joined(separator: join)
            XCTAssertNoThrow(try store.listRuns(filter: try WhereFilter(largest, configKeys: Self.keys)), String(largest.prefix(40)))
            let nested = String(repeating: "(", count: 64) + largest + String(repeating: ")", count: 64)
            XCTAssertNoThrow(try store.listRuns(filter: try WhereFilter(nested, configKeys: Self.keys)), String(nested.prefix(80)))
            for size in [n + 1, 1000, 20_000] {
                let tooLarge = (0..<size).map(term).joined(separator: join)
                XCTAssertThrowsError(try WhereFilter(tooLarge), "\(size) terms") { error in
                    guard case let .invalidWhere(_, _, reason)? = error as? StoreError else { return XCTFail("\(error)") }
                    XCTAssertTrue(reason.contains("more than \(n) comparisons"), reason)
                }
            }
        }
    }

    func testListKeysCompareByMembership() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.file("moerec.sqlite"))
        let parent = try store.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil, datasetFingerprint: fingerprint,
                                         numericsVersion: 1)
        var config = sampleConfig(regime: "custom")
        if case var .object(o) = config { o["groups"] = ["attn", "ffn"]; config = .object(o) }
        let custom = try store.insertRun(kind: .finetune, config: config, parentHash: parent.hash, datasetFingerprint: fingerprint,
                                         numericsVersion: 1)
        func hashes(_ expression: String) throws -> Set<String> {
            Set(try store.listRuns(filter: try WhereFilter(expression, configKeys: Self.keys)).map(\.hash))
        }
        XCTAssertEqual(try hashes("groups=ffn"), [custom.hash])
        XCTAssertEqual(try hashes("groups=router"), [])
        XCTAssertEqual(try hashes("groups!=attn"), [parent.hash])
    }
}
