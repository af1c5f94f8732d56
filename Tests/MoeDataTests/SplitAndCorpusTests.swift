import Foundation
import MoeData
import XCTest

/// Golden values were computed by an independent Python implementation of the documented
/// rules (SHA-256 split and order hashes, corpus lines, task serialisation).
final class SplitAndCorpusTests: XCTestCase {
    static let trainOrder = [
        "r:00002436", "n:00061290", "n:09484313", "n:02665985", "n:01313888", "s:00014358",
        "v:00002573", "s:00019731", "n:07556872", "r:00059413", "a:02598609", "s:00003829",
        "v:01833735", "n:00005787", "v:00019273", "a:03147282", "v:00741591", "r:00001740",
    ]
    static let validationOrder = ["a:00002730", "n:00119893", "v:00091513"]
    static let testOrder = ["n:00001740", "s:00028181", "r:00012129", "n:11530008", "s:00059028"]

    func testSplitAssignmentIsPinned() {
        for key in Self.trainOrder { XCTAssertEqual(SplitAssignment.split(forKey: key), .train, key) }
        for key in Self.validationOrder { XCTAssertEqual(SplitAssignment.split(forKey: key), .validation, key) }
        for key in Self.testOrder { XCTAssertEqual(SplitAssignment.split(forKey: key), .test, key) }
        // The unit value is the top 53 bits of SHA-256("n:00001740")[0..<8].
        XCTAssertEqual(SplitAssignment.hash(key: "n:00001740").unit, 0.9115703932236648, accuracy: 1e-15)
        XCTAssertEqual(SplitAssignment.hash(key: "r:00001740").split, .train)
    }

    func testSplitFractionsOnManyKeys() {
        var counts: [DataSplit: Int] = [:]
        for i in 0..<20_000 { counts[SplitAssignment.split(forKey: "k\(i)"), default: 0] += 1 }
        XCTAssertEqual(Double(counts[.train]!) / 20_000, 0.8, accuracy: 0.01)
        XCTAssertEqual(Double(counts[.validation]!) / 20_000, 0.1, accuracy: 0.01)
        XCTAssertEqual(Double(counts[.test]!) / 20_000, 0.1, accuracy: 0.01)
    }

    func testWordNetCorpusGoldenFingerprints() throws {
        let corpus = try PretrainCorpus.wordNet(WordNet.load(directory: Fixtures.wordNet))
        XCTAssertEqual(corpus.trainFingerprint, "b30d59d4df7e47a47bd87893ace6717b964dca1498774df9d4d80fd675a17890")
        XCTAssertEqual(corpus.validationFingerprint, "72fa4549702515337f45f275f754357d2865468ea3e96bdf8f12d2ed23ad538f")
        XCTAssertEqual(corpus.fingerprint, "2f97c698127b9156bc54cf26cb69542925714bfd415cd8b258f02e2ce675bd3b")
        XCTAssertEqual(corpus.train.count, 1405)
        XCTAssertEqual(corpus.validation.count, 184)
        XCTAssertEqual(corpus.recordCounts, [.train: 18, .validation: 3, .test: 5])
        let first = String(decoding: corpus.train.prefix { $0 != 10 }, as: UTF8.self)
        XCTAssertEqual(first, "horseback, ahorse, ahorseback: on the back of a horse; \"he rode horseback to town\"; "
                       + "\"managed to escape ahorse\"; \"policeman patrolled the streets ahorseback\"")
    }

    func testHeldOutSynsetsNeverReachTrainingBytes() throws {
        let synsets = try WordNet.load(directory: Fixtures.wordNet)
        let corpus = try PretrainCorpus.wordNet(synsets)
        let trainText = String(decoding: corpus.train, as: UTF8.self)
        let validationText = String(decoding: corpus.validation, as: UTF8.self)
        let trainLines = Set(trainText.split(separator: "\n").map(String.init))
        let validationLines = Set(validationText.split(separator: "\n").map(String.init))
        for synset in synsets {
            switch SplitAssignment.split(forKey: synset.key) {
            case .train:
                XCTAssertTrue(trainLines.contains(synset.corpusLine), synset.key)
            case .validation:
                XCTAssertTrue(validationLines.contains(synset.corpusLine), synset.key)
                XCTAssertFalse(trainText.contains(synset.gloss), synset.key)
            case .test:
                XCTAssertFalse(trainText.contains(synset.gloss), synset.key)
                XCTAssertFalse(validationText.contains(synset.gloss), synset.key)
            }
        }
        XCTAssertEqual(trainLines.count + validationLines.count, 21)
    }

    func testCorpusDoesNotDependOnFileOrder() throws {
        let synsets = try WordNet.load(directory: Fixtures.wordNet)
        let a = try PretrainCorpus.wordNet(synsets)
        let b = try PretrainCorpus.wordNet(synsets.reversed())
        XCTAssertEqual(a.fingerprint, b.fingerprint)
        XCTAssertEqual(a.train, b.train)
    }

    func testFingerprintChangesWithOneByte() throws {
        var synsets = try WordNet.load(directory: Fixtures.wordNet)
        let before = try PretrainCorpus.wordNet(synsets)
        let index = try XCTUnwrap(synsets.firstIndex { $0.key == "n:00119893" })
        let s = synsets[index]
        synsets[index] = Synset(pos: s.pos, offset: s.offset, lexFileNumber: s.lexFileNumber,
                                lemmas: s.lemmas, gloss: s.gloss + ".")
        let after = try PretrainCorpus.wordNet(synsets)
        XCTAssertEqual(before.trainFingerprint, after.trainFingerprint)
        XCTAssertNotEqual(before.validationFingerprint, after.validationFingerprint)
        XCTAssertNotEqual(before.fingerprint, after.fingerprint)
    }
}
