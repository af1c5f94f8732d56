import Foundation
import MoeData
import XCTest

final class TaskTests: XCTestCase {
    func testSupersenseGoldenFingerprintsAndOrder() throws {
        let task = try WordNetTasks.supersense(WordNet.load(directory: Fixtures.wordNet))
        XCTAssertEqual(task.name, "wn-supersense")
        XCTAssertEqual(task.classes, [
            "adj.all", "adj.pert", "adj.ppl", "adv.all", "noun.Tops", "noun.act", "noun.animal",
            "noun.artifact", "noun.food", "noun.person", "noun.plant", "verb.body",
            "verb.communication", "verb.motion",
        ])
        XCTAssertEqual(task.train.map(\.key), SplitAndCorpusTests.trainOrder)
        XCTAssertEqual(task.validation.map(\.key), SplitAndCorpusTests.validationOrder)
        XCTAssertEqual(task.test.map(\.key), SplitAndCorpusTests.testOrder)
        XCTAssertEqual(task.trainFingerprint, "ea78c6e0f06c042c399b1fefcf1ef9d81aed248cc51b60fd09795e08284fe06c")
        XCTAssertEqual(task.validationFingerprint, "6a6175bcc851e30a2cd689ade740f5da0bfe8cbdd6b4af82ffe6eabf4f7677c6")
        XCTAssertEqual(task.testFingerprint, "6202df7f0e8f11e6c7e4b3b528a31a089973320fcf3b1b543ffdb8f007bf94f0")
        XCTAssertEqual(task.fingerprint, "35dd6280b18aed958dbfd0e5f916e6465bd41a805f8cf287df0ee1b441d6e2c3")
        // Classes come from the whole task: noun.plant occurs only in test.
        XCTAssertEqual(task.classCounts(in: .train)[task.classes.firstIndex(of: "noun.plant")!], 0)
        XCTAssertEqual(task.classCounts(in: .test)[task.classes.firstIndex(of: "noun.plant")!], 1)
        let header = try XCTUnwrap(task.validation.first { $0.key == "n:00119893" })
        XCTAssertEqual(task.classes[header.label], "noun.act")
        XCTAssertEqual(header.text, "a headlong jump (or fall); \"he took a header into the shrubbery\"")
    }

    func testPartOfSpeechTask() throws {
        let task = try WordNetTasks.partOfSpeech(WordNet.load(directory: Fixtures.wordNet))
        XCTAssertEqual(task.classes, ["adj", "adv", "noun", "verb"])
        XCTAssertEqual(task.fingerprint, "d32fc032db4e47f7fa911d1be1c53040f54843e98ef3a65fbdce3846675d6ae7")
        XCTAssertEqual(task.trainFingerprint, "deac3e19edb6968c89d6b2fe9b1c38665a6012d457fe8f02c9b60bc0277ebcbd")
        // Satellites are adjectives.
        let satellite = try XCTUnwrap(task.test.first { $0.key == "s:00028181" })
        XCTAssertEqual(task.classes[satellite.label], "adj")
        // Train: 6 noun, 4 verb, 5 adj, 3 adv; validation: 1 adj, 1 noun, 1 verb.
        XCTAssertEqual(task.classCounts(in: .train), [5, 3, 6, 4])
        XCTAssertEqual(task.majorityClass, 2)
        XCTAssertEqual(task.majorityClassAccuracy(on: .validation), 1.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(task.majorityClassAccuracy(on: .test), 2.0 / 5.0, accuracy: 1e-12)
    }

    func testNestedTrainSubsets() throws {
        let task = try WordNetTasks.supersense(WordNet.load(directory: Fixtures.wordNet))
        let small = try task.trainSubset(size: 4)
        let large = try task.trainSubset(size: 11)
        XCTAssertEqual(small.train.map(\.key), Array(SplitAndCorpusTests.trainOrder.prefix(4)))
        XCTAssertEqual(Array(large.train.prefix(4)), small.train)
        XCTAssertEqual(large.train.count, 11)
        XCTAssertEqual(small.validation, task.validation)
        XCTAssertEqual(small.validationFingerprint, task.validationFingerprint)
        XCTAssertNotEqual(small.trainFingerprint, task.trainFingerprint)
        XCTAssertNotEqual(small.fingerprint, large.fingerprint)
        XCTAssertEqual(small.classes, task.classes)
        XCTAssertEqual(try task.trainSubset(size: 18).fingerprint, task.fingerprint)
        // Deterministic: built twice, the same subset.
        let again = try WordNetTasks.supersense(WordNet.load(directory: Fixtures.wordNet)).trainSubset(size: 4)
        XCTAssertEqual(again.trainFingerprint, small.trainFingerprint)
    }

    func testSubsetLargerThanSplitIsAnError() throws {
        let task = try WordNetTasks.supersense(WordNet.load(directory: Fixtures.wordNet))
        let error = dataError { _ = try task.trainSubset(size: 19) }
        XCTAssertEqual(error, .subsetTooLarge(task: "wn-supersense", requested: 19, available: 18))
        XCTAssertTrue("\(error!)".contains("only 18"))
        XCTAssertNotNil(dataError { _ = try task.trainSubset(size: 0) })
    }

    func testEvaluationLimitTakesTheSameOrderPrefix() throws {
        let task = try WordNetTasks.supersense(WordNet.load(directory: Fixtures.wordNet))
        let limited = try task.limitingEvaluation(to: 2)
        XCTAssertEqual(limited.validation.map(\.key), Array(SplitAndCorpusTests.validationOrder.prefix(2)))
        XCTAssertEqual(limited.test.map(\.key), Array(SplitAndCorpusTests.testOrder.prefix(2)))
        XCTAssertEqual(limited.train, task.train)
        XCTAssertEqual(try task.limitingEvaluation(to: 100).fingerprint, task.fingerprint)
        XCTAssertNotNil(dataError { _ = try task.limitingEvaluation(to: 0) })
    }

    func testRegistry() throws {
        XCTAssertEqual(TaskRegistry.builtinNames, ["wn-pos", "wn-supersense"])
        let synsets = { try WordNet.load(directory: Fixtures.wordNet) }
        let task = try TaskRegistry.builtinTask(name: "wn-supersense", synsets: synsets)
        XCTAssertEqual(task.fingerprint, "35dd6280b18aed958dbfd0e5f916e6465bd41a805f8cf287df0ee1b441d6e2c3")
        let pos = try TaskRegistry.builtinTask(name: "wn-pos", synsets: synsets)
        XCTAssertEqual(pos.classes.count, 4)
        // An unknown name fails before WordNet is read.
        var loads = 0
        let counted = { () throws -> [Synset] in loads += 1; return try synsets() }
        let error = dataError { _ = try TaskRegistry.builtinTask(name: "wn-sense", synsets: counted) }
        XCTAssertEqual(error, .unknownTask(name: "wn-sense", valid: ["wn-pos", "wn-supersense"]))
        XCTAssertTrue("\(error!)".contains("wn-pos, wn-supersense"))
        let corpus = try TaskRegistry.builtinCorpus(name: "wordnet", synsets: synsets)
        XCTAssertEqual(corpus.fingerprint, "2f97c698127b9156bc54cf26cb69542925714bfd415cd8b258f02e2ce675bd3b")
        XCTAssertEqual(dataError { _ = try TaskRegistry.builtinCorpus(name: "c4", synsets: counted) },
                       .unknownCorpus(name: "c4", valid: ["wordnet"]))
        XCTAssertEqual(loads, 0)
    }

    func testInitRejectsLabelsOutsideClasses() {
        let error = dataError {
            _ = try ClassificationTask(name: "t", classes: ["a", "b"],
                                       train: [Example(text: "x", label: 2, key: "k")], validation: [], test: [])
        }
        XCTAssertNotNil(error)
    }

    func testByteEncoding() {
        let (tokens, length) = ByteVocab.encodeClassification(text: "hé", maxLength: 6)
        XCTAssertEqual(tokens, [257, 104, 0xC3, 0xA9, 256, 256])
        XCTAssertEqual(length, 4)
        let (cut, cutLength) = ByteVocab.encodeClassification(text: "abcdef", maxLength: 4)
        XCTAssertEqual(cut, [257, 97, 98, 99])
        XCTAssertEqual(cutLength, 4)
        let (empty, emptyLength) = ByteVocab.encodeClassification(text: "", maxLength: 3)
        XCTAssertEqual(empty, [ByteVocab.bos, ByteVocab.pad, ByteVocab.pad])
        XCTAssertEqual(emptyLength, 1)
        XCTAssertEqual(ByteVocab.size, 259)
        XCTAssertEqual(ByteVocab.eos, 258)
        // The buffer form overwrites stale contents.
        var buffer = [Int32](repeating: 7, count: 5)
        let n = buffer.withUnsafeMutableBufferPointer { ByteVocab.encodeClassification(text: "z", into: $0) }
        XCTAssertEqual(n, 2)
        XCTAssertEqual(buffer, [257, 122, 256, 256, 256])
    }
}
