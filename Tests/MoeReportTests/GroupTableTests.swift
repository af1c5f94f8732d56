import MoeJSON
import MoeReport
import MoeStore
import XCTest

/// A store whose tables are known by construction:
/// - 8 experts, lr 1e-3, seeds 0–2: `all` val acc 0.60/0.62/0.64 (gap 0.10), `non-moe`
///   0.61/0.63/0.65 (gap 0.05, no overfitting), `moe` 0.40/0.44 with seed 2 missing, `ffn`
///   0.70/0.72 with seed 2 failed (its metrics say 0.99 and must not count), `attention`
///   0.55/0.56 completed and seed 2 still running;
/// - 8 experts, lr 5e-4: `all` 0.30/0.31/0.32 (a second config that must not be mixed in);
/// - 1 expert (another parent, top-k 1): `all` 0.50/0.52/0.54.
final class GroupTableTests: XCTestCase {
    var scratch: ScratchStore!
    var failedHash = ""

    override func setUpWithError() throws {
        scratch = try ScratchStore("groups")
        let sparse = try scratch.pretrain(experts: 8), dense = try scratch.pretrain(experts: 1)
        let stepTimes: [[Double]] = [[0.1, 0.3], [0.2], [0.2]]
        for (seed, acc) in [0.60, 0.62, 0.64].enumerated() {
            try scratch.finetune(parent: sparse, regime: "all", experts: 8, seed: seed, curve: peakedCurve(best: acc),
                                 stepTimes: stepTimes[seed], trainableFraction: 1)
        }
        for (seed, acc) in [0.61, 0.63, 0.65].enumerated() {
            try scratch.finetune(parent: sparse, regime: "non-moe", experts: 8, seed: seed,
                                 curve: peakedCurve(best: acc, gap: 0.05, overfit: false), trainableFraction: 0.4)
        }
        for (seed, acc) in [0.40, 0.44].enumerated() {
            try scratch.finetune(parent: sparse, regime: "moe", experts: 8, seed: seed, curve: peakedCurve(best: acc),
                                 trainableFraction: 0.6)
        }
        for (seed, acc) in [0.70, 0.72].enumerated() {
            try scratch.finetune(parent: sparse, regime: "ffn", experts: 8, seed: seed, curve: peakedCurve(best: acc))
        }
        failedHash = try scratch.finetune(parent: sparse, regime: "ffn", experts: 8, seed: 2, curve: peakedCurve(best: 0.99),
                                          status: .failed)
        for (seed, acc) in [0.55, 0.56].enumerated() {
            try scratch.finetune(parent: sparse, regime: "attention", experts: 8, seed: seed, curve: peakedCurve(best: acc))
        }
        try scratch.finetune(parent: sparse, regime: "attention", experts: 8, seed: 2, curve: peakedCurve(best: 0.9),
                             status: .running)
        for (seed, acc) in [0.30, 0.31, 0.32].enumerated() {
            try scratch.finetune(parent: sparse, regime: "all", experts: 8, seed: seed, lr: 5e-4, curve: peakedCurve(best: acc))
        }
        for (seed, acc) in [0.50, 0.52, 0.54].enumerated() {
            try scratch.finetune(parent: dense, regime: "all", experts: 1, seed: seed, curve: peakedCurve(best: acc))
        }
    }

    override func tearDown() { scratch = nil }

    func regimes(_ filter: WhereFilter? = nil) throws -> [GroupRow] {
        try XCTUnwrap(Reports.build(store: scratch.store, tables: [.regimes], filter: filter).regimes).rows
    }

    /// Most groups have lr 1e-3, so only the others name it in their variant.
    func row(_ rows: [GroupRow], regime: String, experts: Int = 8, lr: String = "0.001") throws -> GroupRow {
        let variant = lr == "0.001" ? "" : "lr=\(lr)"
        return try XCTUnwrap(rows.first { $0.regime == regime && $0.experts == experts && $0.variant == variant },
                             "no row \(regime) E=\(experts) lr=\(lr)")
    }

    func testRegimesMeansDeviationsAndDeltaAgainstAll() throws {
        let rows = try regimes()
        XCTAssertEqual(rows.count, 7)
        let all = try row(rows, regime: "all")
        XCTAssertEqual(all.valAcc.n, 3)
        assertClose(all.valAcc.mean, 0.62)
        assertClose(all.valAcc.sd, 0.02, accuracy: 1e-12)
        XCTAssertTrue(all.comparison.isBaseline)
        XCTAssertTrue(all.complete)
        XCTAssertEqual(all.seedsCompleted, 3)
        XCTAssertEqual(all.seedsExpected, 3)
        assertClose(all.gapAtBest.mean, 0.10, accuracy: 1e-12)
        assertClose(all.gapAtEnd.mean, 0.15, accuracy: 1e-12)
        assertClose(all.bestStep.mean, 20)
        assertClose(all.stepTime, 0.2, accuracy: 1e-12)
        assertClose(all.trainableFraction, 1)
        assertClose(all.valLoss.mean, 1.2, accuracy: 1e-12)

        // Same parent and seeds 0–2 on both sides: paired. Every per-seed difference is
        // 0.01, so the paired interval has (nearly) no width and 2 degrees of freedom, where
        // Welch on the same numbers (equal spreads 0.02, 3 a side) would have df 4 and a
        // half-width of t(0.975, 4)·sqrt(2·0.0004/3) ≈ 4.5 pp.
        let nonMoe = try row(rows, regime: "non-moe")
        assertClose(nonMoe.valAcc.mean, 0.63)
        assertClose(nonMoe.acc.mean, 0.63, "the fixture's test accuracy equals validation accuracy")
        assertClose(nonMoe.comparison.delta, 0.01, accuracy: 1e-12)
        XCTAssertEqual(nonMoe.comparison.test, .pairedT)
        let interval = try XCTUnwrap(nonMoe.comparison.interval)
        XCTAssertEqual(interval.test, .pairedT)
        XCTAssertEqual(interval.df, 2)
        XCTAssertEqual(interval.low, 0.01, accuracy: 1e-9)
        XCTAssertEqual(interval.high, 0.01, accuracy: 1e-9)
        XCTAssertEqual(nonMoe.comparison.seedsNeeded?.n, 2, "no spread in the differences: the minimum")
        assertClose(nonMoe.trainableFraction, 0.4)
        assertClose(nonMoe.gapAtBest.mean, 0.05, accuracy: 1e-12)
        XCTAssertTrue(nonMoe.complete)
    }

    func testMissingSeedAndUnequalSizesUseWelch() throws {
        let moe = try row(try regimes(), regime: "moe")
        XCTAssertFalse(moe.complete)
        XCTAssertEqual(moe.flags, ["seed 2 missing"])
        XCTAssertEqual(moe.seedsCompleted, 2)
        XCTAssertEqual(moe.seedsExpected, 3)
        assertClose(moe.valAcc.mean, 0.42)
        assertClose(moe.comparison.delta, -0.20, accuracy: 1e-12)
        XCTAssertEqual(moe.comparison.test, .welch, "two seeds in common are too few to pair")
        // var(moe)/2 = 0.0008/2, var(all)/3 = 0.0004/3; Welch–Satterthwaite df from those.
        let va = 0.0008 / 2, vb = 0.0004 / 3
        let df = (va + vb) * (va + vb) / (va * va / 1 + vb * vb / 2)
        let interval = try XCTUnwrap(moe.comparison.interval)
        XCTAssertEqual(interval.df, df, accuracy: 1e-9)
        XCTAssertEqual(interval.high - interval.low, 2 * StudentT.quantile(0.975, df: df) * (va + vb).squareRoot(), accuracy: 1e-9)
    }

    func testFailedAndRunningSeedsAreFlaggedAndNeverAveraged() throws {
        let rows = try regimes()
        let ffn = try row(rows, regime: "ffn")
        XCTAssertFalse(ffn.complete)
        XCTAssertEqual(ffn.flags, ["seed 2 failed (non-finite loss (nan) at step 40)"])
        XCTAssertEqual(ffn.valAcc.n, 2)
        assertClose(ffn.valAcc.mean, 0.71, accuracy: 1e-12)
        XCTAssertEqual(ffn.seeds.first { $0.hash == failedHash }?.status, .failed)
        XCTAssertNil(ffn.seeds.first { $0.hash == failedHash }?.valAcc, "a failed run contributes no value")

        let attention = try row(rows, regime: "attention")
        XCTAssertEqual(attention.flags, ["seed 2 running"])
        assertClose(attention.valAcc.mean, 0.555, accuracy: 1e-12)
    }

    func testOtherConfigsAreSeparateRowsWithTheirOwnBaseline() throws {
        let rows = try regimes()
        let slow = try row(rows, regime: "all", lr: "0.0005")
        assertClose(slow.valAcc.mean, 0.31, accuracy: 1e-12)
        XCTAssertTrue(slow.comparison.isBaseline)
        XCTAssertEqual(slow.variant, "lr=0.0005")
        // The lr 1e-3 rows compare with the lr 1e-3 `all`, not the lr 5e-4 one.
        assertClose(try row(rows, regime: "non-moe").comparison.delta, 0.01, accuracy: 1e-12)
        // Row order: task, train size, experts, variant, then regimes in ST-MoE order.
        let sparse = rows.filter { $0.experts == 8 && $0.variant.isEmpty }.map(\.regime)
        XCTAssertEqual(sparse, ["all", "non-moe", "moe", "attention", "ffn"])
        XCTAssertEqual(rows.first?.experts, 1)
    }

    /// Six of the seven groups have lr 1e-3: that is the usual setting, which a blank
    /// variant means and the tables say under the variant column.
    func testVariantsNameOnlyWhereAGroupDiffersFromMostGroups() throws {
        let set = try Reports.build(store: scratch.store, tables: [.regimes, .overfit], filter: nil)
        XCTAssertEqual(set.data.usualVariant, "lr=0.001")
        XCTAssertEqual(try XCTUnwrap(set.regimes).rows.map(\.variant).filter { !$0.isEmpty }, ["lr=0.0005"])
        let markdown = Reports.render(set, format: .md)
        XCTAssertTrue(markdown.contains("(lr=0.001); blank: that setting."), markdown)
        XCTAssertEqual(try JSONValue(parsing: Reports.render(set, format: .json))["usual_variant"], "lr=0.001")
        // A key with no single most common value is named on every group.
        let tie = try Reports.build(store: scratch.store, tables: [.regimes],
                                    filter: try WhereFilter("regime=all and experts=8"))
        XCTAssertEqual(tie.data.usualVariant, "")
        XCTAssertEqual(try XCTUnwrap(tie.regimes).rows.map(\.variant).sorted(), ["lr=0.0005", "lr=0.001"])
        XCTAssertFalse(Reports.render(tie, format: .md).contains("blank: that setting"))
    }

    func testExpertsTableComparesWithTheDenseGroupDespiteDifferentParent() throws {
        let set = try Reports.build(store: scratch.store, tables: [.experts], filter: nil)
        let rows = try XCTUnwrap(set.experts).rows
        let dense = try row(rows, regime: "all", experts: 1)
        XCTAssertTrue(dense.comparison.isBaseline)
        let sparse = try row(rows, regime: "all", experts: 8)
        assertClose(sparse.comparison.delta, 0.10, accuracy: 1e-12)
        XCTAssertEqual(sparse.comparison.baseline, "1 expert")
        XCTAssertEqual(try XCTUnwrap(sparse.comparison.interval).df, 4, accuracy: 1e-9)
        XCTAssertEqual(sparse.comparison.test, .welch, "different parents never pair")
        let slow = try row(rows, regime: "all", experts: 8, lr: "0.0005")
        XCTAssertNil(slow.comparison.delta)
        XCTAssertNotNil(slow.comparison.note)
        let nonMoe = try row(rows, regime: "non-moe", experts: 8)
        XCTAssertNil(nonMoe.comparison.delta, "no dense non-moe group exists")
    }

    func testWhereFilterRestrictsTheRows() throws {
        let rows = try regimes(try WhereFilter("regime=moe or regime=all"))
        XCTAssertEqual(Set(rows.map(\.regime)), ["moe", "all"])
        XCTAssertEqual(rows.count, 4)
    }

    func testOverfitOnsetBestStepAndEndGap() throws {
        let set = try Reports.build(store: scratch.store, tables: [.overfit], filter: nil)
        let rows = try XCTUnwrap(set.overfit).rows
        let all = try XCTUnwrap(rows.first { $0.regime == "all" && $0.experts == 8 && $0.variant.isEmpty })
        XCTAssertEqual(all.bestStep, 20)
        XCTAssertEqual(all.minValLossStep, 20)
        XCTAssertEqual(all.onsetStep, 30, "validation loss bottoms out at 20 and rises after it while training loss falls")
        XCTAssertEqual(all.seedOnsets.map(\.onsetStep), [30, 30, 30])
        assertClose(all.gapAtEnd.mean, 0.15, accuracy: 1e-12)
        assertClose(all.lossGapAtEnd.mean, 0.8, accuracy: 1e-12)
        XCTAssertEqual(all.curve.steps, [10, 20, 30, 40])
        assertClose(all.curve.valAcc[1], 0.62, accuracy: 1e-12)

        let nonMoe = try XCTUnwrap(rows.first { $0.regime == "non-moe" })
        XCTAssertNil(nonMoe.onsetStep)
        XCTAssertEqual(nonMoe.minValLossStep, 40)
        XCTAssertEqual(nonMoe.bestStep, 20)
        XCTAssertTrue(set.overfit!.rule.contains("1%"))
    }
}

final class OverfitRuleTests: XCTestCase {
    let steps = Array(stride(from: 10, through: 100, by: 10))
    let falling = (0..<10).map { 2.0 - 0.15 * Double($0) }

    func testOnsetIsTheFirstEvaluationAfterTheValidationMinimum() {
        let val = [2.0, 1.8, 1.6, 1.5, 1.45, 1.5, 1.6, 1.7, 1.8, 1.9]
        XCTAssertEqual(OverfitRule.onset(steps: steps, trainLoss: falling, valLoss: val), 60)
    }

    func testNoOnsetWhenValidationKeepsFallingOrTrainingLossRises() {
        let val = (0..<10).map { 2.0 - 0.1 * Double($0) }
        XCTAssertNil(OverfitRule.onset(steps: steps, trainLoss: falling, valLoss: val))
        let rising = [2.0, 1.8, 1.6, 1.5, 1.45, 1.5, 1.6, 1.7, 1.8, 1.9]
        let trainUp = (0..<10).map { 1.0 + 0.1 * Double($0) }
        XCTAssertNil(OverfitRule.onset(steps: steps, trainLoss: trainUp, valLoss: rising), "both rising is not overfitting")
    }

    func testARiseWithinOnePercentIsNotAnOnset() {
        var val = [2.0, 1.8, 1.6, 1.5, 1.45, 1.45, 1.45, 1.45, 1.45, 1.46]
        XCTAssertNil(OverfitRule.onset(steps: steps, trainLoss: falling, valLoss: val), "1.46 is within 1% of 1.45")
        val[9] = 1.47
        XCTAssertEqual(OverfitRule.onset(steps: steps, trainLoss: falling, valLoss: val), 60)
    }

    func testMissingValuesAreSkipped() {
        let val = [2.0, .nan, 1.6, 1.5, 1.45, .nan, 1.6, 1.7, 1.8, 1.9]
        XCTAssertEqual(OverfitRule.onset(steps: steps, trainLoss: falling, valLoss: val), 70)
        XCTAssertNil(OverfitRule.onset(steps: [10], trainLoss: [1], valLoss: [1]))
    }
}
