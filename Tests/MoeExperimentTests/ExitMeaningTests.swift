import Foundation
import MoeErrors
import MoeExperiment
import MoeJSON
import MoeStore
import XCTest

/// Each library error states whose fault it is; the CLI only turns that into a number.
final class ExitMeaningTests: XCTestCase {
    func testErrorsCarryTheirExitMeaning() {
        let cases: [(MoeError, Int32)] = [
            (InputError("steps=0: must be in 1...10000000"), 2),
            (CheckFailed("reproduce diverged"), 1),
            (StoreError.invalidWhere(expression: "x", token: "x", reason: "unknown key"), 2),
            (StoreError.invalidTag("", reason: "a tag cannot be empty"), 2),
            (StoreError.cannotOpen(path: "/dev/null", reason: "it is not a regular file"), 2),
            (StoreError.diskFull(path: "/tmp/s.sqlite"), 1),
            (JSONError.syntax(reason: "unexpected end", line: 1, column: 2), 2),
            (JSONError.unencodableValue("nothing"), 1),
            (Interrupted(signal: SIGINT), 130),
            (Interrupted(signal: SIGTERM), 143),
        ]
        for (error, code) in cases {
            XCTAssertEqual(error.exitMeaning.exitCode, code, "\(error)")
        }
    }

    func testStopFlagKeepsTheFirstSignal() {
        let flag = StopFlag()
        XCTAssertNoThrow(try flag.check())
        flag.raise(signal: SIGTERM)
        flag.raise(signal: SIGINT)
        XCTAssertEqual(flag.signal, SIGTERM)
        XCTAssertThrowsError(try flag.check()) { error in
            XCTAssertEqual((error as? Interrupted)?.exitMeaning.exitCode, 143)
        }
    }

    func testTagsAreCheckedByLengthAndControlCharacters() {
        for bad in ["", String(repeating: "x", count: 129), "a\nb", "tab\there", "\u{7F}"] {
            XCTAssertThrowsError(try Store.validateTag(bad), bad.debugDescription)
        }
        for good in ["paper", String(repeating: "é", count: 128), "st-moe v2 (final)", "日本語"] {
            XCTAssertNoThrow(try Store.validateTag(good), good)
        }
    }
}
