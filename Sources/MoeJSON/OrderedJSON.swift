import Foundation

/// A JSON value whose objects keep their field order, for output that people read: report
/// documents (`report --format json`, reports/*.json) and one-line results (`bench …
/// --format json`). Its text is for reading, not hashing — hashes use `JSONValue`'s
/// canonical form.
///
/// Numbers: `.int` in plain decimal; `.number` as `format(_:significantDigits:)` writes it,
/// non-finite ones as `null`. Strings are escaped by `JSONString`.
public indirect enum OrderedJSON: Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case number(Double)
    case string(String)
    case array([OrderedJSON])
    case object([(String, OrderedJSON)])

    public static func optional(_ x: Double?) -> OrderedJSON { x.map { .number($0) } ?? .null }
    public static func optional(_ x: Int?) -> OrderedJSON { x.map { .int($0) } ?? .null }
    public static func optional(_ x: String?) -> OrderedJSON { x.map { .string($0) } ?? .null }

    /// A number as text: an integral value below 1e15 in magnitude as an integer (`3`, not
    /// `3.0`), any other with at most `significantDigits` significant digits (`%g`). Twelve
    /// are enough for any metric and free of binary noise such as 0.6200000000000001.
    /// Non-finite values are `null`.
    public static func format(_ d: Double, significantDigits: Int = 12) -> String {
        guard d.isFinite else { return "null" }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return String(format: "%.\(significantDigits)g", d)
    }

    /// Pretty-printed with two-space indents, `": "` after keys; arrays of scalars stay on
    /// one line with `", "` between items; empty arrays and objects are `[]` and `{}`. No
    /// final newline.
    public func rendered() -> String {
        var out: [UInt8] = []
        writePretty(into: &out, indent: 0)
        return String(decoding: out, as: UTF8.self)
    }

    /// On one line with no spaces (`{"a":1,"b":[1,2]}`); numbers with `significantDigits`.
    public func compactRendered(significantDigits: Int = 12) -> String {
        var out: [UInt8] = []
        writeCompact(into: &out, significantDigits: significantDigits)
        return String(decoding: out, as: UTF8.self)
    }

    var isScalar: Bool {
        switch self {
        case .array, .object: return false
        default: return true
        }
    }

    /// Scalars; containers are written by the two printers.
    private func writeScalar(into out: inout [UInt8], significantDigits: Int) {
        switch self {
        case .null: out += "null".utf8
        case let .bool(b): out += (b ? "true" : "false").utf8
        case let .int(i): out += String(i).utf8
        case let .number(d): out += OrderedJSON.format(d, significantDigits: significantDigits).utf8
        case let .string(s): JSONString.write(s, into: &out)
        case .array, .object: preconditionFailure("not a scalar")
        }
    }

    private func writePretty(into out: inout [UInt8], indent: Int) {
        switch self {
        case let .array(items):
            if items.isEmpty { out += "[]".utf8; return }
            if items.allSatisfy(\.isScalar) {
                out.append(UInt8(ascii: "["))
                for (i, item) in items.enumerated() {
                    if i > 0 { out += ", ".utf8 }
                    item.writeScalar(into: &out, significantDigits: 12)
                }
                out.append(UInt8(ascii: "]"))
                return
            }
            out += "[\n".utf8
            for (i, item) in items.enumerated() {
                OrderedJSON.pad(&out, indent + 1)
                item.writePretty(into: &out, indent: indent + 1)
                out += (i + 1 < items.count ? ",\n" : "\n").utf8
            }
            OrderedJSON.pad(&out, indent)
            out.append(UInt8(ascii: "]"))
        case let .object(fields):
            if fields.isEmpty { out += "{}".utf8; return }
            out += "{\n".utf8
            for (i, (key, value)) in fields.enumerated() {
                OrderedJSON.pad(&out, indent + 1)
                JSONString.write(key, into: &out)
                out += ": ".utf8
                value.writePretty(into: &out, indent: indent + 1)
                out += (i + 1 < fields.count ? ",\n" : "\n").utf8
            }
            OrderedJSON.pad(&out, indent)
            out.append(UInt8(ascii: "}"))
        default:
            writeScalar(into: &out, significantDigits: 12)
        }
    }

    private static func pad(_ out: inout [UInt8], _ indent: Int) {
        out += repeatElement(UInt8(ascii: " "), count: 2 * indent)
    }

    private func writeCompact(into out: inout [UInt8], significantDigits: Int) {
        switch self {
        case let .array(items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.writeCompact(into: &out, significantDigits: significantDigits)
            }
            out.append(UInt8(ascii: "]"))
        case let .object(fields):
            out.append(UInt8(ascii: "{"))
            for (i, (key, value)) in fields.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONString.write(key, into: &out)
                out.append(UInt8(ascii: ":"))
                value.writeCompact(into: &out, significantDigits: significantDigits)
            }
            out.append(UInt8(ascii: "}"))
        default:
            writeScalar(into: &out, significantDigits: significantDigits)
        }
    }
}
