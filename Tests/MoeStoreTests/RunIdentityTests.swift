import Foundation
import MoeJSON
import MoeStore
import XCTest

final class RunIdentityTests: XCTestCase {
    // Golden values: these hashes must never change between releases (every stored run is
    // keyed by them). If a change to the canonical form breaks these, it breaks every store.
    // They were computed outside Swift (SHA-256 of the documented canonical text, written
    // out by hand), so they check the canonical form as well as pin it.
    func testGoldenHashes() throws {
        let config = try JSONValue(parsing: #"{"experts":8,"lr":0.001,"regime":"all","seed":0,"task":"wn-supersense","top_k":2}"#)
        XCTAssertEqual(try RunIdentity.hash(config: config, parent: nil, datasetFingerprint: fingerprint, numerics: 1),
                       "7205ea485a1af31ca996b84721997a6f50e2e5a6b507260d9c86784c4dc45c4d")
        XCTAssertEqual(try RunIdentity.hash(config: config, parent: String(repeating: "0", count: 64),
                                            datasetFingerprint: fingerprint, numerics: 1),
                       "286e64702322b3a89343607c18f0673ab17a4d35bf9f7333dada323e7b2c1959")
        XCTAssertEqual(try RunIdentity.hash(config: [:], parent: nil, datasetFingerprint: "x", numerics: 0),
                       "a553fffdbd31c97267b8e6e2ad4000959247dd8636473f76ee3424440662afa6")
        // Whole-valued and tiny doubles, escapes and non-ASCII text: the parts of the
        // canonical form most likely to drift.
        let tricky: JSONValue = ["regime": "non-moe", "lr": 1e-05, "capacity_factor_eval": 2.0,
                                 "note": "tab\there \"q\" é\u{01}"]
        XCTAssertEqual(try RunIdentity.hash(config: tricky, parent: nil, datasetFingerprint: "fp", numerics: 7),
                       "bc0cb91bafa66b90fdafb632cdf74651d53d9bdfafcdd320a311dd68f78cdf28")
    }

    func testHashIsSHA256OfTheDocumentedCanonicalDocument() throws {
        let config: JSONValue = ["b": 1.5, "a": "x"]
        let document = #"{"config":{"a":"x","b":1.5},"dataset":"fp","numerics":3,"parent":null}"#
        XCTAssertEqual(try RunIdentity.hash(config: config, parent: nil, datasetFingerprint: "fp", numerics: 3),
                       RunIdentity.sha256Hex(Array(document.utf8)))
    }

    /// An imported run's identity adds its content fingerprint; the content is the documented
    /// canonical document of its status and sorted points (NaN as null).
    func testImportedRunHashesItsConfigAndTheFingerprintOfItsContent() throws {
        let config: JSONValue = ["b": 1.5, "a": "x"]
        let document = #"{"config":{"a":"x","b":1.5},"dataset":"fp","imported":"f00d","numerics":0,"parent":null}"#
        XCTAssertEqual(try RunIdentity.hash(config: config, parent: nil, datasetFingerprint: "fp", numerics: 0, imported: "f00d"),
                       RunIdentity.sha256Hex(Array(document.utf8)))
        let points = [ImportedRun.Point(step: 5, split: "val", name: "loss", value: .nan),
                      ImportedRun.Point(step: 5, split: "val", name: "acc", value: 0.25)]
        let content = #"{"points":[["val","acc",5,0.25],["val","loss",5,null]],"status":"completed"}"#
        XCTAssertEqual(try ImportedRun.fingerprint(status: .completed, points: points), RunIdentity.sha256Hex(Array(content.utf8)))
        let run = try ImportedRun(kind: .pretrain, config: config, parentHash: nil, datasetFingerprint: "fp", status: .completed,
                                  source: "test", points: points)
        XCTAssertEqual(run.hash, try RunIdentity.hash(config: config, parent: nil, datasetFingerprint: "fp", numerics: 0,
                                                       imported: RunIdentity.sha256Hex(Array(content.utf8))))
        // Any other logged value is another run.
        let other = try ImportedRun(kind: .pretrain, config: config, parentHash: nil, datasetFingerprint: "fp", status: .completed,
                                    source: "test", points: [points[1]])
        XCTAssertNotEqual(run.hash, other.hash)
    }

    func testKeyOrderAndWhitespaceDoNotChangeTheHash() throws {
        let a = try JSONValue(parsing: #"{"regime":"ffn","experts":4,"nested":{"y":1,"x":[1,2]}}"#)
        let b = try JSONValue(parsing: "{\n  \"nested\": {\"x\": [1, 2], \"y\": 1},\n  \"experts\": 4,\n  \"regime\": \"ffn\"\n}")
        XCTAssertEqual(try RunIdentity.hash(config: a, parent: nil, datasetFingerprint: fingerprint, numerics: 1),
                       try RunIdentity.hash(config: b, parent: nil, datasetFingerprint: fingerprint, numerics: 1))
    }

    private struct Config: Codable {
        var experts = 8
        var dropout = 0.0
        var regime = "all"
    }

    func testSpelledOutDefaultsHashLikeTheResolvedStruct() throws {
        // A file that omits defaults and one that spells them out both resolve to the same
        // struct; the struct's encoding is what gets hashed.
        let resolved = try JSONValue(encodable: Config())
        let spelledOut = try JSONValue(parsing: #"{"regime":"all","dropout":0.0,"experts":8}"#)
        XCTAssertEqual(try RunIdentity.hash(config: resolved, parent: nil, datasetFingerprint: "d", numerics: 1),
                       try RunIdentity.hash(config: spelledOut, parent: nil, datasetFingerprint: "d", numerics: 1))
    }

    func testEveryIdentityFieldChangesTheHash() throws {
        let base = sampleConfig()
        let parent = String(repeating: "1", count: 64)
        let reference = try RunIdentity.hash(config: base, parent: parent, datasetFingerprint: fingerprint, numerics: 1)
        var variants: [String] = []
        for (key, value) in base.objectValue! {
            var changed = base.objectValue!
            switch value {
            case let .int(i): changed[key] = .int(i + 1)
            case let .double(d): changed[key] = .double(d * 2)
            case let .string(s): changed[key] = .string(s + "x")
            default: XCTFail("unexpected value type for \(key)")
            }
            variants.append(try RunIdentity.hash(config: .object(changed), parent: parent, datasetFingerprint: fingerprint, numerics: 1))
        }
        var withExtraKey = base.objectValue!
        withExtraKey["dropout"] = 0.0
        variants.append(try RunIdentity.hash(config: .object(withExtraKey), parent: parent, datasetFingerprint: fingerprint, numerics: 1))
        var intInsteadOfDouble = base.objectValue!
        intInsteadOfDouble["capacity_factor_train"] = .int(1)
        var doubleOne = base.objectValue!
        doubleOne["capacity_factor_train"] = .double(1)
        variants.append(try RunIdentity.hash(config: .object(intInsteadOfDouble), parent: parent, datasetFingerprint: fingerprint, numerics: 1))
        variants.append(try RunIdentity.hash(config: .object(doubleOne), parent: parent, datasetFingerprint: fingerprint, numerics: 1))
        variants.append(try RunIdentity.hash(config: base, parent: nil, datasetFingerprint: fingerprint, numerics: 1))
        variants.append(try RunIdentity.hash(config: base, parent: String(repeating: "2", count: 64), datasetFingerprint: fingerprint, numerics: 1))
        variants.append(try RunIdentity.hash(config: base, parent: parent, datasetFingerprint: fingerprint + "0", numerics: 1))
        variants.append(try RunIdentity.hash(config: base, parent: parent, datasetFingerprint: fingerprint, numerics: 2))

        XCTAssertFalse(variants.contains(reference))
        XCTAssertEqual(Set(variants).count, variants.count, "two different identities hashed the same")
        for hash in variants + [reference] { XCTAssertTrue(RunIdentity.isValidHash(hash), hash) }
    }
}
