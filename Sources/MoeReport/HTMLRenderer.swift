import Foundation
import MoeStore

/// One self-contained HTML page: the selected tables, then SVG charts of the curves
/// (train vs validation per regime) and of the gap against the expert count. Everything
/// is inline; the page fetches nothing and runs no script.
enum HTMLRenderer {
    /// Okabe–Ito colours (distinguishable with the common colour-vision deficiencies).
    static let regimeColors: [String: String] = [
        "all": "#000000", "non-moe": "#E69F00", "moe": "#009E73", "attention": "#CC79A7",
        "ffn": "#0072B2", "experts-only": "#D55E00", "custom": "#56B4E9",
    ]
    static let spareColors = ["#999999", "#882255", "#44AA99", "#117733", "#332288"]

    static func color(_ regime: String, _ all: [String]) -> String {
        if let c = regimeColors[regime] { return c }
        let others = all.filter { regimeColors[$0] == nil }.sorted()
        return spareColors[(others.firstIndex(of: regime) ?? 0) % spareColors.count]
    }

    static let style = """
        body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a1a1a; margin: 24px auto; max-width: 1400px; padding: 0 16px; }
        h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
        h3 { font-size: 15px; margin: 18px 0 6px; }
        p.desc, p.note { max-width: 110ch; color: #333; }
        nav a { margin-right: 14px; }
        .scroll { overflow-x: auto; }
        table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
        th, td { border: 1px solid #d0d0d0; padding: 3px 7px; vertical-align: top; }
        th { background: #f3f3f3; text-align: left; white-space: nowrap; }
        td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
        td.nw { white-space: nowrap; }
        tr.flagged td { background: #fff6e0; }
        td.verdict-agrees { background: #e3f4e3; font-weight: 600; }
        td.verdict-disagrees { background: #fbe3e3; font-weight: 600; }
        td.verdict-not-enough-data { background: #eeeeee; font-weight: 600; }
        td.verdict-conditional { background: #eef0fb; font-weight: 600; }
        .charts { display: flex; flex-wrap: wrap; gap: 12px; }
        .charts svg { border: 1px solid #e2e2e2; max-width: 100%; height: auto; }
        svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; fill: #222; }
        svg .chart-title { font-size: 13px; font-weight: 600; }
        svg .axis-title { font-size: 12px; fill: #333; }
        svg .reference { font-size: 11px; fill: #333; }
        svg .grid line { stroke: #ececec; stroke-width: 1; }
        svg .axis line { stroke: #555; stroke-width: 1; }
        """

    static func render(_ set: ReportSet) -> String {
        var body = ""
        var nav: [(String, String)] = []
        for table in set.tables {
            guard let t = DisplayTable.make(set, table) else { continue }
            nav.append((t.id, t.title))
            body += section(t)
        }
        let wantsCurves = set.tables.contains(.regimes) || set.tables.contains(.overfit)
        let wantsGaps = set.tables.contains(.experts) || set.tables.contains(.overfit)
        if wantsCurves {
            nav.append(("curves", "Curves"))
            body += curvesSection(set)
        }
        if wantsGaps {
            nav.append(("gaps", "Gap vs experts"))
            body += gapSection(set)
        }
        // Task accuracy against forgetting, where runs measured it (forgetting_eval: parent).
        if wantsCurves, let table = set.regimes ?? (try? GroupTables.regimes(set.data)), table.rows.contains(where: { $0.forgetting.n > 0 }) {
            nav.append(("forgetting", "Accuracy vs forgetting"))
            body += forgettingSection(table, baselines: set.data.baselines)
        }
        let where_ = set.data.filterExpression.map { "Runs matching <code>--where \($0.htmlEscaped)</code>." } ?? "All fine-tuning runs in the store."
        let runCount = set.data.groups.reduce(0) { $0 + $1.runs.count }
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>moerec report: \(set.tables.map(\.rawValue).joined(separator: ", "))</title>
            <style>
            \(style)
            </style>
            </head>
            <body>
            <header>
            <h1>moerec report</h1>
            <p class="desc">\(where_) \(runCount) fine-tuning runs in \(set.data.groups.count) groups. Accuracies and gaps in percent / percentage points. Run hashes behind every number are in the JSON output (<code>moerec report --format json</code>).</p>
            <nav>\(nav.map { "<a href=\"#\($0.0)\">\($0.1.htmlEscaped)</a>" }.joined())</nav>
            </header>
            \(body)
            </body>
            </html>

            """
    }

    static func section(_ t: DisplayTable) -> String {
        var out = "<section id=\"\(t.id)\">\n<h2>\(t.title.htmlEscaped)</h2>\n<p class=\"desc\">\(t.description.htmlEscaped)</p>\n"
        if t.rows.isEmpty {
            out += "<p><em>No fine-tuning runs match.</em></p>\n"
        } else {
            out += "<div class=\"scroll\"><table>\n<thead><tr>"
            out += t.headers.map { "<th>\($0.htmlEscaped)</th>" }.joined()
            out += "</tr></thead>\n<tbody>\n"
            let verdictColumn = t.id == "claims" ? t.headers.firstIndex(of: "verdict") : nil
            for (i, row) in t.rows.enumerated() {
                out += t.flagged.contains(i) ? "<tr class=\"flagged\">" : "<tr>"
                for (j, cell) in row.enumerated() {
                    if j == verdictColumn {
                        // "conditional on one pretraining run" and "conditional on 3 …" share one class.
                        let verdict = cell.hasPrefix(Verdict.conditional.rawValue) ? Verdict.conditional.rawValue : cell
                        out += "<td class=\"verdict-\(verdict.replacingOccurrences(of: " ", with: "-"))\">\(cell.htmlEscaped)</td>"
                    } else {
                        let cls = t.numeric.contains(j) ? " class=\"num\"" : t.wrapping.contains(j) ? "" : " class=\"nw\""
                        out += "<td\(cls)>\(cell.htmlEscaped)</td>"
                    }
                }
                out += "</tr>\n"
            }
            out += "</tbody>\n</table></div>\n"
        }
        for note in t.notes { out += "<p class=\"note\">\(note.htmlEscaped)</p>\n" }
        return out + "</section>\n"
    }

    // MARK: Charts

    static func blockTitle(task: String, trainSize: Int?, experts: Int?, variant: String) -> String {
        var parts = ["\(task)", "\(trainSize.map(String.init) ?? "?") train examples"]
        if let experts { parts.append(experts == 1 ? "dense (1 expert)" : "\(experts) experts") }
        if !variant.isEmpty { parts.append(variant) }
        return parts.joined(separator: " · ")
    }

    /// `rows` gathered by `key` into blocks, in order of first appearance, each titled by
    /// its first row.
    static func blocks<Row>(_ rows: [Row], key: (Row) -> String, title: (Row) -> String) -> [(key: String, title: String, rows: [Row])] {
        var blocks: [(key: String, title: String, rows: [Row])] = []
        var index: [String: Int] = [:]
        for row in rows {
            let k = key(row)
            if let i = index[k] { blocks[i].rows.append(row) } else {
                index[k] = blocks.count
                blocks.append((k, title(row), [row]))
            }
        }
        return blocks
    }

    /// Dotted accuracy lines (%) of the majority and linear baselines on one task and train
    /// size: the mean of `value` over each one's runs, labelled "<kind> <label>".
    static func baselineLines(_ baselines: [BaselineRun], task: String, trainSize: Int?, value: (BaselineRun) -> Double?,
                              label: String) -> [LineChart.Reference] {
        BaselineRun.Kind.allCases.compactMap { kind in
            let runs = baselines.filter { $0.task == task && $0.trainSize == trainSize && $0.kind == kind }
            return SampleStats(runs.compactMap(value)).mean.map { .init(y: $0 * 100, label: "\(kind.rawValue) \(label)") }
        }
    }

    /// Train (solid) and validation (dashed) curves, one colour per regime, per task ×
    /// train size × expert count: one loss chart with the overfitting onsets, one accuracy chart.
    static func curvesSection(_ set: ReportSet) -> String {
        let table = set.overfit ?? OverfitTable.build(set.data)
        var blocks = Self.blocks(table.rows.filter { !$0.curve.isEmpty },
                            key: { "\($0.task)|\($0.trainSize ?? -1)|\($0.experts ?? -1)|\($0.variant)" },
                            title: { blockTitle(task: $0.task, trainSize: $0.trainSize, experts: $0.experts, variant: $0.variant) })
        blocks.sort { a, b in
            let ra = a.rows[0], rb = b.rows[0]
            return (ra.task, ra.trainSize ?? -1, ra.experts ?? -1, ra.variant) < (rb.task, rb.trainSize ?? -1, rb.experts ?? -1, rb.variant)
        }
        var out = "<section id=\"curves\">\n<h2>Train and validation curves per regime</h2>\n"
        out += "<p class=\"desc\">Seed-mean curves of the completed runs: solid lines are the training subset (evaluated in eval mode), dashed lines the validation split; one colour per regime. Triangles mark the overfitting onset (rule in the overfitting table). Dotted horizontal lines on the accuracy charts are the majority-class and linear n-gram baselines' validation accuracy on the same data. ⚠ marks incomplete groups.</p>\n"
        if blocks.isEmpty { out += "<p><em>No completed fine-tuning runs with evaluation curves.</em></p>\n" }
        let regimes = Array(Set(table.rows.map(\.regime)))
        for block in blocks {
            let rows = block.rows.sorted { regimeRank($0.regime) < regimeRank($1.regime) }
            var loss = LineChart(title: "Loss: " + block.title, xLabel: "training step", yLabel: "cross-entropy loss")
            var acc = LineChart(title: "Accuracy: " + block.title, xLabel: "training step", yLabel: "accuracy (%)")
            for r in rows {
                let c = color(r.regime, regimes)
                let xs = r.curve.steps.map(Double.init)
                let name = r.regime + (r.complete ? "" : " ⚠")
                loss.series.append(.init(color: c, points: Array(zip(xs, r.curve.trainLoss)).map { ($0, $1) }, label: "\(name) train loss"))
                loss.series.append(.init(color: c, dashed: true, points: Array(zip(xs, r.curve.valLoss)).map { ($0, $1) }, label: "\(name) validation loss"))
                acc.series.append(.init(color: c, points: Array(zip(xs, r.curve.trainAcc.map { $0 * 100 })).map { ($0, $1) }, label: "\(name) train accuracy"))
                acc.series.append(.init(color: c, dashed: true, points: Array(zip(xs, r.curve.valAcc.map { $0 * 100 })).map { ($0, $1) }, label: "\(name) validation accuracy"))
                if let onset = r.onsetStep, let i = r.curve.steps.firstIndex(of: onset) {
                    loss.markers.append(.init(x: Double(onset), y: r.curve.valLoss[i], color: c, label: "\(r.regime): onset at step \(onset)"))
                }
                loss.legend.append(.init(label: name, color: c, symbol: .line(dashed: false)))
                acc.legend.append(.init(label: name, color: c, symbol: .line(dashed: false)))
            }
            // The baselines on the same data, as validation accuracy like the dashed curves.
            acc.references += baselineLines(set.data.baselines, task: rows[0].task, trainSize: rows[0].trainSize,
                                            value: \.valAcc, label: "baseline (validation)")
            for chart in [0, 1] {
                var extra: [LineChart.LegendEntry] = [.init(label: "train (solid)", color: "#555555", symbol: .line(dashed: false)),
                                                      .init(label: "validation (dashed)", color: "#555555", symbol: .line(dashed: true))]
                if chart == 0 && !loss.markers.isEmpty { extra.append(.init(label: "overfit onset", color: "#555555", symbol: .triangle)) }
                if chart == 0 { loss.legend += extra } else { acc.legend += extra }
            }
            out += "<h3>\(block.title.htmlEscaped)</h3>\n<div class=\"charts\">\n" + loss.svg() + "\n" + acc.svg() + "\n</div>\n"
        }
        return out + "</section>\n"
    }

    /// Reported accuracy against forgetting, one point per regime (± 1 sd of accuracy), per
    /// task × train size × expert count: what each regime gains on the task for what it
    /// loses on the parent's corpus.
    static func forgettingSection(_ table: GroupTable, baselines: [BaselineRun]) -> String {
        var out = "<section id=\"forgetting\">\n<h2>Task accuracy vs forgetting</h2>\n"
        out += "<p class=\"desc\">One point per regime: mean reported accuracy over the completed seeds (± 1 standard deviation) against mean forgetting, the rise of the body's language-modelling loss on the parent's validation text over fine-tuning (nats per byte; left is less forgetting). Dotted lines: the majority-class and linear baselines' test accuracy on the same data. ⚠ marks incomplete groups.</p>\n"
        let blocks = Self.blocks(table.rows.filter { $0.forgetting.n > 0 },
                            key: { "\($0.task)|\($0.trainSize ?? -1)|\($0.experts ?? -1)|\($0.variant)" },
                            title: { blockTitle(task: $0.task, trainSize: $0.trainSize, experts: $0.experts, variant: $0.variant) })
        let regimes = Array(Set(table.rows.map(\.regime)))
        for block in blocks {
            var chart = LineChart(title: "Accuracy vs forgetting: " + block.title, xLabel: "forgetting (nats/byte)",
                                  yLabel: "reported accuracy (%)")
            for row in block.rows.sorted(by: { (regimeRank($0.regime), $0.regime) < (regimeRank($1.regime), $1.regime) }) {
                guard let x = row.forgetting.mean, let y = row.acc.mean else { continue }
                let c = color(row.regime, regimes)
                let name = row.regime + (row.complete ? "" : " ⚠")
                chart.series.append(.init(color: c, points: [(x, y * 100)], errors: [(row.acc.sd ?? .nan) * 100], dots: true, label: name))
                chart.legend.append(.init(label: name, color: c, symbol: .lineWithDot))
            }
            chart.references += baselineLines(baselines, task: block.rows[0].task, trainSize: block.rows[0].trainSize,
                                              value: \.reportedAcc, label: "baseline")
            out += "<h3>\(block.title.htmlEscaped)</h3>\n<div class=\"charts\">\n" + chart.svg() + "\n</div>\n"
        }
        return out + "</section>\n"
    }

    /// Train − validation accuracy gap against the expert count, one line per regime,
    /// per task × train size: at the best step and at the last evaluation (± 1 sd).
    static func gapSection(_ set: ReportSet) -> String {
        var out = "<section id=\"gaps\">\n<h2>Train–validation gap vs expert count</h2>\n"
        out += "<p class=\"desc\">Train accuracy − validation accuracy in percentage points (higher: more overfitting), mean over completed seeds with ± 1 standard deviation bars; one line per regime. Expert count 1 is the dense baseline. ⚠ marks regimes with an incomplete group.</p>\n"
        guard let table = set.experts ?? (try? GroupTables.experts(set.data)) else { return out + "</section>\n" }
        // Blocks: rows that differ only in expert count and regime.
        let blocks = Self.blocks(table.rows, key: { "\($0.task)|\($0.trainSize ?? -1)|\($0.variantWithoutArchitecture)" },
                            title: { blockTitle(task: $0.task, trainSize: $0.trainSize, experts: nil, variant: $0.variantWithoutArchitecture) })
            .filter { Set($0.rows.compactMap(\.experts)).count >= 2 }
        if blocks.isEmpty { out += "<p><em>Needs groups with at least two expert counts.</em></p>\n" }
        let regimes = Array(Set(table.rows.map(\.regime)))
        for block in blocks {
            let counts = Set(block.rows.compactMap(\.experts)).sorted()
            let categories = counts.enumerated().map { (x: Double($0.offset), label: String($0.element)) }
            var charts: [LineChart] = []
            for (which, title) in [(0, "Gap at best step"), (1, "Gap at last evaluation")] {
                var chart = LineChart(title: "\(title): \(block.title)", xLabel: "experts (1 = dense)",
                                      yLabel: "train − val accuracy (pp)", xCategories: categories)
                let byRegime = Dictionary(grouping: block.rows, by: \.regime)
                let ordered = byRegime.keys.sorted(by: { (regimeRank($0), $0) < (regimeRank($1), $1) })
                for (k, regime) in ordered.enumerated() {
                    let rows = byRegime[regime]!.filter { $0.experts != nil }.sorted { $0.experts! < $1.experts! }
                    let stats = rows.map { which == 0 ? $0.gapAtBest : $0.gapAtEnd }
                    // A small sideways offset per regime keeps overlapping error bars apart.
                    let offset = (Double(k) - Double(ordered.count - 1) / 2) * 0.06
                    let points = zip(rows, stats).map { (x: Double(counts.firstIndex(of: $0.0.experts!)!) + offset, y: ($0.1.mean ?? .nan) * 100) }
                    let c = color(regime, regimes)
                    let name = regime + (rows.allSatisfy(\.complete) ? "" : " ⚠")
                    chart.series.append(.init(color: c, points: points, errors: stats.map { ($0.sd ?? .nan) * 100 }, dots: true,
                                              label: name))
                    chart.legend.append(.init(label: name, color: c, symbol: .lineWithDot))
                }
                charts.append(chart)
            }
            out += "<h3>\(block.title.htmlEscaped)</h3>\n<div class=\"charts\">\n" + charts.map { $0.svg() }.joined(separator: "\n") + "\n</div>\n"
        }
        return out + "</section>\n"
    }
}

extension GroupRow {
    /// The variant text without parent and top-k (which differ with the expert count).
    var variantWithoutArchitecture: String { RunGroup.withoutArchitecture(variant) }
}
