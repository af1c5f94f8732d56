import Foundation

// MARK: - Into any Decodable

extension JSONValue {
    /// Decodes a Decodable straight from the value, with the number typing the parser
    /// gave: an integer key takes `.int` only, a floating-point key `.int` or `.double`
    /// (as JSON writes `2` for 2.0), a string key `.string` only. Configs and checkpoint
    /// manifests are read this way, so the text is parsed once, by the one strict parser.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try ValueDecoder(value: self, codingPath: []).unbox(type)
    }
}

/// A Decoder over one JSONValue node.
private struct ValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    /// A Float is read from the double's canonical text, exactly as a decoder of the
    /// canonical form would read it (rounding the decimal once, not twice).
    static func float(_ d: Double) -> Float { Float(d.description) ?? Float(d) }

    func mismatch(_ expected: Any.Type) -> DecodingError {
        .typeMismatch(expected, .init(codingPath: codingPath, debugDescription: "expected \(expected), found \(value.kindName)"))
    }

    /// Scalars directly; anything else through its own `init(from:)`.
    func unbox<T: Decodable>(_ type: T.Type) throws -> T {
        switch type {
        case is String.Type:
            guard case let .string(s) = value else { throw mismatch(type) }
            return s as! T
        case is Bool.Type:
            guard case let .bool(b) = value else { throw mismatch(type) }
            return b as! T
        case is Double.Type, is Float.Type:
            guard let d = value.doubleValue else { throw mismatch(type) }
            return (type is Float.Type ? ValueDecoder.float(d) as Any : d as Any) as! T
        case is Int.Type, is Int64.Type, is Int32.Type, is UInt64.Type, is UInt32.Type, is UInt8.Type:
            guard case let .int(i) = value else { throw mismatch(type) }
            let converted: Any?
            switch type {
            case is Int.Type: converted = Int(exactly: i)
            case is Int64.Type: converted = i
            case is Int32.Type: converted = Int32(exactly: i)
            case is UInt64.Type: converted = UInt64(exactly: i)
            case is UInt32.Type: converted = UInt32(exactly: i)
            default: converted = UInt8(exactly: i)
            }
            guard let converted else {
                throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "\(i) does not fit \(type)"))
            }
            return converted as! T
        case is JSONValue.Type:
            return value as! T
        default:
            return try T(from: self)
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case let .object(o) = value else { throw mismatch([String: Any].self) }
        return KeyedDecodingContainer(KeyedValues<Key>(object: o, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard case let .array(a) = value else { throw mismatch([Any].self) }
        return UnkeyedValues(items: a, codingPath: codingPath)
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer { SingleValue(decoder: self) }
}

private struct KeyedValues<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: [String: JSONValue]
    let codingPath: [CodingKey]
    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    func child(_ key: Key) throws -> ValueDecoder {
        guard let value = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "no key '\(key.stringValue)'"))
        }
        return ValueDecoder(value: value, codingPath: codingPath + [key])
    }

    func decodeNil(forKey key: Key) throws -> Bool { object[key.stringValue] == nil || object[key.stringValue] == .null }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try child(key).unbox(type) }

    // The scalar types a config is made of: the value read directly, the coding path
    // built only for an error (through `child`, with the same messages).
    func decode(_ type: String.Type, forKey key: Key) throws -> String {
        if case let .string(s)? = object[key.stringValue] { return s }
        return try child(key).unbox(type)
    }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int {
        if case let .int(i)? = object[key.stringValue], let n = Int(exactly: i) { return n }
        return try child(key).unbox(type)
    }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
        if let d = object[key.stringValue]?.doubleValue { return d }
        return try child(key).unbox(type)
    }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float {
        if let d = object[key.stringValue]?.doubleValue { return ValueDecoder.float(d) }
        return try child(key).unbox(type)
    }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
        if case let .bool(b)? = object[key.stringValue] { return b }
        return try child(key).unbox(type)
    }
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        try decodeNil(forKey: key) ? nil : try child(key).unbox(type)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey> { try child(key).container(keyedBy: type) }
    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer { try child(key).unkeyedContainer() }
    func superDecoder() throws -> Decoder { ValueDecoder(value: .object(object), codingPath: codingPath) }
    func superDecoder(forKey key: Key) throws -> Decoder { try child(key) }
}

private struct UnkeyedValues: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [CodingKey]
    var currentIndex = 0
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [JSONValue], codingPath: [CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    mutating func next() throws -> ValueDecoder {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "the array ended"))
        }
        defer { currentIndex += 1 }
        return ValueDecoder(value: items[currentIndex], codingPath: codingPath + [IndexKey(currentIndex)])
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().unbox(type) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> Decoder { try next() }
}

private struct SingleValue: SingleValueDecodingContainer {
    let decoder: ValueDecoder
    var codingPath: [CodingKey] { decoder.codingPath }
    func decodeNil() -> Bool { decoder.value == .null }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.unbox(type) }
}

extension JSONValue {
    /// "object", "array", "string", "integer", "number", "boolean" or "null", for messages.
    var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int: return "integer"
        case .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}
