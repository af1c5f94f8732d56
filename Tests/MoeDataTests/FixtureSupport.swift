import Foundation
import MoeData
import XCTest

/// Fixtures live next to this file and are found through #filePath, so the test target
/// needs no resource bundle.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures", isDirectory: true)
    static let wordNet = directory.appendingPathComponent("wordnet", isDirectory: true)
    static let reviews = directory.appendingPathComponent("reviews.jsonl")
}

/// A fresh temporary directory, removed when the test ends.
func makeTemporaryDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("moedata-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Runs `body`, which must throw a `DataError`, and returns that error.
func dataError(file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) -> DataError? {
    do {
        try body()
        XCTFail("expected a DataError, nothing was thrown", file: file, line: line)
    } catch let error as DataError {
        return error
    } catch {
        XCTFail("expected a DataError, got \(error)", file: file, line: line)
    }
    return nil
}
