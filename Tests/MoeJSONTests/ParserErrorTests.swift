import Foundation
import MoeJSON
import XCTest

/// The parser's errors say what is wrong and where: line (ended by LF) and byte column.
final class ParserErrorTests: XCTestCase {
    private func syntaxError(_ text: String, maxDepth: Int = JSONValue.defaultMaxDepth,
                             file: StaticString = #filePath, line: UInt = #line) -> JSONError? {
        do {
            let value = try JSONValue(parsing: text, maxDepth: maxDepth)
            XCTFail("accepted \(text) as \(value)", file: file, line: line)
            return nil
        } catch let error as JSONError {
            return error
        } catch {
            XCTFail("\(text): got \(error)", file: file, line: line)
            return nil
        }
    }

    func testErrorsCarryLineAndColumn() {
        let cases: [(String, JSONError)] = [
            ("{\n  \"a\": 1,\n  \"b\": ]\n}",
             .syntax(reason: "expected a value but found character ']'", line: 3, column: 8)),
            ("[1,\n2", .syntax(reason: "expected ',' or ']' in an array but found end of input", line: 2, column: 2)),
            ("{\r\n\"a\": tru}", .syntax(reason: "invalid literal (expected true)", line: 2, column: 6)),
            ("[1,\n 99999999999999999999]",
             .syntax(reason: "integer 99999999999999999999 is outside the 64-bit range", line: 2, column: 2)),
            ("[1e999]", .syntax(reason: "number 1e999 is not a finite double", line: 1, column: 2)),
            ("\"a\\qb\"", .syntax(reason: "invalid escape '\\q'", line: 1, column: 4)),
            ("\"a\tb\"", .syntax(reason: "unescaped control character in a string", line: 1, column: 3)),
            ("01", .syntax(reason: "invalid number (leading zero)", line: 1, column: 2)),
            ("[1] 2", .syntax(reason: "unexpected character '2' after the value", line: 1, column: 5)),
            ("é", .syntax(reason: "expected a value but found byte 0xC3", line: 1, column: 1)),
            ("\"\\ud800x\"", .syntax(reason: "unpaired UTF-16 surrogate in \\u escape", line: 1, column: 8)),
            ("{\"k\": 1,\n \"k\": 2}", .duplicateKey("k", line: 2, column: 2)),
            ("{\"o\": {\"k\": 1, \"k\": [}}",
             .syntax(reason: "expected a value but found character '}'", line: 1, column: 22)),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(syntaxError(text), expected, text)
        }
    }

    func testDuplicateKeysAreRejectedAtEveryDepth() {
        XCTAssertEqual(syntaxError("[{\"x\": {\"k\": 1, \"k\": 1}}]"), .duplicateKey("k", line: 1, column: 17))
    }

    func testNestingLimitCountsEveryValue() throws {
        XCTAssertEqual(try JSONValue(parsing: "[[[]]]", maxDepth: 3), [[[]]])
        XCTAssertEqual(syntaxError("[[[]]]", maxDepth: 2), .syntax(reason: "nesting deeper than 2 levels", line: 1, column: 3))
        // A scalar inside the innermost container is one level deeper.
        XCTAssertEqual(syntaxError("[[1]]", maxDepth: 2), .syntax(reason: "nesting deeper than 2 levels", line: 1, column: 3))
    }

    func testDescriptionsNameThePosition() {
        XCTAssertEqual(JSONError.syntax(reason: "unterminated string", line: 4, column: 9).description,
                       "unterminated string at line 4, column 9")
        XCTAssertEqual(JSONError.duplicateKey("a\"b", line: 1, column: 2).description,
                       #"duplicate key "a\"b" at line 1, column 2"#)
    }

    func testBytesThatAreNotUTF8AreAnErrorWithTheirPosition() {
        XCTAssertThrowsError(try JSONValue(parsing: Data(Array("[\"a\",\n \"".utf8) + [0xC3, 0x28, 0x22, 0x5D]))) { error in
            XCTAssertEqual(error as? JSONError,
                           .syntax(reason: "byte 0xC3 is not valid UTF-8", line: 2, column: 3))
        }
        XCTAssertEqual(try JSONValue(parsing: Data("[\"é\"]".utf8)), ["é"])
    }

    func testValidUTF8BytesParseToTheirExactStrings() throws {
        // Decomposed "é" (e + U+0301) stays decomposed: nothing is normalised.
        let bytes = Array(#"{"t": "cafe\#u{301}", "n": -0}"#.utf8)
        let value = try bytes.withUnsafeBufferPointer { try JSONValue(parsingValidUTF8: $0, maxDepth: 4) }
        XCTAssertEqual(value["t"]?.stringValue.map { Array($0.utf8) }, Array("cafe\u{301}".utf8))
        XCTAssertEqual(value["n"], .int(0))
    }

    /// The store's check of a config given as text reads the parser's grammar without
    /// building values: every object the parser reads passes it, every syntax error the
    /// parser finds in an object it finds at the same place, and anything but an object fails.
    func testObjectSyntaxCheckFindsTheParsersSyntaxErrors() throws {
        let objects = [
            "{}", " {\n\t\"a\" : 1 } \r\n", #"{"k":[1,-2.5e-3,0,1E+9,true,false,null,"s",{},[]],"o":{"p":{"q":[[]]}}}"#,
            #"{"esc":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","raw":"café 😀"}"#,
            try JSONValue.object(["lr": 1e-05, "name": "a\u{1}b", "list": [1, 2.5, "x", nil], "nested": ["k": true]]).canonicalString,
        ]
        for text in objects {
            XCTAssertNotNil(try JSONValue(parsing: text).objectValue, text)
            XCTAssertNoThrow(try JSONValue.checkObjectSyntax(text), text)
        }
        let broken = [
            "{\n  \"a\": 1,\n  \"b\": ]\n}", "{\"a\": tru}", #"{"a": "x\qy"}"#, "{\"a\": \"x\ty\"}", "{\"a\": 01}",
            "{\"a\": 1.}", "{\"a\": -}", "{\"a\": 1e}", #"{"a": "\ud800x"}"#, #"{"a": "\u12G4"}"#, "{\"a\" 1}", "{a: 1}",
            "{\"a\": 1,}", "{\"a\": [1,]}", "{\"a\": [1 2]}", "{\"a\": 1} x", "{\"a\": 1", "{\"a\": \"open", "{\"a\": {\"b\": [}}",
        ]
        for text in broken {
            var parsed: JSONError?, checked: JSONError?
            do { _ = try JSONValue(parsing: text) } catch { parsed = error as? JSONError }
            do { try JSONValue.checkObjectSyntax(text) } catch { checked = error as? JSONError }
            XCTAssertNotNil(parsed, text)
            XCTAssertEqual(checked, parsed, text)
        }
        for (text, found) in [("[1]", "character '['"), ("1", "character '1'"), ("\"{}\"", "character '\"'"), ("null", "character 'n'"),
                              ("", "end of input"), ("  ", "end of input")] {
            XCTAssertThrowsError(try JSONValue.checkObjectSyntax(text), text) { error in
                guard case let .syntax(reason, _, _)? = error as? JSONError else { return XCTFail("\(text): \(error)") }
                XCTAssertEqual(reason, "expected a JSON object but found \(found)", text)
            }
        }
        XCTAssertNoThrow(try JSONValue.checkObjectSyntax("{\"a\": [[1]]}", maxDepth: 4))
        XCTAssertThrowsError(try JSONValue.checkObjectSyntax("{\"a\": [[1]]}", maxDepth: 3))
        // What only a parse notices, as the documentation says.
        XCTAssertNoThrow(try JSONValue.checkObjectSyntax(#"{"k": 1, "k": 99999999999999999999, "d": 1e999}"#))
    }
}
