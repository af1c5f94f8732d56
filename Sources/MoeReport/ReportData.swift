import Foundation
import MoeJSON
import MoeMetricNames
import MoeStore

/// One run's evaluation curves: the steps at which it evaluated, ascending, with NaN where
/// a value is missing at that step.
public struct Curve: Equatable, Sendable {
    public var steps: [Int] = []
    public var trainLoss: [Double] = []
    public var valLoss: [Double] = []
    public var trainAcc: [Double] = []
    public var valAcc: [Double] = []
    /// Test accuracy: runs evaluate test at their last step, and newer runs also at every new
    /// best validation accuracy; NaN elsewhere.
    public var testAcc: [Double] = []

    public init() {}

    public init(steps: [Int], trainLoss: [Double], valLoss: [Double], trainAcc: [Double], valAcc: [Double],
                testAcc: [Double]? = nil) {
        let testAcc = testAcc ?? Array(repeating: .nan, count: steps.count)
        precondition([trainLoss.count, valLoss.count, trainAcc.count, valAcc.count, testAcc.count].allSatisfy { $0 == steps.count })
        self.steps = steps
        self.trainLoss = trainLoss
        self.valLoss = valLoss
        self.trainAcc = trainAcc
        self.valAcc = valAcc
        self.testAcc = testAcc
    }

    public var isEmpty: Bool { steps.isEmpty }

    /// The step with the highest validation accuracy, earliest on ties (checkpoint selection
    /// on validation, as fine-tuning studies report).
    public var bestIndex: Int? {
        var best: Int?
        for i in steps.indices where valAcc[i].isFinite {
            if best == nil || valAcc[i] > valAcc[best!] { best = i }
        }
        return best
    }

    /// The last step with a validation accuracy.
    public var lastValidationIndex: Int? { steps.indices.last { valAcc[$0].isFinite } }

    /// The last step at which both train and validation accuracy were measured.
    public var endIndex: Int? {
        steps.indices.last { trainAcc[$0].isFinite && valAcc[$0].isFinite }
    }

    /// The values at index `i`.
    public func point(_ i: Int) -> StepEvaluation {
        StepEvaluation(step: steps[i], trainLoss: trainLoss[i], valLoss: valLoss[i], trainAcc: trainAcc[i], valAcc: valAcc[i],
                       testAcc: testAcc[i])
    }
}

/// Loss and accuracy of the evaluation splits at one step (NaN where missing): a point of a
/// run's curves, or what a run with `test_eval: selected` measured after training with the
/// parameters of its selected step on `eval_examples` of each split.
public struct StepEvaluation: Equatable, Sendable {
    public var step: Int
    public var trainLoss = Double.nan, valLoss = Double.nan, trainAcc = Double.nan, valAcc = Double.nan, testAcc = Double.nan

    public init(step: Int, trainLoss: Double = .nan, valLoss: Double = .nan, trainAcc: Double = .nan, valAcc: Double = .nan,
                testAcc: Double = .nan) {
        self.step = step
        self.trainLoss = trainLoss; self.valLoss = valLoss
        self.trainAcc = trainAcc; self.valAcc = valAcc; self.testAcc = testAcc
    }

    /// Sets the loss (else the accuracy) of `split`; test loss is not kept.
    mutating func set(isLoss: Bool, split: String, _ value: Double) {
        switch (isLoss, split) {
        case (true, Split.train): trainLoss = value
        case (true, Split.val): valLoss = value
        case (false, Split.train): trainAcc = value
        case (false, Split.val): valAcc = value
        case (false, Split.test): testAcc = value
        default: break
        }
    }
}

/// The facts a report needs about one fine-tuning run. Values are set only for completed
/// runs; the others are kept for flags.
public struct RunFacts: Sendable {
    public var hash: String
    public var status: RunStatus
    public var seed: Int?
    /// The pretrained run it fine-tunes (`runs.parent_hash`).
    public var parent: String?
    /// The config's `steps`: how long the run was to train.
    public var plannedSteps: Int?
    public var failureReason: String?
    public var curve = Curve()
    /// Mean of the run's `timing/step_time` points (seconds per optimizer step); completed runs only.
    public var stepTime: Double?
    /// `info/trainable_fraction`: the share of parameters the regime updates.
    public var trainableFraction: Double?
    /// `info/parameters`: total parameter count.
    public var parameters: Double?
    /// `info/majority_acc`: majority-class validation accuracy.
    public var majorityAccuracy: Double?
    /// `info/forgetting`: the rise of the body's language-modelling loss on the parent's
    /// validation text over fine-tuning (nats per byte); runs with `forgetting_eval: parent`.
    public var forgetting: Double?
    /// For a run trained elsewhere: the format it was imported from (run-log, trainer,
    /// mlflow-file, mlflow-sqlite); nil for a run moerec trained.
    public var importedFrom: String?
    /// "moerec", or the format the run was imported from.
    public var origin: String { importedFrom ?? "moerec" }

    public init(hash: String, status: RunStatus, seed: Int?, parent: String? = nil, plannedSteps: Int? = nil,
                curve: Curve = Curve()) {
        self.hash = hash
        self.status = status
        self.seed = seed
        self.parent = parent
        self.plannedSteps = plannedSteps
        self.curve = curve
    }

    /// Contributes values: completed, with at least one validation accuracy.
    public var hasValues: Bool { status == .completed && curve.bestIndex != nil }

    public var bestStep: Int? { curve.bestIndex.map { curve.steps[$0] } }
    /// `test_eval: selected`: the evaluation after training, as stored.
    public var selected: StepEvaluation?
    /// The values at the best step: `selected` when it measured the step the curve
    /// selects (it does, for runs moerec trained), else the curve's point there.
    public var atBest: StepEvaluation? {
        guard let i = curve.bestIndex else { return nil }
        if let selected, selected.step == curve.steps[i] { return selected }
        return curve.point(i)
    }
    public var valAccAtBest: Double? { atBest?.valAcc }
    /// Test accuracy at the step validation selected, when the run evaluated test there.
    public var testAccAtBest: Double? { atBest.flatMap { $0.testAcc.isFinite ? $0.testAcc : nil } }
    /// The reported accuracy: test at the selected step, else (older runs, which evaluate
    /// test only at their last step) validation there, with the `no-test-at-best` caveat.
    public var reportedAcc: Double? { testAccAtBest ?? valAccAtBest }
    public var isUnconverged: Bool { ConvergenceRule.isUnconverged(curve, plannedSteps: plannedSteps) }
    /// `unconverged`, `no-test-at-best`: what a reader should know about its numbers.
    public var caveats: [Caveat] {
        guard hasValues else { return [] }
        var caveats: [Caveat] = []
        if isUnconverged { caveats.append(.unconverged) }
        if testAccAtBest == nil { caveats.append(.noTestAtBest) }
        return caveats
    }
    public var valLossAtBest: Double? { atBest?.valLoss }
    /// Train accuracy − validation accuracy at the best step.
    public var gapAtBest: Double? { atBest.map { $0.trainAcc - $0.valAcc } }
    /// Train accuracy − validation accuracy at the last evaluation.
    public var gapAtEnd: Double? { curve.endIndex.map { curve.trainAcc[$0] - curve.valAcc[$0] } }
    /// Validation loss − train loss at the last evaluation.
    public var lossGapAtEnd: Double? { curve.endIndex.map { curve.valLoss[$0] - curve.trainLoss[$0] } }
    public var trainAccAtEnd: Double? { curve.endIndex.map { curve.trainAcc[$0] } }
    public var overfitOnset: Int? { OverfitRule.onset(curve) }
}

/// Runs that share their identity except for the seed: resolved config without `seed`,
/// dataset fingerprint and numerics version. A group is the unit of every table row.
public struct RunGroup: Sendable {
    /// Canonical JSON of `identity`.
    public var key: String
    /// The config without `seed`, plus `_dataset` and `_numerics`.
    public var identity: [String: JSONValue]
    public var task: String
    public var trainSize: Int?
    public var experts: Int?
    public var regime: String
    /// `key=value` for the config keys that tell apart groups with the same task, train
    /// size, expert count and regime (empty when nothing needs telling apart).
    public var variant: String = ""
    /// Every run of the group, any status, ordered by seed.
    public var runs: [RunFacts]
    /// The seeds the group should have: its sweeps' seed grids, else every seed seen in
    /// the report.
    public var expectedSeeds: [Int] = []
    /// Why the group is incomplete (missing seeds, runs not completed); empty when complete.
    public var flags: [String] = []

    /// The runs that contribute values.
    public var contributing: [RunFacts] { runs.filter(\.hasValues) }
    /// The caveats of its contributing runs (each once, in `Caveat` order).
    public var caveats: [Caveat] {
        let present = Set(contributing.flatMap(\.caveats))
        return Caveat.allCases.filter(present.contains)
    }
    /// The variant without `parent` and `top_k`, which differ with the expert count.
    public var variantWithoutArchitecture: String { RunGroup.withoutArchitecture(variant) }

    static func withoutArchitecture(_ variant: String) -> String {
        variant.split(separator: " ").filter { !$0.hasPrefix("parent=") && !$0.hasPrefix("top_k=") }.joined(separator: " ")
    }
    public var isComplete: Bool { flags.isEmpty }

    /// Per-seed values of a run property, for the contributing runs.
    public func values(_ value: (RunFacts) -> Double?) -> [Double] {
        contributing.compactMap(value).filter(\.isFinite)
    }
}

/// Everything the tables are built from: the fine-tuning runs selected by a filter,
/// grouped. Loading reads per run only its evaluation series (a few dozen points per
/// series) and lets SQLite aggregate the per-step series, so memory does not grow with
/// the number of stored points.
public struct ReportData: Sendable {
    public var groups: [RunGroup]
    /// Reference classifier runs (majority class, linear n-gram) for the reference rows.
    public var baselines: [BaselineRun]
    public var filterExpression: String?
    /// What a blank variant means: the usual setting of the config keys that tell groups
    /// apart (`assignVariants`; `key=value`, space-separated; empty when there is none).
    public var usualVariant = ""

    public init(groups: [RunGroup], baselines: [BaselineRun] = [], filterExpression: String?) {
        self.groups = groups
        self.baselines = baselines
        self.filterExpression = filterExpression
    }

    /// Reads the fine-tuning runs matching `filter` (every status) from the store.
    public static func load(store: Store, filter: WhereFilter?) throws -> ReportData {
        let selected = RunSelection(kind: .finetune, filter: filter)
        let completed = RunSelection(kind: .finetune, status: .completed, filter: filter)

        // Per-run figures that SQLite sums up: each is one range of the metrics key per run.
        let stepTimes = try store.seriesValues(.mean, name: MetricName.stepTime, split: Split.timing, of: completed)
        func info(_ name: String) throws -> [String: Double] {
            try store.seriesValues(.first, name: name, split: Split.info, of: selected)
        }
        let trainableFractions = try info(MetricName.trainableFraction)
        let parameters = try info(MetricName.parameters)
        let majorityAccuracies = try info(MetricName.majorityAccuracy)
        let forgettings = try store.seriesValues(.first, name: MetricName.forgetting, split: Split.info, of: completed)

        struct Loaded {
            var facts: RunFacts
            var identity: [String: JSONValue]
        }
        let recipes = try pretrainingRecipes(store)
        var loaded: [Loaded] = []
        var indexByHash: [String: Int] = [:]
        for run in try store.runs(selected) {
            guard case var .object(identity) = try JSONValue(parsing: run.configJSON) else { continue }
            let seed = identity.removeValue(forKey: "seed").flatMap(\.intValue).map(Int.init)
            let plannedSteps = identity["steps"]?.intValue.map(Int.init)
            identity["_dataset"] = .string(run.datasetFingerprint)
            identity["_numerics"] = .int(Int64(run.numericsVersion))
            for (key, value) in run.parentHash.flatMap({ recipes[$0] }) ?? [:] { identity[key] = value }
            var facts = RunFacts(hash: run.hash, status: run.status, seed: seed, parent: run.parentHash,
                                 plannedSteps: plannedSteps)
            facts.failureReason = run.failureReason
            facts.importedFrom = run.importSource.map(ImportedRun.format(ofSource:))
            facts.stepTime = stepTimes[run.hash]
            facts.trainableFraction = trainableFractions[run.hash]
            facts.parameters = parameters[run.hash]
            facts.majorityAccuracy = majorityAccuracies[run.hash]
            facts.forgetting = forgettings[run.hash]
            indexByHash[run.hash] = loaded.count
            loaded.append(Loaded(facts: facts, identity: identity))
        }

        // Evaluation series of the completed runs, and the evaluation after training of
        // those with `test_eval: selected`.
        var series: [String: [Int: StepEvaluation]] = [:]
        var selectedByHash: [String: StepEvaluation] = [:]
        for p in try store.metricPoints(names: [MetricName.accuracy, MetricName.loss, MetricName.selectedAccuracy,
                                                MetricName.selectedLoss], splits: Split.evaluation, of: completed) {
            if p.name == MetricName.selectedAccuracy || p.name == MetricName.selectedLoss {
                var e = selectedByHash[p.runHash] ?? StepEvaluation(step: p.step)
                guard e.step == p.step else { continue }
                e.set(isLoss: p.name == MetricName.selectedLoss, split: p.split, p.value)
                selectedByHash[p.runHash] = e
            } else {
                series[p.runHash, default: [:]][p.step, default: StepEvaluation(step: p.step)]
                    .set(isLoss: p.name == MetricName.loss, split: p.split, p.value)
            }
        }
        for (hash, e) in selectedByHash { if let i = indexByHash[hash] { loaded[i].facts.selected = e } }
        for (hash, points) in series {
            guard let i = indexByHash[hash] else { continue }
            let steps = points.keys.sorted()
            let p = steps.map { points[$0]! }
            loaded[i].facts.curve = Curve(steps: steps, trainLoss: p.map(\.trainLoss), valLoss: p.map(\.valLoss),
                                          trainAcc: p.map(\.trainAcc), valAcc: p.map(\.valAcc), testAcc: p.map(\.testAcc))
        }

        // Seed grids of the sweeps these runs belong to: of the sweeps the filter names,
        // when it names any (a study registered again, e.g. with a part cut short, is the
        // sweeps it was registered as last, not also its earlier registrations).
        // A sweep without a seed grid ran each cell with the seed of its config.
        var sweepSeeds: [String: Set<Int>] = [:]
        var seedGrids: [Int64: [Int]?] = [:]
        let named = Set(filter?.namedSweeps ?? [])
        for sweep in try store.sweeps() where named.isEmpty || named.contains(sweep.id) {
            seedGrids[sweep.id] = .some(ReportData.seedGrid(specJSON: sweep.specJSON))
        }
        var seedByHash: [String: Int] = [:]
        for item in loaded { if let seed = item.facts.seed { seedByHash[item.facts.hash] = seed } }
        for member in try store.sweepMemberships(of: selected) {
            // Only the sweeps read above count.
            guard let grid = seedGrids[member.sweepId] else { continue }
            let hash = member.runHash
            if let seeds = grid {
                sweepSeeds[hash, default: []].formUnion(seeds)
            } else if let own = seedByHash[hash] {
                sweepSeeds[hash, default: []].insert(own)
            }
        }

        // Group by identity.
        var groups: [RunGroup] = []
        var groupIndex: [String: Int] = [:]
        for item in loaded {
            let key = try JSONValue.object(item.identity).canonicalString
            if let g = groupIndex[key] {
                groups[g].runs.append(item.facts)
            } else {
                groupIndex[key] = groups.count
                let id = item.identity
                groups.append(RunGroup(
                    key: key, identity: id, task: id["task"]?.stringValue ?? "?",
                    trainSize: id["train_size"]?.intValue.map(Int.init), experts: id["experts"]?.intValue.map(Int.init),
                    regime: id["regime"]?.stringValue ?? "?", runs: [item.facts]))
            }
        }

        // Expected seeds and flags.
        let allSeeds = Set(loaded.compactMap(\.facts.seed))
        for g in groups.indices {
            groups[g].runs.sort { ($0.seed ?? -1, $0.hash) < ($1.seed ?? -1, $1.hash) }
            var expected = Set<Int>()
            for run in groups[g].runs { expected.formUnion(sweepSeeds[run.hash] ?? []) }
            if expected.isEmpty { expected = allSeeds }
            expected.formUnion(groups[g].runs.compactMap(\.seed))
            groups[g].expectedSeeds = expected.sorted()
            groups[g].flags = flags(for: groups[g])
        }
        let usualVariant = assignVariants(&groups)
        // Reference classifier runs: every completed baseline run on the data of a group
        // (task, train size, evaluation and test examples and context all equal).
        let completedBaselines = RunSelection(kind: .baseline, status: .completed)
        let baselineRecords = try store.runs(completedBaselines)
        // The data a run saw (`test_examples` is in a config only when set, in a run's and
        // its baselines' alike).
        func dataKey(_ value: (String) -> JSONValue?) -> String {
            DataKeys.fineTuning.map { (try? value($0)?.canonicalString) ?? "" }.joined(separator: "\u{0}")
        }
        let dataKeys = Set(groups.map { g in dataKey { g.identity[$0] } })
        let matching = try baselineRecords.filter { run in
            let config = try JSONValue(parsing: run.configJSON)
            return dataKeys.contains(dataKey { config[$0] })
        }
        let baselines = matching.isEmpty ? [] : baselineRuns(
            configs: matching.map { ($0.hash, $0.configJSON) },
            points: try store.metricPoints(names: [MetricName.accuracy], splits: [Split.val, Split.test], of: completedBaselines))
        var data = ReportData(groups: groups, baselines: baselines, filterExpression: filter?.expression)
        data.usualVariant = usualVariant
        return data
    }

    /// The keys a group's identity takes from its parent: `parent.KEY` for every key of the
    /// parent's config but its seed and architecture (`experts`, `top_k`), by pretraining
    /// run hash. Groups fine-tuned from parents pretrained alike apart from seed and expert
    /// count share them, so comparisons across parents (sparse vs dense, expert counts) pair
    /// only parents of the same recipe, and groups from parents pretrained differently
    /// (e.g. for more steps) are told apart by `parent.steps` rather than by a hash (the
    /// `parent.KEY` spelling of study grids and `--set`).
    static func pretrainingRecipes(_ store: Store) throws -> [String: [String: JSONValue]] {
        var recipes: [String: [String: JSONValue]] = [:]
        for run in try store.runs(RunSelection(kind: .pretrain)) {
            guard case let .object(config) = try JSONValue(parsing: run.configJSON) else { continue }
            var recipe: [String: JSONValue] = [:]
            for (key, value) in config where !["seed", "experts", "top_k"].contains(key) {
                recipe["parent." + key] = value
            }
            recipes[run.hash] = recipe
        }
        return recipes
    }

    /// Reference classifier runs from their configs (`task`, `train_size`, `eval_examples`,
    /// `seed`, `baseline`: `majority` or `linear`) and their `acc` points on `val` and `test`
    /// (step 0). A config without a task, a train size or a known baseline is skipped.
    public static func baselineRuns(configs: [(hash: String, configJSON: String)], points: [MetricPoint]) -> [BaselineRun] {
        var accuracies: [String: (val: Double?, test: Double?)] = [:]
        for p in points where p.name == MetricName.accuracy && p.value.isFinite {
            var entry = accuracies[p.runHash] ?? (nil, nil)
            if p.split == Split.val { entry.val = p.value }
            if p.split == Split.test { entry.test = p.value }
            accuracies[p.runHash] = entry
        }
        return configs.compactMap { run in
            guard let config = try? JSONValue(parsing: run.configJSON), let task = config["task"]?.stringValue,
                  let trainSize = config["train_size"]?.intValue.map(Int.init),
                  let kind = config["baseline"]?.stringValue.flatMap(BaselineRun.Kind.init(rawValue:))
            else { return nil }
            let acc = accuracies[run.hash]
            return BaselineRun(hash: run.hash, task: task, trainSize: trainSize, kind: kind,
                               seed: config["seed"]?.intValue.map(Int.init),
                               evalExamples: config["eval_examples"]?.intValue.map(Int.init),
                               valAcc: acc?.val, testAcc: acc?.test)
        }
    }

    /// The seed values of a sweep's grid, from its spec JSON (`{"grid": [{"key": "seed",
    /// "values": [...]}, ...]}` as `moerec sweep` writes it, or `{"grid": {"seed": [...]}}`).
    /// nil when the grid does not vary the seed.
    static func seedGrid(specJSON: String) -> [Int]? {
        guard let spec = try? JSONValue(parsing: specJSON), let grid = spec["grid"] else { return nil }
        var values: [JSONValue]?
        if let entries = grid.arrayValue {
            for entry in entries where entry["key"]?.stringValue == "seed" {
                values = (values ?? []) + (entry["values"]?.arrayValue ?? [])
            }
        } else if let seeds = grid["seed"]?.arrayValue {
            values = seeds
        }
        return values?.compactMap { $0.intValue.map(Int.init) }
    }

    static func flags(for group: RunGroup) -> [String] {
        var flags: [String] = []
        let present = Set(group.runs.compactMap(\.seed))
        let missing = group.expectedSeeds.filter { !present.contains($0) }
        if !missing.isEmpty {
            flags.append("seed\(missing.count == 1 ? "" : "s") \(missing.map(String.init).joined(separator: ", ")) missing")
        }
        // Runs that are not completed, by status (failed ones one by one, with the reason).
        var byStatus: [(status: String, who: [String])] = []
        for run in group.runs {
            let who = run.seed.map(String.init) ?? "run \(run.hash.prefix(12))"
            if run.status == .failed {
                var text = (run.seed == nil ? who : "seed \(who)") + " failed"
                if let reason = run.failureReason {
                    text += " (\(reason.count > 60 ? String(reason.prefix(57)) + "..." : reason))"
                }
                byStatus.append((text, []))
            } else if run.status != .completed {
                if let i = byStatus.firstIndex(where: { $0.status == run.status.rawValue }) {
                    byStatus[i].who.append(who)
                } else {
                    byStatus.append((run.status.rawValue, [who]))
                }
            } else if !run.hasValues {
                byStatus.append(((run.seed == nil ? who : "seed \(who)") + " completed without validation accuracy", []))
            }
        }
        for (status, who) in byStatus {
            if who.isEmpty {
                flags.append(status)
            } else {
                let seeds = who.filter { !$0.hasPrefix("run ") }, others = who.filter { $0.hasPrefix("run ") }
                var subjects: [String] = []
                if !seeds.isEmpty { subjects.append((seeds.count == 1 ? "seed " : "seeds ") + seeds.joined(separator: ", ")) }
                subjects += others
                flags.append(subjects.joined(separator: ", ") + " " + status)
            }
        }
        return flags
    }

    /// Fills `variant` for groups that share task, train size, expert count and regime with
    /// another group. The config keys whose values differ among such groups tell them apart.
    /// The usual setting of those keys is the combination of values most groups have (e.g.
    /// the main cell's parent, its steps and the base learning rate); when no single
    /// combination is the most common, each key's most common value. A group's variant names
    /// the keys where it differs from the usual setting (a key with no single most common
    /// value is named on every group). Returns the usual setting as `key=value` text, which a
    /// blank variant means. Two groups with the same task, train size, expert count and
    /// regime differ in some key, and at most one of them has its usual value, so their
    /// variants differ.
    @discardableResult
    static func assignVariants(_ groups: inout [RunGroup]) -> String {
        var buckets: [String: [Int]] = [:]
        for (i, g) in groups.enumerated() {
            buckets["\(g.task)|\(g.trainSize ?? -1)|\(g.experts ?? -1)|\(g.regime)", default: []].append(i)
        }
        var keys = Set<String>()
        for members in buckets.values where members.count > 1 {
            let all = Set(members.flatMap { groups[$0].identity.keys })
            for key in all {
                let first = groups[members[0]].identity[key]
                if members.contains(where: { groups[$0].identity[key] != first }) { keys.insert(key) }
            }
        }
        guard !keys.isEmpty else { return "" }
        let ordered = keys.sorted()
        func text(_ key: String, _ value: JSONValue?) -> String {
            let shown: String
            switch value {
            case let .string(s)? where key == "parent" || key == "_dataset": shown = String(s.prefix(12))
            case let .string(s)?: shown = s
            case let v?: shown = (try? v.canonicalString) ?? "?"
            case nil: shown = "-"
            }
            let label = key.hasPrefix("_") ? String(key.dropFirst()) : key
            return "\(label)=\(shown)"
        }
        var usual: [String: JSONValue?] = [:]
        if let combination = soleMostCommon(groups.map { g -> (label: String, value: [JSONValue?]) in
            let values = ordered.map { g.identity[$0] }
            return (zip(ordered, values).map(text).joined(separator: "\u{0}"), values)
        }) {
            for (key, value) in zip(ordered, combination) { usual[key] = .some(value) }
        } else {
            for key in ordered { usual[key] = soleMostCommon(groups.map { (text(key, $0.identity[key]), $0.identity[key]) }) }
        }
        for i in groups.indices {
            groups[i].variant = ordered.filter { key in usual[key].map { $0 != groups[i].identity[key] } ?? true }
                .map { text($0, groups[i].identity[$0]) }.joined(separator: " ")
        }
        return ordered.compactMap { key in usual[key].map { text(key, $0) } }.joined(separator: " ")
    }

    /// The value most items share, items being the same when their labels are; nil when
    /// two values tie for most (or there are no items).
    static func soleMostCommon<Value>(_ items: [(label: String, value: Value)]) -> Value? {
        var counts: [String: (value: Value, items: Int)] = [:]
        for item in items { counts[item.label, default: (item.value, 0)].items += 1 }
        let most = counts.values.map(\.items).max() ?? 0
        let leaders = counts.values.filter { $0.items == most }
        return leaders.count == 1 ? leaders[0].value : nil
    }
}

/// What a reader should know about a number beyond its spread. Caveats do not make a group
/// incomplete; they are listed with its flags.
public enum Caveat: String, Sendable, CaseIterable {
    /// Validation accuracy was still improving at the end (`ConvergenceRule`).
    case unconverged
    /// No test evaluation at the selected step: the reported accuracy is validation accuracy.
    case noTestAtBest = "no-test-at-best"
    /// The reported accuracy is below the linear baseline's on the same task and train size.
    case belowLinear = "below-linear"
}

/// When a run counts as still improving at its last evaluation.
public enum ConvergenceRule {
    /// The share of the training steps, at the end, in which a best step counts as late.
    public static let lateFraction = 0.1

    public static let text = """
        Unconverged: a run whose best validation step (highest validation accuracy, earliest on ties) is its last \
        evaluation with a validation accuracy, or lies after 90% of its training steps (best step > 0.9 × S, S the \
        config's `steps`, or the last evaluation step when that is larger or absent). A group is flagged when any of \
        its completed seeds is.
        """

    public static func isUnconverged(_ curve: Curve, plannedSteps: Int?) -> Bool {
        guard let best = curve.bestIndex, let last = curve.lastValidationIndex else { return false }
        if best == last { return true }
        let total = Double(max(plannedSteps ?? 0, curve.steps[last]))
        return Double(curve.steps[best]) > (1 - lateFraction) * total
    }
}

/// A reference classifier run: the majority class or a linear n-gram classifier trained on
/// the same train subset and evaluated on the same examples as the fine-tuning runs.
public struct BaselineRun: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case majority, linear
    }

    public var hash: String
    public var task: String
    public var trainSize: Int
    public var kind: Kind
    public var seed: Int?
    public var evalExamples: Int?
    public var valAcc: Double?
    public var testAcc: Double?

    public init(hash: String, task: String, trainSize: Int, kind: Kind, seed: Int? = nil, evalExamples: Int? = nil,
                valAcc: Double?, testAcc: Double?) {
        self.hash = hash
        self.task = task
        self.trainSize = trainSize
        self.kind = kind
        self.seed = seed
        self.evalExamples = evalExamples
        self.valAcc = valAcc
        self.testAcc = testAcc
    }

    /// Test accuracy, else validation accuracy (as for fine-tuning runs).
    public var reportedAcc: Double? { testAcc ?? valAcc }
}
