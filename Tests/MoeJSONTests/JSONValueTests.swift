import Foundation
import MoeJSON
import XCTest

final class JSONValueTests: XCTestCase {
    func testObjectKeysSortedByUTF8BytesWithoutWhitespace() throws {
        let value: JSONValue = ["b": 1, "a": ["z": true, "Z": false], "é": nil, "aa": "x", "B": 2.5]
        // Uppercase before lowercase, "a" before "aa", non-ASCII (0xC3…) last: byte order.
        XCTAssertEqual(try value.canonicalString, #"{"B":2.5,"a":{"Z":false,"z":true},"aa":"x","b":1,"é":null}"#)
    }

    func testStringEscapingIsMinimalAndDeterministic() throws {
        let value: JSONValue = .string("q\"b\\n\nr\rt\tnul\u{00}bell\u{07}esc\u{1B}us\u{1F}del\u{7F}/é😀")
        XCTAssertEqual(try value.canonicalString,
                       "\"q\\\"b\\\\n\\nr\\rt\\tnul\\u0000bell\\u0007esc\\u001bus\\u001fdel\u{7F}/é😀\"")
    }

    func testNumberForms() throws {
        let cases: [(JSONValue, String)] = [
            (.int(0), "0"), (.int(-12), "-12"), (.int(Int64.max), "9223372036854775807"),
            (.double(1.0), "1.0"), (.double(0.001), "0.001"), (.double(1e-05), "1e-05"),
            (.double(1e16), "1e+16"), (.double(-0.0), "-0.0"), (.double(0.1), "0.1"),
            (.double(1.25), "1.25"), (.double(123456.789), "123456.789"),
        ]
        for (value, text) in cases {
            XCTAssertEqual(try value.canonicalString, text)
        }
    }

    func testNonFiniteNumbersAreAnError() {
        for bad in [Double.nan, .infinity, -.infinity] {
            XCTAssertThrowsError(try JSONValue.array([.double(bad)]).canonicalString) { error in
                guard case .nonFiniteNumber? = error as? JSONError else { return XCTFail("got \(error)") }
            }
        }
    }

    func testParseKeepsIntegersAndDoublesApart() throws {
        let value = try JSONValue(parsing: #" { "i": 3, "d": 3.0, "e": 1e-3, "n": -0, "big": 1E2, "s": "a\u00e9\n\ud83d\ude00" } "#)
        XCTAssertEqual(value["i"], .int(3))
        XCTAssertEqual(value["d"], .double(3.0))
        XCTAssertEqual(value["e"], .double(0.001))
        XCTAssertEqual(value["n"], .int(0))
        XCTAssertEqual(value["big"], .double(100))
        XCTAssertEqual(value["s"], .string("aé\n😀"))
    }

    func testCanonicalTextRoundTrips() throws {
        let value: JSONValue = ["x": [1, 2.5, "s\"q", nil, true, ["k": 1e-7]], "y": [:], "z": []]
        let text = try value.canonicalString
        let reparsed = try JSONValue(parsing: text)
        XCTAssertEqual(reparsed, value)
        XCTAssertEqual(try reparsed.canonicalString, text)
    }

    func testMalformedJSONIsRejected() {
        let bad = [
            "", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "NaN", "Infinity", "nul", "\"abc",
            "{\"a\":1,\"a\":2}", "\"\\ud800\"", "\"\\x\"", "\"tab\there\"", "[1] 2",
            "99999999999999999999", "1e999", "{'a':1}",
        ]
        for text in bad {
            XCTAssertThrowsError(try JSONValue(parsing: text), "accepted \(text)") { error in
                switch error as? JSONError {
                case .syntax?, .duplicateKey?: break
                default: XCTFail("\(text): got \(error)")
                }
            }
        }
        XCTAssertThrowsError(try JSONValue(parsing: String(repeating: "[", count: 100_000)))
        XCTAssertThrowsError(try JSONValue(parsing: Data([0x22, 0xFF, 0x22])))
    }

    private struct Optimizer: Codable {
        var lr: Double = 1.0
        var betas: [Double] = [0.9, 0.95]
        var clip: Float = 0.1
    }

    private struct Config: Codable {
        var experts: Int = 8
        var capacity: Double = 2.0
        var name: String = "bench-small"
        var optimizer = Optimizer()
        var note: String? = nil
        var counts: [String: UInt8] = ["a": 1]
        var flag = true
    }

    func testEncodableKeepsNumberTypes() throws {
        let value = try JSONValue(encodable: Config())
        XCTAssertEqual(value["experts"], .int(8))
        XCTAssertEqual(value["capacity"], .double(2.0))
        XCTAssertEqual(value["optimizer"]?["lr"], .double(1.0))
        XCTAssertEqual(value["optimizer"]?["clip"], .double(0.1), "Float goes through its shortest description")
        XCTAssertNil(value["note"], "a nil optional is omitted, as JSONEncoder does")
        XCTAssertEqual(value["counts"], ["a": 1])
        XCTAssertEqual(try value.canonicalString,
                       #"{"capacity":2.0,"counts":{"a":1},"experts":8,"flag":true,"name":"bench-small","optimizer":{"betas":[0.9,0.95],"clip":0.1,"lr":1.0}}"#)
    }

    func testEncodableRejectsNonFiniteAndOversizedValues() {
        XCTAssertThrowsError(try JSONValue(encodable: ["x": Double.nan]))
        XCTAssertThrowsError(try JSONValue(encodable: [UInt64.max]))
    }

    func testCodableRoundTripThroughJSONDecoder() throws {
        let value: JSONValue = ["a": [1, "two", true, nil], "b": 2.5]
        let data = try JSONEncoder().encode(value)
        XCTAssertEqual(try JSONDecoder().decode(JSONValue.self, from: data), value)
    }
}
