import Foundation
import MoeReport

/// Minimal writers for flat key/value results (bench output).
enum JSONOut {
    static func value(_ v: Any) -> String {
        switch v {
        case let d as Double: return d.isFinite ? String(format: "%.6g", d) : "null"
        case let f as Float: return value(Double(f))
        case let i as Int: return String(i)
        case let b as Bool: return b ? "true" : "false"
        case let s as String: return quote(s)
        case let a as [Any]: return "[" + a.map(value).joined(separator: ",") + "]"
        case Optional<Any>.none: return "null"
        default: return quote("\(v)")
        }
    }

    static func quote(_ s: String) -> String { OrderedJSON.quote(s) }

    static func object(_ fields: [(String, Any)]) -> String {
        "{" + fields.map { quote($0.0) + ":" + value($0.1) }.joined(separator: ",") + "}"
    }
}

enum TableOut {
    static func keyValues(_ fields: [(String, Any)]) -> String {
        let width = fields.map(\.0.count).max() ?? 0
        return fields.map { key, v in
            let text: String
            switch v {
            case let d as Double: text = String(format: "%.4g", d)
            default: text = "\(v)"
            }
            return key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + text
        }.joined(separator: "\n")
    }

    /// Aligned columns; numbers right-aligned.
    static func render(header: [String], rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                let pad = String(repeating: " ", count: max(0, widths[i] - c.count))
                return Double(c) != nil ? pad + c : c + pad
            }.joined(separator: "  ")
        }
        return ([line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")] + rows.map(line))
            .joined(separator: "\n")
    }
}
