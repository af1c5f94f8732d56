import Foundation
import MoeStore

public enum Verdict: String, Sendable, CaseIterable {
    case agrees
    case disagrees
    case notEnoughData = "not enough data"
}

/// The range a difference must fall in for a claim to hold, e.g. [−1, +1] points for "≈".
struct ClaimRange {
    var low: Double
    var high: Double

    /// Agrees when the whole interval lies in the range, disagrees when none of it does.
    func verdict(_ interval: WelchInterval) -> Verdict {
        if interval.low >= low && interval.high <= high { return .agrees }
        if interval.high < low || interval.low > high { return .disagrees }
        return .notEnoughData
    }

    var text: String {
        func pp(_ x: Double) -> String { x == 0 ? "0" : String(format: "%+.0f", x * 100) }
        switch (low.isFinite, high.isFinite) {
        case (true, true): return "[\(pp(low)), \(pp(high))] pp"
        case (true, false): return "≥ \(pp(low)) pp"
        case (false, true): return "≤ \(pp(high)) pp"
        default: return "any"
        }
    }
}

/// One comparison behind a claim, in one setting (task, train size, experts).
public struct ClaimEvidence: Sendable {
    public var setting: String
    /// What is compared, e.g. "val acc, non-moe − all".
    public var measure: String
    public var seedsA: Int
    public var seedsB: Int
    public var delta: Double?
    public var interval: WelchInterval?
    public var verdict: Verdict
    /// Why the comparison could not decide, when it could not.
    public var note: String?
    /// Run hashes of both sides, for tracing.
    public var runsA: [String]
    public var runsB: [String]
}

public struct ClaimRow: Sendable {
    public var id: String
    public var claim: String
    public var source: String
    /// The range of the difference that counts as agreement.
    public var expectation: String
    public var note: String?
    public var verdict: Verdict
    public var evidence: [ClaimEvidence]
    /// The evidence in one line.
    public var summary: String
}

public struct ClaimsTable: Sendable {
    public var rows: [ClaimRow]
    public static let margin = 0.01
    public static let rule = """
        Each comparison is a difference of seed means with a 95% Welch t-interval (unequal variances, \
        Welch–Satterthwaite degrees of freedom); accuracy differences are in percentage points (pp), with a \
        margin m = 1 pp. A comparison agrees when its whole interval lies in the claim's range, disagrees when \
        the interval lies entirely outside it, and otherwise has not enough data; so does a comparison with \
        fewer than 2 completed seeds on a side or an incomplete group (missing, failed or unfinished seeds), \
        which is never used. A claim's verdict is the majority of its deciding comparisons (a tie: not enough \
        data); the overfitting claim needs both its small-task and large-task sides to agree.
        """

    static func build(_ data: ReportData) throws -> ClaimsTable {
        let index = try GroupIndex(data)
        var rows: [ClaimRow] = []
        let m = margin
        let regimeClaims: [(id: String, regime: String, claim: String, range: ClaimRange)] = [
            ("non-moe-vs-all", "non-moe", "Fine-tuning only the non-MoE parameters works about as well as fine-tuning all (Non-MoE ≈ All).",
             ClaimRange(low: -m, high: m)),
            ("ffn-vs-all", "ffn", "Fine-tuning only the dense FFN parameters is at least as good as all, slightly better in ST-MoE (FFN ≥ All).",
             ClaimRange(low: -m, high: .infinity)),
            ("attention-vs-all", "attention", "Fine-tuning only the attention parameters is slightly worse than all.",
             ClaimRange(low: -2 * m, high: 0)),
            ("moe-vs-all", "moe", "Fine-tuning only the MoE parameters (router and experts) is much worse than all, although most parameters sit in the MoE layers.",
             ClaimRange(low: -.infinity, high: -2 * m)),
        ]
        for spec in regimeClaims {
            var evidence: [ClaimEvidence] = []
            for g in data.groups where g.regime == spec.regime && (g.experts ?? 0) > 1 {
                let base = try index.allBaseline(of: g)
                evidence.append(compare(g, base, measure: "val acc, \(spec.regime) − all", range: spec.range,
                                        value: \.valAccAtBest, missing: "no 'all' group"))
            }
            rows.append(row(id: spec.id, claim: spec.claim, source: "ST-MoE §4.2, Fig. 5", range: spec.range, evidence: evidence))
        }
        rows.append(try overfitClaim(data, index: index))
        rows.append(try fewerExpertsClaim(data, index: index))
        return ClaimsTable(rows: rows)
    }

    static func setting(_ g: RunGroup) -> String {
        var parts = [g.task, "n=\(g.trainSize.map(String.init) ?? "?")", "E=\(g.experts.map(String.init) ?? "?")"]
        if !g.variant.isEmpty { parts.append(g.variant) }
        return parts.joined(separator: " ")
    }

    static func compare(_ a: RunGroup, _ b: RunGroup?, measure: String, range: ClaimRange,
                        value: (RunFacts) -> Double?, missing: String, setting: String? = nil) -> ClaimEvidence {
        var e = ClaimEvidence(setting: setting ?? ClaimsTable.setting(a), measure: measure, seedsA: 0, seedsB: 0,
                              verdict: .notEnoughData, runsA: a.contributing.map(\.hash), runsB: b?.contributing.map(\.hash) ?? [])
        guard let b else {
            e.note = missing
            return e
        }
        let va = a.values(value), vb = b.values(value)
        e.seedsA = va.count
        e.seedsB = vb.count
        if let ma = SampleStats(va).mean, let mb = SampleStats(vb).mean { e.delta = ma - mb }
        e.interval = WelchInterval(va, vb)
        if !a.isComplete || !b.isComplete {
            let sides = [a, b].filter { !$0.isComplete }.map { g in
                "\(g.regime) E=\(g.experts.map(String.init) ?? "?"): \(g.flags.joined(separator: ", "))"
            }
            e.note = "incomplete: " + sides.joined(separator: "; ")
            return e
        }
        guard let interval = e.interval else {
            e.note = "fewer than 2 seeds on a side"
            return e
        }
        e.verdict = range.verdict(interval)
        return e
    }

    static func vote(_ evidence: [ClaimEvidence]) -> Verdict {
        let agree = evidence.filter { $0.verdict == .agrees }.count
        let disagree = evidence.filter { $0.verdict == .disagrees }.count
        if agree > disagree { return .agrees }
        if disagree > agree { return .disagrees }
        return .notEnoughData
    }

    static func row(id: String, claim: String, source: String, range: ClaimRange, evidence: [ClaimEvidence],
                    verdict: Verdict? = nil, note: String? = nil, emptyNote: String = "no matching groups in the store") -> ClaimRow {
        let v = verdict ?? vote(evidence)
        return ClaimRow(id: id, claim: claim, source: source, expectation: range.text, note: note, verdict: v,
                        evidence: evidence, summary: summary(evidence, emptyNote: emptyNote))
    }

    static func summary(_ evidence: [ClaimEvidence], emptyNote: String) -> String {
        guard !evidence.isEmpty else { return emptyNote }
        let counts = Verdict.allCases.compactMap { v -> String? in
            let n = evidence.filter { $0.verdict == v }.count
            return n > 0 ? "\(n) \(v.rawValue)" : nil
        }.joined(separator: ", ")
        let items = evidence.map { e -> String in
            var text = "\(e.setting): \(e.measure) "
            if let d = e.delta {
                text += Fmt.signedPoints(d)
                if let i = e.interval { text += " [\(Fmt.signedPoints(i.low)), \(Fmt.signedPoints(i.high))]" }
                text += " pp (\(e.seedsA) vs \(e.seedsB) seeds)"
            } else {
                text += "n/a"
            }
            text += " → \(e.verdict.rawValue)"
            if let note = e.note { text += " (\(note))" }
            return text
        }
        return "\(counts). " + items.joined(separator: "; ")
    }

    /// Sparse overfits more than dense on the smallest train size, less on the largest:
    /// end-of-training gap (train acc − val acc), sparse − dense, regime `all`.
    static func overfitClaim(_ data: ReportData, index: GroupIndex) throws -> ClaimRow {
        let claim = "A sparse model overfits more than a dense one on a small task and less on a large one (gap = train acc − val acc at the last evaluation)."
        let source = "ST-MoE §4.1, Fig. 3"
        var small: [ClaimEvidence] = [], large: [ClaimEvidence] = []
        let tasks = Set(data.groups.map(\.task))
        for task in tasks.sorted() {
            let candidates = data.groups.filter { $0.task == task && $0.regime == "all" && $0.trainSize != nil }
            let sizes = Set(candidates.map { $0.trainSize! }).sorted()
            guard let lo = sizes.first, let hi = sizes.last, lo != hi else { continue }
            for g in candidates where (g.experts ?? 0) > 1 && (g.trainSize == lo || g.trainSize == hi) {
                let dense = try index.denseBaselines(of: g)
                let isSmall = g.trainSize == lo
                let range = isSmall ? ClaimRange(low: 0, high: .infinity) : ClaimRange(low: -.infinity, high: 0)
                var e = compare(g, dense.count == 1 ? dense[0] : nil, measure: "end gap, sparse − dense", range: range,
                                value: \.gapAtEnd, missing: dense.isEmpty ? "no dense group" : "several dense groups match")
                e.setting += isSmall ? " (small)" : " (large)"
                if isSmall { small.append(e) } else { large.append(e) }
            }
        }
        let smallVote = vote(small), largeVote = vote(large)
        let verdict: Verdict
        if smallVote == .disagrees || largeVote == .disagrees {
            verdict = .disagrees
        } else if smallVote == .agrees && largeVote == .agrees {
            verdict = .agrees
        } else {
            verdict = .notEnoughData
        }
        return row(id: "sparse-overfits-small", claim: claim, source: source, range: ClaimRange(low: 0, high: .infinity),
                   evidence: small + large, verdict: verdict,
                   note: "Small task: the gap difference must be > 0; large task: < 0. Needs two train sizes with dense and sparse `all` groups.",
                   emptyNote: "needs regime-all groups with 1 and more experts at two train sizes")
        .with { $0.expectation = "small task > 0 pp, large task < 0 pp" }
    }

    /// Fewer experts fine-tune better: val acc of the fewest-expert sparse group minus the
    /// most-expert one, regime `all`, per task and train size.
    static func fewerExpertsClaim(_ data: ReportData, index: GroupIndex) throws -> ClaimRow {
        let claim = "Sparse models with fewer experts fine-tune better."
        let note = """
            Commonly attributed to Switch Transformers (Fedus et al., 2021), but the paper itself only notes a poorly \
            understood dependence of fine-tuning quality on FLOPs per token and parameter count; it does not state \
            that fewer experts fine-tune better.
            """
        let range = ClaimRange(low: 0, high: .infinity)
        var evidence: [ClaimEvidence] = []
        var seen = Set<String>()
        for g in data.groups where g.regime == "all" && (g.experts ?? 0) > 1 {
            let siblings = try index.expertSiblings(of: g).filter { ($0.experts ?? 0) > 1 }
            let key = try GroupIndex.architectureFreeKey(g.identity)
            guard !seen.contains(key) else { continue }
            seen.insert(key)
            let counts = Set(siblings.compactMap(\.experts))
            guard let fewest = counts.min(), let most = counts.max(), fewest != most else { continue }
            let few = siblings.filter { $0.experts == fewest }, many = siblings.filter { $0.experts == most }
            guard few.count == 1, many.count == 1 else { continue }
            var setting = "\(g.task) n=\(g.trainSize.map(String.init) ?? "?")"
            if !g.variant.isEmpty { setting += " \(g.variant)" }
            evidence.append(compare(few[0], many[0], measure: "val acc, E=\(fewest) − E=\(most)", range: range,
                                    value: \.valAccAtBest, missing: "", setting: setting))
        }
        return row(id: "fewer-experts-better", claim: claim, source: "attributed to Switch Transformers", range: range,
                   evidence: evidence, note: note, emptyNote: "needs regime-all groups with two or more sparse expert counts")
    }
}

extension ClaimRow {
    func with(_ change: (inout ClaimRow) -> Void) -> ClaimRow {
        var copy = self
        change(&copy)
        return copy
    }
}
