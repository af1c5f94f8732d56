import Foundation

/// Number formats shared by the Markdown, CSV and HTML renderers.
enum Fmt {
    static let dash = "-"

    /// 0.6134 → "61.3"
    static func percent(_ x: Double?, digits: Int = 1) -> String {
        guard let x, x.isFinite else { return dash }
        return String(format: "%.\(digits)f", x * 100)
    }

    /// A difference of fractions in percentage points with its sign: 0.004 → "+0.4".
    static func signedPoints(_ x: Double) -> String {
        guard x.isFinite else { return dash }
        let text = String(format: "%+.1f", x * 100)
        return text == "-0.0" ? "+0.0" : text
    }

    static func number(_ x: Double?, digits: Int) -> String {
        guard let x, x.isFinite else { return dash }
        return String(format: "%.\(digits)f", x)
    }

    /// "61.3 ± 1.2" (percent) or "61.3" for one seed.
    static func percentStat(_ s: SampleStats) -> String {
        guard let mean = s.mean else { return dash }
        return percent(mean) + (s.sd.map { " ± " + percent($0) } ?? "")
    }

    static func pointsStat(_ s: SampleStats) -> String {
        guard let mean = s.mean else { return dash }
        return signedPoints(mean) + (s.sd.map { " ± " + String(format: "%.1f", $0 * 100) } ?? "")
    }

    static func numberStat(_ s: SampleStats, digits: Int) -> String {
        guard let mean = s.mean else { return dash }
        return number(mean, digits: digits) + (s.sd.map { " ± " + number($0, digits: digits) } ?? "")
    }

    static func int(_ x: Int?) -> String { x.map(String.init) ?? dash }

    static func seeds(_ completed: Int, _ expected: Int, complete: Bool) -> String {
        "\(completed)/\(max(expected, completed))" + (complete ? "" : " ⚠")
    }

    /// "12 pairs", or "—" when the spread is unknown (fewer than two replicates).
    static func seedsNeeded(_ s: SeedsNeeded?) -> String { s?.text ?? "—" }

    /// Flags, then caveats.
    static func flags(_ flags: [String], _ caveats: [Caveat]) -> String {
        (flags + caveats.map(\.rawValue)).joined(separator: "; ")
    }

    static func comparison(_ c: Comparison) -> String {
        if c.isBaseline { return "baseline" }
        guard let d = c.delta else { return dash + (c.note.map { " (\($0))" } ?? "") }
        var text = signedPoints(d)
        if let i = c.interval { text += " [\(signedPoints(i.low)), \(signedPoints(i.high))]" }
        if let note = c.note { text += " (\(note))" }
        return text
    }

    /// Step time in milliseconds.
    static func milliseconds(_ seconds: Double?) -> String {
        guard let seconds, seconds.isFinite else { return dash }
        return String(format: seconds * 1000 >= 100 ? "%.0f" : "%.1f", seconds * 1000)
    }

    static func fraction(_ x: Double?) -> String {
        guard let x, x.isFinite else { return dash }
        return String(format: x >= 0.1 ? "%.0f%%" : "%.1f%%", x * 100)
    }
}

/// Text of the tables' explanations, shared by every format.
enum Explain {
    /// How the reported accuracy, the Δ intervals, the seed estimates, the caveats and the
    /// reference rows work: the part the regimes and experts descriptions share.
    static let accuracyAndDelta = """
        Reported accuracy (acc) is each run's test accuracy at the step its validation accuracy selected (the \
        highest validation accuracy, earliest on ties); validation accuracy and loss at that step are shown too. A \
        run that has no test evaluation at that step (older runs evaluate test only at their last step) reports its \
        validation accuracy instead, and its group is flagged no-test-at-best. A run with test_eval: selected \
        chooses the step on smaller periodic evaluations and then measures train, validation and test on \
        eval_examples (test on test_examples where a run sets it) with that step's parameters: acc, validation accuracy and loss and the gap at the best step \
        come from that measurement. Values are summarised over the completed seeds as mean ± sample standard deviation (n − 1). Δ is the difference of mean reported accuracy \
        against the baseline group, in percentage points, with a 95% interval; the test column says which: paired-t \
        when both groups fine-tune the same parent with the same seeds (the t interval on the per-seed differences, \
        n − 1 degrees of freedom); partially-overlapping-t when at least 3 seeds pair and one group has seeds the \
        other lacks (the partially overlapping samples t interval of Derrick, Toher & White 2017: every run counts, \
        the pairs' correlation enters the standard error, and the Δ cell says how many seeds are paired); welch \
        otherwise (unequal variances, Welch–Satterthwaite degrees of freedom). \
        Pairing removes what the seeds share, so it narrows the interval only as far as paired runs are positively \
        correlated. "n for ±1 pp": the seeds per arm (pairs for paired-t and partially-overlapping-t) that would make the interval's \
        half-width at most 1 pp at the observed spread, the smallest n with t(0.975, df)·s/√n ≤ 1 pp (an estimate \
        from the runs at hand; "—" when the spread is unknown). \(ConvergenceRule.text) Reference rows (regime \
        "baseline: majority" / "baseline: linear"): the majority class and a linear n-gram classifier on the same \
        task and train subset, test accuracy (validation where a baseline run has no test number); a group whose \
        mean reported accuracy is below the linear baseline's is flagged below-linear. Rows marked ⚠ are incomplete \
        (a seed missing, failed or unfinished): their numbers cover only the completed seeds counted in the seeds \
        column, and the claims table does not use them.
        """

    static let regimes = """
        One row per fine-tuning group (runs with the same config except the seed), grouped by task, train-subset \
        size and expert count; Δ is against regime `all` with the same config otherwise. Updated: share of \
        parameters the regime trains. Step: mean training-step time. Forgetting (shown when runs measured it, forgetting_eval: parent): the rise of the body's language-modelling loss on the parent's validation text over fine-tuning, nats per byte. Gap: train accuracy − validation accuracy \
        (points), at the best step and at the last evaluation. \(accuracyAndDelta)
        """

    static let experts = """
        The same metrics by expert count (1 = dense baseline), per task, train-subset size and regime; Δ is \
        against the dense group with the same regime and config otherwise (its pretrained parent and top-k differ, \
        so the runs never pair and the interval is Welch's). \(accuracyAndDelta)
        """

    static let overfit = """
        One row per regime × expert count × train-subset size, from the seed-mean curves of the completed runs. \
        Best step: highest mean validation accuracy. Min-loss step: lowest mean validation loss. End gap: train \
        accuracy − validation accuracy at the last evaluation (points, mean ± sd over seeds); loss gap: validation \
        loss − train loss there. \(ConvergenceRule.text)
        """

    static let claims = """
        Each fine-tuning finding of ST-MoE (Zoph et al., 2022), and one commonly attributed to Switch Transformers, \
        checked against this store. Unconverged and no-test-at-best groups are named in the evidence. "Rests on" \
        counts the distinct runs a claim's comparisons use by origin: trained by moerec, or imported (run-log, \
        trainer, mlflow-file, mlflow-sqlite); the JSON report lists their hashes (runs_a, runs_b, origins).
        """
}

extension String {
    /// Escapes text for HTML content and attribute values.
    var htmlEscaped: String {
        var out = ""
        out.reserveCapacity(count)
        for ch in unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }
}
