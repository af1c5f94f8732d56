import Foundation
import MoeJSON
import MoeReport
import MoeStore
import XCTest

/// The paired t interval on per-seed differences, computed by hand.
final class PairedIntervalTests: XCTestCase {
    /// Differences 0.02, 0.05, 0.01, 0.04: mean 0.03; deviations −0.01, +0.02, −0.02, +0.01,
    /// sum of squares 0.001, sd = sqrt(0.001/3), standard error sd/√4 = sqrt(1/12000);
    /// t(0.975, 3) = 3.1824463052837078 (scipy.stats.t.ppf).
    func testPairedIntervalFromKnownDifferences() throws {
        let i = try XCTUnwrap(DifferenceInterval(paired: [0.02, 0.05, 0.01, 0.04]))
        XCTAssertEqual(i.test, .pairedT)
        XCTAssertEqual(i.delta, 0.03, accuracy: 1e-15)
        XCTAssertEqual(i.df, 3)
        XCTAssertEqual(i.standardError, (1.0 / 12000).squareRoot(), accuracy: 1e-15)
        XCTAssertEqual(i.t, 3.1824463052837078, accuracy: 1e-9)
        XCTAssertEqual(i.low, 0.03 - 3.1824463052837078 * (1.0 / 12000).squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(i.high, 0.03 + 3.1824463052837078 * (1.0 / 12000).squareRoot(), accuracy: 1e-9)
        XCTAssertNil(DifferenceInterval(paired: [0.02]), "one pair has no spread")
    }

    /// The same runs through the store: `non-moe` and `all` fine-tune one parent with seeds
    /// 0–3, so the regimes table pairs them and gets the interval above; `moe` lacks seed 3,
    /// so it is compared with the partially overlapping interval (seeds 0–2 paired).
    func testRegimesTablePairsRunsWithTheSameParentAndSeed() throws {
        let scratch = try ScratchStore("paired")
        let parent = try scratch.pretrain(experts: 8)
        let all = [0.60, 0.70, 0.65, 0.55], nonMoe = [0.62, 0.75, 0.66, 0.59], moe = [0.50, 0.52, 0.49]
        for (seed, acc) in all.enumerated() {
            try scratch.finetune(parent: parent, regime: "all", experts: 8, seed: seed, curve: peakedCurve(best: acc))
        }
        for (seed, acc) in nonMoe.enumerated() {
            try scratch.finetune(parent: parent, regime: "non-moe", experts: 8, seed: seed, curve: peakedCurve(best: acc))
        }
        for (seed, acc) in moe.enumerated() {
            try scratch.finetune(parent: parent, regime: "moe", experts: 8, seed: seed, curve: peakedCurve(best: acc))
        }
        let rows = try XCTUnwrap(Reports.build(store: scratch.store, tables: [.regimes], filter: nil).regimes).rows
        let paired = try XCTUnwrap(rows.first { $0.regime == "non-moe" }?.comparison)
        XCTAssertEqual(paired.test, .pairedT)
        let expected = try XCTUnwrap(DifferenceInterval(paired: zip(nonMoe, all).map { $0 - $1 }))
        let interval = try XCTUnwrap(paired.interval)
        XCTAssertEqual(interval.df, 3)
        XCTAssertEqual(interval.low, expected.low, accuracy: 1e-12)
        XCTAssertEqual(interval.high, expected.high, accuracy: 1e-12)
        XCTAssertEqual(interval.low, 0.03 - 3.1824463052837078 * (1.0 / 12000).squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(paired.seedsNeeded?.unit, .pairs)
        XCTAssertNil(paired.note)

        // Δ is the difference of means, 0.5033 − 0.625 = −0.1217, with all's seed 3; the
        // three pairs correlate (r = 0.6547). Reference from the published formula with
        // scipy: standard error 0.0282258, df 2.20514, [−0.232903, −0.0104303].
        let partial = try XCTUnwrap(rows.first { $0.regime == "moe" }?.comparison)
        XCTAssertEqual(partial.test, .partiallyOverlappingT)
        XCTAssertEqual(try XCTUnwrap(partial.delta), -0.1216666666666667, accuracy: 1e-12)
        let i = try XCTUnwrap(partial.interval)
        XCTAssertEqual(i.standardError, 0.0282258008258489, accuracy: 1e-9)
        XCTAssertEqual(i.df, 2.205141611937051, accuracy: 1e-6)
        XCTAssertEqual(i.low, -0.2329030617183408, accuracy: 1e-6)
        XCTAssertEqual(i.high, -0.010430271614992603, accuracy: 1e-6)
        XCTAssertEqual(partial.note, "3 paired")
        XCTAssertEqual(partial.seedsNeeded?.unit, .pairs)

        let md = Reports.render(try Reports.build(store: scratch.store, tables: [.regimes], filter: nil), format: .md)
        XCTAssertTrue(md.contains("| paired-t |"), md)
        XCTAssertTrue(md.contains("-12.2 [-23.3, -1.0] (3 paired) | partially-overlapping-t |"), md)
    }

    /// The paper study's shape: a `main` sweep of seeds 0–2 × all, non-moe, attention and a
    /// `more` sweep of seeds 3–5 × all, non-moe. Every group is complete (each run expects
    /// its own sweep's seeds); non-moe pairs with all on six seeds, attention is compared with
    /// the partially overlapping interval on its three, and the claims say so (text and JSON
    /// `pairs`).
    func testClaimsPairOnTheSeedsBothGroupsHave() throws {
        let scratch = try ScratchStore("more-seeds")
        let parent = try scratch.pretrain(experts: 8)
        func sweep(_ name: String, seeds: [Int], regimes: [String]) throws -> Int64 {
            try scratch.store.createSweep(name: name, specJSON: """
                {"name":"\(name)","grid":[{"key":"seed","values":\(seeds)},{"key":"regime","values":\(regimes.map { "\"\($0)\"" })}]}
                """)
        }
        let main = try sweep("main", seeds: [0, 1, 2], regimes: ["all", "non-moe", "attention"])
        let more = try sweep("more", seeds: [3, 4, 5], regimes: ["all", "non-moe"])
        let all = [0.60, 0.70, 0.65, 0.55, 0.62, 0.58], nonMoe = [0.60, 0.69, 0.66, 0.55, 0.61, 0.58]
        let attention = [0.58, 0.69, 0.63]
        for (regime, values) in [("all", all), ("non-moe", nonMoe), ("attention", attention)] {
            for (seed, acc) in values.enumerated() {
                let hash = try scratch.finetune(parent: parent, regime: regime, experts: 8, seed: seed, trainSize: 4096,
                                                curve: peakedCurve(best: acc))
                try scratch.store.addSweepMember(sweepId: seed < 3 ? main : more, runHash: hash)
            }
        }
        let report = try Reports.build(store: scratch.store, tables: [.regimes, .claims], filter: nil)
        let rows = try XCTUnwrap(report.regimes).rows
        XCTAssertTrue(rows.allSatisfy(\.complete), rows.map(\.flags).description)
        let claims = try XCTUnwrap(report.claims).rows
        let attentionClaim = try XCTUnwrap(claims.first { $0.id == "attention-vs-all" }?.evidence.first)
        XCTAssertEqual(attentionClaim.test, .partiallyOverlappingT)
        XCTAssertEqual(attentionClaim.pairs, 3)
        XCTAssertEqual([attentionClaim.seedsA, attentionClaim.seedsB], [3, 6])
        // Every run counts: 0.6333 − 0.6167; reference interval (scipy) [−0.0606641, +0.0939974].
        XCTAssertEqual(try XCTUnwrap(attentionClaim.delta), 0.016666666666666607, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(attentionClaim.interval).low, -0.06066408487421997, accuracy: 1e-6)
        XCTAssertEqual(try XCTUnwrap(attentionClaim.interval).high, 0.09399741820755318, accuracy: 1e-6)
        let nonMoeClaim = try XCTUnwrap(claims.first { $0.id == "non-moe-vs-all" }?.evidence.first)
        XCTAssertEqual(nonMoeClaim.test, .pairedT)
        XCTAssertNil(nonMoeClaim.pairs)
        XCTAssertEqual([nonMoeClaim.seedsA, nonMoeClaim.seedsB], [6, 6])
        let md = Reports.render(report, format: .md)
        XCTAssertTrue(md.contains("(3 vs 6 seeds, 3 paired, partially-overlapping-t)"), md)
        XCTAssertTrue(md.contains("(6 vs 6 seeds, paired-t)"), md)
        let json = try JSONValue(parsing: Reports.render(report, format: .json))
        let evidence = json["tables"]?["claims"]?["rows"]?.arrayValue?.first { $0["id"] == "attention-vs-all" }?["evidence"]?.arrayValue?.first
        XCTAssertEqual(evidence?["pairs"], 3)
    }

    /// `ffn` has seeds 2, 3 and 4, one in common with `all`'s 0–2: too few pairs, so it is
    /// compared with Welch's interval on all its seeds.
    func testOneSeedInCommonIsComparedWithWelch() throws {
        let scratch = try ScratchStore("one-common")
        let parent = try scratch.pretrain(experts: 8)
        let all = [0.60, 0.70, 0.65], ffn = [0.40, 0.45, 0.41]
        for (seed, acc) in all.enumerated() {
            try scratch.finetune(parent: parent, regime: "all", experts: 8, seed: seed, curve: peakedCurve(best: acc))
        }
        for (seed, acc) in ffn.enumerated() {
            try scratch.finetune(parent: parent, regime: "ffn", experts: 8, seed: seed + 2, curve: peakedCurve(best: acc))
        }
        let rows = try XCTUnwrap(Reports.build(store: scratch.store, tables: [.regimes], filter: nil).regimes).rows
        let unpaired = try XCTUnwrap(rows.first { $0.regime == "ffn" }?.comparison)
        XCTAssertEqual(unpaired.test, .welch)
        let welch = try XCTUnwrap(DifferenceInterval(welch: ffn, all))
        XCTAssertEqual(try XCTUnwrap(unpaired.interval).df, welch.df, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(unpaired.delta), (1.26 - 1.95) / 3, accuracy: 1e-12)
        XCTAssertEqual(unpaired.seedsNeeded?.unit, .seedsPerArm)
        let md = Reports.render(try Reports.build(store: scratch.store, tables: [.regimes], filter: nil), format: .md)
        XCTAssertTrue(md.contains("| welch |"), md)
    }
}

/// Seeds needed for a 95% half-width of at most the margin.
final class SeedsNeededTests: XCTestCase {
    /// sd 0.02, margin 0.01, pairs: t(0.975, n−1)/√n ≤ 0.5. By hand: n = 17 gives
    /// 2.1199/4.1231 = 0.514, n = 18 gives 2.1098/4.2426 = 0.497, so 18.
    func testPairsAtAKnownSpread() throws {
        let s = try XCTUnwrap(SeedsNeeded(pairedSD: 0.02, margin: 0.01))
        XCTAssertEqual(s.n, 18)
        XCTAssertEqual(s.unit, .pairs)
        XCTAssertLessThanOrEqual(StudentT.quantile(0.975, df: 17) * 0.02 / 18.0.squareRoot(), 0.01)
        XCTAssertGreaterThan(StudentT.quantile(0.975, df: 16) * 0.02 / 17.0.squareRoot(), 0.01)
        XCTAssertEqual(s.text, "18 pairs")
    }

    /// Two arms with sd 0.02 each: standard error sqrt(0.0008/n), df = 2(n − 1) (Welch at
    /// equal n and spreads). n = 31: t(60) = 2.0003, 2.0003·0.028284/5.5678 = 0.01016 > 0.01;
    /// n = 32: t(62) = 1.9990, 1.9990·0.028284/5.6569 = 0.00999.
    func testTwoArmsAtAKnownSpread() throws {
        let s = try XCTUnwrap(SeedsNeeded(sdA: 0.02, sdB: 0.02, margin: 0.01))
        XCTAssertEqual(s.n, 32)
        XCTAssertEqual(s.unit, .seedsPerArm)
        let se = { (n: Double) in (0.0008 / n).squareRoot() }
        XCTAssertLessThanOrEqual(StudentT.quantile(0.975, df: 62) * se(32), 0.01)
        XCTAssertGreaterThan(StudentT.quantile(0.975, df: 60) * se(31), 0.01)
    }

    func testUnknownZeroAndHugeSpreads() throws {
        XCTAssertNil(SeedsNeeded(pairedSD: nil, margin: 0.01), "one pair: spread unknown")
        XCTAssertNil(SeedsNeeded(sdA: 0.02, sdB: nil, margin: 0.01))
        XCTAssertEqual(SeedsNeeded(pairedSD: 0, margin: 0.01)?.n, 2)
        XCTAssertEqual(SeedsNeeded(sdA: 0, sdB: 0, margin: 0.01, unit: .pretrainingRunsPerArm, minimum: 3)?.n, 3)
        let huge = try XCTUnwrap(SeedsNeeded(pairedSD: 10, margin: 0.01))
        XCTAssertNil(huge.n)
        XCTAssertEqual(huge.text, "more than \(SeedsNeeded.limit) pairs")
    }
}

/// An undecided claim says how many replicates would decide it at the observed difference:
/// its interval must shrink to the distance between the difference and the range's edge.
final class DecidingSeedsTests: XCTestCase {
    /// `non-moe` − `all` per seed: −0.020, −0.005, −0.030, −0.010 (mean −0.01625, sd
    /// sqrt(3.6875e-4 / 3)); the claim's range is [−1, +1] pp, so the difference lies 0.625 pp
    /// below it. Four pairs give [−3.4, +0.1] pp: not enough data. The estimate asks for the
    /// smallest n with t(0.975, n − 1)·sd/√n ≤ 0.00625 — not ≤ 1 pp, which 4 pairs nearly
    /// reach and which would still not decide.
    func testTheEstimateAimsAtTheRangeEdgeNearestTheDifference() throws {
        let scratch = try ScratchStore("deciding")
        let parent = try scratch.pretrain(experts: 8)
        let all = [0.60, 0.70, 0.65, 0.55], shift = [-0.020, -0.005, -0.030, -0.010]
        for (seed, acc) in all.enumerated() {
            try scratch.finetune(parent: parent, regime: "all", experts: 8, seed: seed, curve: peakedCurve(best: acc))
            try scratch.finetune(parent: parent, regime: "non-moe", experts: 8, seed: seed, curve: peakedCurve(best: acc + shift[seed]))
        }
        let rows = try XCTUnwrap(Reports.build(store: scratch.store, tables: [.claims], filter: nil).claims).rows
        let e = try XCTUnwrap(rows.first { $0.id == "non-moe-vs-all" }?.evidence.first)
        XCTAssertEqual(e.verdict, .notEnoughData)
        XCTAssertEqual(e.test, .pairedT)
        assertClose(e.delta, -0.01625, accuracy: 1e-12)
        let needed = try XCTUnwrap(e.seedsNeeded)
        XCTAssertEqual(needed.unit, .pairs)
        XCTAssertEqual(needed.margin, 0.00625, accuracy: 1e-12)
        let sd = (3.6875e-4 / 3).squareRoot()
        let n = try XCTUnwrap(needed.n)
        XCTAssertLessThanOrEqual(StudentT.quantile(0.975, df: Double(n - 1)) * sd / Double(n).squareRoot(), 0.00625 + 1e-12)
        XCTAssertGreaterThan(StudentT.quantile(0.975, df: Double(n - 2)) * sd / Double(n - 1).squareRoot(), 0.00625)
        XCTAssertEqual(n, 15, "scipy: n = 15 gives t(14)·sd/√15 = 0.00614, n = 14 gives 0.00640")
        XCTAssertGreaterThan(n, try XCTUnwrap(SeedsNeeded(pairedSD: sd, margin: 0.01)?.n), "the 1 pp half-width would not decide")
    }
}

/// Claims across pretrained parents replicate pretraining runs, not fine-tuning seeds.
final class NestedClaimTests: XCTestCase {
    /// Regime `all` at 4096 examples, 2 fine-tuning seeds per parent. E=4 parents' seed pairs
    /// (0.80, 0.82), (0.83, 0.85), (0.77, 0.79): parent means 0.81, 0.84, 0.78 (sd 0.03).
    /// E=16: (0.70, 0.72), (0.74, 0.76), (0.66, 0.68): means 0.71, 0.75, 0.67 (sd 0.04).
    func store(parents: Int) throws -> ScratchStore {
        let scratch = try ScratchStore("nested")
        let seeds: [Int: [[Double]]] = [4: [[0.80, 0.82], [0.83, 0.85], [0.77, 0.79]],
                                        16: [[0.70, 0.72], [0.74, 0.76], [0.66, 0.68]]]
        for (experts, perParent) in seeds {
            for (k, accs) in perParent.prefix(parents).enumerated() {
                let parent = try scratch.pretrain(experts: experts, seed: k)
                for (seed, acc) in accs.enumerated() {
                    try scratch.finetune(parent: parent, regime: "all", experts: experts, seed: seed, trainSize: 4096,
                                         curve: peakedCurve(best: acc))
                }
            }
        }
        return scratch
    }

    func fewerExperts(_ scratch: ScratchStore) throws -> ClaimRow {
        let rows = try XCTUnwrap(Reports.build(store: scratch.store, tables: [.claims], filter: nil).claims).rows
        return try XCTUnwrap(rows.first { $0.id == "fewer-experts-better" })
    }

    /// 3 parents × 2 seeds per arm: n = 3 units per arm, Welch on the parent means
    /// (df = (a + b)²/(a²/2 + b²/2) with a = 0.0009/3, b = 0.0016/3), not on the 6 seeds.
    func testThreeParentsWithTwoSeedsEachAreThreeUnits() throws {
        let scratch = try store(parents: 3)
        let row = try fewerExperts(scratch)
        XCTAssertEqual(row.evidence.count, 1)
        let e = row.evidence[0]
        XCTAssertEqual(e.unit, .pretrainingRun)
        XCTAssertEqual(e.pretrainingRunsA, 3)
        XCTAssertEqual(e.pretrainingRunsB, 3)
        XCTAssertEqual(e.seedsA, 6)
        assertClose(e.delta, 0.81 - 0.71, accuracy: 1e-12)
        let a = 0.0009 / 3, b = 0.0016 / 3
        let df = (a + b) * (a + b) / (a * a / 2 + b * b / 2)
        let interval = try XCTUnwrap(e.interval)
        XCTAssertEqual(interval.df, df, accuracy: 1e-9)
        XCTAssertEqual(interval.standardError, (a + b).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(interval.low, 0.10 - StudentT.quantile(0.975, df: df) * (a + b).squareRoot(), accuracy: 1e-9)
        XCTAssertGreaterThan(interval.low, 0)
        XCTAssertEqual(e.verdict, .agrees)
        XCTAssertEqual(row.verdict, .agrees)
    }

    /// A parent pretrained for more steps is another recipe, not another replicate: its
    /// groups form an arm of their own (without a 4-expert side here, so no comparison) and
    /// are labelled by the parent key that differs.
    func testParentsOfAnotherRecipeAreAnotherArm() throws {
        let scratch = try store(parents: 3)
        let longer = try scratch.pretrain(experts: 16, extra: ["steps": 20])
        for seed in 0..<2 {
            try scratch.finetune(parent: longer, regime: "all", experts: 16, seed: seed, trainSize: 4096,
                                 curve: peakedCurve(best: 0.95))
        }
        let row = try fewerExperts(scratch)
        XCTAssertEqual(row.evidence.count, 1)
        XCTAssertEqual(row.evidence[0].pretrainingRunsB, 3)
        assertClose(row.evidence[0].delta, 0.81 - 0.71, accuracy: 1e-12)
        XCTAssertEqual(row.verdict, .agrees)
        let groups = try ReportData.load(store: scratch.store, filter: nil).groups
        XCTAssertEqual(groups.count, 7)
        let long = try XCTUnwrap(groups.first { $0.runs.contains { $0.parent == longer } })
        XCTAssertTrue(long.variant.contains("parent.steps=20"), long.variant)
        XCTAssertTrue(groups.filter { $0.key != long.key }.allSatisfy { !$0.variant.contains("parent.steps") },
                      "the others share the usual recipe")
    }

    /// Three regimes on a 20-step parent, `all` on four 10-step parents: steps=10 is the
    /// most common value of its key, but the most common setting is the 20-step parent's,
    /// so its rows are blank and the others name their parent and steps.
    func testTheUsualSettingIsTheMostCommonCombination() throws {
        let scratch = try ScratchStore("usual")
        let main = try scratch.pretrain(experts: 8, extra: ["steps": 20])
        for regime in ["all", "non-moe", "moe"] {
            try scratch.finetune(parent: main, regime: regime, experts: 8, seed: 0, curve: peakedCurve(best: 0.5))
        }
        for seed in 1...4 {
            let parent = try scratch.pretrain(experts: 8, seed: seed, extra: ["steps": 10])
            try scratch.finetune(parent: parent, regime: "all", experts: 8, seed: 0, curve: peakedCurve(best: 0.4))
        }
        let data = try ReportData.load(store: scratch.store, filter: nil)
        XCTAssertEqual(data.usualVariant, "parent=\(main.prefix(12)) parent.steps=20")
        for g in data.groups {
            if g.runs.contains(where: { $0.parent == main }) {
                XCTAssertEqual(g.variant, "", g.regime)
            } else {
                XCTAssertTrue(g.variant.hasPrefix("parent=") && g.variant.hasSuffix(" parent.steps=10"), g.variant)
            }
        }
    }

    /// With two parents per arm the interval over parent means exists but decides nothing.
    func testFewerThanThreeParentsIsConditional() throws {
        let two = try fewerExperts(try store(parents: 2))
        XCTAssertEqual(two.verdict, .conditional)
        XCTAssertEqual(two.verdictText, "conditional on 2 pretraining runs")
        let e = two.evidence[0]
        XCTAssertEqual(e.pretrainingRunsA, 2)
        // Parent means 0.81, 0.84 and 0.71, 0.75: variances of the mean 0.00045/2 and 0.0008/2.
        let a = 0.00045 / 2, b = 0.0008 / 2
        XCTAssertEqual(try XCTUnwrap(e.interval).df, (a + b) * (a + b) / (a * a + b * b), accuracy: 1e-9)
        // Sample variances 0.0009/2 and 0.0016/2; at least 3 runs. The claim's range is
        // ≥ 0 and the difference 0.825 − 0.73 = 0.095: the interval decides once its
        // half-width is at most 0.095.
        let needed = try XCTUnwrap(e.seedsNeeded)
        XCTAssertEqual(needed.unit, .pretrainingRunsPerArm)
        XCTAssertEqual(needed.margin, 0.095, accuracy: 1e-12)
        let n = try XCTUnwrap(needed.n)
        XCTAssertGreaterThanOrEqual(n, 3)
        let v = (0.0009 + 0.0016) / 2
        let dfAt = { (n: Int) in v * v * Double(n - 1) / ((0.0009 / 2) * (0.0009 / 2) + (0.0016 / 2) * (0.0016 / 2)) }
        XCTAssertLessThanOrEqual(StudentT.quantile(0.975, df: dfAt(n)) * (v / Double(n)).squareRoot(), 0.095)
        if n > 3 {
            XCTAssertGreaterThan(StudentT.quantile(0.975, df: dfAt(n - 1)) * (v / Double(n - 1)).squareRoot(), 0.095)
        }

        let one = try fewerExperts(try store(parents: 1))
        XCTAssertEqual(one.verdictText, "conditional on one pretraining run")
        XCTAssertNil(one.evidence[0].interval)
        XCTAssertNil(one.evidence[0].seedsNeeded)
        XCTAssertEqual(one.evidence[0].seedLevelVerdict, .agrees, "its two seeds a side say 4 experts win by 10 pp")
    }
}

/// Selection on validation, reporting on test; the unconverged flag.
final class SelectionTests: XCTestCase {
    let steps = [10, 20, 30, 40]

    func curve(val: [Double], test: [Double]) -> Curve {
        Curve(steps: steps, trainLoss: [1, 0.8, 0.6, 0.5], valLoss: [1.1, 0.9, 0.95, 1], trainAcc: val.map { $0 + 0.05 },
              valAcc: val, testAcc: test)
    }

    func testReportedAccuracyIsTestAtTheStepValidationPicked() {
        // Validation ties at 20 and 30: the earliest wins; test at 30 is higher and must not be used.
        var run = RunFacts(hash: "a", status: .completed, seed: 0, plannedSteps: 100,
                           curve: curve(val: [0.5, 0.7, 0.7, 0.6], test: [.nan, 0.66, 0.9, 0.55]))
        XCTAssertEqual(run.bestStep, 20)
        XCTAssertEqual(run.testAccAtBest, 0.66)
        XCTAssertEqual(run.reportedAcc, 0.66)
        XCTAssertEqual(run.valAccAtBest, 0.7)
        XCTAssertEqual(run.caveats, [])

        // An older run: test only at its last step. Validation stands in, flagged.
        run.curve = curve(val: [0.5, 0.7, 0.7, 0.6], test: [.nan, .nan, .nan, 0.55])
        XCTAssertNil(run.testAccAtBest)
        XCTAssertEqual(run.reportedAcc, 0.7)
        XCTAssertEqual(run.caveats, [.noTestAtBest])
    }

    func testSelectionThroughTheStoreAndTheTables() throws {
        let scratch = try ScratchStore("selection")
        let parent = try scratch.pretrain(experts: 8)
        for seed in 0..<2 {
            try scratch.finetune(parent: parent, regime: "all", experts: 8, seed: seed,
                                 curve: curve(val: [0.5, 0.7, 0.7, 0.6], test: [.nan, 0.60 + 0.02 * Double(seed), 0.9, 0.55]))
            try scratch.finetune(parent: parent, regime: "moe", experts: 8, seed: seed,
                                 curve: curve(val: [0.5, 0.6, 0.6, 0.55], test: [.nan, .nan, .nan, 0.3]))
        }
        let set = try Reports.build(store: scratch.store, tables: [.regimes], filter: nil)
        let rows = try XCTUnwrap(set.regimes).rows
        let all = try XCTUnwrap(rows.first { $0.regime == "all" })
        assertClose(all.acc.mean, 0.61, accuracy: 1e-12)
        assertClose(all.valAcc.mean, 0.7, accuracy: 1e-12)
        XCTAssertEqual(all.caveats, [])
        XCTAssertEqual(all.seeds.map(\.testAtBest), [true, true])
        let moe = try XCTUnwrap(rows.first { $0.regime == "moe" })
        assertClose(moe.acc.mean, 0.6, accuracy: 1e-12, "validation at step 20, not test at step 40")
        XCTAssertEqual(moe.caveats, [.noTestAtBest])
        XCTAssertTrue(moe.complete, "a caveat does not make a group incomplete")
        // Δ uses the reported accuracies, paired by seed: (0.60 − 0.60, 0.60 − 0.62).
        XCTAssertEqual(moe.comparison.test, .pairedT)
        assertClose(moe.comparison.delta, 0.6 - 0.61, accuracy: 1e-12)
        let md = Reports.render(set, format: .md)
        XCTAssertTrue(md.contains("no-test-at-best"), md)
        XCTAssertTrue(md.contains("validation accuracy instead"), md)
        let json = try JSONValue(parsing: Reports.render(set, format: .json))
        let moeJSON = try XCTUnwrap(json["tables"]?["regimes"]?["rows"]?.arrayValue?.first { $0["regime"] == "moe" })
        XCTAssertEqual(moeJSON["caveats"], ["no-test-at-best"])
        XCTAssertEqual(moeJSON["runs"]?.arrayValue?.first?["test_at_best"], false)
    }

    /// `test_eval: selected`: the evaluation after training, on more examples, replaces the
    /// periodic point at the step the curve selects; at any other step it is not used.
    func testStepEvaluationIsWhatTheRunReports() throws {
        var run = RunFacts(hash: "a", status: .completed, seed: 0, plannedSteps: 100,
                           curve: curve(val: [0.5, 0.7, 0.7, 0.6], test: [.nan, .nan, .nan, .nan]))
        run.selected = StepEvaluation(step: 20, trainLoss: 0.7, valLoss: 0.95, trainAcc: 0.75, valAcc: 0.68, testAcc: 0.64)
        XCTAssertEqual(run.bestStep, 20)
        XCTAssertEqual(run.reportedAcc, 0.64)
        XCTAssertEqual(run.valAccAtBest, 0.68)
        XCTAssertEqual(run.valLossAtBest, 0.95)
        assertClose(try XCTUnwrap(run.gapAtBest), 0.07, accuracy: 1e-12)
        assertClose(try XCTUnwrap(run.gapAtEnd), 0.05, accuracy: 1e-12, "the end gap stays on the periodic curve")
        XCTAssertEqual(run.caveats, [])
        run.selected?.step = 30
        XCTAssertNil(run.testAccAtBest)
        XCTAssertEqual(run.reportedAcc, 0.7)
        XCTAssertEqual(run.caveats, [.noTestAtBest])
    }

    func testStepEvaluationThroughTheStoreAndTheTables() throws {
        let scratch = try ScratchStore("selected-evaluation")
        let parent = try scratch.pretrain(experts: 8)
        let periodic = curve(val: [0.5, 0.7, 0.7, 0.6], test: [.nan, .nan, .nan, .nan])
        for seed in 0..<2 {
            try scratch.finetune(parent: parent, regime: "all", experts: 8, seed: seed, curve: periodic,
                                 selected: StepEvaluation(step: 20, trainLoss: 0.7, valLoss: 0.95, trainAcc: 0.75,
                                                              valAcc: 0.68, testAcc: 0.64 + 0.02 * Double(seed)))
        }
        let set = try Reports.build(store: scratch.store, tables: [.regimes], filter: nil)
        let all = try XCTUnwrap(set.regimes?.rows.first { $0.regime == "all" })
        assertClose(all.acc.mean, 0.65, accuracy: 1e-12)
        assertClose(all.valAcc.mean, 0.68, accuracy: 1e-12)
        XCTAssertEqual(all.caveats, [])
        XCTAssertEqual(all.seeds.map(\.bestStep), [20, 20])
        assertClose(all.gapAtBest.mean, 0.07, accuracy: 1e-12)
    }

    func testUnconvergedRule() {
        func unconverged(_ val: [Double], steps: [Int], planned: Int?) -> Bool {
            let c = Curve(steps: steps, trainLoss: steps.map { _ in 1 }, valLoss: steps.map { _ in 1 },
                          trainAcc: val, valAcc: val)
            return ConvergenceRule.isUnconverged(c, plannedSteps: planned)
        }
        let tenths = Array(stride(from: 10, through: 100, by: 10))
        let rising = tenths.map { Double($0) / 100 }
        XCTAssertTrue(unconverged(rising, steps: tenths, planned: 100), "best at the last evaluation")
        var peakAt90 = rising
        peakAt90[9] = 0.5
        XCTAssertFalse(unconverged(peakAt90, steps: tenths, planned: 100), "step 90 is not after 90% of 100 steps")
        let fine = [10, 20, 95, 100]
        XCTAssertTrue(unconverged([0.1, 0.2, 0.9, 0.8], steps: fine, planned: 100), "step 95 is in the last tenth")
        XCTAssertFalse(unconverged([0.1, 0.9, 0.5, 0.4], steps: fine, planned: 100))
        // Without a planned length the last evaluation step stands in: 95 > 0.9·100.
        XCTAssertTrue(unconverged([0.1, 0.2, 0.9, 0.8], steps: fine, planned: nil))
        // A longer plan than the evaluations reached: 95 is not after 90% of 200.
        XCTAssertFalse(unconverged([0.1, 0.2, 0.9, 0.8], steps: fine, planned: 200))
    }

    func testUnconvergedSeedFlagsItsGroupInEveryTable() throws {
        let scratch = try ScratchStore("unconverged")
        let parent = try scratch.pretrain(experts: 8)
        let rising = Curve(steps: [10, 20, 30, 40], trainLoss: [1.4, 1.0, 0.8, 0.6], valLoss: [1.5, 1.2, 1.1, 1.0],
                           trainAcc: [0.5, 0.6, 0.7, 0.8], valAcc: [0.4, 0.5, 0.6, 0.7])
        try scratch.finetune(parent: parent, regime: "all", experts: 8, seed: 0, curve: peakedCurve(best: 0.6))
        try scratch.finetune(parent: parent, regime: "all", experts: 8, seed: 1, curve: rising)
        try scratch.finetune(parent: parent, regime: "moe", experts: 8, seed: 0, curve: peakedCurve(best: 0.5))
        try scratch.finetune(parent: parent, regime: "moe", experts: 8, seed: 1, curve: peakedCurve(best: 0.5))
        let set = try Reports.build(store: scratch.store, tables: ReportTable.allCases, filter: nil)
        let all = try XCTUnwrap(set.regimes?.rows.first { $0.regime == "all" })
        XCTAssertEqual(all.caveats, [.unconverged])
        XCTAssertEqual(all.seeds.map(\.unconverged), [false, true])
        XCTAssertEqual(set.regimes?.rows.first { $0.regime == "moe" }?.caveats, [])
        XCTAssertEqual(set.experts?.rows.first { $0.regime == "all" }?.caveats, [.unconverged])
        XCTAssertEqual(set.overfit?.rows.first { $0.regime == "all" }?.caveats, [.unconverged])
        let moeClaim = try XCTUnwrap(set.claims?.rows.first { $0.id == "moe-vs-all" })
        XCTAssertEqual(moeClaim.evidence.first?.caveats, [.unconverged])
        for format in [ReportFormat.md, .csv, .html] {
            let text = Reports.render(set, format: format)
            // The regimes, experts and overfit rows and the claims evidence.
            XCTAssertGreaterThanOrEqual(text.components(separatedBy: "unconverged").count - 1, 4, "\(format)")
        }
    }
}

/// Reference classifiers on the same task and train subset.
final class BaselineRowTests: XCTestCase {
    func testBaselineRunsAreReadFromConfigsAndStepZeroAccuracies() {
        let runs = ReportData.baselineRuns(
            configs: [("m", #"{"task":"wn-pos","train_size":256,"eval_examples":4096,"seed":0,"baseline":"majority"}"#),
                      ("l", #"{"task":"wn-pos","train_size":256,"seed":1,"baseline":"linear"}"#),
                      ("x", #"{"task":"wn-pos","train_size":256,"baseline":"forest"}"#)],
            points: [MetricPoint(runHash: "m", step: 0, split: "val", name: "acc", value: 0.2),
                     MetricPoint(runHash: "m", step: 0, split: "test", name: "acc", value: 0.21),
                     MetricPoint(runHash: "m", step: 0, split: "test", name: "loss", value: 2),
                     MetricPoint(runHash: "l", step: 0, split: "val", name: "acc", value: 0.6)])
        XCTAssertEqual(runs, [
            BaselineRun(hash: "m", task: "wn-pos", trainSize: 256, kind: .majority, seed: 0, evalExamples: 4096, valAcc: 0.2, testAcc: 0.21),
            BaselineRun(hash: "l", task: "wn-pos", trainSize: 256, kind: .linear, seed: 1, valAcc: 0.6, testAcc: nil),
        ], "an unknown baseline kind is skipped")
        XCTAssertEqual(runs[1].reportedAcc, 0.6)
    }

    /// A group's baselines are the stored ones on its data, test examples included: runs
    /// with `test_examples` set read the baselines with the same value, not those without.
    func testBaselinesOfAGroupMeasuredTheSameTestExamples() throws {
        let scratch = try ScratchStore("baseline-test-examples")
        let parent = try scratch.pretrain(experts: 8)
        for seed in 0..<2 {
            try scratch.finetune(parent: parent, regime: "all", experts: 8, seed: seed, curve: peakedCurve(best: 0.6),
                                 extra: ["test_examples": 16384])
        }
        func storeBaseline(_ testExamples: Int?, acc: Double) throws -> String {
            var config: [String: JSONValue] = ["kind": "baseline", "baseline": "linear", "task": "wn-supersense",
                                               "train_size": 256, "seed": 0]
            if let testExamples { config["test_examples"] = .int(Int64(testExamples)) }
            let run = try scratch.store.insertRun(kind: .baseline, config: .object(config), parentHash: nil,
                                                  datasetFingerprint: "fixture-\(testExamples ?? 0)", numericsVersion: 1)
            try scratch.store.markRunning(hash: run.hash, environment: RunEnvironment())
            let writer = try scratch.store.metricWriter(runHash: run.hash)
            for split in ["val", "test"] { try writer.add(step: 0, split: split, name: "acc", value: acc) }
            try writer.flush()
            try scratch.store.markCompleted(hash: run.hash, wallSeconds: 1, steps: 0)
            return run.hash
        }
        let wide = try storeBaseline(16384, acc: 0.55)
        _ = try storeBaseline(nil, acc: 0.5)
        let data = try ReportData.load(store: scratch.store, filter: nil)
        XCTAssertEqual(data.baselines.map(\.hash), [wide])
    }

    /// `all` 0.60/0.62/0.64 (mean 0.62) and `non-moe` 0.70/0.72/0.74 at 256 examples; the
    /// linear baseline at 256 scores 0.65/0.67 on test (mean 0.66): `all` is below it.
    /// Another linear baseline at 4096 examples must not be matched.
    func testReferenceRowsAndTheBelowLinearFlag() throws {
        let scratch = try ScratchStore("baselines")
        let parent = try scratch.pretrain(experts: 8)
        for seed in 0..<3 {
            try scratch.finetune(parent: parent, regime: "all", experts: 8, seed: seed, curve: peakedCurve(best: 0.60 + 0.02 * Double(seed)))
            try scratch.finetune(parent: parent, regime: "non-moe", experts: 8, seed: seed, curve: peakedCurve(best: 0.70 + 0.02 * Double(seed)))
        }
        var data = try ReportData.load(store: scratch.store, filter: nil)
        data.baselines = [
            BaselineRun(hash: "maj", task: "wn-supersense", trainSize: 256, kind: .majority, valAcc: 0.19, testAcc: 0.2),
            BaselineRun(hash: "lin0", task: "wn-supersense", trainSize: 256, kind: .linear, seed: 0, valAcc: 0.64, testAcc: 0.65),
            BaselineRun(hash: "lin1", task: "wn-supersense", trainSize: 256, kind: .linear, seed: 1, valAcc: 0.66, testAcc: 0.67),
            BaselineRun(hash: "big", task: "wn-supersense", trainSize: 4096, kind: .linear, valAcc: 0.9, testAcc: 0.9),
        ]
        let set = try Reports.build(data: data, tables: [.regimes, .experts])
        let table = try XCTUnwrap(set.regimes)
        XCTAssertEqual(table.references.map(\.baseline), [.majority, .linear])
        let linear = table.references[1]
        assertClose(linear.acc.mean, 0.66, accuracy: 1e-12)
        assertClose(linear.valAcc.mean, 0.65, accuracy: 1e-12)
        XCTAssertEqual(linear.runs, ["lin0", "lin1"])
        XCTAssertEqual(table.rows.first { $0.regime == "all" }?.caveats, [.belowLinear])
        XCTAssertEqual(table.rows.first { $0.regime == "non-moe" }?.caveats, [])
        XCTAssertEqual(set.experts?.references.count, 2)

        let md = Reports.render(set, format: .md)
        XCTAssertTrue(md.contains("| wn-supersense | 256 | - | baseline: linear | 2 | 66.0 ± 1.4 |"), md)
        XCTAssertTrue(md.contains("below-linear"), md)
        XCTAssertFalse(md.contains("90.0"), "the 4096-example baseline belongs to no row")
        let json = try JSONValue(parsing: Reports.render(set, format: .json))
        let refs = try XCTUnwrap(json["tables"]?["regimes"]?["reference_rows"]?.arrayValue)
        XCTAssertEqual(refs.map { $0["baseline"] }, ["majority", "linear"])
        XCTAssertEqual(refs[1]["acc"]?["mean"]?.doubleValue ?? 0, 0.66, accuracy: 1e-12)
        let csv = Reports.render(set.only(.regimes), format: .csv)
        XCTAssertTrue(csv.contains("regimes,reference,wn-supersense,256,,baseline: linear,"), csv)
    }
}
