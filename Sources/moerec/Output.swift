import ArgumentParser
import Foundation
import MoeJSON

/// Flat results (bench output) as one line of JSON, numbers to six significant digits:
/// timings carry no more than that.
enum ResultOut {
    static func json(_ fields: [(String, OrderedJSON)]) -> String {
        OrderedJSON.object(fields).compactRendered(significantDigits: 6)
    }
}

enum TableOut {
    static func keyValues(_ fields: [(String, OrderedJSON)]) -> String {
        let width = fields.map(\.0.count).max() ?? 0
        return fields.map { key, v in
            key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + cell(v, numberFormat: "%.4g")
        }.joined(separator: "\n")
    }

    /// A value as a table cell: strings bare, numbers by `numberFormat`, the rest as JSON.
    static func cell(_ v: OrderedJSON, numberFormat: String) -> String {
        switch v {
        case let .number(d): return String(format: numberFormat, d)
        case let .string(s): return s
        default: return v.compactRendered()
        }
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

/// Checks an integer option against its bounds, with the message every command uses:
/// "--name VALUE: must be in LOW...HIGH".
func requireOption(_ name: String, _ value: Int, in range: ClosedRange<Int>) throws {
    guard range.contains(value) else { throw ValidationError("\(name) \(value): must be in \(range.lowerBound)...\(range.upperBound)") }
}
