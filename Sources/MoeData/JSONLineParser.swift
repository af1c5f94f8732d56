/// A small strict JSON (RFC 8259) parser for one JSONL line. It materialises only the
/// top-level members of an object, as `JSONField`s; nested values are checked for syntax
/// and then dropped. Written by hand so that every record is held to the same rules on
/// every platform, integers are told apart from other numbers, and errors carry a column.
enum JSONField: Equatable {
    case string(String)
    case integer(Int)
    case number
    case bool
    case null
    case array
    case object

    var kind: String {
        switch self {
        case .string: return "a string"
        case .integer: return "an integer"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

struct JSONSyntaxError: Error {
    let message: String
}

struct JSONLineParser {
    static let maxDepth = 128

    /// Parses `line` as one JSON value. Returns the members of a top-level object, or nil
    /// when the value is valid JSON but not an object. Duplicate top-level keys throw.
    static func parseObject(_ line: UnsafeBufferPointer<UInt8>) throws -> [String: JSONField]? {
        var parser = JSONLineParser(bytes: line)
        parser.skipWhitespace()
        var members: [String: JSONField]? = nil
        if parser.peek == UInt8(ascii: "{") {
            members = try parser.parseObject(depth: 1, capture: true)
        } else {
            _ = try parser.parseValue(depth: 1)
        }
        parser.skipWhitespace()
        if parser.i < parser.bytes.count {
            throw parser.error("unexpected \(parser.describeCurrent()) after the value")
        }
        return members
    }

    let bytes: UnsafeBufferPointer<UInt8>
    var i = 0

    var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    func error(_ message: String) -> JSONSyntaxError {
        JSONSyntaxError(message: "\(message) at column \(i + 1)")
    }

    func describeCurrent() -> String {
        guard let b = peek else { return "end of line" }
        if b >= 0x21 && b < 0x7F { return "character '\(Character(Unicode.Scalar(b)))'" }
        return "byte 0x\(String(b, radix: 16, uppercase: true))"
    }

    mutating func skipWhitespace() {
        while let b = peek, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { i += 1 }
    }

    mutating func expect(_ byte: UInt8, _ what: String) throws {
        guard peek == byte else { throw error("expected \(what) but found \(describeCurrent())") }
        i += 1
    }

    mutating func parseValue(depth: Int) throws -> JSONField {
        guard depth <= Self.maxDepth else { throw error("nesting deeper than \(Self.maxDepth) levels") }
        guard let current = peek else { throw error("expected a value but found end of line") }
        switch current {
        case UInt8(ascii: "{"):
            _ = try parseObject(depth: depth, capture: false)
            return .object
        case UInt8(ascii: "["):
            try parseArray(depth: depth)
            return .array
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "t"):
            try parseLiteral("true"); return .bool
        case UInt8(ascii: "f"):
            try parseLiteral("false"); return .bool
        case UInt8(ascii: "n"):
            try parseLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try parseNumber()
        default:
            throw error("expected a value but found \(describeCurrent())")
        }
    }

    mutating func parseLiteral(_ word: String) throws {
        let start = i
        for expected in word.utf8 {
            guard peek == expected else {
                i = start
                throw error("invalid literal (expected \(word))")
            }
            i += 1
        }
    }

    mutating func parseObject(depth: Int, capture: Bool) throws -> [String: JSONField] {
        try expect(UInt8(ascii: "{"), "'{'")
        var members: [String: JSONField] = [:]
        skipWhitespace()
        if peek == UInt8(ascii: "}") { i += 1; return members }
        while true {
            skipWhitespace()
            guard peek == UInt8(ascii: "\"") else {
                throw error("expected a string key but found \(describeCurrent())")
            }
            let key = try parseString()
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':' after an object key")
            skipWhitespace()
            let value = try parseValue(depth: depth + 1)
            if capture {
                if members[key] != nil { throw DuplicateKey(key: key) }
                members[key] = value
            }
            skipWhitespace()
            if peek == UInt8(ascii: ",") { i += 1; continue }
            try expect(UInt8(ascii: "}"), "',' or '}' in an object")
            return members
        }
    }

    struct DuplicateKey: Error { let key: String }

    mutating func parseArray(depth: Int) throws {
        try expect(UInt8(ascii: "["), "'['")
        skipWhitespace()
        if peek == UInt8(ascii: "]") { i += 1; return }
        while true {
            skipWhitespace()
            _ = try parseValue(depth: depth + 1)
            skipWhitespace()
            if peek == UInt8(ascii: ",") { i += 1; continue }
            try expect(UInt8(ascii: "]"), "',' or ']' in an array")
            return
        }
    }

    mutating func parseNumber() throws -> JSONField {
        let start = i
        var isInteger = true
        if peek == UInt8(ascii: "-") { i += 1 }
        guard let first = peek, first >= 0x30, first <= 0x39 else { throw error("invalid number") }
        if first == 0x30 {
            i += 1
        } else {
            while let b = peek, b >= 0x30, b <= 0x39 { i += 1 }
        }
        if peek == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard let b = peek, b >= 0x30, b <= 0x39 else { throw error("invalid number (digit expected after '.')") }
            while let b = peek, b >= 0x30, b <= 0x39 { i += 1 }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { i += 1 }
            guard let b = peek, b >= 0x30, b <= 0x39 else { throw error("invalid number (digit expected in exponent)") }
            while let b = peek, b >= 0x30, b <= 0x39 { i += 1 }
        }
        if isInteger, let value = Int(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)) {
            return .integer(value)
        }
        return .number
    }

    /// Parses a string literal; the line has already been checked to be valid UTF-8.
    mutating func parseString() throws -> String {
        try expect(UInt8(ascii: "\""), "'\"'")
        var out: [UInt8] = []
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
                out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
            default:
                i -= 1
                throw error("invalid escape '\\\(Character(Unicode.Scalar(escape)))'")
            }
        }
        return String(decoding: out, as: UTF8.self)
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
