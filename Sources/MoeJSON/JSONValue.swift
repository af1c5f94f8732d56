// MoeJSON: the one place that reads and writes JSON. Every other module goes through it.
//
// - `JSONValue` (this file): a JSON document as a value, with accessors, literals and Codable.
// - CanonicalJSON.swift: the canonical text that run hashes are computed from.
// - JSONParser.swift: the one strict parser (configs, JSONL data lines, the store), whose
//   errors (`JSONError`, JSONError.swift) carry line and column.
// - JSONEncoding.swift: any Encodable to a `JSONValue`, keeping integers and doubles apart.
// - OrderedJSON.swift: values whose objects keep their field order, and their printers
//   (pretty for reports, compact for one-line results).
// - JSONText.swift: the one JSON string escaper and the one lowercase hex writer.
//
// No dependency but Foundation (for `Data` and `%g` number formatting).

import Foundation

/// A JSON document as a value. Objects are unordered (their canonical text sorts the keys);
/// for output whose field order matters use `OrderedJSON`.
///
/// Numbers keep the distinction JSON text makes: a number written without fraction or
/// exponent is `.int`, any other `.double`. See CanonicalJSON.swift for the canonical text
/// and JSONParser.swift for the parsing rules.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])
}

// MARK: - Accessors

extension JSONValue {
    /// The member `key` of an object, or nil (also for non-objects).
    public subscript(key: String) -> JSONValue? {
        if case let .object(members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    public var intValue: Int64? {
        if case let .int(i) = self { return i }
        return nil
    }

    /// The number as a Double, for `.int` as well as `.double`.
    public var doubleValue: Double? {
        switch self {
        case let .double(d): return d
        case let .int(i): return Double(i)
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case let .array(a) = self { return a }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case let .object(o) = self { return o }
        return nil
    }
}

// MARK: - Literals (for tests and fixed inputs)

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        // A repeated key in a literal is a programming error, as in Dictionary's own literal.
        self = .object(Dictionary(uniqueKeysWithValues: elements))
    }
}

// MARK: - Codable

extension JSONValue: Codable {
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case let .bool(b): try container.encode(b)
        case let .int(i): try container.encode(i)
        case let .double(d): try container.encode(d)
        case let .string(s): try container.encode(s)
        case let .array(a): try container.encode(a)
        case let .object(o): try container.encode(o)
        }
    }

    /// Decodes through any Decoder. With JSONDecoder the int/double distinction is as good
    /// as that decoder's; for exact typing parse the text with `init(parsing:)` instead.
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? container.decode(Int64.self) {
            self = .int(i)
        } else if let d = try? container.decode(Double.self) {
            self = .double(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([JSONValue].self) {
            self = .array(a)
        } else if let o = try? container.decode([String: JSONValue].self) {
            self = .object(o)
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a JSON value")
        }
    }
}

