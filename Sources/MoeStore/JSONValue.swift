import Foundation

/// A JSON document as a value, with the one canonical text form that run hashes are
/// computed from.
///
/// ## Canonical form
/// `canonicalString` writes a value so that equal values always give identical bytes:
/// - no whitespace anywhere outside strings;
/// - object members sorted by the UTF-8 bytes of their keys (byte-wise, shorter first on a
///   common prefix); keys are unique;
/// - strings in double quotes; `"` and `\` are escaped as `\"` and `\\`; newline, carriage
///   return and tab as `\n`, `\r`, `\t`; every other control character U+0000–U+001F as
///   `\u00XX` with lowercase hex digits; everything else (including `/`, DEL and all
///   non-ASCII characters) is written as literal UTF-8. No Unicode normalisation is applied;
/// - `.int` values in plain decimal (`-12`, `0`);
/// - `.double` values in Swift's shortest round-trip `Double.description` form: `1.0`,
///   `0.001`, `1e-05`, `1e+16`, `-0.0`. A double is therefore always distinguishable from an
///   integer (`1.0` vs `1`), and so `.int(1)` and `.double(1)` hash differently;
/// - NaN and ±infinity cannot be written: `canonicalString` throws
///   `StoreError.nonFiniteNumber`;
/// - `true`, `false`, `null` as literals.
///
/// Parsing (`init(parsing:)`) is strict RFC 8259 JSON: a number without fraction or exponent
/// becomes `.int` (it must fit in Int64), any other number `.double`; duplicate keys are an
/// error. Parsing a canonical string and writing it again gives the same bytes.
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

// MARK: - Canonical writing

extension JSONValue {
    /// The canonical JSON text of this value (see the type's documentation).
    /// Throws `StoreError.nonFiniteNumber` for NaN or an infinity anywhere in the value.
    public var canonicalString: String {
        get throws {
            var out: [UInt8] = []
            out.reserveCapacity(256)
            try writeCanonical(into: &out)
            return String(decoding: out, as: UTF8.self)
        }
    }

    /// The canonical JSON as UTF-8 bytes: exactly what `RunIdentity` hashes.
    public var canonicalBytes: [UInt8] {
        get throws {
            var out: [UInt8] = []
            out.reserveCapacity(256)
            try writeCanonical(into: &out)
            return out
        }
    }

    func writeCanonical(into out: inout [UInt8]) throws {
        switch self {
        case .null:
            out.append(contentsOf: "null".utf8)
        case let .bool(b):
            out.append(contentsOf: (b ? "true" : "false").utf8)
        case let .int(i):
            out.append(contentsOf: String(i).utf8)
        case let .double(d):
            guard d.isFinite else { throw StoreError.nonFiniteNumber(d.description) }
            out.append(contentsOf: d.description.utf8)
        case let .string(s):
            JSONValue.writeCanonicalString(s, into: &out)
        case let .array(items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                try item.writeCanonical(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case let .object(members):
            out.append(UInt8(ascii: "{"))
            // Byte order, not String's `<` (which follows Unicode collation rules that could
            // change between releases and would not match other languages' byte sorts).
            let keys = members.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for (i, key) in keys.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeCanonicalString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                try members[key]!.writeCanonical(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeCanonicalString(_ s: String, into out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x00..<0x20:
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            default:
                // Bytes of multi-byte UTF-8 sequences are all >= 0x80 and pass through intact.
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

// MARK: - Parsing

extension JSONValue {
    /// Parses strict JSON text. Errors are `StoreError.invalidJSON` with the byte offset.
    public init(parsing text: String) throws {
        var parser = JSONParser(bytes: Array(text.utf8))
        self = try parser.parseDocument()
    }

    /// Parses strict JSON from UTF-8 bytes; invalid UTF-8 is an error.
    public init(parsing data: Data) throws {
        guard let text = String(data: data, encoding: .utf8) else {
            throw StoreError.invalidJSON(reason: "the bytes are not valid UTF-8", offset: 0)
        }
        try self.init(parsing: text)
    }
}

/// A recursive-descent parser over UTF-8 bytes. Nesting is bounded so that hostile input
/// (e.g. a million `[`) is an error instead of a stack overflow.
struct JSONParser {
    static let maxDepth = 512
    let bytes: [UInt8]
    var pos = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func parseDocument() throws -> JSONValue {
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard pos == bytes.count else { throw fail("unexpected text after the JSON value") }
        return value
    }

    private func fail(_ reason: String) -> StoreError {
        .invalidJSON(reason: reason, offset: pos)
    }

    private mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws -> JSONValue {
        guard depth < JSONParser.maxDepth else { throw fail("nesting deeper than \(JSONParser.maxDepth)") }
        guard pos < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected character '\(Character(Unicode.Scalar(bytes[pos])))'")
        }
    }

    private mutating func expectLiteral(_ word: String) throws {
        let w = Array(word.utf8)
        guard pos + w.count <= bytes.count, Array(bytes[pos..<pos + w.count]) == w else {
            throw fail("expected '\(word)'")
        }
        pos += w.count
    }

    private mutating func parseObject(depth: Int) throws -> JSONValue {
        pos += 1  // {
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let keyOffset = pos
            let key = try parseString()
            guard members[key] == nil else {
                throw StoreError.invalidJSON(reason: "duplicate key \"\(key)\"", offset: keyOffset)
            }
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            pos += 1
            skipWhitespace()
            members[key] = try parseValue(depth: depth + 1)
            skipWhitespace()
            guard pos < bytes.count else { throw fail("unterminated object") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
            throw fail("expected ',' or '}'")
        }
    }

    private mutating func parseArray(depth: Int) throws -> JSONValue {
        pos += 1  // [
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            guard pos < bytes.count else { throw fail("unterminated array") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            throw fail("expected ',' or ']'")
        }
    }

    private mutating func parseHex4() throws -> UInt32 {
        guard pos + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("bad hex digit in \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    private mutating func parseString() throws -> String {
        pos += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard pos < bytes.count else { throw fail("unterminated string") }
            let c = bytes[pos]
            switch c {
            case UInt8(ascii: "\""):
                pos += 1
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                pos += 1
                guard pos < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try parseHex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        // A high surrogate must be followed by an escaped low surrogate.
                        guard pos + 2 <= bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                            throw fail("unpaired surrogate in \\u escape")
                        }
                        pos += 2
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("unpaired surrogate in \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw fail("unpaired surrogate in \\u escape")
                    }
                    out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
                default:
                    throw fail("unknown escape '\\\(Character(Unicode.Scalar(e)))'")
                }
            case 0x00..<0x20:
                throw fail("control character in string (must be escaped)")
            default:
                out.append(c)
                pos += 1
            }
        }
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = pos
        var isInteger = true
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        guard pos < bytes.count, isDigit(bytes[pos]) else { throw fail("expected a digit") }
        if bytes[pos] == UInt8(ascii: "0") {
            pos += 1
            if pos < bytes.count, isDigit(bytes[pos]) { throw fail("leading zero in number") }
        } else {
            while pos < bytes.count, isDigit(bytes[pos]) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            isInteger = false
            pos += 1
            guard pos < bytes.count, isDigit(bytes[pos]) else { throw fail("expected a digit after '.'") }
            while pos < bytes.count, isDigit(bytes[pos]) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            isInteger = false
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            guard pos < bytes.count, isDigit(bytes[pos]) else { throw fail("expected a digit in the exponent") }
            while pos < bytes.count, isDigit(bytes[pos]) { pos += 1 }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        if isInteger {
            // An integer that does not fit is an error rather than a silently rounded double:
            // the two would hash differently and neither is what the user wrote.
            guard let i = Int64(text) else {
                throw StoreError.invalidJSON(reason: "integer \(text) is outside the 64-bit range", offset: start)
            }
            return .int(i)
        }
        guard let d = Double(text), d.isFinite else {
            throw StoreError.invalidJSON(reason: "number \(text) is not a finite double", offset: start)
        }
        return .double(d)
    }

    private func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
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

// MARK: - From any Encodable

extension JSONValue {
    /// Converts any Encodable into a JSONValue, keeping the Swift type of every number:
    /// `Int`-family values become `.int`, `Double` becomes `.double` (so `lr: 1.0` stays `1.0`),
    /// `Float` becomes the `.double` written by its shortest description (`Float(0.1)` → `0.1`).
    ///
    /// This walks the value with its own Encoder rather than JSONEncoder, because JSONEncoder
    /// writes `1.0` as `1`, which would turn doubles into integers and change run hashes.
    /// Keys that the type omits (a nil optional with synthesized Codable) are absent, as with
    /// JSONEncoder; URLs become their absolute string.
    public init<T: Encodable>(encodable value: T) throws {
        if let primitive = try TreeEncoder.primitive(value) {
            self = primitive
            return
        }
        let encoder = TreeEncoder(codingPath: [])
        try value.encode(to: encoder)
        self = try encoder.resolve()
    }
}

/// A node under construction. Containers are classes because Codable lets a caller keep
/// writing into a nested container after creating it.
private enum TreeNode {
    case value(JSONValue)
    case object(ObjectBox)
    case array(ArrayBox)
    case deferred(TreeEncoder)

    func resolve() throws -> JSONValue {
        switch self {
        case let .value(v): return v
        case let .object(box): return .object(try box.members.mapValues { try $0.resolve() })
        case let .array(box): return .array(try box.items.map { try $0.resolve() })
        case let .deferred(encoder): return try encoder.resolve()
        }
    }
}

private final class ObjectBox { var members: [String: TreeNode] = [:] }
private final class ArrayBox { var items: [TreeNode] = [] }

private struct IndexKey: CodingKey {
    var stringValue: String { String(intValue!) }
    var intValue: Int?
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { return nil }
    init?(intValue: Int) { self.intValue = intValue }
}

private final class TreeEncoder: Encoder {
    let codingPath: [CodingKey]
    let userInfo: [CodingUserInfoKey: Any] = [:]
    var root: TreeNode?

    init(codingPath: [CodingKey]) { self.codingPath = codingPath }

    func resolve() throws -> JSONValue {
        guard let root else {
            let path = codingPath.map(\.stringValue).joined(separator: ".")
            throw StoreError.unencodableValue("a value at '\(path)' encoded nothing")
        }
        return try root.resolve()
    }

    /// Scalars that need no container; nil for anything structured.
    static func primitive<T: Encodable>(_ value: T) throws -> JSONValue? {
        switch value {
        case let v as JSONValue: return v
        case let v as Bool: return .bool(v)
        case let v as String: return .string(v)
        case let v as Double:
            guard v.isFinite else { throw StoreError.nonFiniteNumber(v.description) }
            return .double(v)
        case let v as Float:
            guard v.isFinite else { throw StoreError.nonFiniteNumber(v.description) }
            return .double(Double(v.description)!)
        case let v as Int: return .int(Int64(v))
        case let v as Int8: return .int(Int64(v))
        case let v as Int16: return .int(Int64(v))
        case let v as Int32: return .int(Int64(v))
        case let v as Int64: return .int(v)
        case let v as UInt: return try unsigned(UInt64(v))
        case let v as UInt8: return .int(Int64(v))
        case let v as UInt16: return .int(Int64(v))
        case let v as UInt32: return .int(Int64(v))
        case let v as UInt64: return try unsigned(v)
        case let v as URL: return .string(v.absoluteString)
        default: return nil
        }
    }

    private static func unsigned(_ v: UInt64) throws -> JSONValue {
        guard let i = Int64(exactly: v) else { throw StoreError.unencodableValue("integer \(v) exceeds Int64") }
        return .int(i)
    }

    /// Encodes a nested value as a node of its own.
    func node<T: Encodable>(for value: T, at path: [CodingKey]) throws -> TreeNode {
        if let p = try TreeEncoder.primitive(value) { return .value(p) }
        let sub = TreeEncoder(codingPath: path)
        try value.encode(to: sub)
        return .value(try sub.resolve())
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let box: ObjectBox
        if case let .object(existing)? = root {
            box = existing
        } else {
            box = ObjectBox()
            root = .object(box)
        }
        return KeyedEncodingContainer(KeyedContainer<Key>(encoder: self, box: box, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        let box: ArrayBox
        if case let .array(existing)? = root {
            box = existing
        } else {
            box = ArrayBox()
            root = .array(box)
        }
        return UnkeyedContainer(encoder: self, box: box, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer {
        SingleContainer(encoder: self)
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let encoder: TreeEncoder
    let box: ObjectBox
    let codingPath: [CodingKey]

    mutating func encodeNil(forKey key: Key) throws { box.members[key.stringValue] = .value(.null) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        box.members[key.stringValue] = try encoder.node(for: value, at: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        let nested = ObjectBox()
        box.members[key.stringValue] = .object(nested)
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(encoder: encoder, box: nested, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        let nested = ArrayBox()
        box.members[key.stringValue] = .array(nested)
        return UnkeyedContainer(encoder: encoder, box: nested, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> Encoder {
        let sub = TreeEncoder(codingPath: codingPath)
        box.members["super"] = .deferred(sub)
        return sub
    }

    mutating func superEncoder(forKey key: Key) -> Encoder {
        let sub = TreeEncoder(codingPath: codingPath + [key])
        box.members[key.stringValue] = .deferred(sub)
        return sub
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let encoder: TreeEncoder
    let box: ArrayBox
    let codingPath: [CodingKey]
    var count: Int { box.items.count }

    mutating func encodeNil() throws { box.items.append(.value(.null)) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        box.items.append(try encoder.node(for: value, at: codingPath + [IndexKey(count)]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let nested = ObjectBox()
        let path = codingPath + [IndexKey(count)]
        box.items.append(.object(nested))
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(encoder: encoder, box: nested, codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
        let nested = ArrayBox()
        let path = codingPath + [IndexKey(count)]
        box.items.append(.array(nested))
        return UnkeyedContainer(encoder: encoder, box: nested, codingPath: path)
    }

    mutating func superEncoder() -> Encoder {
        let sub = TreeEncoder(codingPath: codingPath + [IndexKey(count)])
        box.items.append(.deferred(sub))
        return sub
    }
}

private struct SingleContainer: SingleValueEncodingContainer {
    let encoder: TreeEncoder
    var codingPath: [CodingKey] { encoder.codingPath }

    mutating func encodeNil() throws { encoder.root = .value(.null) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        if let p = try TreeEncoder.primitive(value) {
            encoder.root = .value(p)
        } else {
            // A wrapper type forwarding to its payload: the payload writes into this encoder.
            try value.encode(to: encoder)
        }
    }
}
