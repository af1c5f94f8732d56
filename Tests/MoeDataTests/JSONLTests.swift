import Foundation
import MoeData
import XCTest

final class JSONLTests: XCTestCase {
    func testLoadsTaskWithGoldenFingerprints() throws {
        let task = try JSONL.loadTask(url: Fixtures.reviews, name: "reviews")
        XCTAssertEqual(task.classes, ["neg", "pos"])
        XCTAssertEqual(task.train.count, 16)
        XCTAssertEqual(task.validation.map(\.key), ["the acting is wooden"])
        XCTAssertEqual(task.test.map(\.key), ["a chore to sit through", "an instant classic", "a tedious, overlong mess"])
        XCTAssertEqual(Array(task.train.map(\.key).prefix(4)),
                       ["a quietly moving story", "a triumph of small moments", "the score is grating", "r003"])
        XCTAssertEqual(task.trainFingerprint, "dd19c8bd7ebf87c48d398c6f3d3b63959106600e03006b008e7aba44e66d49b6")
        XCTAssertEqual(task.validationFingerprint, "bdbfb5eda3a4daf224a0ee4da6d5ea891f4091271d4c487ca530b93492bc5235")
        XCTAssertEqual(task.testFingerprint, "9e50adcd1c942bfcb65cd134709cda75721afa75a32f8dc4182bc04f49c61461")
        XCTAssertEqual(task.fingerprint, "015dfe11e8a2562fb41c9600b5550ec441d2d034f0b6dc6fd4a9a51285e6d726")
        let cafe = try XCTUnwrap(task.train.first { $0.key == "r012" })
        XCTAssertEqual(cafe.text, "café scenes glow with warmth")
    }

    func testLoadsCorpusWithGoldenFingerprints() throws {
        let corpus = try JSONL.loadCorpus(url: Fixtures.reviews)
        XCTAssertEqual(corpus.name, "reviews")
        XCTAssertEqual(corpus.trainFingerprint, "c51df1a215ba05d6f2e2f1bd7d7bd7279e009b773c5534ebd1ab4b884d5c1bc2")
        XCTAssertEqual(corpus.validationFingerprint, "0af4d574e542afa276772caa425a0a53fe189e0fb77f5fd705803dca73415a29")
        XCTAssertEqual(corpus.fingerprint, "0fd07b3f640843769dae991061850e3fad3938497415b11062754f8f97f52877")
        XCTAssertEqual(String(decoding: corpus.validation, as: UTF8.self), "the acting is wooden\n")
        XCTAssertEqual(corpus.train.count, 369)
        XCTAssertEqual(corpus.recordCounts, [.train: 16, .validation: 1, .test: 3])
    }

    func testIntegerLabelsSortNumericallyAndEscapesDecode() throws {
        let dir = try makeTemporaryDirectory(self)
        var lines: [String] = []
        for i in 0..<40 {
            lines.append(#"{"text": "item \#(i) \u00e9\ud83d\ude00\t", "label": \#([2, 10, 1][i % 3]), "id": \#(i)}"#)
        }
        let url = dir.appendingPathComponent("ints.jsonl")
        try (lines.joined(separator: "\r\n") + "\r\n").write(to: url, atomically: true, encoding: .utf8)
        let task = try JSONL.loadTask(url: url, name: "ints")
        XCTAssertEqual(task.classes, ["1", "2", "10"])
        let all = task.train + task.validation + task.test
        XCTAssertEqual(all.count, 40)
        let seven = try XCTUnwrap(all.first { $0.key == "7" })
        XCTAssertEqual(seven.text, "item 7 é😀\t")
        XCTAssertEqual(task.classes[seven.label], "10")
    }

    // MARK: Malformed input: every case names FILE:LINE and the problem.

    private func write(_ content: [UInt8], _ name: String = "bad.jsonl") throws -> URL {
        let url = try makeTemporaryDirectory(self).appendingPathComponent(name)
        try Data(content).write(to: url)
        return url
    }

    private func write(_ text: String, _ name: String = "bad.jsonl") throws -> URL {
        try write(Array(text.utf8), name)
    }

    /// A file with enough good records that every split is non-empty, then `bad` at `line`.
    private func goodLines(_ count: Int) -> String {
        (0..<count).map { #"{"text": "good \#($0)", "label": "\#($0 % 2 == 0 ? "x" : "y")"}"# }
            .joined(separator: "\n") + "\n"
    }

    private func assertLineError(_ url: URL, line: Int, _ problem: LineProblem, task: Bool = true,
                                 file: StaticString = #filePath, sourceLine: UInt = #line) {
        let error = dataError(file: file, line: sourceLine) {
            if task { _ = try JSONL.loadTask(url: url, name: "t") } else { _ = try JSONL.loadCorpus(url: url) }
        }
        XCTAssertEqual(error, .invalidLine(file: url.path, line: line, problem: problem), file: file, line: sourceLine)
        if let error {
            XCTAssertTrue("\(error)".hasPrefix("\(url.path):\(line): "), "\(error)", file: file, line: sourceLine)
        }
    }

    func testInvalidJSON() throws {
        let url = try write(goodLines(5) + #"{"text": "a", "label": }"# + "\n")
        assertLineError(url, line: 6, .invalidJSON("expected a value but found character '}' at column 24"))
        let trailing = try write(#"{"text": "a", "label": "b"} x"# + "\n")
        assertLineError(trailing, line: 1, .invalidJSON("unexpected character 'x' after the value at column 29"))
        let unterminated = try write(goodLines(2) + #"{"text": "a"# + "\n")
        assertLineError(unterminated, line: 3, .invalidJSON("unterminated string at column 12"))
        let notObject = try write(goodLines(1) + "[1, 2]\n")
        assertLineError(notObject, line: 2, .notAnObject)
        let duplicate = try write(#"{"text": "a", "text": "b", "label": "c"}"# + "\n")
        assertLineError(duplicate, line: 1, .duplicateField("text"))
        let surrogate = try write(#"{"text": "\ud800", "label": "c"}"# + "\n")
        assertLineError(surrogate, line: 1, .invalidJSON("unpaired UTF-16 surrogate in \\u escape at column 17"))
    }

    func testMissingAndMistypedFields() throws {
        assertLineError(try write(goodLines(3) + #"{"label": "x"}"# + "\n"), line: 4, .missingField("text"))
        assertLineError(try write(goodLines(3) + #"{"text": "x"}"# + "\n"), line: 4, .missingField("label"))
        assertLineError(try write(#"{"text": 5, "label": "x"}"# + "\n"), line: 1,
                        .wrongType(field: "text", expected: "a string"))
        assertLineError(try write(#"{"text": "a", "label": 1.5}"# + "\n"), line: 1,
                        .wrongType(field: "label", expected: "a string or an integer"))
        assertLineError(try write(#"{"text": "a", "label": true}"# + "\n"), line: 1,
                        .wrongType(field: "label", expected: "a string or an integer"))
        assertLineError(try write(#"{"text": "a", "label": "x", "id": null}"# + "\n"), line: 1,
                        .wrongType(field: "id", expected: "a string or an integer"))
        assertLineError(try write(goodLines(2) + #"{"text": "a", "label": 3}"# + "\n"), line: 3,
                        .mixedLabelTypes(expected: "a string"))
        // Corpora need only text.
        assertLineError(try write("{}\n"), line: 1, .missingField("text"), task: false)
    }

    func testInvalidUTF8IsRejectedNotReplaced() throws {
        var bytes = Array(goodLines(4).utf8)
        bytes += Array(#"{"text": "caf"#.utf8) + [0xC3, 0x28] + Array(#"", "label": "x"}"#.utf8) + [10]
        assertLineError(try write(bytes), line: 5, .invalidUTF8(column: 14))
        // Overlong encoding of '/' and an encoded surrogate are not UTF-8 either.
        assertLineError(try write(Array(#"{"text": ""#.utf8) + [0xC0, 0xAF] + Array(#""}"#.utf8)), line: 1,
                        .invalidUTF8(column: 11), task: false)
        assertLineError(try write(Array(#"{"text": ""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8)), line: 1,
                        .invalidUTF8(column: 11), task: false)
    }

    func testEmptyFileAndBlankLines() throws {
        let empty = try write("")
        XCTAssertEqual(dataError { _ = try JSONL.loadTask(url: empty, name: "t") }, .emptyFile(path: empty.path))
        let blank = try write("\n  \n\t\r\n")
        XCTAssertEqual(dataError { _ = try JSONL.loadCorpus(url: blank) }, .emptyFile(path: blank.path))
        // Blank lines are skipped but still counted for line numbers.
        assertLineError(try write("\n\n" + #"{"text": 1}"#), line: 3, .wrongType(field: "text", expected: "a string"),
                        task: false)
    }

    func testByteOrderMarkIsIgnored() throws {
        let plain = try JSONL.loadTask(url: Fixtures.reviews, name: "reviews")
        let withMark = try write([0xEF, 0xBB, 0xBF] + [UInt8](try Data(contentsOf: Fixtures.reviews)))
        XCTAssertEqual(try JSONL.loadTask(url: withMark, name: "reviews").fingerprint, plain.fingerprint)
        // Only at the start of the file; elsewhere it is an error.
        let midFile = try write(Array(goodLines(2).utf8) + [0xEF, 0xBB, 0xBF] + Array(#"{"text": "a", "label": "x"}"#.utf8))
        assertLineError(midFile, line: 3, .invalidJSON("expected a value but found byte 0xEF at column 1"))
    }

    func testEmptySplitAfterAssignment() throws {
        // All three keys land in train (checked: SHA-256 unit values below 0.8).
        let url = try write(goodLines(3))
        for i in 0..<3 { XCTAssertEqual(SplitAssignment.split(forKey: "good \(i)"), .train) }
        let error = dataError { _ = try JSONL.loadTask(url: url, name: "t") }
        XCTAssertEqual(error, .emptySplit(file: url.path, split: .validation, records: 3))
        XCTAssertTrue("\(error!)".contains("validation split is empty"))
        XCTAssertEqual(dataError { _ = try JSONL.loadCorpus(url: url) },
                       .emptySplit(file: url.path, split: .validation, records: 3))
    }

    func testSingleClassIsAnError() throws {
        let url = try write((0..<30).map { #"{"text": "t\#($0)", "label": "only"}"# }.joined(separator: "\n"))
        XCTAssertEqual(dataError { _ = try JSONL.loadTask(url: url, name: "t") },
                       .tooFewClasses(file: url.path, classes: ["only"]))
    }

    func testMissingFileAndDirectory() throws {
        let dir = try makeTemporaryDirectory(self)
        let missing = dir.appendingPathComponent("nope.jsonl")
        XCTAssertEqual(dataError { _ = try JSONL.loadTask(url: missing, name: "t") },
                       .unreadable(path: missing.path, reason: "no such file"))
        XCTAssertEqual(dataError { _ = try JSONL.loadCorpus(url: dir) },
                       .unreadable(path: dir.path, reason: "is a directory"))
    }

    /// "é" as one scalar and as e + combining acute are equal Swift Strings but different
    /// bytes: two labels in the file, so two classes, ordered by their bytes.
    func testLabelsThatDifferAsBytesStayDistinctClasses() throws {
        let dir = try makeTemporaryDirectory(self)
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        XCTAssertEqual(composed, decomposed, "the premise: Swift compares them as equal")
        var lines: [String] = []
        for i in 0..<60 {
            let label = [composed, decomposed, "caf\u{E9}s"][i % 3]
            lines.append(#"{"text": "row \#(i)", "label": "\#(label)"}"#)
        }
        let url = dir.appendingPathComponent("accents.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        let task = try JSONL.loadTask(url: url, name: "accents")
        XCTAssertEqual(task.classes.map { Array($0.utf8) }, [Array(decomposed.utf8), Array(composed.utf8), Array("caf\u{E9}s".utf8)])
        let all = task.train + task.validation + task.test
        XCTAssertEqual(Set(all.map(\.label)), [0, 1, 2])
        for example in all {
            let row = Int(example.text.dropFirst(4))!
            XCTAssertEqual(example.label, [1, 0, 2][row % 3], example.text)
        }

        // Two labels only, one spelling each: a two-class task, not "one class".
        let pair = dir.appendingPathComponent("pair.jsonl")
        try ((0..<40).map { #"{"text": "r\#($0)", "label": "\#($0 % 2 == 0 ? composed : decomposed)"}"# }
             .joined(separator: "\n") + "\n").write(to: pair, atomically: true, encoding: .utf8)
        XCTAssertEqual(try JSONL.loadTask(url: pair, name: "pair").classes.count, 2)
    }

    func testDataFilesThatAreNotRegularFilesAreRefusedWithoutBlocking() throws {
        let dir = try makeTemporaryDirectory(self)
        let fifo = dir.appendingPathComponent("pipe.jsonl")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        let started = Date()
        XCTAssertThrowsError(try JSONL.loadTask(url: fifo, name: "pipe")) { error in
            XCTAssertEqual(error as? DataError, .unreadable(path: fifo.path, reason: "is a FIFO (named pipe), not a regular file"))
        }
        XCTAssertThrowsError(try JSONL.loadCorpus(url: URL(fileURLWithPath: "/dev/zero"))) { error in
            XCTAssertEqual(error as? DataError, .unreadable(path: "/dev/zero", reason: "is a character device, not a regular file"))
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
    }

    func testOverlongLineIsRejectedQuickly() throws {
        // A 100 MB line without a newline, made sparse so the test writes almost nothing.
        let url = try write(goodLines(2) + #"{"text": ""#)
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: 100 << 20)
        try handle.close()
        let start = Date()
        assertLineError(url, line: 3, .lineTooLong(limit: JSONL.defaultMaxLineBytes))
        XCTAssertLessThan(Date().timeIntervalSince(start), 1.0)

        // The limit is exact: a line of exactly the limit is read, one byte more is not.
        let record = #"{"text": "abcdefgh", "label": "x"}"#
        let fits = try write(record + "\n")
        XCTAssertEqual(dataError { _ = try JSONL.loadTask(url: fits, name: "t", maxLineBytes: record.utf8.count) },
                       .tooFewClasses(file: fits.path, classes: ["x"]))
        assertLineErrorWithLimit(fits, limit: record.utf8.count - 1)
    }

    private func assertLineErrorWithLimit(_ url: URL, limit: Int) {
        XCTAssertEqual(dataError { _ = try JSONL.loadTask(url: url, name: "t", maxLineBytes: limit) },
                       .invalidLine(file: url.path, line: 1, problem: .lineTooLong(limit: limit)))
    }
}
