import MoeStore
import MoeTrain

extension WhereFilter {
    /// A `moerec runs --where` filter that knows the run config: an unknown key, or a value
    /// of the wrong type for a config key, is refused by name instead of matching nothing.
    public init(runs expression: String) throws {
        try self.init(expression, configKeys: WhereFilter.runConfigKeys)
    }

    /// Every run config key with its type, from the declaration (`RunConfig.schema`), and
    /// the keys of baseline runs' configs (`Baselines.config(_:of:)`).
    static let runConfigKeys: [String: KeyType] = Dictionary(uniqueKeysWithValues: RunConfig.schema.map { key, type in
        switch type {
        case .int: return (key, .int)
        case .float: return (key, .float)
        case .string: return (key, .string)
        case .optionalString: return (key, .optionalString)
        case let .choice(names): return (key, .choice(names))
        case let .choices(names): return (key, .choices(names))
        }
    }).merging(["baseline": .choice(BaselineMethod.allCases.map(\.rawValue)), "epochs": .int, "l2": .float, "features": .int],
               uniquingKeysWith: { declared, _ in declared })
}
