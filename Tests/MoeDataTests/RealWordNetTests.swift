import Foundation
import MoeData
import XCTest

/// Runs on the installed WordNet 3.0 (Debian's wordnet-base); skipped when it is absent.
/// Prints the statistics quoted in the data note.
final class RealWordNetTests: XCTestCase {
    func testRealWordNet() throws {
        let directory = WordNet.defaultDirectory
        guard FileManager.default.fileExists(atPath: directory.appendingPathComponent("data.noun").path) else {
            throw XCTSkip("WordNet not installed at \(directory.path) (apt-get install wordnet-base)")
        }
        let clock = ContinuousClock()
        var synsets: [Synset] = []
        let loadTime = try clock.measure { synsets = try WordNet.load(directory: directory) }
        XCTAssertEqual(synsets.count, 117_659)
        XCTAssertEqual(Set(synsets.map(\.lexFile)).count, 45)
        XCTAssertEqual(Set(synsets.map(\.key)).count, 117_659)
        XCTAssertEqual(synsets.filter { $0.pos == .noun }.count, 82_115)
        XCTAssertEqual(synsets.filter { $0.pos == .verb }.count, 13_767)
        XCTAssertEqual(synsets.filter { $0.pos == .adjective || $0.pos == .adjectiveSatellite }.count, 18_156)
        XCTAssertEqual(synsets.filter { $0.pos == .adverb }.count, 3_621)

        var corpus: PretrainCorpus?
        var supersense: ClassificationTask?
        var pos: ClassificationTask?
        let buildTime = try clock.measure {
            corpus = try PretrainCorpus.wordNet(synsets)
            supersense = try WordNetTasks.supersense(synsets)
            pos = try WordNetTasks.partOfSpeech(synsets)
        }
        let (c, s, p) = (corpus!, supersense!, pos!)
        XCTAssertEqual(s.classes.count, 45)
        XCTAssertEqual(p.classes, ["adj", "adv", "noun", "verb"])
        XCTAssertEqual(s.train.count + s.validation.count + s.test.count, 117_659)
        XCTAssertEqual(c.recordCounts[.train], s.train.count)
        XCTAssertEqual(c.recordCounts[.validation], s.validation.count)
        // Pinned against an independent Python implementation of the same rules run on
        // Debian's wordnet-base 3.0; a change here changes every run hash that uses them.
        XCTAssertEqual(c.fingerprint, "2b07fcde79cbf4e753c207136a423d4dd4e2a42f9fd5c721a3fe9fe07bb4b81f")
        XCTAssertEqual(c.train.count, 9_203_390)
        XCTAssertEqual(c.validation.count, 1_150_651)
        XCTAssertEqual(s.fingerprint, "60918712835557654e71f52a44b8dbed5ac9ab8a3d7ed7ddc32a0d7089924467")
        XCTAssertEqual([s.train.count, s.validation.count, s.test.count], [94_183, 11_836, 11_640])
        // Subsets used by the study exist and nest.
        let small = try s.trainSubset(size: 256)
        let large = try s.trainSubset(size: 4096)
        XCTAssertEqual(Array(large.train.prefix(256)), small.train)
        _ = try s.trainSubset(size: 32_768)

        // How many held-out glosses also occur verbatim as a train gloss (duplicate glosses
        // across synsets): reported, not an error.
        let trainGlosses = Set(s.train.map(\.text))
        let sharedValidation = s.validation.filter { trainGlosses.contains($0.text) }.count

        print("""
            real WordNet: \(synsets.count) synsets loaded in \(loadTime); corpus and tasks built in \(buildTime)
            \(DataStats.summary(of: c))
            \(DataStats.summary(of: s))
            \(DataStats.summary(of: p))
            wn-supersense train-256 subset: \(small.classCounts(in: .train).filter { $0 > 0 }.count) classes present, \
            majority \(small.classes[small.majorityClass]) (validation accuracy \(small.majorityClassAccuracy(on: .validation)))
            wn-supersense train-4096 subset: \(large.classCounts(in: .train).filter { $0 > 0 }.count) classes present
            validation glosses that also occur verbatim in train: \(sharedValidation) of \(s.validation.count)
            """)
        XCTAssertLessThan(loadTime, .seconds(3), "WordNet must load in a couple of seconds in release builds")
    }
}
