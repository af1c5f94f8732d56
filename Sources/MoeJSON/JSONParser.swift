import Foundation

/// Strict JSON (RFC 8259) parsing: the one parser for config files, JSONL data lines and
/// the JSON the store keeps.
///
/// - One value, optionally surrounded by whitespace (space, tab, LF, CR); nothing else.
/// - A number without fraction or exponent becomes `.int` and must fit in Int64; any other
///   number becomes `.double` and must be finite. Either is an error rather than a silent
///   rounding, because the two would hash differently and neither is what was written.
/// - Strings keep their bytes exactly: escapes are decoded, nothing is normalised; control
///   characters must be escaped; `\u` surrogates must pair.
/// - A key repeated in any object is an error (`JSONError.duplicateKey`).
/// - Values nest at most `maxDepth` deep (a top-level scalar has depth 1), so hostile input
///   such as a million `[` is an error instead of a stack overflow.
/// - Errors are `JSONError.syntax` with the line and column where parsing stopped.
extension JSONValue {
    /// The nesting limit for configs and stored JSON.
    public static let defaultMaxDepth = 512

    /// Parses JSON text.
    public init(parsing text: String, maxDepth: Int = JSONValue.defaultMaxDepth) throws {
        var text = text
        self = try text.withUTF8 { try JSONParser.parse($0, maxDepth: maxDepth) }
    }

    /// Parses JSON from bytes, which must be well-formed UTF-8 (the first byte that is not
    /// is an error with its position). A byte-order mark is not JSON and is an error too.
    public init(parsing data: Data, maxDepth: Int = JSONValue.defaultMaxDepth) throws {
        let bytes = [UInt8](data)
        self = try bytes.withUnsafeBufferPointer { buffer in
            var decoder = Unicode.UTF8.ForwardParser()
            var iterator = buffer.makeIterator()
            var offset = 0
            while true {
                switch decoder.parseScalar(from: &iterator) {
                case let .valid(scalar): offset += scalar.count
                case .emptyInput: return try JSONParser.parse(buffer, maxDepth: maxDepth)
                case .error:
                    let parser = JSONParser(bytes: buffer, maxDepth: maxDepth)
                    throw parser.error("byte 0x\(String(buffer[offset], radix: 16, uppercase: true)) is not valid UTF-8",
                                       at: offset)
                }
            }
        }
    }

    /// Parses bytes that the caller has already checked to be well-formed UTF-8 (as the
    /// JSONL reader does, to report the first bad byte in its own terms). Strings are built
    /// from the bytes as they are; an ill-formed sequence would become U+FFFD.
    public init(parsingValidUTF8 bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int = JSONValue.defaultMaxDepth) throws {
        self = try JSONParser.parse(bytes, maxDepth: maxDepth)
    }

    /// Checks that `text` is one JSON object, as `init(parsing:)` reads its syntax, without
    /// building any value: how the store checks a config it is given as text, at a fraction
    /// of a parse's cost. A repeated key and a number beyond Int64 or Double are not looked
    /// for (only a parse notices them). Throws `JSONError.syntax` with the position.
    public static func checkObjectSyntax(_ text: String, maxDepth: Int = JSONValue.defaultMaxDepth) throws {
        var text = text
        try text.withUTF8 { bytes in
            var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
            parser.skipWhitespace()
            guard parser.peek == UInt8(ascii: "{") else {
                throw parser.error("expected a JSON object but found \(parser.describeCurrent())")
            }
            try parser.skipValue(depth: 0)
            parser.skipWhitespace()
            if parser.peek != nil { throw parser.error("unexpected \(parser.describeCurrent()) after the value") }
        }
    }
}

/// Where the parser puts a string's decoded bytes: an array to build the string, or
/// nowhere when only the syntax is checked.
protocol DecodedBytes {
    mutating func append(_ byte: UInt8)
}

extension Array: DecodedBytes where Element == UInt8 {}

struct DiscardedBytes: DecodedBytes {
    func append(_ byte: UInt8) {}
}

/// A recursive-descent parser over UTF-8 bytes.
struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    var i = 0

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) throws -> JSONValue {
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        if parser.peek != nil { throw parser.error("unexpected \(parser.describeCurrent()) after the value") }
        return value
    }

    init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    // MARK: Errors

    func error(_ reason: String, at position: Int? = nil) -> JSONError {
        let (line, column) = location(of: position ?? i)
        return .syntax(reason: reason, line: line, column: column)
    }

    /// Line and column of a byte offset, counted only when an error needs them.
    func location(of position: Int) -> (line: Int, column: Int) {
        var line = 1, lineStart = 0
        for k in 0..<min(position, bytes.count) where bytes[k] == 0x0A {
            line += 1
            lineStart = k + 1
        }
        return (line, position - lineStart + 1)
    }

    func describeCurrent() -> String {
        guard let b = peek else { return "end of input" }
        if b >= 0x21 && b < 0x7F { return "character '\(Character(Unicode.Scalar(b)))'" }
        return "byte 0x\(String(b, radix: 16, uppercase: true))"
    }

    // MARK: Grammar

    mutating func skipWhitespace() {
        while let b = peek, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { i += 1 }
    }

    mutating func expect(_ byte: UInt8, _ what: String) throws {
        guard peek == byte else { throw error("expected \(what) but found \(describeCurrent())") }
        i += 1
    }

    mutating func parseValue(depth: Int) throws -> JSONValue {
        guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
        guard let current = peek else { throw error("expected a value but found end of input") }
        switch current {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try parseLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try parseLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try parseLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("expected a value but found \(describeCurrent())")
        }
    }

    mutating func parseLiteral(_ word: StaticString) throws {
        let start = i
        for expected in UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount) {
            guard peek == expected else { throw error("invalid literal (expected \(word))", at: start) }
            i += 1
        }
    }

    mutating func parseObject(depth: Int) throws -> JSONValue {
        try expect(UInt8(ascii: "{"), "'{'")
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if peek == UInt8(ascii: "}") { i += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard peek == UInt8(ascii: "\"") else { throw error("expected a string key but found \(describeCurrent())") }
            let keyStart = i
            let key = try parseString()
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':' after an object key")
            skipWhitespace()
            let value = try parseValue(depth: depth + 1)
            // Checked after the value, so that a line broken further on reports the break.
            guard members.updateValue(value, forKey: key) == nil else {
                let (line, column) = location(of: keyStart)
                throw JSONError.duplicateKey(key, line: line, column: column)
            }
            skipWhitespace()
            if peek == UInt8(ascii: ",") { i += 1; continue }
            try expect(UInt8(ascii: "}"), "',' or '}' in an object")
            return .object(members)
        }
    }

    mutating func parseArray(depth: Int) throws -> JSONValue {
        try expect(UInt8(ascii: "["), "'['")
        var items: [JSONValue] = []
        skipWhitespace()
        if peek == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            if peek == UInt8(ascii: ",") { i += 1; continue }
            try expect(UInt8(ascii: "]"), "',' or ']' in an array")
            return .array(items)
        }
    }

    /// The grammar of `parseValue` with nothing built (`JSONValue.checkObjectSyntax`).
    mutating func skipValue(depth: Int) throws {
        guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
        guard let current = peek else { throw error("expected a value but found end of input") }
        var discarded = DiscardedBytes()
        switch current {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let isObject = current == UInt8(ascii: "{")
            let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
            i += 1
            skipWhitespace()
            if peek == close { i += 1; return }
            while true {
                skipWhitespace()
                if isObject {
                    guard peek == UInt8(ascii: "\"") else { throw error("expected a string key but found \(describeCurrent())") }
                    try scanString(into: &discarded)
                    skipWhitespace()
                    try expect(UInt8(ascii: ":"), "':' after an object key")
                    skipWhitespace()
                }
                try skipValue(depth: depth + 1)
                skipWhitespace()
                if peek == UInt8(ascii: ",") { i += 1; continue }
                try expect(close, isObject ? "',' or '}' in an object" : "',' or ']' in an array")
                return
            }
        case UInt8(ascii: "\""): try scanString(into: &discarded)
        case UInt8(ascii: "t"): try parseLiteral("true")
        case UInt8(ascii: "f"): try parseLiteral("false")
        case UInt8(ascii: "n"): try parseLiteral("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): _ = try scanNumber()
        default: throw error("expected a value but found \(describeCurrent())")
        }
    }

    /// Moves past a number's text and says whether it is an integer (no fraction or exponent).
    mutating func scanNumber() throws -> Bool {
        func isDigit(_ b: UInt8?) -> Bool { b.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
        var isInteger = true
        if peek == UInt8(ascii: "-") { i += 1 }
        guard isDigit(peek) else { throw error("invalid number") }
        if peek == UInt8(ascii: "0") {
            i += 1
            if isDigit(peek) { throw error("invalid number (leading zero)") }
        } else {
            while isDigit(peek) { i += 1 }
        }
        if peek == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard isDigit(peek) else { throw error("invalid number (digit expected after '.')") }
            while isDigit(peek) { i += 1 }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { i += 1 }
            guard isDigit(peek) else { throw error("invalid number (digit expected in exponent)") }
            while isDigit(peek) { i += 1 }
        }
        return isInteger
    }

    mutating func parseNumber() throws -> JSONValue {
        let start = i
        let isInteger = try scanNumber()
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
        if isInteger {
            guard let value = Int64(text) else { throw error("integer \(text) is outside the 64-bit range", at: start) }
            return .int(value)
        }
        guard let value = Double(text), value.isFinite else {
            throw error("number \(text) is not a finite double", at: start)
        }
        return .double(value)
    }

    mutating func parseString() throws -> String {
        var out: [UInt8] = []
        try scanString(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Moves past a string, checking its escapes, and appends its decoded bytes to `out`.
    mutating func scanString<Out: DecodedBytes>(into out: inout Out) throws {
        try expect(UInt8(ascii: "\""), "'\"'")
        while true {
            guard let b = peek else { throw error("unterminated string") }
            if b == UInt8(ascii: "\"") { i += 1; break }
            if b < 0x20 { throw error("unescaped control character in a string") }
            if b != UInt8(ascii: "\\") { out.append(b); i += 1; continue }
            i += 1
            guard let escape = peek else { throw error("unterminated escape") }
            i += 1
            switch escape {
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
                    guard peek == UInt8(ascii: "\\"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "u") else {
                        throw error("unpaired UTF-16 surrogate in \\u escape")
                    }
                    i += 2
                    let low = try parseHex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw error("unpaired UTF-16 surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw error("unpaired UTF-16 surrogate in \\u escape")
                }
                UTF8.encode(Unicode.Scalar(scalar)!) { out.append($0) }
            default:
                throw error("invalid escape '\\\(Character(Unicode.Scalar(escape)))'", at: i - 1)
            }
        }
    }

    mutating func parseHex4() throws -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let b = peek else { throw error("truncated \\u escape") }
            let digit: UInt32
            switch b {
            case 0x30...0x39: digit = UInt32(b - 0x30)
            case 0x41...0x46: digit = UInt32(b - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(b - 0x61 + 10)
            default: throw error("invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            i += 1
        }
        return value
    }
}
