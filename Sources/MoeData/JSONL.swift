import Foundation
import MoeJSON

/// The user's own data as JSON Lines: one JSON object per line, blank lines skipped.
///
/// - Corpus records: `{"text": "…"}`; task records: `{"text": "…", "label": "…" | 7}`.
/// - An optional `id` (string or integer) is the split key; without it the text is.
/// - Other fields are ignored. Labels must be all strings or all integers; classes are the
///   distinct labels sorted (strings by UTF-8 bytes, integers numerically).
/// - Every line must be valid UTF-8 (checked byte by byte, never replaced) and at most
///   `maxLineBytes` long, and is parsed by MoeJSON's strict parser with values nested at
///   most `maxDepth` deep; a key may not repeat in any object. Errors name FILE:LINE and the
///   problem (with the column for JSON syntax). Lines end with LF or CRLF; a UTF-8
///   byte-order mark at the start of the file is ignored.
public enum JSONL {
    public static let defaultMaxLineBytes = 1 << 20
    public static let maxDepth = 128

    /// A corpus: `train` and `validation` hold each record's text followed by `\n`.
    public static func loadCorpus(url: URL, name: String? = nil,
                                  maxLineBytes: Int = defaultMaxLineBytes) throws -> PretrainCorpus {
        var records: [(key: String, text: String)] = []
        try forEachRecord(url: url, maxLineBytes: maxLineBytes) { fields, line, fail in
            let text = try requiredString(fields, "text", fail)
            let key = try idKey(fields, fail) ?? text
            records.append((key, text))
        }
        return try PretrainCorpus.assigning(name: name ?? url.deletingPathExtension().lastPathComponent,
                                            records: records, source: url.path)
    }

    /// A classification task; train, validation and test must each get at least one record.
    public static func loadTask(url: URL, name: String,
                                maxLineBytes: Int = defaultMaxLineBytes) throws -> ClassificationTask {
        // String labels are kept as their UTF-8 bytes: Swift's String equality is canonical
        // equivalence, which would merge "é" (U+00E9) and "e\u{301}" into one class although
        // the file spells two labels (and the fingerprint hashes bytes).
        enum Label: Hashable { case string([UInt8]), integer(Int) }
        var rows: [(key: String, text: String, label: Label)] = []
        var labelKind: String? = nil
        try forEachRecord(url: url, maxLineBytes: maxLineBytes) { fields, line, fail in
            let text = try requiredString(fields, "text", fail)
            let label: Label
            let kind: String
            switch fields["label"] {
            case nil: throw fail(.missingField("label"))
            case .string(let s)?: label = .string(Array(s.utf8)); kind = "a string"
            case .int(let n)?: label = .integer(Int(n)); kind = "an integer"
            case _?: throw fail(.wrongType(field: "label", expected: "a string or an integer"))
            }
            if let expected = labelKind, expected != kind { throw fail(.mixedLabelTypes(expected: expected)) }
            labelKind = kind
            rows.append((try idKey(fields, fail) ?? text, text, label))
        }
        let distinct = Set(rows.map(\.label))
        let ordered: [Label] = distinct.sorted {
            switch ($0, $1) {
            case let (.integer(a), .integer(b)): return a < b
            case let (.string(a), .string(b)): return a.lexicographicallyPrecedes(b)
            default: return false
            }
        }
        let classes = ordered.map { label -> String in
            switch label {
            case .string(let bytes): return String(decoding: bytes, as: UTF8.self)
            case .integer(let n): return String(n)
            }
        }
        let index = Dictionary(uniqueKeysWithValues: ordered.enumerated().map { ($1, $0) })
        let examples = rows.map { Example(text: $0.text, label: index[$0.label]!, key: $0.key) }
        return try ClassificationTask.assigning(name: name, classes: classes, examples: examples, source: url.path)
    }

    typealias Fail = (LineProblem) -> DataError

    static func requiredString(_ fields: [String: JSONValue], _ name: String, _ fail: Fail) throws -> String {
        switch fields[name] {
        case nil: throw fail(.missingField(name))
        case .string(let s)?: return s
        case _?: throw fail(.wrongType(field: name, expected: "a string"))
        }
    }

    static func idKey(_ fields: [String: JSONValue], _ fail: Fail) throws -> String? {
        switch fields["id"] {
        case nil: return nil
        case .string(let s)?: return s
        case .int(let n)?: return String(n)
        case _?: throw fail(.wrongType(field: "id", expected: "a string or an integer"))
        }
    }

    /// Calls `body` with the top-level fields of every non-blank line. An empty file (no
    /// records) is an error.
    static func forEachRecord(url: URL, maxLineBytes: Int,
                              _ body: (_ fields: [String: JSONValue], _ line: Int, _ fail: Fail) throws -> Void) throws {
        var reader = try LineReader(url: url, maxLineBytes: maxLineBytes)
        let path = url.path
        var records = 0
        while var line = try reader.next() {
            let number = reader.lineNumber
            // A UTF-8 byte-order mark (as some Windows editors write) is not part of the record.
            if number == 1 && line.starts(with: [0xEF, 0xBB, 0xBF]) { line = line.dropFirst(3) }
            let fail: Fail = { .invalidLine(file: path, line: number, problem: $0) }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let value: JSONValue = try line.withUnsafeBufferPointer { bytes in
                if let bad = UTF8Validation.firstInvalidByte(bytes) { throw fail(.invalidUTF8(column: bad + 1)) }
                do {
                    return try JSONValue(parsingValidUTF8: bytes, maxDepth: maxDepth)
                } catch let JSONError.syntax(reason, _, column) {
                    // The line is one line of JSON: FILE:LINE names it, the column places the error.
                    throw fail(.invalidJSON("\(reason) at column \(column)"))
                } catch let JSONError.duplicateKey(key, _, _) {
                    throw fail(.duplicateField(key))
                }
            }
            guard case .object(let fields) = value else { throw fail(.notAnObject) }
            try body(fields, number, fail)
            records += 1
        }
        if records == 0 { throw DataError.emptyFile(path: path) }
    }
}
