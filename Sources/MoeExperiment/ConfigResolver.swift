import Foundation
import MoeData
import MoeErrors
import MoeJSON
import MoeStore
import MoeTrain
import Yams

/// Bad user input: the message names the key, value or file. The CLI maps it to exit 2.
public struct InputError: MoeError, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var exitMeaning: ExitMeaning { .badInput }
}

/// Turns presets, config files (JSON or YAML) and `--set key=value` overrides into one
/// resolved `RunConfig` with every default written out. Each key is checked against the
/// type of its default, so a wrong type or an unknown key is reported by name before
/// anything runs.
public enum ConfigResolver {
    /// Every key with its default, late keys included (see `RunConfig.lateKeys`).
    public static func defaults() -> [String: JSONValue] { defaultValues }

    /// Computed once: every config of a sweep is resolved against them.
    private static let defaultValues: [String: JSONValue] = {
        guard case var .object(o)? = try? JSONValue(encodable: RunConfig()) else { return [:] }
        // Optional keys are left out by the encoder when nil; they are still valid keys.
        o["parent"] = o["parent"] ?? .null
        return o
    }()

    /// The late keys at their introduction values (see `value(of:)`): the declared default,
    /// or `RunConfig.introductionValues` where new configs default to something else.
    static let lateDefaults = defaultValues.filter { RunConfig.lateKeys.contains($0.key) }
        .merging(RunConfig.introductionValues.mapValues { JSONValue.string($0) }) { _, introduced in introduced }

    /// The type of each key, from the declaration (`RunConfig.schema`).
    static let types: [String: ConfigType] = Dictionary(uniqueKeysWithValues: RunConfig.schema.map { ($0.key, $0.type) })

    /// Layers, later ones winning: defaults ← preset ← file ← overrides.
    public static func resolve(preset: [String: JSONValue] = [:], file: String? = nil, sets: [String] = []) throws
        -> (config: RunConfig, explicit: Set<String>) {
        var merged = defaults()
        var explicit = Set<String>()
        try merge(preset, into: &merged, source: "preset", explicit: &explicit)
        if let file { try merge(try load(file: file), into: &merged, source: file, explicit: &explicit) }
        for item in sets {
            let (key, value) = try parse(set: item)
            merged[key] = value
            explicit.insert(key)
        }
        return (try finish(merged, explicit: explicit), explicit)
    }

    /// The config of a merged object whose `explicit` keys were given, read by `decode`.
    static func finish(_ merged: [String: JSONValue], explicit: Set<String>,
                       decode: ([String: JSONValue]) throws -> RunConfig = ConfigResolver.decode) throws -> RunConfig {
        let config = try decode(merged)
        // A key of the other kind would change the hash and do nothing: refused, unless it
        // sits at its default or its introduction value (a resolved config written out in
        // full, by this version or an earlier one), where the hash is the same as without it.
        let defaults = defaults()
        for key in explicit.sorted() where merged[key] != defaults[key] && merged[key] != lateDefaults[key] {
            if let only = RunConfig.onlyFor(key: key), only != config.kind {
                throw InputError("\(key): applies to \(only.rawValue) runs only, and this config has kind=\(config.kind.rawValue) (remove the key, or set kind=\(only.rawValue))")
            }
        }
        return config
    }

    /// A config from its JSON object. Late keys a stored config predates take their
    /// declared defaults; any other missing key is an error.
    public static func decode(_ object: [String: JSONValue]) throws -> RunConfig {
        var complete = object
        for (key, value) in lateDefaults where complete[key] == nil {
            complete[key] = value
        }
        do {
            return try JSONValue.object(complete).decode(RunConfig.self)
        } catch {
            throw InputError("config does not decode: \(error)")
        }
    }

    /// The canonical JSON value of a resolved config (what the hash covers).
    ///
    /// Hash stability across upgrades: a late key (added after runs were stored) is left
    /// out while it equals its declared default, which by rule reproduces the behaviour
    /// from before the key existed; so every stored run keeps its hash. A change that
    /// alters results at unchanged config bumps `Executor.numericsVersion` instead.
    public static func value(of config: RunConfig) throws -> JSONValue {
        try canonical(JSONValue(encodable: config), lateDefaults: lateDefaults)
    }

    /// `value` without the late keys that sit at their introduction values, nor those that
    /// apply only to the other kind of run (they do nothing there, and the resolver refuses
    /// them at any value but their default, so no stored config has one elsewhere).
    public static func canonical(_ value: JSONValue, lateDefaults: [String: JSONValue]) -> JSONValue {
        guard case var .object(o) = value else { return value }
        let kind = o["kind"]?.stringValue
        for (key, member) in o where leavesOut(key, member, kind: kind, lateDefaults: lateDefaults) { o[key] = nil }
        return .object(o)
    }

    /// Whether the canonical form of a config of `kind` leaves out its member `key: value`:
    /// a late key at its introduction value, or one that applies only to the other kind.
    static func leavesOut(_ key: String, _ value: JSONValue, kind: String?, lateDefaults: [String: JSONValue]) -> Bool {
        if lateDefaults[key] == value { return true }
        guard let kind, lateKeys.contains(key), let only = RunConfig.onlyFor(key: key) else { return false }
        return only.rawValue != kind
    }

    private static let lateKeys = RunConfig.lateKeys

    // MARK: Files

    public static func load(file: String) throws -> [String: JSONValue] {
        let data: Data
        do { data = try RegularFile.read(file, limit: 1 << 20) } catch let DataError.unreadable(_, reason) {
            throw InputError("\(file): cannot read config file: \(reason)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw InputError("\(file): not valid UTF-8") }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let value: JSONValue
        if file.hasSuffix(".json") || trimmed.hasPrefix("{") {
            do { value = try JSONValue(parsing: text) } catch { throw InputError("\(file): invalid JSON: \(error)") }
        } else {
            // A flat config needs no anchors or aliases, and aliases can expand a few hundred
            // bytes into gigabytes before any check sees them: refuse them outright.
            if text.range(of: #"(^|[\s\[\{,:-])[&*][A-Za-z0-9_]"#, options: .regularExpression) != nil {
                throw InputError("\(file): YAML anchors and aliases (&name, *name) are not supported in configs")
            }
            let node: Node?
            do { node = try Yams.compose(yaml: text) } catch { throw InputError("\(file): invalid YAML: \(error)") }
            value = try node.map { try fromYAML($0, file: file, key: "") } ?? .null
        }
        guard case let .object(o) = value else { throw InputError("\(file): a config must be a mapping of keys to values") }
        return o
    }

    /// A YAML node as JSON, by rules as strict as JSON's: a plain scalar is null (`null`,
    /// `~` or empty), a boolean (`true`, `false`), an integer in plain decimal, a number in
    /// JSON's form (`2.5e-3`; no leading zeros), or else a string; a quoted scalar is always
    /// a string. YAML's other forms (`0x6`, `0o6`, `6_0`, `0600`, `6.`, `yes`, `.inf`) stay
    /// strings, so a number key refuses them by name.
    static func fromYAML(_ node: Node, file: String, key: String) throws -> JSONValue {
        let at = node.mark.map { ":\($0.line):\($0.column)" } ?? ""
        switch node {
        case let .scalar(scalar):
            let text = scalar.string
            guard scalar.style == .plain || scalar.style == .any else { return .string(text) }
            switch text {
            case "", "~", "null", "Null", "NULL": return .null
            case "true", "True", "TRUE": return .bool(true)
            case "false", "False", "FALSE": return .bool(false)
            default: break
            }
            if text.range(of: #"^[-+]?(0|[1-9][0-9]*)$"#, options: .regularExpression) != nil {
                guard let i = Int64(text.hasPrefix("+") ? String(text.dropFirst()) : text) else {
                    throw InputError("\(file)\(at): \(key)=\(text): integer out of range")
                }
                return .int(i)
            }
            if text.range(of: #"^[-+]?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$"#, options: .regularExpression) != nil,
               let d = Double(text) {
                return .double(d)
            }
            return .string(text)
        case let .sequence(sequence):
            return .array(try sequence.map { try fromYAML($0, file: file, key: key) })
        case let .mapping(mapping):
            var o: [String: JSONValue] = [:]
            for (k, v) in mapping {
                guard case let .scalar(name) = k else {
                    throw InputError("\(file)\(at): keys must be plain names")
                }
                guard o[name.string] == nil else { throw InputError("\(file)\(at): duplicate key '\(name.string)'") }
                o[name.string] = try fromYAML(v, file: file, key: name.string)
            }
            return .object(o)
        case .alias:
            throw InputError("\(file)\(at): YAML aliases are not supported in configs")
        }
    }

    // MARK: Merging and type checks

    static func merge(_ source: [String: JSONValue], into merged: inout [String: JSONValue], source name: String,
                      explicit: inout Set<String>) throws {
        for key in source.keys.sorted() {
            merged[key] = try coerce(source[key]!, key: key, source: name)
            explicit.insert(key)
        }
    }

    /// Checks `value` against the key's declared type and converts ints to floats where
    /// the key is a float. Errors name the key as `shownAs` (default: the key itself).
    static func coerce(_ value: JSONValue, key: String, source: String, shownAs: String? = nil) throws -> JSONValue {
        let shown = shownAs ?? key
        func wrong(_ expected: String) -> InputError {
            InputError("\(source): \(shown)=\(value.display): expected \(expected)")
        }
        guard let type = types[key] else {
            throw InputError("\(source): unknown key '\(shown)' (valid keys: \(RunConfig.keys.joined(separator: ", ")))")
        }
        switch (type, value) {
        case (.int, .int): return value
        case (.int, .double(let d)) where d == d.rounded() && abs(d) < 1e15: return .int(Int64(d))
        case (.int, _): throw wrong("an integer")
        case (.float, .int(let i)): return .double(Double(i))
        case (.float, .double(let d)):
            guard d.isFinite else { throw InputError("\(source): \(shown)=\(value.display): must be a finite number") }
            guard abs(d) < 1e30 else { throw InputError("\(source): \(shown)=\(value.display): out of range") }
            return value
        case (.float, _): throw wrong("a finite number")
        case (.string, .string): return value
        case (.string, _): throw wrong("a string")
        case (.optionalString, .string), (.optionalString, .null): return value
        case (.optionalString, _): throw wrong("a string or null")
        case (.choice(let names), .string(let s)):
            guard names.contains(s) else { throw wrong("one of \(names.joined(separator: ", "))") }
            return value
        case (.choice(let names), _): throw wrong("a string, one of \(names.joined(separator: ", "))")
        case (.choices, .string(let s)):
            return try coerce(.array(s.split(separator: ",").map { .string(String($0).trimmingCharacters(in: .whitespaces)) }),
                              key: key, source: source, shownAs: shownAs)
        case (.choices(let names), .array(let items)):
            for item in items {
                guard case let .string(s) = item, names.contains(s) else {
                    throw wrong("a list of strings from \(names.joined(separator: ", "))")
                }
            }
            return value
        case (.choices(let names), _): throw wrong("a list of strings from \(names.joined(separator: ", "))")
        }
    }

    /// `key=value` with the value read by the key's type: numbers, names, comma lists,
    /// `null` for an optional. Errors name the option the item came from and the key with
    /// `keyPrefix` before it, as the user wrote it (`parent.` for `--set parent.KEY=VALUE`).
    static func parse(set item: String, keyPrefix: String = "", option: String = "--set") throws -> (String, JSONValue) {
        guard let eq = item.firstIndex(of: "=") else { throw InputError("\(option) \(keyPrefix)\(item): expected key=value") }
        let key = String(item[..<eq]).trimmingCharacters(in: .whitespaces)
        let shown = keyPrefix + key
        let raw = String(item[item.index(after: eq)...])
        guard let type = types[key] else {
            throw InputError("\(option) \(keyPrefix)\(item): unknown key '\(shown)' (valid keys: \(RunConfig.keys.joined(separator: ", ")))")
        }
        let value: JSONValue
        switch type {
        case .int:
            guard let i = Int64(raw) else { throw InputError("\(option) \(shown)=\(raw): expected an integer") }
            value = .int(i)
        case .float:
            guard let d = Double(raw), d.isFinite else { throw InputError("\(option) \(shown)=\(raw): expected a finite number") }
            value = .double(d)
        case .optionalString: value = raw == "null" || raw.isEmpty ? .null : .string(raw)
        case .choices:
            value = .array(raw.isEmpty ? [] : raw.split(separator: ",").map { .string(String($0).trimmingCharacters(in: .whitespaces)) })
        case .string, .choice: value = .string(raw)
        }
        return (key, try coerce(value, key: key, source: option, shownAs: shown))
    }
}

extension JSONValue {
    /// A short rendering for error messages and tables.
    public var display: String {
        switch self {
        case .null: return "null"
        case let .bool(b): return String(b)
        case let .int(i): return String(i)
        case let .double(d): return String(d)
        case let .string(s): return s
        case let .array(a): return a.map(\.display).joined(separator: ",")
        case .object: return (try? canonicalString) ?? "{…}"
        }
    }
}

extension ConfigResolver {
    /// A `parent` value naming a config file rather than a run hash.
    public static func isConfigPath(_ reference: String) -> Bool {
        reference.hasSuffix(".json") || reference.hasSuffix(".yaml") || reference.hasSuffix(".yml")
    }

    /// Parses one `key=value` against the key's default type (for sweeps and grids); errors
    /// name `option` and the key with `keyPrefix` before it.
    public static func parseOverride(_ item: String, keyPrefix: String = "", option: String = "--set") throws -> (String, JSONValue) {
        try parse(set: item, keyPrefix: keyPrefix, option: option)
    }
}
