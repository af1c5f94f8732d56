import MoeJSON
import XCTest

/// `JSONValue.decode`: Decodable types read straight from parsed values, with the
/// parser's number typing.
final class DecodingTests: XCTestCase {
    struct Sample: Codable, Equatable {
        enum Mode: String, Codable { case fast, slow }
        var count: Int
        var rate: Float
        var scale: Double
        var name: String
        var mode: Mode
        var tags: [String]
        var parent: String?
        var nested: [String: Int]
    }

    func testDecodesEveryShape() throws {
        let value = try JSONValue(parsing: #"{"count": 3, "rate": 0.1, "scale": 2, "name": "a/b", "mode": "slow", "tags": ["x", "y"], "nested": {"k": 1}}"#)
        let sample = try value.decode(Sample.self)
        XCTAssertEqual(sample, Sample(count: 3, rate: 0.1, scale: 2, name: "a/b", mode: .slow, tags: ["x", "y"], parent: nil, nested: ["k": 1]))
        // Round trip through the encoder gives the same value.
        XCTAssertEqual(try JSONValue(encodable: sample).decode(Sample.self), sample)
    }

    func testTypesAreStrict() throws {
        let base = #"{"rate": 0.1, "scale": 2, "name": "a", "mode": "fast", "tags": [], "nested": {}"#
        for (count, expected) in [("2.5", "expected Int"), ("\"3\"", "expected Int"), ("true", "expected Int"), ("99999999999999999999", "")] {
            XCTAssertThrowsError(try JSONValue(parsing: base + #", "count": \#(count)}"#).decode(Sample.self), count) {
                if !expected.isEmpty { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
            }
        }
        XCTAssertThrowsError(try JSONValue(parsing: base + #", "count": 1, "mode": "medium"}"#).decode(Sample.self))
        XCTAssertThrowsError(try JSONValue(parsing: #"{"count": 1}"#).decode(Sample.self)) {
            XCTAssertTrue("\($0)".contains("rate"), "\($0)")
        }
    }

    /// A Float is read from the double's shortest text, as a decoder of the canonical
    /// form reads it: the config hashes of earlier versions stay the same.
    func testFloatsAreReadFromTheCanonicalText() throws {
        for d in [0.1, 1e-3, 3e-3, 0.95, 1.25, 0.0123456789, 2.0000001, 1e-7] {
            let decoded = try JSONValue.double(d).decode(Float.self)
            XCTAssertEqual(decoded.bitPattern, Float(d.description)!.bitPattern, "\(d)")
        }
        XCTAssertEqual(try JSONValue.int(2).decode(Float.self), 2)
    }
}
