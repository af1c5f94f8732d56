import Foundation
import MoeJSON
import MoeStore
import MoeTrain

/// A grid of fine-tuning (or pretraining) cells over a base config: the cross product of
/// `grid` values. Architecture keys in the grid also apply to the pretraining parent when
/// the parent is given as a config, so one pretraining run serves every cell that shares
/// its architecture.
public struct Study {
    public var name: String
    public var base: [String: JSONValue]
    /// Parent pretraining config for fine-tuning studies (nil: cells name a parent hash or are pretraining).
    public var parent: [String: JSONValue]?
    public var grid: [(key: String, values: [JSONValue])]
    /// The report tables printed at the end.
    public var tables: [String]

    public init(name: String, base: [String: JSONValue], parent: [String: JSONValue]?, grid: [(key: String, values: [JSONValue])],
                tables: [String] = ["regimes"]) {
        self.name = name; self.base = base; self.parent = parent; self.grid = grid; self.tables = tables
    }

    /// One cell: its own override set, the resolved parent config (if any) and its config.
    public struct Cell {
        public var overrides: [(String, JSONValue)]
        public var parent: RunConfig?
        public var config: RunConfig
        public var explicit: Set<String>
        public var label: String { overrides.map { "\($0.0)=\($0.1.display)" }.joined(separator: " ") }
    }

    public func cells() throws -> [Cell] {
        var axes = Set<String>()
        for (key, values) in grid {
            guard ConfigResolver.defaults()[key] != nil else {
                throw InputError("--grid \(key): unknown key (valid keys: \(RunConfig.keys.joined(separator: ", ")))")
            }
            guard axes.insert(key).inserted else { throw InputError("--grid \(key): the axis is given twice (put all its values in one --grid)") }
            guard !values.isEmpty else { throw InputError("--grid \(key): no values") }
            var seen = Set<String>()
            for value in values where !seen.insert((try? value.canonicalString) ?? value.display).inserted {
                throw InputError("--grid \(key): value \(value.display) is given twice")
            }
        }
        var combos: [[(String, JSONValue)]] = [[]]
        for (key, values) in grid {
            combos = combos.flatMap { prefix in values.map { prefix + [(key, $0)] } }
        }
        // Most cells share their parent: each distinct parent object is resolved once.
        var parents: [(object: [String: JSONValue], config: RunConfig)] = []
        func resolvedParent(_ object: [String: JSONValue]) throws -> RunConfig {
            if let known = parents.first(where: { $0.object == object }) { return known.config }
            let config = try ConfigResolver.resolve(preset: object).config
            parents.append((object, config))
            return config
        }
        return try combos.map { overrides in
            var cellBase = base
            var parentObject = parent
            for (k, v) in overrides {
                // Pretraining-only keys (the corpus) belong to the parent; architecture keys
                // to both, since the cell inherits them.
                if RunConfig.onlyFor(key: k) == .pretrain && parentObject != nil {
                    parentObject?[k] = v
                    continue
                }
                cellBase[k] = v
                if RunConfig.architectureKeys.contains(k) { parentObject?[k] = v }
            }
            // The dense baseline (one expert) routes to its only expert: top-k is 1.
            if cellBase["experts"] == .int(1) && !overrides.contains(where: { $0.0 == "top_k" }) {
                cellBase["top_k"] = 1
                parentObject?["top_k"] = 1
            }
            let (config, explicit) = try ConfigResolver.resolve(preset: cellBase)
            let parentConfig = try parentObject.map(resolvedParent)
            return Cell(overrides: overrides, parent: parentConfig, config: config, explicit: explicit)
        }
    }
}

/// Named studies: `quick` (one small MoE, five regimes, minutes) and `paper` (the
/// scaled-down ST-MoE protocol, about an hour on 2 cores, resumable).
public enum Presets {
    public static let names = ["quick", "paper"]

    static let regimes: [JSONValue] = ["all", "non-moe", "moe", "attention", "ffn"]

    /// The shared small architecture and pretraining recipe.
    static func pretraining(steps: Int) -> [String: JSONValue] {
        ["kind": "pretrain", "corpus": "wordnet", "context": 64, "d_model": 128, "layers": 4, "heads": 4, "d_ff": 256,
         "experts": 8, "top_k": 2, "moe_every": 2, "dropout": 0.0, "expert_dropout": 0.0,
         "steps": .int(Int64(steps)), "batch_size": 32, "lr": 2e-3, "warmup_steps": 30, "eval_interval": 100,
         "eval_batches": 4, "checkpoint_interval": 100, "seed": 0]
    }

    static func finetuning(steps: Int) -> [String: JSONValue] {
        ["kind": "finetune", "task": "wn-supersense", "train_size": 4096, "eval_examples": 512,
         "dropout": 0.1, "expert_dropout": 0.1, "steps": .int(Int64(steps)), "batch_size": 32, "lr": 3e-3,
         "warmup_steps": 10, "eval_interval": 25, "checkpoint_interval": 1000, "seed": 0, "weight_decay": 0.01]
    }

    public static func study(named name: String) throws -> Study {
        switch name {
        case "quick":
            return Study(name: "quick", base: finetuning(steps: 150), parent: pretraining(steps: 300),
                         grid: [("regime", regimes)], tables: ["regimes"])
        case "paper":
            var ft = finetuning(steps: 150)
            ft["eval_interval"] = 15
            ft["eval_examples"] = 256
            return Study(name: "paper", base: ft, parent: pretraining(steps: 300),
                         // Seeds outermost: a study run in pieces covers every cell once before any cell twice.
                         grid: [("seed", [0, 1, 2]), ("train_size", [256, 4096]), ("experts", [1, 4, 8, 16]), ("regime", regimes)],
                         tables: ["regimes", "experts", "overfit", "claims"])
        default:
            throw InputError("--preset \(name): unknown preset (valid: \(names.joined(separator: ", ")))")
        }
    }
}
