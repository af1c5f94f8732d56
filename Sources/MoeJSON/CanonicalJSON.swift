import Foundation

/// The canonical JSON text of a `JSONValue`: run hashes are the SHA-256 of these bytes, so
/// every rule here is frozen — changing one changes every hash in every store (golden tests
/// in MoeStoreTests and MoeJSONTests pin them).
///
/// ## Canonical form
/// This is moerec's own form, not RFC 8785 (JCS). Equal values always give identical bytes:
/// - no whitespace anywhere outside strings;
/// - object members sorted by the UTF-8 bytes of their keys (byte-wise, shorter first on a
///   common prefix); keys are unique. (RFC 8785 sorts by UTF-16 code units; the two orders
///   differ only between characters above U+FFFF and those in U+E000–U+FFFF.)
/// - array elements in their order;
/// - strings as `JSONString.write` escapes them: `"` and `\` as `\"` and `\\`; newline,
///   carriage return and tab as `\n`, `\r`, `\t`; every other control character
///   U+0000–U+001F as `\u00XX` with lowercase hex digits (so backspace and form feed are
///   `\u0008` and `\u000c`, where RFC 8785 writes `\b` and `\f`); everything else (including
///   `/`, DEL and all non-ASCII characters) as literal UTF-8. No Unicode normalisation;
/// - `.int` values in plain decimal (`-12`, `0`);
/// - `.double` values in Swift's shortest round-trip `Double.description` form: `1.0`,
///   `0.001`, `1e-05`, `1e+16`, `-0.0` (RFC 8785 would write `1`, `0.001`, `0.00001`,
///   `10000000000000000`, `0`). A double is therefore always distinguishable from an
///   integer (`1.0` vs `1`), and so `.int(1)` and `.double(1)` hash differently;
/// - NaN and ±infinity cannot be written: the writer throws `JSONError.nonFiniteNumber`;
/// - `true`, `false`, `null` as literals.
///
/// Parsing a canonical text and writing it again gives the same bytes.
extension JSONValue {
    /// The canonical JSON text of this value.
    /// Throws `JSONError.nonFiniteNumber` for NaN or an infinity anywhere in the value.
    public var canonicalString: String {
        get throws { String(decoding: try canonicalBytes, as: UTF8.self) }
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
            out += "null".utf8
        case let .bool(b):
            out += (b ? "true" : "false").utf8
        case let .int(i):
            out += String(i).utf8
        case let .double(d):
            guard d.isFinite else { throw JSONError.nonFiniteNumber(d.description) }
            out += d.description.utf8
        case let .string(s):
            JSONString.write(s, into: &out)
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
            let keys = members.keys.sorted(by: JSONValue.bytesPrecede)
            for (i, key) in keys.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONString.write(key, into: &out)
                out.append(UInt8(ascii: ":"))
                try members[key]!.writeCanonical(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Whether `a`'s UTF-8 bytes sort before `b`'s (shorter first on a common prefix): the
    /// order `utf8.lexicographicallyPrecedes` gives, by one `memcmp`.
    static func bytesPrecede(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { pa in
            b.withUTF8 { pb in
                let n = min(pa.count, pb.count)
                let c = n == 0 ? 0 : memcmp(pa.baseAddress!, pb.baseAddress!, n)
                return c != 0 ? c < 0 : pa.count < pb.count
            }
        }
    }
}

/// The canonical text of objects that share most members with one template object, each
/// written from the template's members (encoded once, in canonical order) with a few
/// members replaced, added or removed: how a sweep writes 100,000 cells that differ from
/// their base config in their grid keys. Every object's bytes are those `canonicalBytes`
/// writes for the same object (a test compares the two).
public struct CanonicalTemplate: Sendable {
    /// The template's keys in canonical order, and each member as `"key":value`.
    private let keys: [String]
    private let members: [[UInt8]]
    private let size: Int

    /// Throws `JSONError.nonFiniteNumber` for NaN or an infinity anywhere in a member.
    public init(_ object: [String: JSONValue]) throws {
        keys = object.keys.sorted(by: JSONValue.bytesPrecede)
        members = try keys.map { try CanonicalTemplate.member($0, object[$0]!) }
        size = members.reduce(2) { $0 + $1.count + 1 }
    }

    private static func member(_ key: String, _ value: JSONValue) throws -> [UInt8] {
        var out: [UInt8] = []
        try append(key, value, into: &out)
        return out
    }

    private static func append(_ key: String, _ value: JSONValue, into out: inout [UInt8]) throws {
        JSONString.write(key, into: &out)
        out.append(UInt8(ascii: ":"))
        try value.writeCanonical(into: &out)
    }

    /// The canonical text of the template with `changes` made: a value replaces the
    /// template's member of its key or adds one, nil removes it. Each key at most once.
    public func text(_ changes: [(key: String, value: JSONValue?)]) throws -> String {
        // A cell changes a few keys: sorting them and merging with the template's order
        // costs less than one dictionary of the whole object.
        let changes = changes.sorted { JSONValue.bytesPrecede($0.key, $1.key) }
        var out: [UInt8] = []
        out.reserveCapacity(size + 64 * changes.count)
        out.append(UInt8(ascii: "{"))
        func separate() { if out.count > 1 { out.append(UInt8(ascii: ",")) } }
        func write(_ change: (key: String, value: JSONValue?)) throws {
            guard let value = change.value else { return }
            separate()
            try CanonicalTemplate.append(change.key, value, into: &out)
        }
        var next = 0
        for (key, member) in zip(keys, members) {
            while next < changes.count && JSONValue.bytesPrecede(changes[next].key, key) {
                try write(changes[next])
                next += 1
            }
            if next < changes.count && changes[next].key == key {
                try write(changes[next])
                next += 1
            } else {
                separate()
                out += member
            }
        }
        for change in changes[next...] { try write(change) }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}
