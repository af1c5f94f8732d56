import MoeJSON
import MoeModel
import MoeTrain

extension ConfigResolver {
    /// Resolves many presets that are one base object with a few keys changed (a sweep's
    /// cells): the base is merged once, and each result says by which canonical members
    /// its config differs from the base's, so that a `ConfigTemplate` writes the config's
    /// canonical JSON without encoding it. Each config is the one `resolve(preset:)` gives
    /// for the base with the changes made, and so is each error: an error is that call's.
    public struct Grid {
        let base: [String: JSONValue]
        let merged: [String: JSONValue]
        let explicit: Set<String>
        /// The base's config as resolved alone (neither validated nor checked for keys of
        /// the other kind): what the members a cell changes are changes of.
        public let config: RunConfig
        /// Each float value met so far as the config writes it, by key and bit pattern.
        private var floats: [String: [UInt64: JSONValue]] = [:]

        /// Throws where a value of the base has the wrong type for its key.
        public init(base: [String: JSONValue]) throws {
            var merged = ConfigResolver.defaults(), explicit = Set<String>()
            try ConfigResolver.merge(base, into: &merged, source: "preset", explicit: &explicit)
            self.base = base; self.merged = merged; self.explicit = explicit
            config = try ConfigResolver.decode(merged)
        }

        /// Reads the float values a key will take once, before cells are resolved (in
        /// parallel, with nothing written).
        public mutating func prepare(key: String, values: [JSONValue]) {
            guard ConfigResolver.types[key] == .float else { return }
            for value in values {
                guard let coerced = try? ConfigResolver.coerce(value, key: key, source: "preset"),
                      let d = coerced.doubleValue, let written = try? roundTrip(key, coerced) else { continue }
                floats[key, default: [:]][d.bitPattern] = written
            }
        }

        /// `resolve(preset:)` of the base with `changes` made, and the canonical members by
        /// which the config differs from `config` (nil where that call alone resolved it).
        public func resolve(_ changes: [(String, JSONValue)]) throws
            -> (config: RunConfig, explicit: Set<String>, members: [(key: String, value: JSONValue?)]?) {
            do {
                var merged = self.merged, explicit = self.explicit
                var coerced: [(key: String, value: JSONValue)] = []
                for (key, value) in changes {
                    let value = try ConfigResolver.coerce(value, key: key, source: "preset")
                    merged[key] = value
                    explicit.insert(key)
                    coerced.removeAll { $0.key == key }
                    coerced.append((key, value))
                }
                let config = try ConfigResolver.finish(merged, explicit: explicit) { merged in
                    // A config is its settings and its model, each decoded from the object
                    // alone (`RunConfig.init(from:)`): a part no change touches is the base's.
                    var config = self.config
                    let object = JSONValue.object(merged)
                    if coerced.contains(where: { RunSettings.CodingKeys(stringValue: $0.key) != nil }) {
                        config.settings = try object.decode(RunSettings.self)
                    }
                    if coerced.contains(where: { ModelConfig.CodingKeys(stringValue: $0.key) != nil }) {
                        config.model = try object.decode(ModelConfig.self)
                    }
                    return config
                }
                // Which late keys a canonical config leaves out depends on its kind: a cell of
                // another kind than the base's differs from it in members it does not change.
                guard config.kind == self.config.kind else { return (config, explicit, nil) }
                return (config, explicit, try coerced.map { ($0.key, try member($0.key, $0.value, kind: config.kind)) })
            } catch {
                // Resolving the whole preset checks its keys in its own order: its error is the one.
                var preset = base
                for (key, value) in changes { preset[key] = value }
                let (config, explicit) = try ConfigResolver.resolve(preset: preset)
                return (config, explicit, nil)
            }
        }

        /// The member a resolved config of `kind` has in its canonical JSON for `key` when
        /// its merged object has `value` (of the key's type), nil for none (see
        /// `ConfigResolver.leavesOut`; a null optional is left out too): a float is read into
        /// the key's Swift type (a Float rounds) and written back; any other value is written
        /// as it is read.
        func member(_ key: String, _ value: JSONValue, kind: RunSettings.Kind) throws -> JSONValue? {
            let written: JSONValue?
            switch ConfigResolver.types[key] {
            case .float?:
                if let d = value.doubleValue, let known = floats[key]?[d.bitPattern] {
                    written = known
                } else {
                    written = try roundTrip(key, value)
                }
            case .optionalString?:
                written = value == .null ? nil : value
            case .int?, .string?, .choice?, .choices?, nil:
                written = value
            }
            guard let written,
                  !ConfigResolver.leavesOut(key, written, kind: kind.rawValue, lateDefaults: ConfigResolver.lateDefaults) else {
                return nil
            }
            return written
        }

        /// `value` of `key` decoded into a config and encoded again.
        private func roundTrip(_ key: String, _ value: JSONValue) throws -> JSONValue? {
            var probe = merged
            probe[key] = value
            return try JSONValue(encodable: try ConfigResolver.decode(probe))[key]
        }
    }
}

/// A resolved config's canonical JSON object, from which configs that differ from it in a
/// few members (`ConfigResolver.Grid.resolve`) are read and written without encoding them.
struct ConfigTemplate {
    /// The canonical object (late keys at their introduction defaults left out).
    let object: [String: JSONValue]
    let text: CanonicalTemplate

    init(_ object: [String: JSONValue]) throws {
        self.object = object
        text = try CanonicalTemplate(object)
    }

    init(_ config: RunConfig) throws {
        try self.init(try ConfigResolver.value(of: config).objectValue ?? [:])
    }

    /// The canonical JSON of the config with `members` changed (nil: left out).
    func configJSON(_ members: [(key: String, value: JSONValue?)]) throws -> String {
        try text.text(members)
    }

    /// The config with `members` changed.
    func config(_ members: [(key: String, value: JSONValue?)]) throws -> RunConfig {
        var object = self.object
        for (key, value) in members { object[key] = value }
        return try ConfigResolver.decode(object)
    }
}
