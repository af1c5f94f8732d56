import Foundation
import MoeErrors
import MoeJSON
import MoeStore

/// The report tables `moerec report` knows.
public enum ReportTable: String, CaseIterable, Sendable {
    case regimes, experts, overfit, claims

    /// Parses `regimes,experts` style lists (repeated names kept once, in the given order);
    /// an unknown name throws `ReportError.unknownTable` naming it.
    public static func parseList(_ items: [String]) throws -> [ReportTable] {
        var tables: [ReportTable] = []
        for item in items {
            for part in item.split(separator: ",", omittingEmptySubsequences: false) {
                let name = part.trimmingCharacters(in: .whitespaces)
                guard let table = ReportTable(rawValue: name) else { throw ReportError.unknownTable(name) }
                if !tables.contains(table) { tables.append(table) }
            }
        }
        return tables
    }
}

/// Output formats of the reports.
public enum ReportFormat: String, CaseIterable, Sendable {
    case md, csv, json, html

    public static func parse(_ name: String) throws -> ReportFormat {
        guard let format = ReportFormat(rawValue: name) else { throw ReportError.unknownFormat(name) }
        return format
    }

    public var fileExtension: String { rawValue }
}

public enum ReportError: MoeError, Equatable {
    case unknownTable(String)
    case unknownFormat(String)
    case noTables
    /// `--out` names something that is not a directory, or a place that cannot be written.
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotWrite(path, reason):
            return "cannot write the report to '\(path)': \(reason) (give --out a writable directory)"
        case let .unknownTable(name):
            return "unknown report table '\(name)' (valid: \(ReportTable.allCases.map(\.rawValue).joined(separator: ", ")))"
        case let .unknownFormat(name):
            return "unknown report format '\(name)' (valid: \(ReportFormat.allCases.map(\.rawValue).joined(separator: ", ")))"
        case .noTables:
            return "no report table selected"
        }
    }

    public var exitMeaning: ExitMeaning { .badInput }
}

/// The order regimes are listed in: ST-MoE's five, then moerec's extra ones.
let regimeOrder = ["all", "non-moe", "moe", "attention", "ffn", "experts-only", "custom"]

func regimeRank(_ regime: String) -> Int { regimeOrder.firstIndex(of: regime) ?? regimeOrder.count }

/// A comparison of a row's reported accuracy against its baseline row.
public struct Comparison: Sendable {
    /// What the row is compared with, e.g. "all" or "1 expert".
    public var baseline: String
    /// The row is the baseline itself.
    public var isBaseline: Bool
    /// The baseline row's contributing seeds (nil without a baseline).
    public var baselineSeeds: Int?
    public var baselineComplete: Bool?
    /// Paired when the groups' runs pair up (same parent and seeds), partially overlapping
    /// when some do, else Welch; nil without a baseline group.
    public var test: DifferenceTest?
    /// Difference of means, row − baseline (reported accuracy, as a fraction).
    public var delta: Double?
    /// 95% interval for the difference (nil below two seeds, or pairs, on either side).
    public var interval: DifferenceInterval?
    /// Seeds (or pairs) that would narrow the interval to ± `ClaimsTable.margin` at the
    /// observed spread; nil when the spread is unknown.
    public var seedsNeeded: SeedsNeeded?
    /// Why there is no delta or interval, or that the baseline is incomplete.
    public var note: String?
}

/// Runs of two groups paired by the design: they fine-tune the same parent with the same
/// seed (the groups' configs already agree on everything else but the compared key).
enum Pairing {
    /// Fewer seeds in common than this are compared as independent samples: the partially
    /// overlapping interval needs the pairs' correlation, and two pairs always give ±1.
    static let minimumOverlap = 3

    /// Each side's values by seed and the seeds both sides have.
    struct Match {
        var a: [Int: Double]
        var b: [Int: Double]
        var common: [Int]
        /// Every seed of either side has its partner.
        var isComplete: Bool { common.count == a.count && common.count == b.count }
        var differences: [Double] { common.map { a[$0]! - b[$0]! } }
        var pairs: [(Double, Double)] { common.map { (a[$0]!, b[$0]!) } }
        /// Each side's values in seed order (so that sums, and reports, are reproducible).
        var valuesA: [Double] { a.keys.sorted().map { a[$0]! } }
        var valuesB: [Double] { b.keys.sorted().map { b[$0]! } }
    }

    /// The values of `value` by seed on each side, and the common seeds in order, when every
    /// contributing run has its own seed and a finite value and each common seed's two runs
    /// share a parent; nil otherwise (a seed twice in a group, a missing value, different
    /// parents), and then the runs are compared as independent samples.
    static func match(_ a: RunGroup, _ b: RunGroup, value: (RunFacts) -> Double?) -> Match? {
        func bySeed(_ g: RunGroup) -> [Int: (parent: String?, value: Double)]? {
            var out: [Int: (parent: String?, value: Double)] = [:]
            for run in g.contributing {
                guard let seed = run.seed, let v = value(run), v.isFinite, out[seed] == nil else { return nil }
                out[seed] = (run.parent, v)
            }
            return out
        }
        guard let ra = bySeed(a), let rb = bySeed(b) else { return nil }
        let common = Set(ra.keys).intersection(rb.keys).sorted()
        for seed in common {
            guard let parent = ra[seed]!.parent, parent == rb[seed]!.parent else { return nil }
        }
        return Match(a: ra.mapValues(\.value), b: rb.mapValues(\.value), common: common)
    }
}

/// The difference of one run value between two groups: the paired t interval on per-seed
/// differences when every run has its partner (same parent and seed); the partially
/// overlapping samples t interval when at least `Pairing.minimumOverlap` seeds pair and
/// others are on one side only; Welch's interval otherwise.
struct GroupDifference {
    var test: DifferenceTest
    var seedsA: Int
    var seedsB: Int
    /// The paired seeds of a partially overlapping comparison.
    var pairs: Int?
    var delta: Double?
    var interval: DifferenceInterval?
    /// The spread behind the interval: of the per-seed differences, or of each arm.
    private enum Spread { case paired(Double?), arms(Double?, Double?) }
    private let spread: Spread

    init(_ a: RunGroup, _ b: RunGroup, value: (RunFacts) -> Double?) {
        let match = Pairing.match(a, b, value: value)
        if let m = match, !m.common.isEmpty, m.isComplete {
            let d = m.differences, stats = SampleStats(d)
            test = .pairedT
            seedsA = d.count
            seedsB = d.count
            delta = stats.mean
            interval = DifferenceInterval(paired: d)
            spread = .paired(stats.sd)
        } else if let m = match, m.common.count >= Pairing.minimumOverlap,
                  let i = DifferenceInterval(partiallyOverlapping: m.valuesA, m.valuesB, pairs: m.pairs) {
            // More seeds would be run as pairs, so the estimate asks for pairs.
            test = .partiallyOverlappingT
            seedsA = m.a.count
            seedsB = m.b.count
            pairs = m.common.count
            delta = i.delta
            interval = i
            spread = .paired(SampleStats(m.differences).sd)
        } else {
            let va = SampleStats(a.values(value)), vb = SampleStats(b.values(value))
            test = .welch
            seedsA = va.n
            seedsB = vb.n
            if let ma = va.mean, let mb = vb.mean { delta = ma - mb }
            interval = DifferenceInterval(welch: a.values(value), b.values(value))
            spread = .arms(va.sd, vb.sd)
        }
    }

    /// The replicates that would make the interval's half-width at most `margin` at the
    /// observed spread (nil when the spread is unknown).
    func seedsNeeded(margin: Double) -> SeedsNeeded? {
        switch spread {
        case let .paired(sd): return SeedsNeeded(pairedSD: sd, margin: margin)
        case let .arms(a, b): return SeedsNeeded(sdA: a, sdB: b, margin: margin)
        }
    }
}

/// One seed of a row, so that every number can be traced to a run.
public struct SeedResult: Sendable {
    public var seed: Int?
    public var hash: String
    public var status: RunStatus
    public var bestStep: Int?
    /// Test accuracy at the best step, else validation accuracy there (see `testAtBest`).
    public var acc: Double?
    /// Whether the run evaluated test at its best step.
    public var testAtBest: Bool
    public var valAcc: Double?
    public var valLoss: Double?
    public var gapAtBest: Double?
    public var gapAtEnd: Double?
    public var stepTime: Double?
    public var unconverged: Bool
    /// `info/forgetting` (nats per byte), for runs that measured it.
    public var forgetting: Double? = nil
}

/// What every report row that summarises one group of seeds has: the group's identity
/// and how many of its seeds completed.
public protocol SeedGroupRow {
    var task: String { get }
    var trainSize: Int? { get }
    var experts: Int? { get }
    var regime: String { get }
    var variant: String { get }
    var seedsCompleted: Int { get }
    var seedsExpected: Int { get }
    var flags: [String] { get }
    var caveats: [Caveat] { get }
    var complete: Bool { get }
}

/// A row of the `regimes` and `experts` tables: one group of seeds.
public struct GroupRow: SeedGroupRow, Sendable {
    public var task: String
    public var trainSize: Int?
    public var experts: Int?
    public var regime: String
    public var variant: String
    public var seedsCompleted: Int
    public var seedsExpected: Int
    /// The reported accuracy: test accuracy at each run's best step (highest validation
    /// accuracy), validation accuracy there for runs without that test evaluation.
    public var acc: SampleStats
    /// Validation accuracy at each run's best step.
    public var valAcc: SampleStats
    /// Validation loss at each run's best step.
    public var valLoss: SampleStats
    /// Train accuracy − validation accuracy at the best step.
    public var gapAtBest: SampleStats
    /// Train accuracy − validation accuracy at the last evaluation.
    public var gapAtEnd: SampleStats
    public var bestStep: SampleStats
    /// Share of parameters the regime updates (mean over runs; identical across seeds).
    public var trainableFraction: Double?
    /// Mean seconds per training step (mean over seeds of each run's mean step time).
    public var stepTime: Double?
    /// Forgetting (nats per byte) over the seeds that measured it (`forgetting_eval: parent`).
    public var forgetting = SampleStats([])
    public var majorityAccuracy: Double?
    public var comparison: Comparison
    public var flags: [String]
    /// `unconverged`, `no-test-at-best`, `below-linear`.
    public var caveats: [Caveat]
    public var complete: Bool { flags.isEmpty }
    public var seeds: [SeedResult]
}

/// A reference classifier (majority class or linear) on one task and train size, over its
/// seeds.
public struct ReferenceRow: Sendable {
    public var task: String
    public var trainSize: Int
    public var baseline: BaselineRun.Kind
    /// Test accuracy, validation accuracy for runs without a test number.
    public var acc: SampleStats
    public var valAcc: SampleStats
    /// Whether every run has a test accuracy.
    public var testAvailable: Bool
    public var runs: [String]

    /// The reference rows for the (task, train size) pairs of `groups`, in order of first
    /// appearance, majority before linear; only baselines that have runs.
    static func rows(for groups: [RunGroup], baselines: [BaselineRun]) -> [ReferenceRow] {
        var rows: [ReferenceRow] = []
        var seen = Set<String>()
        for g in groups {
            guard let size = g.trainSize, seen.insert("\(g.task)|\(size)").inserted else { continue }
            for kind in BaselineRun.Kind.allCases {
                let runs = baselines.filter { $0.task == g.task && $0.trainSize == size && $0.kind == kind }
                guard !runs.isEmpty else { continue }
                rows.append(ReferenceRow(task: g.task, trainSize: size, baseline: kind,
                                         acc: SampleStats(runs.compactMap(\.reportedAcc)),
                                         valAcc: SampleStats(runs.compactMap(\.valAcc)),
                                         testAvailable: runs.allSatisfy { $0.testAcc != nil }, runs: runs.map(\.hash)))
            }
        }
        return rows
    }
}

/// The `regimes` or `experts` table.
public struct GroupTable: Sendable {
    public var table: ReportTable
    public var rows: [GroupRow]
    /// Majority and linear baselines for the tasks and train sizes of the rows.
    public var references: [ReferenceRow] = []
}

enum GroupTables {
    static func row(_ group: RunGroup, comparison: Comparison, references: [ReferenceRow]) -> GroupRow {
        let runs = group.contributing
        func mean(_ xs: [Double?]) -> Double? { SampleStats(xs.compactMap { $0 }).mean }
        let acc = SampleStats(group.values(\.reportedAcc))
        var caveats = group.caveats
        let linear = references.first { $0.task == group.task && $0.trainSize == group.trainSize && $0.baseline == .linear }
        if let mine = acc.mean, let reference = linear?.acc.mean, mine < reference { caveats.append(.belowLinear) }
        return GroupRow(
            task: group.task, trainSize: group.trainSize, experts: group.experts, regime: group.regime,
            variant: group.variant, seedsCompleted: runs.count, seedsExpected: group.expectedSeeds.count, acc: acc,
            valAcc: SampleStats(group.values(\.valAccAtBest)), valLoss: SampleStats(group.values(\.valLossAtBest)),
            gapAtBest: SampleStats(group.values(\.gapAtBest)), gapAtEnd: SampleStats(group.values(\.gapAtEnd)),
            bestStep: SampleStats(group.values { $0.bestStep.map(Double.init) }),
            trainableFraction: mean(runs.map(\.trainableFraction)), stepTime: mean(runs.map(\.stepTime)),
            forgetting: SampleStats(group.values(\.forgetting)),
            majorityAccuracy: mean(runs.map(\.majorityAccuracy)),
            comparison: comparison, flags: group.flags, caveats: caveats,
            seeds: group.runs.map { r in
                SeedResult(seed: r.seed, hash: r.hash, status: r.status, bestStep: r.bestStep, acc: r.reportedAcc,
                           testAtBest: r.testAccAtBest != nil, valAcc: r.valAccAtBest, valLoss: r.valLossAtBest,
                           gapAtBest: r.gapAtBest, gapAtEnd: r.gapAtEnd, stepTime: r.stepTime,
                           unconverged: r.hasValues && r.isUnconverged, forgetting: r.forgetting)
            })
    }

    static func compare(_ group: RunGroup, with baseline: RunGroup?, label: String, missing: String) -> Comparison {
        guard let baseline else {
            return Comparison(baseline: label, isBaseline: false, note: missing)
        }
        let d = GroupDifference(group, baseline, value: \.reportedAcc)
        var c = Comparison(baseline: label, isBaseline: false, baselineSeeds: baseline.values(\.reportedAcc).count,
                           baselineComplete: baseline.isComplete, test: d.test, delta: d.delta, interval: d.interval,
                           seedsNeeded: d.seedsNeeded(margin: ClaimsTable.margin))
        var notes: [String] = []
        if c.delta == nil {
            notes.append("no completed seeds on \(d.seedsA == 0 ? "this row" : "the baseline")")
        } else if c.interval == nil {
            notes.append("no interval: needs 2 or more \(d.test == .pairedT ? "pairs" : "seeds on both sides")")
        }
        if let pairs = d.pairs { notes.append("\(pairs) paired") }
        if !baseline.isComplete { notes.append("baseline incomplete") }
        c.note = notes.isEmpty ? nil : notes.joined(separator: "; ")
        return c
    }

    /// One row per group, grouped by task, train size and expert count; Δ against the
    /// `all` group whose identity is otherwise the same.
    static func regimes(_ data: ReportData) throws -> GroupTable {
        let index = try GroupIndex(data)
        let ordered = data.groups.sorted {
            ($0.task, $0.trainSize ?? -1, $0.experts ?? -1, $0.variant, regimeRank($0.regime), $0.regime)
                < ($1.task, $1.trainSize ?? -1, $1.experts ?? -1, $1.variant, regimeRank($1.regime), $1.regime)
        }
        let references = ReferenceRow.rows(for: ordered, baselines: data.baselines)
        let rows = try ordered.map { g -> GroupRow in
            if g.regime == "all" {
                return row(g, comparison: Comparison(baseline: "all", isBaseline: true), references: references)
            }
            return row(g, comparison: compare(g, with: try index.allBaseline(of: g), label: "all",
                                              missing: "no `all` group with this config"), references: references)
        }
        return GroupTable(table: .regimes, rows: rows, references: references)
    }

    /// The same metrics by expert count, per regime; Δ against the dense (1 expert) group
    /// with the same regime and otherwise the same config (its parent and top-k differ).
    static func experts(_ data: ReportData) throws -> GroupTable {
        let index = try GroupIndex(data)
        let ordered = data.groups.sorted {
            ($0.task, $0.trainSize ?? -1, regimeRank($0.regime), $0.regime, $0.variant, $0.experts ?? -1)
                < ($1.task, $1.trainSize ?? -1, regimeRank($1.regime), $1.regime, $1.variant, $1.experts ?? -1)
        }
        let references = ReferenceRow.rows(for: ordered, baselines: data.baselines)
        let rows = try ordered.map { g -> GroupRow in
            if g.experts == 1 {
                return row(g, comparison: Comparison(baseline: "1 expert", isBaseline: true), references: references)
            }
            let dense = try index.denseBaselines(of: g)
            if dense.count > 1 {
                return row(g, comparison: Comparison(baseline: "1 expert", isBaseline: false,
                                                     note: "\(dense.count) dense groups match; no single baseline"),
                           references: references)
            }
            return row(g, comparison: compare(g, with: dense.first, label: "1 expert",
                                              missing: "no dense group with this config"), references: references)
        }
        return GroupTable(table: .experts, rows: rows, references: references)
    }
}

/// Lookups of baseline groups by identity.
struct GroupIndex {
    let byKey: [String: RunGroup]
    /// Groups by identity without parent, expert count and top-k.
    let byArchitectureFreeKey: [String: [RunGroup]]

    init(_ data: ReportData) throws {
        var byKey: [String: RunGroup] = [:]
        var reduced: [String: [RunGroup]] = [:]
        for g in data.groups {
            byKey[g.key] = g
            reduced[try GroupIndex.architectureFreeKey(g.identity), default: []].append(g)
        }
        self.byKey = byKey
        byArchitectureFreeKey = reduced
    }

    static func architectureFreeKey(_ identity: [String: JSONValue]) throws -> String {
        var id = identity
        for key in ["parent", "experts", "top_k"] { id.removeValue(forKey: key) }
        return try JSONValue.object(id).canonicalString
    }

    /// The group with regime `all` and otherwise the same identity.
    func allBaseline(of group: RunGroup) throws -> RunGroup? { try sibling(of: group, regime: "all") }

    /// The regimes that train a selection of experts, and the keys only they take.
    static let expertRegimes: Set<String> = ["esft-gate", "esft-token", "random-experts"]
    static let expertRegimeKeys = ["esft_top_p", "esft_sample_tokens"]

    /// The group with `regime` and otherwise the same identity (the expert-selection keys
    /// dropped for a regime that does not take them).
    func sibling(of group: RunGroup, regime: String) throws -> RunGroup? {
        var id = group.identity
        id["regime"] = .string(regime)
        if id["groups"] != nil { id["groups"] = .array([]) }
        if !GroupIndex.expertRegimes.contains(regime) { for key in GroupIndex.expertRegimeKeys { id.removeValue(forKey: key) } }
        return byKey[try JSONValue.object(id).canonicalString]
    }

    /// Dense groups (1 expert) that match `group` apart from parent, experts and top-k.
    func denseBaselines(of group: RunGroup) throws -> [RunGroup] {
        (byArchitectureFreeKey[try GroupIndex.architectureFreeKey(group.identity)] ?? []).filter { $0.experts == 1 }
    }

}
