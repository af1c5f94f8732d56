import MoeErrors
import MoeModel

/// The fine-tuning regimes as sets of parameter groups (the head is always added). The
/// five ST-MoE regimes, `experts-only` (the router counted as frozen, the other reading of
/// "MoE"), `custom`, which trains the groups the config names, and the expert-specialized
/// regimes, which train only some experts of each sparse layer (`ExpertSelection`):
/// `esft-gate` and `esft-token` select them by the parent's routing of the task's text
/// (Wang et al., 2024), `random-experts` takes as many per layer as `esft-gate` does, at
/// random by the run's seed, as the control that tells relevance from count.
public enum Regime: String, CaseIterable, ConfigChoice, Equatable {
    case all
    case nonMoe = "non-moe"
    case moe
    case attention
    case ffn
    case expertsOnly = "experts-only"
    case custom
    case esftGate = "esft-gate"
    case esftToken = "esft-token"
    case randomExperts = "random-experts"

    /// The groups a named regime updates besides the head; nil for `custom`.
    public var namedGroups: Set<ParamGroup>? {
        switch self {
        case .all: return Set(ParamGroup.allCases)
        case .nonMoe: return [.embed, .attn, .norm, .ffn]
        case .moe: return [.router, .experts]
        case .attention: return [.attn]
        case .ffn: return [.ffn]
        case .expertsOnly, .esftGate, .esftToken, .randomExperts: return [.experts]
        case .custom: return nil
        }
    }

    /// Whether the regime trains a per-layer selection of experts rather than whole groups.
    public var selectsExperts: Bool { [.esftGate, .esftToken, .randomExperts].contains(self) }

    public struct Invalid: MoeError {
        public let description: String
        public var exitMeaning: ExitMeaning { .badInput }
    }

    /// The trainable groups, head included: the named set, or `custom` for `custom`.
    /// Refuses `custom` without groups and groups given to a named regime.
    public func groups(custom: [ParamGroup]) throws -> Set<ParamGroup> {
        guard let named = namedGroups else {
            guard !custom.isEmpty else {
                throw Invalid(description: "regime=custom needs groups=… (any of \(ParamGroup.choices.joined(separator: ", ")))")
            }
            return Set(custom).union([.head])
        }
        if !custom.isEmpty {
            throw Invalid(description: "groups=\(custom.map(\.rawValue).joined(separator: ",")): only the custom regime takes groups")
        }
        return named.union([.head])
    }

    /// Refuses a regime that would train nothing but the head on this model (e.g. `moe`
    /// with experts = 1, where there are no sparse layers).
    public func check(_ groups: Set<ParamGroup>, layout: ParameterLayout, experts: Int) throws {
        let present = Set(layout.tensors.map(\.group))
        let updated = groups.intersection(present).subtracting([.head])
        if updated.isEmpty {
            let missing = groups.subtracting([.head]).map(\.rawValue).sorted().joined(separator: ", ")
            throw Invalid(description: "regime=\(rawValue) would update nothing but the head: this model (experts=\(experts)) has no parameters in \(missing)")
        }
    }
}
