import Foundation
import MoeJSON
import MoeStore
import MoeTrain
import Yams

/// Bad user input: the message names the key, value or file. The CLI maps it to exit 2.
public struct InputError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Turns presets, config files (JSON or YAML) and `--set key=value` overrides into one
/// resolved `RunConfig` with every default written out. Each key is checked against the
/// type of its default, so a wrong type or an unknown key is reported by name before
/// anything runs.
public enum ConfigResolver {
    public static func defaults() -> [String: JSONValue] {
        guard case var .object(o)? = try? JSONValue(encodable: RunConfig()) else { return [:] }
        // Optional keys are left out by the encoder when nil; they are still valid keys.
        o["parent"] = o["parent"] ?? .null
        return o
    }

    /// Layers, later ones winning: defaults ← preset ← file ← overrides.
    public static func resolve(preset: [String: JSONValue] = [:], file: String? = nil, sets: [String] = []) throws
        -> (config: RunConfig, explicit: Set<String>) {
        var merged = defaults()
        var explicit = Set<String>()
        try merge(preset, into: &merged, source: "preset", explicit: &explicit)
        if let file { try merge(try load(file: file), into: &merged, source: file, explicit: &explicit) }
        for item in sets {
            let (key, value) = try parse(set: item, defaults: merged)
            merged[key] = value
            explicit.insert(key)
        }
        return (try decode(merged), explicit)
    }

    public static func decode(_ object: [String: JSONValue]) throws -> RunConfig {
        let text = try JSONValue.object(object).canonicalString
        do {
            return try JSONDecoder().decode(RunConfig.self, from: Data(text.utf8))
        } catch {
            throw InputError("config does not decode: \(error)")
        }
    }

    /// The canonical JSON value of a resolved config (what the hash covers).
    public static func value(of config: RunConfig) throws -> JSONValue { try JSONValue(encodable: config) }

    // MARK: Files

    public static func load(file: String) throws -> [String: JSONValue] {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw InputError("\(file): cannot read config file")
        }
        guard data.count <= 1_048_576 else { throw InputError("\(file): config file larger than 1 MiB") }
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
            let any: Any?
            do { any = try Yams.load(yaml: text) } catch { throw InputError("\(file): invalid YAML: \(error)") }
            value = try fromYAML(any, file: file, key: "")
        }
        guard case let .object(o) = value else { throw InputError("\(file): a config must be a mapping of keys to values") }
        return o
    }

    static func fromYAML(_ any: Any?, file: String, key: String) throws -> JSONValue {
        switch any {
        case nil, is NSNull: return .null
        case let b as Bool: return .bool(b)
        case let i as Int: return .int(Int64(i))
        case let d as Double: return .double(d)
        case let s as String: return .string(s)
        case let a as [Any]: return .array(try a.map { try fromYAML($0, file: file, key: key) })
        case let m as [String: Any]:
            var o: [String: JSONValue] = [:]
            for (k, v) in m { o[k] = try fromYAML(v, file: file, key: k) }
            return .object(o)
        default:
            throw InputError("\(file): \(key.isEmpty ? "value" : key): unsupported YAML value \(String(describing: any!))")
        }
    }

    // MARK: Merging and type checks

    static func merge(_ source: [String: JSONValue], into merged: inout [String: JSONValue], source name: String,
                      explicit: inout Set<String>) throws {
        for key in source.keys.sorted() {
            guard let current = merged[key] else {
                throw InputError("\(name): unknown key '\(key)' (valid keys: \(RunConfig.keys.joined(separator: ", ")))")
            }
            merged[key] = try coerce(source[key]!, like: current, key: key, source: name)
            explicit.insert(key)
        }
    }

    /// Checks `value` against the type of the key's default and converts ints to floats
    /// where the key is a float.
    static func coerce(_ value: JSONValue, like reference: JSONValue, key: String, source: String) throws -> JSONValue {
        func wrong(_ expected: String) -> InputError {
            InputError("\(source): \(key)=\(value.display): expected \(expected)")
        }
        let kind = typeOf(key: key, reference: reference)
        switch (kind, value) {
        case ("int", .int): return value
        case ("int", .double(let d)) where d == d.rounded() && abs(d) < 1e15: return .int(Int64(d))
        case ("int", _): throw wrong("an integer")
        case ("float", .int(let i)): return .double(Double(i))
        case ("float", .double(let d)):
            guard d.isFinite else { throw InputError("\(source): \(key)=\(value.display): must be a finite number") }
            guard abs(d) < 1e30 else { throw InputError("\(source): \(key)=\(value.display): out of range") }
            return value
        case ("float", _): throw wrong("a number")
        case ("string", .string): return value
        case ("string", _): throw wrong("a string")
        case ("optional-string", .string), ("optional-string", .null): return value
        case ("optional-string", _): throw wrong("a string or null")
        case ("strings", .array(let items)):
            guard items.allSatisfy({ if case .string = $0 { return true } else { return false } }) else { throw wrong("a list of strings") }
            return value
        case ("strings", .string(let s)):
            return .array(s.split(separator: ",").map { .string(String($0).trimmingCharacters(in: .whitespaces)) })
        case ("strings", _): throw wrong("a list of strings")
        default: throw wrong(kind)
        }
    }

    static let floatKeys: Set<String> = ["capacity_factor_train", "capacity_factor_eval", "aux_loss_coef", "z_loss_coef",
                                         "dropout", "expert_dropout", "lr", "min_lr_ratio", "beta1", "beta2",
                                         "weight_decay", "grad_clip"]

    static func typeOf(key: String, reference: JSONValue) -> String {
        if key == "parent" { return "optional-string" }
        if key == "groups" { return "strings" }
        if floatKeys.contains(key) { return "float" }
        switch reference {
        case .int: return "int"
        case .double: return "float"
        case .string: return "string"
        case .array: return "strings"
        default: return "optional-string"
        }
    }

    /// `key=value` with the value read by the key's type: numbers, strings, comma lists,
    /// `null` for an optional.
    static func parse(set item: String, defaults: [String: JSONValue]) throws -> (String, JSONValue) {
        guard let eq = item.firstIndex(of: "=") else { throw InputError("--set \(item): expected key=value") }
        let key = String(item[..<eq]).trimmingCharacters(in: .whitespaces)
        let raw = String(item[item.index(after: eq)...])
        guard let reference = defaults[key] else {
            throw InputError("--set \(item): unknown key '\(key)' (valid keys: \(RunConfig.keys.joined(separator: ", ")))")
        }
        let kind = typeOf(key: key, reference: reference)
        let value: JSONValue
        switch kind {
        case "int":
            guard let i = Int64(raw) else { throw InputError("--set \(key)=\(raw): expected an integer") }
            value = .int(i)
        case "float":
            guard let d = Double(raw), d.isFinite else { throw InputError("--set \(key)=\(raw): expected a finite number") }
            value = .double(d)
        case "optional-string": value = raw == "null" || raw.isEmpty ? .null : .string(raw)
        case "strings": value = .array(raw.isEmpty ? [] : raw.split(separator: ",").map { .string(String($0)) })
        default: value = .string(raw)
        }
        return (key, try coerce(value, like: reference, key: key, source: "--set"))
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

    /// Parses one `key=value` against the key's default type (for sweeps and grids).
    public static func parseOverride(_ item: String) throws -> (String, JSONValue) {
        try parse(set: item, defaults: defaults())
    }
}
