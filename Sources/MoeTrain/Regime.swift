import MoeModel

/// The ST-MoE fine-tuning regimes as sets of parameter groups (the head is added always).
/// The router counts as MoE; `experts-only` is the other reading (router frozen).
public enum Regime {
    public static let table: [(name: String, groups: Set<ParamGroup>)] = [
        ("all", Set(ParamGroup.allCases)),
        ("non-moe", [.embed, .attn, .norm, .ffn]),
        ("moe", [.router, .experts]),
        ("attention", [.attn]),
        ("ffn", [.ffn]),
        ("experts-only", [.experts]),
    ]

    public static var names: [String] { table.map(\.name) + ["custom"] }

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    /// The trainable groups of a regime, head included.
    public static func groups(regime: String, custom: [String]) throws -> Set<ParamGroup> {
        if regime == "custom" {
            guard !custom.isEmpty else { throw Invalid(description: "regime=custom needs groups=… (any of \(ParamGroup.allCases.map(\.rawValue).joined(separator: ", ")))") }
            var out: Set<ParamGroup> = [.head]
            for name in custom {
                guard let g = ParamGroup(rawValue: name) else {
                    throw Invalid(description: "groups: unknown group '\(name)' (valid: \(ParamGroup.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                out.insert(g)
            }
            return out
        }
        guard let entry = table.first(where: { $0.name == regime }) else {
            throw Invalid(description: "regime=\(regime): unknown regime (valid: \(names.joined(separator: ", ")))")
        }
        if !custom.isEmpty { throw Invalid(description: "groups=\(custom.joined(separator: ",")): only the custom regime takes groups") }
        return entry.groups.union([.head])
    }

    /// Refuses a regime that would train nothing but the head on this model (e.g. `moe`
    /// with experts = 1, where there are no sparse layers).
    public static func check(_ groups: Set<ParamGroup>, regime: String, layout: ParameterLayout, experts: Int) throws {
        let present = Set(layout.tensors.map(\.group))
        let updated = groups.intersection(present).subtracting([.head])
        if updated.isEmpty {
            let missing = groups.subtracting([.head]).map(\.rawValue).sorted().joined(separator: ", ")
            throw Invalid(description: "regime=\(regime) would update nothing but the head: this model (experts=\(experts)) has no parameters in \(missing)")
        }
    }
}
