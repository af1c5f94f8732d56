import MoeKernels
import MoeTrain
import XCTest

/// The linear n-gram baseline: it learns a task whose label is a known function of one
/// word, and it is deterministic.
final class LinearBaselineTests: XCTestCase {
    static let markers = ["amber", "basil", "cobalt", "dune", "ember"]

    /// Filler words drawn by the counter RNG, with one marker word whose index is the label.
    static func examples(_ count: Int, offset: Int) -> [EncodedExample] {
        let rng = CounterRng(seed: 7)
        let filler = (0..<200).map { "w\($0)x" }
        return (0..<count).map { i in
            let n = UInt64(i + offset)
            let label = Int(rng.bits(.test, step: 1, index: n) % UInt64(markers.count))
            var words = (0..<8).map { filler[Int(rng.bits(.test, step: 2, stream: UInt64($0), index: n) % 200)] }
            words.insert(markers[label], at: Int(rng.bits(.test, step: 3, index: n) % 9))
            return TrainingData.encode(text: Array(words.joined(separator: " ").utf8), label: label, context: 128)
        }
    }

    func testLearnsALabelThatIsAFunctionOfOneWord() {
        let train = Self.examples(400, offset: 0), test = Self.examples(300, offset: 10_000)
        let model = LinearBaseline().fit(train, classes: Self.markers.count)
        XCTAssertGreaterThanOrEqual(model.accuracy(test), 0.95)
        // Shuffled labels leave nothing to learn: near chance (1/5) on held-out examples.
        let shuffled = train.enumerated().map { EncodedExample(tokens: $0.element.tokens, label: Int32(($0.offset * 7) % 5)) }
        XCTAssertLessThan(LinearBaseline().fit(shuffled, classes: 5).accuracy(test), 0.5)
    }

    func testRepeatedFitsAreBitIdentical() {
        let train = Self.examples(200, offset: 0), test = Self.examples(100, offset: 5_000)
        let a = LinearBaseline().fit(train, classes: 5), b = LinearBaseline().fit(train, classes: 5)
        XCTAssertEqual(test.map { a.predict($0.tokens) }, test.map { b.predict($0.tokens) })
        XCTAssertEqual(a.accuracy(test), b.accuracy(test))
        XCTAssertEqual(a.weightDigest, b.weightDigest)
        var other = LinearBaseline(); other.seed = 1
        XCTAssertNotEqual(other.fit(train, classes: 5).weightDigest, a.weightDigest, "the seed orders the epochs")
    }

    func testFeaturesAreNormalisedAndOrderFree() {
        let counts = LinearBaseline.counts(Array("The cat sat".utf8))
        XCTAssertEqual(counts, LinearBaseline.counts(Array("the CAT sat".utf8)), "features are case-insensitive")
        XCTAssertNotEqual(counts, LinearBaseline.counts(Array("sat cat the".utf8)), "word bigrams see the order")
        let f = LinearBaseline.features(counts, idf: [:], unseen: 2)
        XCTAssertEqual(f.value.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-5)
        XCTAssertEqual(f.index, f.index.sorted())
    }
}
