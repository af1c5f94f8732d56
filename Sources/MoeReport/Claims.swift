import Foundation
import MoeStore

public enum Verdict: String, Sendable, CaseIterable {
    case agrees
    case disagrees
    case notEnoughData = "not enough data"
    /// A comparison across pretrained parents with fewer than `ClaimsTable.minimumPretrainingRuns`
    /// per arm: what it shows holds for those pretraining runs only, and decides nothing.
    case conditional

    /// The verdict in words; a conditional one names how many pretraining runs it rests on.
    func text(pretrainingRuns: Int?) -> String {
        guard self == .conditional else { return rawValue }
        let n = pretrainingRuns ?? 1
        return "conditional on " + (n == 1 ? "one pretraining run" : "\(n) pretraining runs")
    }
}

/// The range a difference must fall in for a claim to hold, e.g. [−1, +1] points for "≈".
struct ClaimRange {
    var low: Double
    var high: Double

    /// Agrees when the whole interval lies in the range, disagrees when none of it does.
    func verdict(_ interval: DifferenceInterval) -> Verdict {
        if interval.low >= low && interval.high <= high { return .agrees }
        if interval.high < low || interval.low > high { return .disagrees }
        return .notEnoughData
    }

    /// How far a difference lies from the range's nearest edge: an interval centred on it
    /// decides the claim once its half-width is below this (agreeing inside the range,
    /// disagreeing outside); 0 on an edge, where no number of replicates decides.
    func distanceToEdge(from delta: Double) -> Double {
        if delta < low { return low - delta }
        if delta > high { return delta - high }
        return min(delta - low, high - delta)
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

/// What a comparison's replicates are.
public enum ReplicationUnit: String, Sendable {
    /// Fine-tuning runs of one pretrained parent.
    case fineTuningSeed = "fine-tuning seed"
    /// Pretraining runs: the fine-tuning seeds of each parent averaged first.
    case pretrainingRun = "pretraining run"
}

/// One comparison behind a claim, in one setting (task, train size, experts).
public struct ClaimEvidence: Sendable {
    public var setting: String
    /// What is compared, e.g. "acc, non-moe − all".
    public var measure: String
    /// Contributing fine-tuning runs on each side.
    public var seedsA: Int
    public var seedsB: Int
    /// What the interval's n counts.
    public var unit: ReplicationUnit = .fineTuningSeed
    /// Distinct pretrained parents on each side.
    public var pretrainingRunsA: Int = 0
    public var pretrainingRunsB: Int = 0
    public var test: DifferenceTest?
    /// For a partially overlapping comparison: the seeds both sides have.
    public var pairs: Int? = nil
    public var delta: Double?
    public var interval: DifferenceInterval?
    public var verdict: Verdict
    /// For a conditional comparison of one parent per arm: what its fine-tuning seeds say.
    public var seedLevelVerdict: Verdict?
    /// For an undecided comparison: replicates that would narrow the interval to the
    /// distance between the observed difference and the nearest edge of the claim's range,
    /// at the observed spread, so that it decides (nil when the spread is unknown).
    public var seedsNeeded: SeedsNeeded?
    /// Caveats of the groups on either side.
    public var caveats: [Caveat] = []
    /// Why the comparison could not decide, when it could not.
    public var note: String?
    /// Run hashes of both sides, for tracing.
    public var runsA: [String]
    public var runsB: [String]
    /// The origin of each run of both sides: "moerec" or the format it was imported from.
    public var origins: [String: String] = [:]
    /// What the difference is measured in: accuracy points, or nats per byte (forgetting).
    public var scale: MeasureScale = .points

    /// The fewer pretraining runs of the two arms.
    public var pretrainingRuns: Int { min(pretrainingRunsA, pretrainingRunsB) }
    public var verdictText: String { verdict.text(pretrainingRuns: pretrainingRuns) }
    var isUndecided: Bool { verdict == .notEnoughData || verdict == .conditional }
}

/// The unit of a claim's difference: accuracies and gaps in percentage points, losses in
/// nats per byte.
public enum MeasureScale: String, Sendable {
    case points, nats

    func format(_ x: Double) -> String {
        switch self {
        case .points: return Fmt.signedPoints(x)
        case .nats:
            guard x.isFinite else { return Fmt.dash }
            return String(format: "%+.3f", x)
        }
    }

    var suffix: String { self == .points ? "pp" : "nats/B" }
}

public struct ClaimRow: Sendable {
    public var id: String
    public var claim: String
    public var source: String
    /// The range of the difference that counts as agreement.
    public var expectation: String
    public var note: String?
    public var verdict: Verdict
    /// For a conditional verdict: the fewest pretraining runs per arm among its comparisons.
    public var pretrainingRuns: Int?
    public var evidence: [ClaimEvidence]
    /// The evidence in one line.
    public var summary: String

    /// The distinct runs its comparisons rest on, counted by origin: "6 runs (moerec 4,
    /// mlflow-file 2)".
    public var restsOn: String {
        var origins: [String: String] = [:]
        for e in evidence { origins.merge(e.origins) { a, _ in a } }
        guard !origins.isEmpty else { return "no runs" }
        var counts: [String: Int] = [:]
        for origin in origins.values { counts[origin, default: 0] += 1 }
        let parts = counts.keys.sorted { ($0 == "moerec" ? "" : $0) < ($1 == "moerec" ? "" : $1) }.map { "\($0) \(counts[$0]!)" }
        return "\(origins.count) runs (\(parts.joined(separator: ", ")))"
    }

    public var verdictText: String { verdict.text(pretrainingRuns: pretrainingRuns) }
}

public struct ClaimsTable: Sendable {
    public var rows: [ClaimRow]
    public static let margin = 0.01
    /// Pretraining runs each arm of a claim across pretrained parents needs to decide it.
    public static let minimumPretrainingRuns = 3
    public static let rule = """
        Each comparison is a difference of means with a 95% t-interval; accuracy differences are in percentage \
        points (pp), with a margin m = 1 pp. Regime comparisons (one pretrained parent) pair the runs that share \
        parent and seed: the interval is the paired t interval on the per-seed differences (n − 1 degrees of \
        freedom, test `paired-t`); when one side has seeds the other lacks (extra seeds of `all` run for one \
        comparison) and at least 3 seeds pair, the partially overlapping samples t interval, which uses every run \
        and the pairs' correlation (Derrick, Toher & White 2017, test `partially-overlapping-t`, "N paired"); \
        otherwise Welch's interval (unequal variances, Welch–Satterthwaite degrees of freedom, test `welch`). Comparisons across pretrained parents (sparse vs \
        dense, expert counts) replicate pretraining runs: the fine-tuning seeds of each parent are averaged first, \
        and Welch's interval compares those parent means; such a comparison decides only with at least 3 \
        pretraining runs in each arm, and otherwise is "conditional on one pretraining run" (or on N), never \
        agrees or disagrees. A comparison agrees when its whole interval lies in the claim's range, disagrees when \
        the interval lies entirely outside it, and otherwise has not enough data; so does a comparison with fewer \
        than 2 replicates on a side or an incomplete group (missing, failed or unfinished seeds), which is never \
        used. An undecided comparison says how many seeds (pairs, or pretraining runs) per arm would decide it \
        if the observed difference and spread held: the smallest n with t(0.975, df)·s/√n ≤ d, where d is the \
        distance from the observed difference to the nearest edge of the claim's range (df = n − 1 for pairs, \
        the Welch–Satterthwaite value at n per arm otherwise; at least 3 pretraining runs); a difference on an \
        edge needs more than 10000, and "—" means the spread is unknown. It is an estimate from the runs at \
        hand, not a promise: the difference itself moves as runs are added. A claim's verdict is the majority of \
        its deciding comparisons (a tie: not enough data; none deciding but some conditional: conditional); the \
        overfitting claim needs both its small-task and large-task sides to agree. Reported accuracy is test \
        accuracy at the step validation selected (validation accuracy where the run has no test number there).
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
                evidence.append(compare(g, base, measure: "acc, \(spec.regime) − all", range: spec.range,
                                        value: \.reportedAcc, missing: "no 'all' group"))
            }
            rows.append(row(id: spec.id, claim: spec.claim, source: "ST-MoE §4.2, Fig. 5", range: spec.range, evidence: evidence))
        }
        rows.append(try overfitClaim(data))
        rows.append(try fewerExpertsClaim(data))
        rows += try expertSpecializedClaims(data, index: index)
        return ClaimsTable(rows: rows)
    }

    static func setting(_ g: RunGroup) -> String {
        var parts = [g.task, "n=\(g.trainSize.map(String.init) ?? "?")", "E=\(g.experts.map(String.init) ?? "?")"]
        if !g.variant.isEmpty { parts.append(g.variant) }
        return parts.joined(separator: " ")
    }

    /// "incomplete: …" for the incomplete groups among `groups`, nil when all are complete.
    static func incompleteNote(_ groups: [RunGroup]) -> String? {
        let sides = groups.filter { !$0.isComplete }.map { g in
            "\(g.regime) E=\(g.experts.map(String.init) ?? "?"): \(g.flags.joined(separator: ", "))"
        }
        return sides.isEmpty ? nil : "incomplete: " + sides.joined(separator: "; ")
    }

    static func origins(_ runs: [RunFacts]) -> [String: String] {
        Dictionary(runs.map { ($0.hash, $0.origin) }, uniquingKeysWith: { a, _ in a })
    }

    static func caveats(_ groups: [RunGroup]) -> [Caveat] {
        let present = Set(groups.flatMap(\.caveats))
        return Caveat.allCases.filter(present.contains)
    }

    /// Two groups fine-tuned from the same parent: paired by seed on the seeds both have.
    static func compare(_ a: RunGroup, _ b: RunGroup?, measure: String, range: ClaimRange,
                        value: (RunFacts) -> Double?, missing: String) -> ClaimEvidence {
        var e = ClaimEvidence(setting: setting(a), measure: measure, seedsA: 0, seedsB: 0, verdict: .notEnoughData,
                              runsA: a.contributing.map(\.hash), runsB: b?.contributing.map(\.hash) ?? [])
        e.origins = origins(a.contributing + (b?.contributing ?? []))
        guard let b else {
            e.note = missing
            return e
        }
        let d = GroupDifference(a, b, value: value)
        e.seedsA = a.values(value).count
        e.seedsB = b.values(value).count
        e.pretrainingRunsA = Set(a.contributing.compactMap(\.parent)).count
        e.pretrainingRunsB = Set(b.contributing.compactMap(\.parent)).count
        e.test = d.test
        e.pairs = d.pairs
        e.delta = d.delta
        e.interval = d.interval
        e.seedsNeeded = d.delta.flatMap { d.seedsNeeded(margin: range.distanceToEdge(from: $0)) }
        e.caveats = caveats([a, b])
        if let note = incompleteNote([a, b]) {
            e.note = note
        } else if let interval = d.interval {
            e.verdict = range.verdict(interval)
        } else {
            e.note = d.test == .pairedT ? "fewer than 2 pairs" : "fewer than 2 seeds on a side"
        }
        if !e.isUndecided { e.seedsNeeded = nil }
        return e
    }

    /// Two arms of groups fine-tuned from different pretrained parents (e.g. sparse and
    /// dense): the replication unit is the pretraining run. The seeds of each parent are
    /// averaged first; Welch's interval compares the parent means, and decides only with at
    /// least `minimumPretrainingRuns` parents per arm.
    static func compareAcrossParents(_ armA: [RunGroup], _ armB: [RunGroup], setting: String, measure: String,
                                     range: ClaimRange, value: (RunFacts) -> Double?) -> ClaimEvidence {
        var e = ClaimEvidence(setting: setting, measure: measure, seedsA: armA.map { $0.values(value).count }.reduce(0, +),
                              seedsB: armB.map { $0.values(value).count }.reduce(0, +), unit: .pretrainingRun,
                              verdict: .notEnoughData, caveats: caveats(armA + armB),
                              runsA: armA.flatMap { $0.contributing.map(\.hash) }, runsB: armB.flatMap { $0.contributing.map(\.hash) })
        e.origins = origins((armA + armB).flatMap(\.contributing))
        /// The mean of `value` over each parent's fine-tuning seeds.
        func parentMeans(_ arm: [RunGroup]) -> [Double] {
            var byParent: [String: [Double]] = [:]
            for run in arm.flatMap(\.contributing) {
                guard let v = value(run), v.isFinite else { continue }
                byParent[run.parent ?? "run \(run.hash)", default: []].append(v)
            }
            return byParent.keys.sorted().compactMap { SampleStats(byParent[$0]!).mean }
        }
        let unitsA = parentMeans(armA), unitsB = parentMeans(armB)
        let statsA = SampleStats(unitsA), statsB = SampleStats(unitsB)
        e.pretrainingRunsA = unitsA.count
        e.pretrainingRunsB = unitsB.count
        if let ma = statsA.mean, let mb = statsB.mean { e.delta = ma - mb }
        e.test = .welch
        e.interval = DifferenceInterval(welch: unitsA, unitsB)
        e.seedsNeeded = e.delta.flatMap {
            SeedsNeeded(sdA: statsA.sd, sdB: statsB.sd, margin: range.distanceToEdge(from: $0), unit: .pretrainingRunsPerArm,
                        minimum: minimumPretrainingRuns)
        }
        if let note = incompleteNote(armA + armB) {
            e.note = note
            return e
        }
        guard !unitsA.isEmpty, !unitsB.isEmpty else {
            e.note = "no completed seeds on a side"
            return e
        }
        if e.pretrainingRuns >= minimumPretrainingRuns, let interval = e.interval {
            e.verdict = range.verdict(interval)
            if !e.isUndecided { e.seedsNeeded = nil }
            return e
        }
        e.verdict = .conditional
        var notes = ["needs \(minimumPretrainingRuns) or more pretraining runs per arm to decide"]
        if armA.count == 1 && armB.count == 1 {
            // One parent a side: the fine-tuning seeds say something about these two
            // pretraining runs only.
            let d = GroupDifference(armA[0], armB[0], value: value)
            if let interval = d.interval {
                e.seedLevelVerdict = range.verdict(interval)
                notes.append("its fine-tuning seeds alone (\(d.test.rawValue) [\(Fmt.signedPoints(interval.low)), "
                             + "\(Fmt.signedPoints(interval.high))] pp) say \(e.seedLevelVerdict!.rawValue)")
            }
        }
        e.note = notes.joined(separator: "; ")
        return e
    }

    /// The claim's verdict from its comparisons: the majority of the deciding ones; with
    /// none deciding, conditional when some comparison is.
    static func vote(_ evidence: [ClaimEvidence]) -> (verdict: Verdict, pretrainingRuns: Int?) {
        let agree = evidence.filter { $0.verdict == .agrees }.count
        let disagree = evidence.filter { $0.verdict == .disagrees }.count
        if agree > disagree { return (.agrees, nil) }
        if disagree > agree { return (.disagrees, nil) }
        let conditional = evidence.filter { $0.verdict == .conditional }
        if agree == 0 && !conditional.isEmpty { return (.conditional, conditional.map(\.pretrainingRuns).min()) }
        return (.notEnoughData, nil)
    }

    static func row(id: String, claim: String, source: String, range: ClaimRange, evidence: [ClaimEvidence],
                    verdict: (verdict: Verdict, pretrainingRuns: Int?)? = nil, note: String? = nil,
                    emptyNote: String = "no matching groups in the store") -> ClaimRow {
        let v = verdict ?? vote(evidence)
        return ClaimRow(id: id, claim: claim, source: source, expectation: range.text, note: note, verdict: v.verdict,
                        pretrainingRuns: v.pretrainingRuns, evidence: evidence,
                        summary: summary(evidence, emptyNote: emptyNote))
    }

    static func summary(_ evidence: [ClaimEvidence], emptyNote: String) -> String {
        guard !evidence.isEmpty else { return emptyNote }
        var verdicts: [String] = []
        for text in evidence.map(\.verdictText) where !verdicts.contains(text) { verdicts.append(text) }
        let counts = verdicts.map { text in "\(evidence.filter { $0.verdictText == text }.count) \(text)" }
        let items = evidence.map { e -> String in
            var text = "\(e.setting): \(e.measure) "
            if let d = e.delta {
                text += e.scale.format(d)
                if let i = e.interval { text += " [\(e.scale.format(i.low)), \(e.scale.format(i.high))]" }
                text += " \(e.scale.suffix) ("
                if e.unit == .pretrainingRun {
                    text += "\(e.pretrainingRunsA) vs \(e.pretrainingRunsB) pretraining runs, \(e.seedsA) vs \(e.seedsB) seeds"
                } else {
                    text += "\(e.seedsA) vs \(e.seedsB) seeds"
                }
                text += e.pairs.map { ", \($0) paired" } ?? ""
                text += e.test.map { ", \($0.rawValue))" } ?? ")"
            } else {
                text += "n/a"
            }
            text += " → \(e.verdictText)"
            var notes = e.note.map { [$0] } ?? []
            if e.isUndecided && e.delta != nil {
                notes.append("to decide: " + Fmt.seedsNeeded(e.seedsNeeded))
            }
            if !e.caveats.isEmpty { notes.append(e.caveats.map(\.rawValue).joined(separator: ", ")) }
            if !notes.isEmpty { text += " (\(notes.joined(separator: "; ")))" }
            return text
        }
        return "\(counts.joined(separator: ", ")). " + items.joined(separator: "; ")
    }

    /// The arms of a comparison across pretrained parents: the groups with the same config
    /// apart from parent, experts and top-k, by expert count. Each group is one parent.
    static func arms(_ groups: [RunGroup]) throws -> [[Int: [RunGroup]]] {
        var byKey: [String: [Int: [RunGroup]]] = [:]
        var order: [String] = []
        for g in groups {
            guard let e = g.experts else { continue }
            let key = try GroupIndex.architectureFreeKey(g.identity)
            if byKey[key] == nil { order.append(key) }
            byKey[key, default: [:]][e, default: []].append(g)
        }
        return order.map { byKey[$0]! }
    }

    static func armSetting(_ arm: [RunGroup], size: String? = nil) -> String {
        let g = arm[0]
        var parts = [g.task, "n=\(g.trainSize.map(String.init) ?? "?")"]
        if let size { parts.append(size) }
        if !g.variantWithoutArchitecture.isEmpty { parts.append(g.variantWithoutArchitecture) }
        return parts.joined(separator: " ")
    }

    /// Sparse overfits more than dense on the smallest train size, less on the largest:
    /// end-of-training gap (train acc − val acc), sparse − dense, regime `all`, each expert
    /// count against the dense arm, with pretraining runs as replicates.
    static func overfitClaim(_ data: ReportData) throws -> ClaimRow {
        let claim = "A sparse model overfits more than a dense one on a small task and less on a large one (gap = train acc − val acc at the last evaluation)."
        let source = "ST-MoE §4.1, Fig. 3"
        var small: [ClaimEvidence] = [], large: [ClaimEvidence] = []
        let tasks = Set(data.groups.map(\.task))
        for task in tasks.sorted() {
            let candidates = data.groups.filter { $0.task == task && $0.regime == "all" && $0.trainSize != nil }
            let sizes = Set(candidates.map { $0.trainSize! }).sorted()
            guard let lo = sizes.first, let hi = sizes.last, lo != hi else { continue }
            for size in [lo, hi] {
                let isSmall = size == lo
                let range = isSmall ? ClaimRange(low: 0, high: .infinity) : ClaimRange(low: -.infinity, high: 0)
                // Sparse arms without a dense arm of their own (e.g. a learning-rate variant
                // run only sparse) are listed only when no arm of this size has one.
                var compared: [ClaimEvidence] = [], undense: [ClaimEvidence] = []
                for byExperts in try arms(candidates.filter { $0.trainSize == size }) {
                    for e in byExperts.keys.sorted() where e > 1 {
                        let sparse = byExperts[e]!
                        let setting = armSetting(sparse, size: "E=\(e)") + (isSmall ? " (small)" : " (large)")
                        if let dense = byExperts[1] {
                            compared.append(compareAcrossParents(sparse, dense, setting: setting, measure: "end gap, sparse − dense",
                                                                 range: range, value: \.gapAtEnd))
                        } else {
                            undense.append(ClaimEvidence(setting: setting, measure: "end gap, sparse − dense",
                                                         seedsA: 0, seedsB: 0, verdict: .notEnoughData, note: "no dense group",
                                                         runsA: sparse.flatMap { $0.contributing.map(\.hash) }, runsB: []))
                        }
                    }
                }
                let evidence = compared.isEmpty ? undense : compared
                if isSmall { small += evidence } else { large += evidence }
            }
        }
        let smallVote = vote(small), largeVote = vote(large)
        let verdict: (verdict: Verdict, pretrainingRuns: Int?)
        if smallVote.verdict == .disagrees || largeVote.verdict == .disagrees {
            verdict = (.disagrees, nil)
        } else if smallVote.verdict == .agrees && largeVote.verdict == .agrees {
            verdict = (.agrees, nil)
        } else if let n = [smallVote, largeVote].filter({ $0.verdict == .conditional }).compactMap({ $0.pretrainingRuns }).min() {
            verdict = (.conditional, n)
        } else {
            verdict = (.notEnoughData, nil)
        }
        return row(id: "sparse-overfits-small", claim: claim, source: source, range: ClaimRange(low: 0, high: .infinity),
                   evidence: small + large, verdict: verdict,
                   note: "Small task: the gap difference must be > 0; large task: < 0. Needs two train sizes with dense and sparse `all` groups.",
                   emptyNote: "needs regime-all groups with 1 and more experts at two train sizes")
        .with { $0.expectation = "small task > 0 pp, large task < 0 pp" }
    }

    /// Fewer experts fine-tune better: reported accuracy of the fewest-expert sparse arm
    /// minus the most-expert one, regime `all`, per task and train size, with pretraining
    /// runs as replicates.
    static func fewerExpertsClaim(_ data: ReportData) throws -> ClaimRow {
        let claim = "Sparse models with fewer experts fine-tune better."
        let note = """
            Commonly attributed to Switch Transformers (Fedus et al., 2021), but the paper itself only notes a poorly \
            understood dependence of fine-tuning quality on FLOPs per token and parameter count; it does not state \
            that fewer experts fine-tune better.
            """
        let range = ClaimRange(low: 0, high: .infinity)
        var evidence: [ClaimEvidence] = []
        for byExperts in try arms(data.groups.filter { $0.regime == "all" && ($0.experts ?? 0) > 1 }) {
            guard let fewest = byExperts.keys.min(), let most = byExperts.keys.max(), fewest != most else { continue }
            evidence.append(compareAcrossParents(byExperts[fewest]!, byExperts[most]!, setting: armSetting(byExperts[fewest]!),
                                                 measure: "acc, E=\(fewest) − E=\(most)", range: range, value: \.reportedAcc))
        }
        return row(id: "fewer-experts-better", claim: claim, source: "attributed to Switch Transformers", range: range,
                   evidence: evidence, note: note, emptyNote: "needs regime-all groups with two or more sparse expert counts")
    }
}

extension ClaimsTable {
    /// Expert-specialized fine-tuning (Wang et al., 2024): ESFT reaches full fine-tuning's
    /// accuracy within the margin, forgets less (forgetting: the rise of the body's loss on
    /// the parent's validation text), and relevance-chosen experts beat as many random ones.
    /// Each compares groups of one parent, paired by seed.
    static func expertSpecializedClaims(_ data: ReportData, index: GroupIndex) throws -> [ClaimRow] {
        let source = "ESFT, Wang et al. 2024 (arXiv 2407.01906)"
        var accuracy: [ClaimEvidence] = [], forgetting: [ClaimEvidence] = [], relevance: [ClaimEvidence] = []
        let accuracyRange = ClaimRange(low: -margin, high: .infinity)
        for g in data.groups where g.regime == "esft-gate" || g.regime == "esft-token" {
            let all = try index.allBaseline(of: g)
            accuracy.append(compare(g, all, measure: "acc, \(g.regime) − all", range: accuracyRange, value: \.reportedAcc,
                                    missing: "no 'all' group"))
            if g.contributing.contains(where: { $0.forgetting != nil }) {
                var e = compare(g, all, measure: "forgetting, \(g.regime) − all", range: ClaimRange(low: -.infinity, high: 0),
                                value: \.forgetting, missing: "no 'all' group")
                e.scale = .nats
                forgetting.append(e)
            }
            if g.regime == "esft-gate" {
                relevance.append(compare(g, try index.sibling(of: g, regime: "random-experts"), measure: "acc, esft-gate − random-experts",
                                         range: ClaimRange(low: 0, high: .infinity), value: \.reportedAcc,
                                         missing: "no 'random-experts' group"))
            }
        }
        return [
            row(id: "esft-matches-all", claim: "Fine-tuning only the experts relevant to the task (ESFT) reaches the task accuracy of fine-tuning all parameters.",
                source: source, range: accuracyRange, evidence: accuracy,
                emptyNote: "needs esft-gate or esft-token groups with an 'all' group of the same config"),
            row(id: "esft-forgets-less", claim: "ESFT forgets less of the pretraining task than fine-tuning all parameters (forgetting = rise of the body's loss on the parent's validation text, nats/byte).",
                source: source, range: ClaimRange(low: -.infinity, high: 0), evidence: forgetting,
                emptyNote: "needs esft and 'all' groups run with forgetting_eval: parent")
                .with { $0.expectation = "< 0 nats/B" },
            row(id: "relevance-beats-random", claim: "Experts chosen by their relevance to the task fine-tune better than as many experts chosen at random.",
                source: source, range: ClaimRange(low: 0, high: .infinity), evidence: relevance,
                emptyNote: "needs esft-gate and random-experts groups of the same config"),
        ]
    }
}

extension ClaimRow {
    func with(_ change: (inout ClaimRow) -> Void) -> ClaimRow {
        var copy = self
        change(&copy)
        return copy
    }
}
