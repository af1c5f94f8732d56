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

/// A comparison of a row's validation accuracy against its baseline row.
public struct Comparison: Sendable {
    /// What the row is compared with, e.g. "all" or "1 expert".
    public var baseline: String
    /// The row is the baseline itself.
    public var isBaseline: Bool
    /// The baseline row's contributing seeds (nil without a baseline).
    public var baselineSeeds: Int?
    public var baselineComplete: Bool?
    /// Difference of means, row − baseline (validation accuracy, as a fraction).
    public var delta: Double?
    /// 95% Welch interval for the difference (nil below two seeds on either side).
    public var interval: WelchInterval?
    /// Why there is no delta or interval, or that the baseline is incomplete.
    public var note: String?
}

/// One seed of a row, so that every number can be traced to a run.
public struct SeedResult: Sendable {
    public var seed: Int?
    public var hash: String
    public var status: RunStatus
    public var bestStep: Int?
    public var valAcc: Double?
    public var valLoss: Double?
    public var gapAtBest: Double?
    public var gapAtEnd: Double?
    public var stepTime: Double?
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
    /// Validation accuracy at each run's best step (highest validation accuracy).
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
    public var majorityAccuracy: Double?
    public var comparison: Comparison
    public var flags: [String]
    public var complete: Bool { flags.isEmpty }
    public var seeds: [SeedResult]
}

/// The `regimes` or `experts` table.
public struct GroupTable: Sendable {
    public var table: ReportTable
    public var rows: [GroupRow]
}

enum GroupTables {
    static func row(_ group: RunGroup, comparison: Comparison) -> GroupRow {
        let runs = group.contributing
        func mean(_ xs: [Double?]) -> Double? { SampleStats(xs.compactMap { $0 }).mean }
        return GroupRow(
            task: group.task, trainSize: group.trainSize, experts: group.experts, regime: group.regime,
            variant: group.variant, seedsCompleted: runs.count, seedsExpected: group.expectedSeeds.count,
            valAcc: SampleStats(group.values(\.valAccAtBest)), valLoss: SampleStats(group.values(\.valLossAtBest)),
            gapAtBest: SampleStats(group.values(\.gapAtBest)), gapAtEnd: SampleStats(group.values(\.gapAtEnd)),
            bestStep: SampleStats(group.values { $0.bestStep.map(Double.init) }),
            trainableFraction: mean(runs.map(\.trainableFraction)), stepTime: mean(runs.map(\.stepTime)),
            majorityAccuracy: mean(runs.map(\.majorityAccuracy)),
            comparison: comparison, flags: group.flags,
            seeds: group.runs.map { r in
                SeedResult(seed: r.seed, hash: r.hash, status: r.status, bestStep: r.bestStep, valAcc: r.valAccAtBest,
                           valLoss: r.valLossAtBest, gapAtBest: r.gapAtBest, gapAtEnd: r.gapAtEnd, stepTime: r.stepTime)
            })
    }

    static func compare(_ group: RunGroup, with baseline: RunGroup?, label: String, missing: String) -> Comparison {
        guard let baseline else {
            return Comparison(baseline: label, isBaseline: false, note: missing)
        }
        let a = group.values(\.valAccAtBest), b = baseline.values(\.valAccAtBest)
        var c = Comparison(baseline: label, isBaseline: false, baselineSeeds: b.count, baselineComplete: baseline.isComplete)
        if let ma = SampleStats(a).mean, let mb = SampleStats(b).mean { c.delta = ma - mb }
        c.interval = WelchInterval(a, b)
        var notes: [String] = []
        if c.delta == nil {
            notes.append("no completed seeds on \(a.isEmpty ? "this row" : "the baseline")")
        } else if c.interval == nil {
            notes.append("no interval: needs 2 or more seeds on both sides")
        }
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
        let rows = try ordered.map { g -> GroupRow in
            if g.regime == "all" { return row(g, comparison: Comparison(baseline: "all", isBaseline: true)) }
            return row(g, comparison: compare(g, with: try index.allBaseline(of: g), label: "all",
                                              missing: "no `all` group with this config"))
        }
        return GroupTable(table: .regimes, rows: rows)
    }

    /// The same metrics by expert count, per regime; Δ against the dense (1 expert) group
    /// with the same regime and otherwise the same config (its parent and top-k differ).
    static func experts(_ data: ReportData) throws -> GroupTable {
        let index = try GroupIndex(data)
        let ordered = data.groups.sorted {
            ($0.task, $0.trainSize ?? -1, regimeRank($0.regime), $0.regime, $0.variant, $0.experts ?? -1)
                < ($1.task, $1.trainSize ?? -1, regimeRank($1.regime), $1.regime, $1.variant, $1.experts ?? -1)
        }
        let rows = try ordered.map { g -> GroupRow in
            if g.experts == 1 { return row(g, comparison: Comparison(baseline: "1 expert", isBaseline: true)) }
            let dense = try index.denseBaselines(of: g)
            if dense.count > 1 {
                return row(g, comparison: Comparison(baseline: "1 expert", isBaseline: false,
                                                     note: "\(dense.count) dense groups match; no single baseline"))
            }
            return row(g, comparison: compare(g, with: dense.first, label: "1 expert",
                                              missing: "no dense group with this config"))
        }
        return GroupTable(table: .experts, rows: rows)
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
    func allBaseline(of group: RunGroup) throws -> RunGroup? {
        var id = group.identity
        id["regime"] = .string("all")
        if id["groups"] != nil { id["groups"] = .array([]) }
        return byKey[try JSONValue.object(id).canonicalString]
    }

    /// Dense groups (1 expert) that match `group` apart from parent, experts and top-k.
    func denseBaselines(of group: RunGroup) throws -> [RunGroup] {
        (byArchitectureFreeKey[try GroupIndex.architectureFreeKey(group.identity)] ?? []).filter { $0.experts == 1 }
    }

    /// Groups that match `group` apart from parent, experts and top-k (itself included).
    func expertSiblings(of group: RunGroup) throws -> [RunGroup] {
        byArchitectureFreeKey[try GroupIndex.architectureFreeKey(group.identity)] ?? []
    }
}
