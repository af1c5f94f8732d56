import XCTest
import MoeExperiment
import MoeStore
import MoeTestSupport
import MoeTrain

final class ConfigResolverTests: XCTestCase {
    func write(_ text: String, _ name: String) throws -> String {
        let dir = TestSupport.temporaryDirectory("config")
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// JSON, YAML, --set, another key order and spelled-out defaults all resolve to the
    /// same canonical config, hence the same run hash.
    func testSameValuesResolveToTheSameCanonicalConfig() throws {
        let json = try write(#"{"steps": 40, "experts": 4, "lr": 0.002}"#, "a.json")
        let yaml = try write("lr: 0.002\nexperts: 4\nsteps: 40\n", "a.yaml")
        let spelled = try write(#"{"lr": 0.002, "experts": 4, "steps": 40, "top_k": 2, "dropout": 0.1, "norm": "layernorm"}"#, "b.json")
        let a = try ConfigResolver.value(of: ConfigResolver.resolve(file: json).config).canonicalString
        let b = try ConfigResolver.value(of: ConfigResolver.resolve(file: yaml).config).canonicalString
        let c = try ConfigResolver.value(of: ConfigResolver.resolve(sets: ["experts=4", "steps=40", "lr=2e-3"]).config).canonicalString
        let d = try ConfigResolver.value(of: ConfigResolver.resolve(file: spelled).config).canonicalString
        XCTAssertEqual(a, b); XCTAssertEqual(a, c); XCTAssertEqual(a, d)
        let e = try ConfigResolver.value(of: ConfigResolver.resolve(sets: ["experts=4", "steps=41", "lr=2e-3"]).config).canonicalString
        XCTAssertNotEqual(a, e)
    }

    /// The canonical form of the default config is pinned: a change here changes every
    /// run hash, so it must be deliberate (and bump `Executor.numericsVersion` if results move).
    func testDefaultConfigHashIsPinned() throws {
        let value = try ConfigResolver.value(of: RunConfig())
        let hash = try RunIdentity.hash(config: value, parent: nil, datasetFingerprint: String(repeating: "0", count: 64), numerics: 1)
        let canonical = try value.canonicalString
        XCTAssertEqual(hash, PinnedHash.defaultConfig, canonical)
    }

    func testErrorsNameKeyAndValue() throws {
        let cases: [([String], String)] = [
            (["stepz=3"], "unknown key 'stepz'"),
            (["steps=abc"], "steps=abc"),
            (["lr=nan"], "lr=nan"),
            (["experts"], "expected key=value"),
        ]
        for (sets, expected) in cases {
            XCTAssertThrowsError(try ConfigResolver.resolve(sets: sets)) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
        let wrongType = try write(#"{"steps": "ten"}"#, "w.json")
        XCTAssertThrowsError(try ConfigResolver.resolve(file: wrongType)) { XCTAssertTrue("\($0)".contains("steps=ten"), "\($0)") }
        let badYaml = try write("steps: [1, 2\n", "bad.yaml")
        XCTAssertThrowsError(try ConfigResolver.resolve(file: badYaml)) { XCTAssertTrue("\($0)".contains("invalid YAML"), "\($0)") }
        var c = RunConfig(); c.experts = 2; c.topK = 3
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("top_k=3"), "\($0)") }
    }

    func testStudyCellsShareParentsAndFixDenseTopK() throws {
        let study = try Presets.study(named: "paper")
        let cells = try study.cells()
        XCTAssertEqual(cells.count, 4 * 2 * 5 * 3)
        let dense = cells.first { $0.config.experts == 1 }!
        XCTAssertEqual(dense.config.topK, 1)
        XCTAssertEqual(dense.parent?.topK, 1)
        XCTAssertEqual(dense.parent?.experts, 1)
        let parents = Set(cells.compactMap { $0.parent.map { try? ConfigResolver.value(of: $0).canonicalString } ?? nil })
        XCTAssertEqual(parents.count, 4, "one pretraining parent per expert count")
    }
}

enum PinnedHash {
    static let defaultConfig = "9808ed0d5522d5e828acfa4d30b89e59b2e9265f91603c10c310a47f0c2bbec1"
}
