import CSQLite
import Foundation

// Record types decode from result rows by column name: a property `parentHash` reads the
// column `parent_hash`, `configJSON` reads `config_json`. A nested struct (RunRecord's
// `environment`) reads its properties from the same row, since its columns are the run's.
// NULL decodes as nil for optionals and as NaN for a non-optional Double (SQLite has no
// NaN; the store writes NaN as NULL).

extension Connection {
    /// Runs `sql` with `params` and decodes each row as a `Record`.
    func fetch<Record: Decodable>(_ type: Record.Type, _ sql: String, _ params: [SQLValue] = []) throws -> [Record] {
        var records: [Record] = []
        try forEach(type, sql, params) { records.append($0) }
        return records
    }

    /// Runs `sql` with `params`, decoding and handing each row to `body` as it is read.
    func forEach<Record: Decodable>(_ type: Record.Type, _ sql: String, _ params: [SQLValue] = [],
                                    _ body: (Record) throws -> Void) throws
    {
        let columns = ColumnIndex()
        try query(sql, params) { row in
            try body(Record(from: RowDecoder(row: row, columns: columns, column: nil, codingPath: [])))
        }
    }
}

/// Column positions of one statement by property name, filled on first use.
final class ColumnIndex {
    /// nil for a property with no column (a nested record, or an optional left out).
    private var positions: [String: Int?] = [:]
    /// The statement's columns by name, read once from its first row.
    private var byName: [String: Int]?

    func position(of key: CodingKey, in row: Row) -> Int? {
        if let known = positions[key.stringValue] { return known }
        if byName == nil {
            var names: [String: Int] = [:]
            for i in 0..<row.columnCount where names[row.columnName(i)] == nil { names[row.columnName(i)] = i }
            byName = names
        }
        let found = byName?[ColumnIndex.columnName(forProperty: key.stringValue)]
        positions[key.stringValue] = .some(found)
        return found
    }

    /// Column names already derived from property names: the record types have a few dozen
    /// properties, read on every query.
    nonisolated(unsafe) private static var derived: [String: String] = [:]
    private static let lock = NSLock()

    /// `parentHash` → `parent_hash`, `configJSON` → `config_json`, `sha256` → `sha256`.
    static func columnName(forProperty property: String) -> String {
        lock.lock()
        defer { lock.unlock() }
        if let known = derived[property] { return known }
        var name = ""
        var previous: Character?
        for c in property {
            if c.isUppercase, let p = previous, p.isLowercase || p.isNumber { name.append("_") }
            name.append(contentsOf: c.lowercased())
            previous = c
        }
        derived[property] = name
        return name
    }
}

struct RowDecoder: Decoder {
    let row: Row
    let columns: ColumnIndex
    /// The column a single value reads (a property's own decoder); nil for a whole record.
    let column: Int?
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(RowContainer<Key>(decoder: self))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "a row has no arrays"))
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer {
        guard let column else {
            throw DecodingError.typeMismatch(Any.self, .init(codingPath: codingPath, debugDescription: "a whole row is not one value"))
        }
        return ColumnValue(row: row, column: column, codingPath: codingPath, columns: columns)
    }
}

private struct RowContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: RowDecoder
    var codingPath: [CodingKey] { decoder.codingPath }
    var allKeys: [Key] {
        (0..<decoder.row.columnCount).compactMap { Key(stringValue: decoder.row.columnName($0)) }
    }

    func contains(_ key: Key) -> Bool { decoder.columns.position(of: key, in: decoder.row) != nil }

    private func value(_ key: Key) throws -> ColumnValue {
        guard let column = decoder.columns.position(of: key, in: decoder.row) else {
            throw DecodingError.keyNotFound(key, .init(
                codingPath: codingPath,
                debugDescription: "no column '\(ColumnIndex.columnName(forProperty: key.stringValue))' in the result"))
        }
        return ColumnValue(row: decoder.row, column: column, codingPath: codingPath + [key], columns: decoder.columns)
    }

    func decodeNil(forKey key: Key) throws -> Bool { try value(key).decodeNil() }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try value(key).decode(type) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try value(key).decode(type) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try value(key).decode(type) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try value(key).decode(type) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try value(key).decode(type) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try value(key).decode(type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try value(key).decode(type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try value(key).decode(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try value(key).decode(type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try value(key).decode(type) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try value(key).decode(type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try value(key).decode(type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try value(key).decode(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try value(key).decode(type) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        // A property with its own column decodes from it; a nested record from the row.
        let column = decoder.columns.position(of: key, in: decoder.row)
        return try T(from: RowDecoder(row: decoder.row, columns: decoder.columns, column: column,
                                      codingPath: codingPath + [key]))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try superDecoder(forKey: key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
        try superDecoder(forKey: key).unkeyedContainer()
    }

    func superDecoder() throws -> Decoder { decoder }

    func superDecoder(forKey key: Key) throws -> Decoder {
        RowDecoder(row: decoder.row, columns: decoder.columns, column: decoder.columns.position(of: key, in: decoder.row),
                   codingPath: codingPath + [key])
    }
}

private struct ColumnValue: SingleValueDecodingContainer {
    let row: Row
    let column: Int
    let codingPath: [CodingKey]
    let columns: ColumnIndex

    private func null<T>(_ type: T.Type) -> DecodingError {
        .valueNotFound(type, .init(codingPath: codingPath, debugDescription: "column \(row.columnName(column)) is NULL"))
    }

    func decodeNil() -> Bool { row.isNull(column) }

    func decode(_ type: Bool.Type) throws -> Bool { try integer(Int64.self) != 0 }

    func decode(_ type: String.Type) throws -> String {
        guard let s = row.string(column) else { throw null(type) }
        return s
    }

    func decode(_ type: Double.Type) throws -> Double { row.double(column) ?? .nan }
    func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }
    func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }

    private func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard let i = row.int(column) else { throw null(type) }
        guard let value = T(exactly: i) else {
            throw DecodingError.dataCorruptedError(in: self, debugDescription: "\(i) does not fit \(type)")
        }
        return value
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try T(from: RowDecoder(row: row, columns: columns, column: column, codingPath: codingPath))
    }
}
