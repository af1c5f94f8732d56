import Foundation
import MoeJSON

/// A parsed `moerec runs --where` expression, turned into an SQL condition on the `runs`
/// table (aliased `r`) whose every value is a bound `?` parameter.
///
/// Grammar: comparisons `key OP value` joined by `and` / `or` (`and` binds tighter),
/// with parentheses for grouping. Keywords are case-insensitive.
/// - OP: `=` (or `==`), `!=`, `<`, `<=`, `>`, `>=`, `~` (substring).
/// - key: `status`, `kind`, `hash`, `parent`, `tag`, `sweep`, or any config key
///   (`^[A-Za-z_][A-Za-z0-9_]*$`, looked up with `json_extract(config_json, '$.key')`).
///   The five reserved names take precedence over config keys of the same name.
/// - value: a bare word (`non-moe`, `completed`), a number (`4`, `1e-3`, `-0.5`), `true`,
///   `false`, `null`, or a quoted string (`'...'` or `"..."`; a backslash escapes the next
///   character, and a doubled quote stands for one, as in SQL). A quoted value is always
///   a string, so `seed='3'` does not match seed 3.
///
/// Meanings: `hash=` and `parent=` match a hash prefix; `tag=x` means the run has tag x;
/// `key!=value` also matches runs whose config lacks the key; `key=null` matches runs
/// whose config lacks it (or has null). `status` and `kind` values must be valid, so a
/// typo is an error rather than an empty listing.
///
/// With `configKeys` (the run config's keys and their types, which the store does not
/// know; the CLI passes them), a key that is neither a run column nor a config key is an
/// error, and so is a value of the wrong type: `seed=1.5`, `lr=fast`, `regime=5`. A bare
/// word compared with a text key is text (`task=5` means the task named 5). A list key
/// (`groups`) compared with `=` / `!=` means "holds" / "does not hold" the name.
///
/// At most `maxComparisons` comparisons: SQLite refuses expression trees deeper than
/// 1000, and no hand-written filter comes near.
///
/// Examples: `regime=non-moe and experts>=4`, `status=completed and (seed=0 or seed=1)`,
/// `tag=paper`, `task~super`.
public struct WhereFilter: Equatable, Sendable {
    /// The type of a config key's value, as `--where` checks it.
    public enum KeyType: Equatable, Sendable {
        case int, float, string, optionalString
        /// One of a fixed set of names (any text compares; it is a string key).
        case choice([String])
        /// A list of names from a fixed set.
        case choices([String])
    }

    /// The most comparisons one expression may hold.
    public static let maxComparisons = 200
    /// The run columns `--where` knows besides config keys.
    public static let columnKeys = ["status", "kind", "hash", "parent", "tag", "sweep"]

    public let expression: String
    /// An SQL boolean expression over `runs r` with `?` placeholders.
    public let sql: String
    /// The values for the placeholders, in order.
    public let parameters: [JSONValue]
    /// The sweep ids the expression compares with `sweep=ID`, in order of appearance: the
    /// study a report reads, when the filter names one (see `ReportData`).
    public let namedSweeps: [Int64]

    /// `configKeys` nil accepts any identifier as a config key, untyped.
    public init(_ expression: String, configKeys: [String: KeyType]? = nil) throws {
        self.expression = expression
        var parser = WhereParser(expression: expression, configKeys: configKeys)
        let (sql, params) = try parser.parse()
        self.sql = sql
        self.parameters = params
        self.namedSweeps = parser.namedSweeps
    }

    /// Throws `.invalidConfigKey` unless `key` is a plain identifier.
    public static func validateKey(_ key: String) throws {
        guard isIdentifier(key) else { throw StoreError.invalidConfigKey(key) }
    }

    static func isIdentifier(_ key: String) -> Bool {
        guard let first = key.utf8.first, isLetter(first) || first == UInt8(ascii: "_") else { return false }
        return key.utf8.allSatisfy { isLetter($0) || isDigit($0) || $0 == UInt8(ascii: "_") }
    }

    static func isLetter(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
    }

    static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
}

private enum WhereToken: Equatable {
    case word(String)
    case quoted(String)
    case op(String)
    case open
    case close

    var text: String {
        switch self {
        case let .word(w): return w
        case let .quoted(q): return "'\(q)'"
        case let .op(o): return o
        case .open: return "("
        case .close: return ")"
        }
    }
}

private struct WhereParser {
    let expression: String
    let configKeys: [String: WhereFilter.KeyType]?
    var tokens: [WhereToken] = []
    var pos = 0
    var params: [JSONValue] = []
    var depth = 0
    var comparisons = 0
    var namedSweeps: [Int64] = []

    init(expression: String, configKeys: [String: WhereFilter.KeyType]?) {
        self.expression = expression
        self.configKeys = configKeys
    }

    func fail(_ token: String, _ reason: String) -> StoreError {
        .invalidWhere(expression: expression, token: token, reason: reason)
    }

    mutating func parse() throws -> (String, [JSONValue]) {
        try tokenize()
        guard !tokens.isEmpty else { throw fail("", "the expression is empty") }
        let sql = try parseOr()
        if pos < tokens.count { throw fail(tokens[pos].text, "expected 'and', 'or' or the end of the expression") }
        return (sql, params)
    }

    // MARK: Tokens

    /// Characters of a bare word: enough for keys, numbers (1e-3, -0.5), hash prefixes and
    /// values such as non-moe or wn-supersense. Everything else outside quotes is an error.
    static func isWordChar(_ c: Character) -> Bool {
        guard c.isASCII, let a = c.asciiValue else { return false }
        return WhereFilter.isLetter(a) || WhereFilter.isDigit(a) || "_.-+:/".utf8.contains(a)
    }

    mutating func tokenize() throws {
        let chars = Array(expression)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c.isWhitespace { i += 1; continue }
            if c == "(" { tokens.append(.open); i += 1; continue }
            if c == ")" { tokens.append(.close); i += 1; continue }
            if c == "'" || c == "\"" {
                var value = ""
                var j = i + 1
                var closed = false
                while j < chars.count {
                    if chars[j] == "\\", j + 1 < chars.count {
                        value.append(chars[j + 1])
                        j += 2
                        continue
                    }
                    if chars[j] == c {
                        // SQL style: a doubled quote inside a quoted value is one quote.
                        if j + 1 < chars.count, chars[j + 1] == c {
                            value.append(c)
                            j += 2
                            continue
                        }
                        closed = true
                        break
                    }
                    value.append(chars[j])
                    j += 1
                }
                guard closed else { throw fail(String(chars[i...]), "unbalanced quote \(c)") }
                tokens.append(.quoted(value))
                i = j + 1
                continue
            }
            if "=!<>~".contains(c) {
                var j = i
                while j < chars.count, "=!<>~".contains(chars[j]) { j += 1 }
                let op = String(chars[i..<j])
                guard ["=", "==", "!=", "<", "<=", ">", ">=", "~"].contains(op) else {
                    throw fail(op, "unknown operator (use = != < <= > >= ~)")
                }
                tokens.append(.op(op == "==" ? "=" : op))
                i = j
                continue
            }
            if WhereParser.isWordChar(c) {
                var j = i
                while j < chars.count, WhereParser.isWordChar(chars[j]) { j += 1 }
                tokens.append(.word(String(chars[i..<j])))
                i = j
                continue
            }
            throw fail(String(c), "unexpected character (quote values that contain it)")
        }
    }

    // MARK: Grammar

    mutating func parseOr() throws -> String {
        var parts = [try parseAnd()]
        while pos < tokens.count, case let .word(w) = tokens[pos], w.lowercased() == "or" {
            pos += 1
            parts.append(try parseAnd())
        }
        return parts.count == 1 ? parts[0] : "(" + parts.joined(separator: " OR ") + ")"
    }

    mutating func parseAnd() throws -> String {
        var parts = [try parsePrimary()]
        while pos < tokens.count, case let .word(w) = tokens[pos], w.lowercased() == "and" {
            pos += 1
            parts.append(try parsePrimary())
        }
        return parts.count == 1 ? parts[0] : "(" + parts.joined(separator: " AND ") + ")"
    }

    mutating func parsePrimary() throws -> String {
        guard pos < tokens.count else { throw fail("", "expected a comparison at the end of the expression") }
        if tokens[pos] == .open {
            depth += 1
            guard depth <= 64 else { throw fail("(", "parentheses nested too deeply") }
            pos += 1
            let inner = try parseOr()
            guard pos < tokens.count, tokens[pos] == .close else {
                throw fail(pos < tokens.count ? tokens[pos].text : "", "expected ')'")
            }
            pos += 1
            depth -= 1
            return "(" + inner + ")"
        }
        return try parseComparison()
    }

    mutating func parseComparison() throws -> String {
        comparisons += 1
        guard comparisons <= WhereFilter.maxComparisons else {
            throw fail(tokens[pos].text, "more than \(WhereFilter.maxComparisons) comparisons; narrow the filter (e.g. sweep=ID or tag=NAME)")
        }
        guard case let .word(key) = tokens[pos] else {
            throw fail(tokens[pos].text, "expected a key (status, kind, hash, parent, tag, sweep or a config key)")
        }
        guard WhereFilter.isIdentifier(key) else {
            throw fail(key, "not a valid key (letters, digits and _, not starting with a digit)")
        }
        pos += 1
        guard pos < tokens.count, case let .op(op) = tokens[pos] else {
            throw fail(pos < tokens.count ? tokens[pos].text : key, "expected an operator (= != < <= > >= ~) after '\(key)'")
        }
        pos += 1
        guard pos < tokens.count else { throw fail(op, "expected a value after '\(key) \(op)'") }
        let value: JSONValue
        let raw: String
        let valueText = tokens[pos].text
        switch tokens[pos] {
        case let .quoted(s): value = .string(s); raw = s
        case let .word(w): value = WhereParser.bareValue(w); raw = w
        default: throw fail(valueText, "expected a value after '\(key) \(op)'")
        }
        pos += 1
        return try condition(key: key, op: op, value: value, raw: raw, valueText: valueText)
    }

    /// A bare word as a value: integer, double, boolean, null, or else a string.
    static func bareValue(_ word: String) -> JSONValue {
        if let i = Int64(word) { return .int(i) }
        // Only JSON-like numbers: Double("nan") and Double("inf") would parse otherwise.
        let looksNumeric = word.unicodeScalars.allSatisfy { "0123456789.eE+-".unicodeScalars.contains($0) }
            && word.unicodeScalars.contains { CharacterSet.decimalDigits.contains($0) }
        if looksNumeric, let d = Double(word), d.isFinite { return .double(d) }
        switch word.lowercased() {
        case "true": return .bool(true)
        case "false": return .bool(false)
        case "null": return .null
        default: return .string(word)
        }
    }

    // MARK: SQL

    mutating func bind(_ value: JSONValue) -> String {
        params.append(value)
        return "?"
    }

    /// `value` is the typed value, `raw` the text as written (unquoted), `valueText` the
    /// token as shown in error messages.
    mutating func condition(key: String, op: String, value: JSONValue, raw: String, valueText: String) throws -> String {
        switch key {
        case "status", "kind":
            let allowed = key == "status" ? RunStatus.allCases.map(\.rawValue) : RunKind.allCases.map(\.rawValue)
            guard case let .string(s) = value else { throw fail(valueText, "\(key) is one of \(allowed.joined(separator: ", "))") }
            switch op {
            case "=", "!=":
                guard allowed.contains(s) else {
                    throw fail(valueText, "unknown \(key); expected one of \(allowed.joined(separator: ", "))")
                }
                return "r.\(key) \(op == "=" ? "=" : "<>") \(bind(value))"
            case "~": return "instr(r.\(key), \(bind(value))) > 0"
            default: throw fail(op, "\(key) compares only with =, != or ~")
            }

        case "hash", "parent":
            let column = key == "hash" ? "r.hash" : "r.parent_hash"
            if value == .null, key == "parent", op == "=" || op == "!=" {
                return "\(column) IS \(op == "=" ? "" : "NOT ")NULL"
            }
            let text = raw.lowercased()
            guard !text.isEmpty, text.utf8.count <= 64,
                  text.utf8.allSatisfy(RunIdentity.isLowerHex)
            else { throw fail(valueText, "\(key) needs a hash prefix of hex digits") }
            switch op {
            case "=": return "substr(\(column), 1, \(bind(.int(Int64(text.count))))) = \(bind(.string(text)))"
            case "!=":
                return "(\(column) IS NULL OR substr(\(column), 1, \(bind(.int(Int64(text.count))))) <> \(bind(.string(text))))"
            case "~": return "instr(\(column), \(bind(.string(text)))) > 0"
            default: throw fail(op, "\(key) compares only with =, != or ~")
            }

        case "sweep":
            // Members of a sweep by its numeric id: `sweep=3` (a sweep also lists its parents).
            guard let id = Int64(raw) else { throw fail(valueText, "sweep needs a numeric sweep id") }
            switch op {
            case "=":
                if !namedSweeps.contains(id) { namedSweeps.append(id) }
                return "EXISTS (SELECT 1 FROM sweep_members s WHERE s.run_hash = r.hash AND s.sweep_id = \(bind(.int(id))))"
            case "!=": return "NOT EXISTS (SELECT 1 FROM sweep_members s WHERE s.run_hash = r.hash AND s.sweep_id = \(bind(.int(id))))"
            default: throw fail(op, "sweep compares only with = or !=")
            }

        case "tag":
            let tag: JSONValue = .string(raw)
            switch op {
            case "=": return "EXISTS (SELECT 1 FROM tags t WHERE t.run_id = r.id AND t.tag = \(bind(tag)))"
            case "!=": return "NOT EXISTS (SELECT 1 FROM tags t WHERE t.run_id = r.id AND t.tag = \(bind(tag)))"
            case "~": return "EXISTS (SELECT 1 FROM tags t WHERE t.run_id = r.id AND instr(t.tag, \(bind(tag))) > 0)"
            default: throw fail(op, "tag compares only with =, != or ~")
            }

        default:
            var value = value
            if let configKeys {
                guard let type = configKeys[key] else {
                    throw fail(key, "unknown key (valid: \((WhereFilter.columnKeys + configKeys.keys.sorted()).joined(separator: ", ")))")
                }
                if value != .null, op != "~" {
                    value = try typed(value, raw: raw, valueText: valueText, key: key, type: type)
                    // An enumerated key holds one of its names: any other value is a typo,
                    // not a filter that matches nothing.
                    switch type {
                    case let .choice(names), let .choices(names):
                        if op == "=" || op == "!=", case let .string(name) = value, !names.contains(name) {
                            throw fail(valueText, "\(key) is one of \(names.joined(separator: ", "))")
                        }
                    default: break
                    }
                }
                if case .choices = type, value != .null {
                    return try listCondition(key: key, op: op, value: value, raw: raw)
                }
            }
            // The JSON path is bound too; the key has been checked to be an identifier.
            let field = "json_extract(r.config_json, \(bind(.string("$." + key))))"
            if value == .null {
                switch op {
                case "=": return "\(field) IS NULL"
                case "!=": return "\(field) IS NOT NULL"
                default: throw fail(valueText, "null compares only with = or !=")
                }
            }
            switch op {
            case "=": return "\(field) = \(bind(value))"
            case "!=": return "\(field) IS NOT \(bind(value))"
            case "<", "<=", ">", ">=":
                return "\(field) \(op) \(bind(value))"
            case "~":
                let needle: JSONValue = .string(raw)
                return "instr(CAST(\(field) AS TEXT), \(bind(needle))) > 0"
            default:
                throw fail(op, "unknown operator")
            }
        }
    }

    /// `value` checked against the key's declared type; a bare word for a text key is text.
    func typed(_ value: JSONValue, raw: String, valueText: String, key: String, type: WhereFilter.KeyType) throws -> JSONValue {
        switch (type, value) {
        case (.int, .int), (.float, .int), (.float, .double):
            return value
        case (.int, _):
            throw fail(valueText, "\(key) is an integer")
        case (.float, _):
            throw fail(valueText, "\(key) is a number")
        case (.string, .string), (.optionalString, .string), (.choice, .string), (.choices, .string):
            return value
        case (.string, _), (.optionalString, _), (.choice, _), (.choices, _):
            // A bare word that parsed as a number or boolean is still a name here.
            return .string(raw)
        }
    }

    /// `groups=attn`: the run's list holds `attn` (`!=`: it does not); `~` matches the list's text.
    mutating func listCondition(key: String, op: String, value: JSONValue, raw: String) throws -> String {
        switch op {
        case "=", "!=":
            let member = "EXISTS (SELECT 1 FROM json_each(r.config_json, \(bind(.string("$." + key)))) WHERE value = \(bind(value)))"
            return op == "=" ? member : "NOT " + member
        case "~":
            return "instr(CAST(json_extract(r.config_json, \(bind(.string("$." + key)))) AS TEXT), \(bind(.string(raw)))) > 0"
        default:
            throw fail(op, "\(key) is a list; it compares only with = (holds), != or ~")
        }
    }
}
