import Foundation

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
        case let .object(box):
            guard !box.nested.isEmpty else { return .object(box.values) }
            var members = box.values
            for (key, node) in box.nested { members[key] = try node.resolve() }
            return .object(members)
        case let .array(box): return .array(try box.items.map { try $0.resolve() })
        case let .deferred(encoder): return try encoder.resolve()
        }
    }
}

/// An object's members: scalars stored as values directly (a config is all scalars, and
/// needs no second pass), anything structured as a node resolved at the end. A key lives
/// in one of the two; writing it again replaces it, as Codable expects.
private final class ObjectBox {
    var values: [String: JSONValue] = [:]
    var nested: [String: TreeNode] = [:]

    func set(_ key: String, _ node: TreeNode) {
        if case let .value(v) = node {
            values[key] = v
            if !nested.isEmpty { nested[key] = nil }
        } else {
            nested[key] = node
            values[key] = nil
        }
    }
}
private final class ArrayBox { var items: [TreeNode] = [] }

/// The coding key of an array element (encoding and decoding).
struct IndexKey: CodingKey {
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
            throw JSONError.unencodableValue("a value at '\(path)' encoded nothing")
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
            guard v.isFinite else { throw JSONError.nonFiniteNumber(v.description) }
            return .double(v)
        case let v as Float:
            guard v.isFinite else { throw JSONError.nonFiniteNumber(v.description) }
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
        guard let i = Int64(exactly: v) else { throw JSONError.unencodableValue("integer \(v) exceeds Int64") }
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

    mutating func encodeNil(forKey key: Key) throws { box.set(key.stringValue, .value(.null)) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        // A scalar needs no coding path: only a structured value gets one built.
        if let p = try TreeEncoder.primitive(value) {
            box.set(key.stringValue, .value(p))
        } else {
            box.set(key.stringValue, try encoder.node(for: value, at: codingPath + [key]))
        }
    }

    // The scalar types a config is made of, without the generic path's dynamic casts.
    mutating func encode(_ value: Int, forKey key: Key) throws { box.set(key.stringValue, .value(.int(Int64(value)))) }
    mutating func encode(_ value: String, forKey key: Key) throws { box.set(key.stringValue, .value(.string(value))) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { box.set(key.stringValue, .value(.bool(value))) }
    mutating func encode(_ value: Double, forKey key: Key) throws {
        box.set(key.stringValue, .value(try TreeEncoder.primitive(value)!))
    }
    mutating func encode(_ value: Float, forKey key: Key) throws {
        box.set(key.stringValue, .value(try TreeEncoder.primitive(value)!))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        let nested = ObjectBox()
        box.set(key.stringValue, .object(nested))
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(encoder: encoder, box: nested, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        let nested = ArrayBox()
        box.set(key.stringValue, .array(nested))
        return UnkeyedContainer(encoder: encoder, box: nested, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> Encoder {
        let sub = TreeEncoder(codingPath: codingPath)
        box.set("super", .deferred(sub))
        return sub
    }

    mutating func superEncoder(forKey key: Key) -> Encoder {
        let sub = TreeEncoder(codingPath: codingPath + [key])
        box.set(key.stringValue, .deferred(sub))
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
