import MoeJSON
import XCTest

/// The canonical form where it departs from RFC 8785, the one escaper, the hex writer and
/// the ordered printers' exact text.
final class TextFormTests: XCTestCase {
    func testCanonicalFormIsNotRFC8785() throws {
        // Keys sort by UTF-8 bytes: U+FF61 (EF BD A1) before U+1F600 (F0 9F 98 80); RFC 8785's
        // UTF-16 order (D83D… before FF61) would put the emoji first.
        let keys: JSONValue = ["\u{1F600}": 2, "\u{FF61}": 1]
        XCTAssertEqual(try keys.canonicalString, "{\"\u{FF61}\":1,\"\u{1F600}\":2}")
        // Backspace and form feed as \u00XX, not \b and \f; doubles keep their fraction.
        XCTAssertEqual(try JSONValue.array(["\u{08}\u{0C}", 1.0, 1, 1e-05]).canonicalString,
                       #"["\u0008\u000c",1.0,1,1e-05]"#)
    }

    func testOneEscaperForCanonicalAndOrderedText() throws {
        let tricky = "q\"b\\\n\r\t\u{00}\u{1F}\u{7F}/é😀"
        let quoted = JSONString.quoted(tricky)
        XCTAssertEqual(quoted, "\"q\\\"b\\\\\\n\\r\\t\\u0000\\u001f\u{7F}/é😀\"")
        XCTAssertEqual(try JSONValue.string(tricky).canonicalString, quoted)
        XCTAssertEqual(OrderedJSON.string(tricky).rendered(), quoted)
        XCTAssertEqual(try JSONValue(parsing: quoted), .string(tricky))
    }

    func testLowercaseHex() {
        XCTAssertEqual(lowercaseHex([0x00, 0x0F, 0xA0, 0xFF]), "000fa0ff")
        XCTAssertEqual(lowercaseHex([UInt8]()), "")
    }

    func testPrettyPrinterLayout() {
        let doc: OrderedJSON = .object([
            ("b", .int(1)),
            ("a", .array([.number(0.1 + 0.2), .number(3), .null, .optional(nil as Int?)])),
            ("nested", .array([.object([("k", .string("x\"y"))]), .array([])])),
            ("empty", .object([])),
            ("nan", .number(.nan)),
            ("big", .number(1e15)),
        ])
        XCTAssertEqual(doc.rendered(), """
            {
              "b": 1,
              "a": [0.3, 3, null, null],
              "nested": [
                {
                  "k": "x\\"y"
                },
                []
              ],
              "empty": {},
              "nan": null,
              "big": 1e+15
            }
            """)
    }

    func testCompactPrinter() {
        let doc: OrderedJSON = .object([("a", .number(2.0 / 3)), ("s", .string("é\n")),
                                        ("l", .array([.int(1), .bool(true), .number(.infinity)]))])
        XCTAssertEqual(doc.compactRendered(significantDigits: 6), #"{"a":0.666667,"s":"é\n","l":[1,true,null]}"#)
        XCTAssertEqual(doc.compactRendered(), #"{"a":0.666666666667,"s":"é\n","l":[1,true,null]}"#)
    }

    /// A template with members replaced, added (before, between and after its keys, and
    /// on a common prefix) and removed writes what the canonical writer writes.
    func testCanonicalTemplateWritesTheCanonicalText() throws {
        let template: [String: JSONValue] = ["b": 1, "ba": "x", "d": [1.5, nil], "f": ["z": 1e-5, "a": true], "é": -0.0]
        let text = try CanonicalTemplate(template)
        let values: [JSONValue?] = [nil, 0, 3e-3, "q\n\"", [], ["k": 2]]
        let keys = ["a", "b", "b\u{0}", "ba", "bb", "d", "e", "f", "é", "zz"]
        var changes: [[(key: String, value: JSONValue?)]] = [[]]
        for (i, key) in keys.enumerated() {
            changes += changes.prefix(40).map { $0 + [(key, values[(i + $0.count) % values.count])] }
        }
        for change in changes {
            var object = template
            for (key, value) in change { object[key] = value }
            XCTAssertEqual(try text.text(change), try JSONValue.object(object).canonicalString, "\(change)")
        }
        XCTAssertThrowsError(try text.text([("n", .double(.nan))]))
    }
}
