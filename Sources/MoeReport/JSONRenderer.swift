import Foundation
import MoeJSON
import MoeStore

enum JSONRenderer {
    static let formatVersion = 2

    static func render(_ set: ReportSet) -> String {
        var tables: [(String, OrderedJSON)] = []
        for table in set.tables {
            switch table {
            case .regimes: if let t = set.regimes { tables.append(("regimes", group(t))) }
            case .experts: if let t = set.experts { tables.append(("experts", group(t))) }
            case .overfit: if let t = set.overfit { tables.append(("overfit", overfit(t))) }
            case .claims: if let t = set.claims { tables.append(("claims", claims(t))) }
            }
        }
        let document: OrderedJSON = .object([
            ("format_version", .int(formatVersion)),
            ("generated_by", .string("moerec report")),
            ("where", .optional(set.data.filterExpression)),
            // What a blank `variant` means: the setting most groups share of the keys that tell groups apart.
            ("usual_variant", .string(set.data.usualVariant)),
            ("units", .string("accuracies, gaps and deltas are fractions (0.01 = 1 percentage point); losses in nats; times in seconds")),
            ("tables", .object(tables)),
        ])
        return document.rendered() + "\n"
    }

    static func stats(_ s: SampleStats) -> OrderedJSON {
        .object([("mean", .optional(s.mean)), ("sd", .optional(s.sd)), ("n", .int(s.n))])
    }

    static func interval(_ i: DifferenceInterval?) -> OrderedJSON {
        guard let i else { return .null }
        return .object([("test", .string(i.test.rawValue)), ("low", .number(i.low)), ("high", .number(i.high)),
                        ("level", .number(i.level)), ("df", .number(i.df)), ("t", .number(i.t)),
                        ("standard_error", .number(i.standardError))])
    }

    /// `{"n", "unit", "margin"}`, or null when the spread is unknown; `n` null when more
    /// than `SeedsNeeded.limit` would be needed.
    static func seedsNeeded(_ s: SeedsNeeded?) -> OrderedJSON {
        guard let s else { return .null }
        return .object([("n", .optional(s.n)), ("unit", .string(s.unit.rawValue)), ("margin", .number(s.margin))])
    }

    static func caveats(_ c: [Caveat]) -> OrderedJSON { .array(c.map { .string($0.rawValue) }) }

    /// The fields that name a group and say how complete it is, first in every row of the
    /// regimes, experts and overfit tables.
    static func groupFields(_ r: some SeedGroupRow) -> [(String, OrderedJSON)] {
        [("task", .string(r.task)), ("train_size", .optional(r.trainSize)), ("experts", .optional(r.experts)),
         ("regime", .string(r.regime)), ("variant", .string(r.variant)),
         ("complete", .bool(r.complete)), ("flags", .array(r.flags.map { .string($0) })), ("caveats", caveats(r.caveats)),
         ("seeds_completed", .int(r.seedsCompleted)), ("seeds_expected", .int(r.seedsExpected))]
    }

    static func group(_ t: GroupTable) -> OrderedJSON {
        .object([
            ("description", .string(t.table == .regimes ? Explain.regimes : Explain.experts)),
            ("baseline", .string(t.table == .regimes ? "regime all, same config otherwise" : "1 expert, same regime and config otherwise")),
            ("reference_rows", .array(t.references.map { r in
                .object([("task", .string(r.task)), ("train_size", .int(r.trainSize)), ("baseline", .string(r.baseline.rawValue)),
                         ("acc", stats(r.acc)), ("val_acc", stats(r.valAcc)), ("test_available", .bool(r.testAvailable)),
                         ("runs", .array(r.runs.map { .string($0) }))])
            })),
            ("rows", .array(t.rows.map { r in
                .object(groupFields(r) + [
                    ("acc", stats(r.acc)), ("val_acc", stats(r.valAcc)), ("val_loss", stats(r.valLoss)),
                    ("delta_acc", .object([
                        ("baseline", .string(r.comparison.baseline)), ("is_baseline", .bool(r.comparison.isBaseline)),
                        ("test", .optional(r.comparison.test?.rawValue)),
                        ("delta", .optional(r.comparison.delta)), ("ci95", interval(r.comparison.interval)),
                        ("seeds_needed", seedsNeeded(r.comparison.seedsNeeded)),
                        ("baseline_seeds", .optional(r.comparison.baselineSeeds)),
                        ("baseline_complete", r.comparison.baselineComplete.map { .bool($0) } ?? .null),
                        ("note", .optional(r.comparison.note)),
                    ])),
                    ("trainable_fraction", .optional(r.trainableFraction)), ("step_time_s", .optional(r.stepTime)),
                    ("gap_at_best", stats(r.gapAtBest)), ("gap_at_end", stats(r.gapAtEnd)), ("best_step", stats(r.bestStep)),
                    ("majority_acc", .optional(r.majorityAccuracy)), ("forgetting", stats(r.forgetting)),
                    ("runs", .array(r.seeds.map { s in
                        .object([("seed", .optional(s.seed)), ("hash", .string(s.hash)), ("status", .string(s.status.rawValue)),
                                 ("best_step", .optional(s.bestStep)), ("acc", .optional(s.acc)),
                                 ("test_at_best", .bool(s.testAtBest)), ("val_acc", .optional(s.valAcc)),
                                 ("val_loss", .optional(s.valLoss)), ("gap_at_best", .optional(s.gapAtBest)),
                                 ("gap_at_end", .optional(s.gapAtEnd)), ("step_time_s", .optional(s.stepTime)),
                                 ("unconverged", .bool(s.unconverged)), ("forgetting", .optional(s.forgetting))])
                    })),
                ])
            })),
        ])
    }

    static func overfit(_ t: OverfitTable) -> OrderedJSON {
        .object([
            ("description", .string(Explain.overfit)),
            ("rule", .string(t.rule)),
            ("rows", .array(t.rows.map { r in
                .object(groupFields(r) + [
                    ("best_step", .optional(r.bestStep)), ("min_val_loss_step", .optional(r.minValLossStep)),
                    ("onset_step", .optional(r.onsetStep)),
                    ("gap_at_end", stats(r.gapAtEnd)), ("loss_gap_at_end", stats(r.lossGapAtEnd)),
                    ("train_acc_at_end", stats(r.trainAccAtEnd)),
                    ("runs", .array(r.seedOnsets.map { s in
                        .object([("seed", .optional(s.seed)), ("hash", .string(s.hash)), ("onset_step", .optional(s.onsetStep)),
                                 ("best_step", .optional(s.bestStep)), ("unconverged", .bool(s.unconverged))])
                    })),
                    ("curve", .object([
                        ("steps", .array(r.curve.steps.map { .int($0) })),
                        ("train_loss", .array(r.curve.trainLoss.map { .number($0) })),
                        ("val_loss", .array(r.curve.valLoss.map { .number($0) })),
                        ("train_acc", .array(r.curve.trainAcc.map { .number($0) })),
                        ("val_acc", .array(r.curve.valAcc.map { .number($0) })),
                    ])),
                ])
            })),
        ])
    }

    static func claims(_ t: ClaimsTable) -> OrderedJSON {
        .object([
            ("description", .string(Explain.claims)),
            ("rule", .string(ClaimsTable.rule)),
            ("margin", .number(ClaimsTable.margin)),
            ("minimum_pretraining_runs", .int(ClaimsTable.minimumPretrainingRuns)),
            ("rows", .array(t.rows.map { r in
                .object([
                    ("id", .string(r.id)), ("claim", .string(r.claim)), ("source", .string(r.source)),
                    ("note", .optional(r.note)), ("agrees_if", .string(r.expectation)),
                    ("verdict", .string(r.verdict.rawValue)), ("verdict_text", .string(r.verdictText)),
                    ("pretraining_runs", .optional(r.pretrainingRuns)), ("summary", .string(r.summary)),
                    ("rests_on", .string(r.restsOn)),
                    ("evidence", .array(r.evidence.map { e in
                        .object([("setting", .string(e.setting)), ("measure", .string(e.measure)),
                                 ("unit", .string(e.unit.rawValue)), ("test", .optional(e.test?.rawValue)),
                                 ("seeds_a", .int(e.seedsA)), ("seeds_b", .int(e.seedsB)), ("pairs", .optional(e.pairs)),
                                 ("pretraining_runs_a", .int(e.pretrainingRunsA)), ("pretraining_runs_b", .int(e.pretrainingRunsB)),
                                 ("delta", .optional(e.delta)), ("ci95", interval(e.interval)),
                                 ("verdict", .string(e.verdict.rawValue)), ("verdict_text", .string(e.verdictText)),
                                 ("seed_level_verdict", .optional(e.seedLevelVerdict?.rawValue)),
                                 ("seeds_needed", seedsNeeded(e.seedsNeeded)), ("caveats", caveats(e.caveats)),
                                 ("note", .optional(e.note)),
                                 ("runs_a", .array(e.runsA.map { .string($0) })),
                                 ("runs_b", .array(e.runsB.map { .string($0) })),
                                 ("origins", .object(e.origins.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))])
                    })),
                ])
            })),
        ])
    }
}

enum CSVRenderer {
    /// One CSV block per table (header row first); several tables are separated by a blank line.
    static func render(_ set: ReportSet) -> String {
        var blocks: [String] = []
        for table in set.tables {
            switch table {
            case .regimes: if let t = set.regimes { blocks.append(group(t)) }
            case .experts: if let t = set.experts { blocks.append(group(t)) }
            case .overfit: if let t = set.overfit { blocks.append(overfit(t)) }
            case .claims: if let t = set.claims { blocks.append(claims(t)) }
            }
        }
        return blocks.joined(separator: "\n")
    }

    static func escape(_ s: String) -> String {
        s.contains(",") || s.contains("\"") || s.contains("\n") || s.contains("\r")
            ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    static func num(_ x: Double?) -> String { x.flatMap { $0.isFinite ? OrderedJSON.format($0) : nil } ?? "" }
    static func num(_ x: Int?) -> String { x.map(String.init) ?? "" }

    static func lines(_ header: [String], _ rows: [[String]]) -> String {
        ([header] + rows).map { $0.map(escape).joined(separator: ",") }.joined(separator: "\n") + "\n"
    }

    static func group(_ t: GroupTable) -> String {
        let header = ["table", "row", "task", "train_size", "experts", "regime", "variant", "complete", "seeds_completed",
                      "seeds_expected", "acc_mean", "acc_sd", "val_acc_mean", "val_acc_sd", "val_loss_mean", "val_loss_sd",
                      "baseline", "test", "delta_acc", "ci95_low", "ci95_high", "ci95_df", "seeds_needed",
                      "seeds_needed_unit", "trainable_fraction", "step_time_s", "gap_at_best_mean", "gap_at_best_sd",
                      "gap_at_end_mean", "gap_at_end_sd", "best_step_mean", "flags", "caveats", "runs"]
        var rows = t.references.map { r -> [String] in
            var cells = [t.table.rawValue, "reference", r.task, num(r.trainSize), "", "baseline: \(r.baseline.rawValue)", "",
                         "true", String(r.runs.count), String(r.runs.count), num(r.acc.mean), num(r.acc.sd),
                         num(r.valAcc.mean), num(r.valAcc.sd)]
            cells += Array(repeating: "", count: header.count - cells.count - 3)
            return cells + [r.testAvailable ? "" : "no test accuracy", "", r.runs.joined(separator: " ")]
        }
        rows += t.rows.map { r -> [String] in
            let c = r.comparison
            return [t.table.rawValue, "group", r.task, num(r.trainSize), num(r.experts), r.regime, r.variant,
                    r.complete ? "true" : "false", String(r.seedsCompleted), String(r.seedsExpected), num(r.acc.mean),
                    num(r.acc.sd), num(r.valAcc.mean), num(r.valAcc.sd), num(r.valLoss.mean), num(r.valLoss.sd),
                    c.isBaseline ? "self" : c.baseline, c.test?.rawValue ?? "", num(c.isBaseline ? 0 : c.delta),
                    num(c.interval?.low), num(c.interval?.high), num(c.interval?.df), num(c.seedsNeeded?.n),
                    c.seedsNeeded?.unit.rawValue ?? "", num(r.trainableFraction), num(r.stepTime), num(r.gapAtBest.mean),
                    num(r.gapAtBest.sd), num(r.gapAtEnd.mean), num(r.gapAtEnd.sd), num(r.bestStep.mean),
                    r.flags.joined(separator: "; "), r.caveats.map(\.rawValue).joined(separator: "; "),
                    r.seeds.map(\.hash).joined(separator: " ")]
        }
        return lines(header, rows)
    }

    static func overfit(_ t: OverfitTable) -> String {
        let header = ["table", "task", "regime", "experts", "train_size", "variant", "complete", "seeds_completed",
                      "seeds_expected", "best_step", "min_val_loss_step", "onset_step", "onset_per_seed",
                      "gap_at_end_mean", "gap_at_end_sd", "loss_gap_at_end_mean", "loss_gap_at_end_sd",
                      "train_acc_at_end_mean", "flags", "caveats", "runs"]
        let rows = t.rows.map { r -> [String] in
            ["overfit", r.task, r.regime, num(r.experts), num(r.trainSize), r.variant, r.complete ? "true" : "false",
             String(r.seedsCompleted), String(r.seedsExpected), num(r.bestStep), num(r.minValLossStep), num(r.onsetStep),
             r.seedOnsets.map { $0.onsetStep.map(String.init) ?? "none" }.joined(separator: " "),
             num(r.gapAtEnd.mean), num(r.gapAtEnd.sd), num(r.lossGapAtEnd.mean), num(r.lossGapAtEnd.sd),
             num(r.trainAccAtEnd.mean), r.flags.joined(separator: "; "), r.caveats.map(\.rawValue).joined(separator: "; "),
             r.seedOnsets.map(\.hash).joined(separator: " ")]
        }
        return lines(header, rows)
    }

    static func claims(_ t: ClaimsTable) -> String {
        let header = ["table", "id", "claim", "source", "agrees_if", "verdict", "verdict_text", "evidence", "note"]
        let rows = t.rows.map { r in
            ["claims", r.id, r.claim, r.source, r.expectation, r.verdict.rawValue, r.verdictText, r.summary, r.note ?? ""]
        }
        return lines(header, rows)
    }
}
