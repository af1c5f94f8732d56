import Foundation

/// A table as text cells, shared by the Markdown and HTML renderers so that both show
/// the same numbers.
struct DisplayTable {
    var id: String
    var title: String
    var description: String
    var headers: [String]
    /// Columns holding numbers (right-aligned).
    var numeric: Set<Int>
    var rows: [[String]]
    /// Rows that are incomplete (highlighted in HTML).
    var flagged: Set<Int> = []
    /// Text columns that may wrap in HTML (the others stay on one line).
    var wrapping: Set<Int> = []
    /// Paragraphs after the table.
    var notes: [String] = []

    static func make(_ set: ReportSet, _ table: ReportTable) -> DisplayTable? {
        switch table {
        case .regimes: return set.regimes.map { group($0, title: "Regimes", description: Explain.regimes, usual: set.data.usualVariant) }
        case .experts: return set.experts.map { group($0, title: "Experts", description: Explain.experts, usual: set.data.usualVariant) }
        case .overfit: return set.overfit.map { overfit($0, usual: set.data.usualVariant) }
        case .claims: return set.claims.map(claims)
        }
    }

    /// What the variant column means, under a table that shows it.
    static func variantNotes(_ usual: String, shown: Bool) -> [String] {
        guard shown, !usual.isEmpty else { return [] }
        return ["variant: the config keys in which a group differs from the setting most groups share (\(usual)); blank: that setting."]
    }

    static func group(_ t: GroupTable, title: String, description: String, usual: String) -> DisplayTable {
        let showVariant = t.rows.contains { !$0.variant.isEmpty }
        let baseline = t.table == .regimes ? "all" : "1 expert"
        var headers = ["task", "train", "experts", "regime"]
        if showVariant { headers.append("variant") }
        // Forgetting only where runs measured it (forgetting_eval: parent).
        let showForgetting = t.rows.contains { $0.forgetting.n > 0 }
        headers += ["seeds", "acc %", "val acc %", "val loss", "Δ acc vs \(baseline), pp [95% CI]", "test", "n for ±1 pp",
                    "updated", "step ms"] + (showForgetting ? ["forgetting nats/B"] : []) + ["gap@best pp", "gap@end pp", "flags"]
        let text: Set<String> = ["task", "regime", "variant", "test", "n for ±1 pp", "flags"]
        let numeric = Set(headers.indices.filter { !text.contains(headers[$0]) })
        var rows: [[String]] = [], flagged = Set<Int>()
        var lastSetting: String?
        for r in t.rows {
            // The reference rows of a task and train size come before its first group row.
            let setting = "\(r.task)|\(r.trainSize ?? -1)"
            if setting != lastSetting {
                lastSetting = setting
                for ref in t.references where ref.task == r.task && ref.trainSize == r.trainSize {
                    var cells = [ref.task, Fmt.int(ref.trainSize), Fmt.dash, "baseline: \(ref.baseline.rawValue)"]
                    if showVariant { cells.append("") }
                    cells += [String(ref.runs.count), Fmt.percentStat(ref.acc), Fmt.percentStat(ref.valAcc)]
                    cells += Array(repeating: Fmt.dash, count: showForgetting ? 9 : 8)
                    cells.append(ref.testAvailable ? "reference" : "reference; no test accuracy, validation shown")
                    rows.append(cells)
                }
            }
            var cells = [r.task, Fmt.int(r.trainSize), Fmt.int(r.experts), r.regime]
            if showVariant { cells.append(r.variant) }
            let c = r.comparison
            cells += [Fmt.seeds(r.seedsCompleted, r.seedsExpected, complete: r.complete), Fmt.percentStat(r.acc),
                      Fmt.percentStat(r.valAcc), Fmt.numberStat(r.valLoss, digits: 3), Fmt.comparison(c),
                      c.test?.rawValue ?? "", c.isBaseline ? "" : Fmt.seedsNeeded(c.seedsNeeded),
                      Fmt.fraction(r.trainableFraction), Fmt.milliseconds(r.stepTime)]
            if showForgetting { cells.append(Fmt.numberStat(r.forgetting, digits: 3)) }
            cells += [Fmt.pointsStat(r.gapAtBest), Fmt.pointsStat(r.gapAtEnd), Fmt.flags(r.flags, r.caveats)]
            if !r.complete { flagged.insert(rows.count) }
            rows.append(cells)
        }
        return DisplayTable(id: t.table.rawValue, title: title, description: description, headers: headers,
                            numeric: numeric, rows: rows, flagged: flagged,
                            wrapping: Set([headers.count - 1] + (showVariant ? [4] : [])),
                            notes: variantNotes(usual, shown: showVariant))
    }

    static func overfit(_ t: OverfitTable, usual: String) -> DisplayTable {
        let showVariant = t.rows.contains { !$0.variant.isEmpty }
        var headers = ["task", "regime", "experts", "train"]
        if showVariant { headers.append("variant") }
        headers += ["seeds", "best step", "min-loss step", "onset step", "onset per seed", "end gap pp", "end loss gap",
                    "train acc @end %", "flags"]
        let first = showVariant ? 5 : 4
        let numeric = Set([2, 3] + Array(first..<(first + 8)))
        let rows = t.rows.map { r -> [String] in
            var cells = [r.task, r.regime, Fmt.int(r.experts), Fmt.int(r.trainSize)]
            if showVariant { cells.append(r.variant) }
            cells += [Fmt.seeds(r.seedsCompleted, r.seedsExpected, complete: r.complete), Fmt.int(r.bestStep),
                      Fmt.int(r.minValLossStep), r.onsetStep.map(String.init) ?? "none",
                      r.seedOnsets.map { $0.onsetStep.map(String.init) ?? "none" }.joined(separator: ", "),
                      Fmt.pointsStat(r.gapAtEnd), Fmt.numberStat(r.lossGapAtEnd, digits: 3),
                      Fmt.percentStat(r.trainAccAtEnd), Fmt.flags(r.flags, r.caveats)]
            return cells
        }
        return DisplayTable(id: "overfit", title: "Overfitting", description: Explain.overfit, headers: headers,
                            numeric: numeric, rows: rows, flagged: Set(t.rows.indices.filter { !t.rows[$0].complete }),
                            wrapping: Set([headers.count - 1] + (showVariant ? [4] : [])),
                            notes: variantNotes(usual, shown: showVariant) + [t.rule])
    }

    static func claims(_ t: ClaimsTable) -> DisplayTable {
        let rows = t.rows.map { r -> [String] in
            [r.claim + (r.note.map { " Note: " + $0 } ?? ""), r.source, r.expectation, r.verdictText, r.summary, r.restsOn]
        }
        return DisplayTable(id: "claims", title: "Claims", description: Explain.claims,
                            headers: ["claim", "source", "agrees if Δ in", "verdict", "evidence", "rests on"], numeric: [],
                            rows: rows, wrapping: [0, 1, 2, 4], notes: [ClaimsTable.rule])
    }
}

enum MarkdownRenderer {
    static func render(_ set: ReportSet) -> String {
        var parts: [String] = []
        for table in set.tables {
            guard let t = DisplayTable.make(set, table) else { continue }
            parts.append(render(t, filter: set.data.filterExpression))
        }
        return parts.joined(separator: "\n")
    }

    static func cell(_ text: String) -> String {
        text.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
    }

    static func render(_ t: DisplayTable, filter: String?) -> String {
        var out = "## \(t.title)\n\n"
        if let filter { out += "Runs: `--where \(filter)`.\n\n" }
        out += t.description + "\n\n"
        if t.rows.isEmpty {
            out += "_No fine-tuning runs match._\n"
        } else {
            out += "| " + t.headers.map(cell).joined(separator: " | ") + " |\n"
            out += "|" + t.headers.indices.map { t.numeric.contains($0) ? "---:" : "---" }.joined(separator: "|") + "|\n"
            for row in t.rows { out += "| " + row.map(cell).joined(separator: " | ") + " |\n" }
        }
        for note in t.notes { out += "\n" + note + "\n" }
        return out
    }
}
