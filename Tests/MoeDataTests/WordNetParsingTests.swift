import Foundation
import MoeData
import XCTest

final class WordNetParsingTests: XCTestCase {
    func testParsesFixtureSynsets() throws {
        let synsets = try WordNet.load(directory: Fixtures.wordNet)
        XCTAssertEqual(synsets.count, 26)
        XCTAssertEqual(synsets.filter { $0.pos == .noun }.count, 9)
        XCTAssertEqual(synsets.filter { $0.pos == .verb }.count, 5)
        XCTAssertEqual(synsets.filter { $0.pos == .adjective }.count, 3)
        XCTAssertEqual(synsets.filter { $0.pos == .adjectiveSatellite }.count, 5)
        XCTAssertEqual(synsets.filter { $0.pos == .adverb }.count, 4)

        let byKey = Dictionary(uniqueKeysWithValues: synsets.map { ($0.key, $0) })
        let entity = try XCTUnwrap(byKey["n:00001740"])
        XCTAssertEqual(entity.offset, 1740)
        XCTAssertEqual(entity.lexFileNumber, 3)
        XCTAssertEqual(entity.lexFile, "noun.Tops")
        XCTAssertEqual(entity.lemmas, ["entity"])
        XCTAssertEqual(entity.gloss,
                       "that which is perceived or known or inferred to have its own distinct existence (living or nonliving)")

        // Offsets repeat across files: the same number is a noun and an adverb.
        XCTAssertEqual(byKey["r:00001740"]?.lemmas, ["a cappella"])

        // Adjective markers are stripped, underscores become spaces.
        XCTAssertEqual(byKey["s:00019731"]?.lemmas, ["handy", "ready to hand"])
        XCTAssertEqual(byKey["s:00014358"]?.lemmas, ["abounding", "galore"])
        XCTAssertEqual(byKey["s:00014358"]?.pos.coarseName, "adj")
        XCTAssertEqual(byKey["a:03147282"]?.lexFile, "adj.ppl")

        // A verb with two frames is parsed through to its gloss.
        let verb = try XCTUnwrap(byKey["v:00019273"])
        XCTAssertEqual(verb.lemmas, ["cause to sleep"])
        XCTAssertEqual(verb.lexFile, "verb.body")
        XCTAssertTrue(verb.gloss.hasPrefix("make fall asleep; \"The soft music"))
        XCTAssertFalse(verb.gloss.hasSuffix(" "))

        // Lemma ids other than 0 and hex word counts.
        XCTAssertEqual(byKey["r:00059413"]?.lemmas, ["much", "a great deal", "often"])
        XCTAssertEqual(byKey["r:00059413"]?.corpusLine,
                       "much, a great deal, often: frequently or in great quantities; \"I don't drink much\"; \"I don't travel much\"")
    }

    func testLexicographerTableHas45DocumentedNames() {
        XCTAssertEqual(WordNet.lexicographerFiles.count, 45)
        XCTAssertEqual(Set(WordNet.lexicographerFiles).count, 45)
        XCTAssertEqual(WordNet.lexicographerFiles[0], "adj.all")
        XCTAssertEqual(WordNet.lexicographerFiles[3], "noun.Tops")
        XCTAssertEqual(WordNet.lexicographerFiles[28], "noun.time")
        XCTAssertEqual(WordNet.lexicographerFiles[43], "verb.weather")
        XCTAssertEqual(WordNet.lexicographerFiles[44], "adj.ppl")
    }

    func testMissingDirectoryTellsHowToInstall() {
        let missing = URL(fileURLWithPath: "/nonexistent/wordnet-\(UUID().uuidString)")
        let error = dataError { _ = try WordNet.load(directory: missing) }
        XCTAssertEqual(error, .wordNetNotInstalled(path: missing.path))
        XCTAssertTrue("\(error!)".contains("apt-get install wordnet-base"))
        XCTAssertTrue("\(error!)".contains(missing.path))
    }

    func testMissingDataFileIsNamed() throws {
        let dir = try makeTemporaryDirectory(self)
        for name in ["data.noun", "data.verb", "data.adj"] {
            try FileManager.default.copyItem(at: Fixtures.wordNet.appendingPathComponent(name),
                                             to: dir.appendingPathComponent(name))
        }
        let error = dataError { _ = try WordNet.load(directory: dir) }
        XCTAssertEqual(error, .wordNetNotInstalled(path: dir.appendingPathComponent("data.adv").path))
        XCTAssertTrue("\(error!)".contains("apt-get install wordnet-base"))
    }

    /// Copies the fixture with one data line of `file` replaced, then expects an error for
    /// that file and line whose message contains `expected`.
    private func assertMalformed(_ file: String, replacing original: String, with replacement: String,
                                 expected: String, line: UInt = #line) throws {
        let dir = try makeTemporaryDirectory(self)
        for name in ["data.noun", "data.verb", "data.adj", "data.adv"] {
            try FileManager.default.copyItem(at: Fixtures.wordNet.appendingPathComponent(name),
                                             to: dir.appendingPathComponent(name))
        }
        let url = dir.appendingPathComponent(file)
        var lines = try String(contentsOf: url, encoding: .utf8).components(separatedBy: "\n")
        let index = try XCTUnwrap(lines.firstIndex { $0.contains(original) }, line: line)
        lines[index] = lines[index].replacingOccurrences(of: original, with: replacement)
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)

        let error = dataError(line: line) { _ = try WordNet.load(directory: dir) }
        guard case .invalidLine(let path, let number, let problem)? = error else {
            return XCTFail("expected invalidLine, got \(String(describing: error))", line: line)
        }
        XCTAssertEqual(path, url.path, line: line)
        XCTAssertEqual(number, index + 1, line: line)
        XCTAssertTrue("\(problem)".contains(expected), "\(problem)", line: line)
        XCTAssertTrue("\(error!)".hasPrefix("\(url.path):\(index + 1): "), "\(error!)", line: line)
    }

    func testMalformedLinesNameFileAndLine() throws {
        // Header is 29 lines; the first synset of data.noun is line 30.
        try assertMalformed("data.noun", replacing: "00001740 03 n 01 entity", with: "00001740 03 n 0g entity",
                            expected: "w_cnt must be 2 hex digit(s)")
        try assertMalformed("data.noun", replacing: "00005787 03 n", with: "00005787 03 v",
                            expected: "ss_type must be n in this file")
        try assertMalformed("data.noun", replacing: "00005787 03 n", with: "00005787 45 n",
                            expected: "lex_filenum 45")
        try assertMalformed("data.noun", replacing: "00005787 03 n", with: "00005787 29 n",
                            expected: "verb.body does not hold noun synsets")
        try assertMalformed("data.noun", replacing: "5787 03 n", with: "578 03 n",
                            expected: "synset_offset must be 8 decimal digit(s)")
        try assertMalformed("data.verb", replacing: "01 + 02 00 | talk profusely", with: "01 + 02 00 talk profusely",
                            expected: "expected '|' before the gloss")
        try assertMalformed("data.verb", replacing: "yak 0 gab 0 001", with: "yak 0 gab 0 009",
                            expected: "pointer")
        try assertMalformed("data.adv", replacing: "a_cappella 0 000 |", with: "a_cappella 0 000",
                            expected: "'|'")
        try assertMalformed("data.adj", replacing: "00 s 01 parturient", with: "00 r 01 parturient",
                            expected: "ss_type must be a or s")
    }

    func testInvalidUTF8InDataFileIsReported() throws {
        let dir = try makeTemporaryDirectory(self)
        for name in ["data.noun", "data.verb", "data.adj", "data.adv"] {
            try FileManager.default.copyItem(at: Fixtures.wordNet.appendingPathComponent(name),
                                             to: dir.appendingPathComponent(name))
        }
        let url = dir.appendingPathComponent("data.adv")
        var bytes = [UInt8](try Data(contentsOf: url))
        let needle = Array("horseback 0".utf8)
        let at = try XCTUnwrap((0...(bytes.count - needle.count)).first { Array(bytes[$0..<($0 + needle.count)]) == needle })
        bytes[at] = 0xFF
        try Data(bytes).write(to: url)
        let error = dataError { _ = try WordNet.load(directory: dir) }
        guard case .invalidLine(let path, let line, .invalidUTF8(let column))? = error else {
            return XCTFail("expected invalid UTF-8, got \(String(describing: error))")
        }
        XCTAssertEqual(path, url.path)
        XCTAssertEqual(line, 31)
        XCTAssertEqual(column, 18)
    }
}
