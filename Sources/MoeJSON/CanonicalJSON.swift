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
