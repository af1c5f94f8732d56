import MoeReport
import MoeStore
import XCTest

/// A store built so that each claim's verdict is known: regimes share parent and seeds with
/// `all` and move together, so the paired intervals have (nearly) no width.
/// Large task (4096): 8 experts `all` 0.800/0.801/0.802; `non-moe` +0.2 pp (≈ → agrees);
/// `ffn` +0.3 pp (≥ −1 pp → agrees); `attention` +5 pp (not slightly below → disagrees);
/// `moe` −10 pp (well below → agrees). Dense and sparse `all` at 256 and 4096 train
/// examples: end gaps sparse 0.30 vs dense 0.10 on the small task (more overfitting →
/// agrees), 0.02 vs 0.05 on the large one (less → agrees). 4 experts beat 16 by 2 pp. The
/// last two compare pretrained parents with one pretraining run per arm: conditional on it.
final class ClaimsTests: XCTestCase {
    var scratch: ScratchStore!
    var parents: [Int: String] = [:]

    func seeds(_ center: Double) -> [Double] { [center - 0.001, center, center + 0.001] }

    override func setUpWithError() throws {
        scratch = try ScratchStore("claims")
        for e in [1, 4, 8, 16] { parents[e] = try scratch.pretrain(experts: e) }
        func add(_ regime: String, experts: Int, size: Int, center: Double, endGap: Double = 0.05) throws {
            for (seed, acc) in seeds(center).enumerated() {
                try scratch.finetune(parent: self.parents[experts]!, regime: regime, experts: experts, seed: seed, trainSize: size,
                                     curve: peakedCurve(best: acc, endGap: endGap + Double(seed) * 0.001))
            }
        }
        try add("all", experts: 8, size: 4096, center: 0.801, endGap: 0.02)
        try add("non-moe", experts: 8, size: 4096, center: 0.803)
        try add("ffn", experts: 8, size: 4096, center: 0.804)
        try add("attention", experts: 8, size: 4096, center: 0.851)
        try add("moe", experts: 8, size: 4096, center: 0.701)
        try add("all", experts: 1, size: 4096, center: 0.78, endGap: 0.05)
        try add("all", experts: 4, size: 4096, center: 0.81, endGap: 0.02)
        try add("all", experts: 16, size: 4096, center: 0.79, endGap: 0.02)
        try add("all", experts: 8, size: 256, center: 0.50, endGap: 0.30)
        try add("all", experts: 1, size: 256, center: 0.52, endGap: 0.10)
    }

    override func tearDown() { scratch = nil }

    func claims() throws -> [String: ClaimRow] {
        let rows = try XCTUnwrap(Reports.build(store: scratch.store, tables: [.claims], filter: nil).claims).rows
        return Dictionary(uniqueKeysWithValues: rows.map { ($0.id, $0) })
    }

    func testVerdictsFollowTheIntervals() throws {
        let c = try claims()
        XCTAssertEqual(c.count, 9)
        XCTAssertEqual(c["non-moe-vs-all"]?.verdict, .agrees)
        XCTAssertEqual(c["ffn-vs-all"]?.verdict, .agrees)
        XCTAssertEqual(c["attention-vs-all"]?.verdict, .disagrees)
        XCTAssertEqual(c["moe-vs-all"]?.verdict, .agrees)
        XCTAssertEqual(c["sparse-overfits-small"]?.verdict, .conditional)
        XCTAssertEqual(c["sparse-overfits-small"]?.verdictText, "conditional on one pretraining run")
        XCTAssertEqual(c["fewer-experts-better"]?.verdict, .conditional)

        let nonMoe = try XCTUnwrap(c["non-moe-vs-all"]?.evidence.first)
        assertClose(nonMoe.delta, 0.002, accuracy: 1e-12)
        XCTAssertEqual(nonMoe.seedsA, 3)
        XCTAssertEqual(nonMoe.seedsB, 3)
        XCTAssertEqual(nonMoe.test, .pairedT)
        XCTAssertEqual(nonMoe.unit, .fineTuningSeed)
        XCTAssertEqual(try XCTUnwrap(nonMoe.interval).high, 0.002, accuracy: 1e-9)
        XCTAssertNil(nonMoe.seedsNeeded, "a decided comparison needs no more seeds")
        XCTAssertTrue(c["non-moe-vs-all"]!.summary.contains("+0.2 ["), c["non-moe-vs-all"]!.summary)

        let overfit = try XCTUnwrap(c["sparse-overfits-small"])
        let small = try XCTUnwrap(overfit.evidence.first { $0.setting.hasSuffix("(small)") })
        assertClose(small.delta, 0.20, accuracy: 1e-9)
        XCTAssertEqual(small.unit, .pretrainingRun)
        XCTAssertEqual(small.pretrainingRunsA, 1)
        XCTAssertEqual(small.seedsA, 3)
        XCTAssertNil(small.interval, "one pretraining run a side: no spread between pretraining runs")
        XCTAssertEqual(small.seedLevelVerdict, .agrees, "the fine-tuning seeds of this one parent agree")
        XCTAssertNil(small.seedsNeeded, "the spread between pretraining runs is unknown")
        XCTAssertTrue(overfit.summary.contains("to decide: —"), overfit.summary)
        XCTAssertEqual(overfit.evidence.filter { $0.setting.hasSuffix("(large)") }.count, 3, "4, 8 and 16 experts vs dense")

        let fewer = try XCTUnwrap(c["fewer-experts-better"])
        XCTAssertEqual(fewer.evidence.count, 1)
        assertClose(fewer.evidence[0].delta, 0.02, accuracy: 1e-9)
        XCTAssertEqual(fewer.evidence[0].measure, "acc, E=4 − E=16")
        XCTAssertEqual(fewer.evidence[0].verdict, .conditional)
    }

    /// A sparse-only variant (another learning rate, no dense group of its own) adds no
    /// evidence beside the comparisons that have a dense arm; a store with no dense group at
    /// all says so.
    func testSparseArmsWithoutDenseAreListedOnlyWhenNoArmHasOne() throws {
        for (seed, acc) in seeds(0.7).enumerated() {
            try scratch.finetune(parent: parents[8]!, regime: "all", experts: 8, seed: seed, trainSize: 4096, lr: 5e-4,
                                 curve: peakedCurve(best: acc))
        }
        let overfit = try XCTUnwrap(try claims()["sparse-overfits-small"])
        let large = overfit.evidence.filter { $0.setting.hasSuffix("(large)") }
        XCTAssertEqual(large.count, 3, large.map(\.setting).joined(separator: "; "))
        XCTAssertFalse(large.contains { $0.note == "no dense group" })

        let sparseOnly = try ScratchStore("sparse-only")
        let parent = try sparseOnly.pretrain(experts: 8)
        for size in [256, 4096] {
            try sparseOnly.finetune(parent: parent, regime: "all", experts: 8, seed: 0, trainSize: size, curve: peakedCurve(best: 0.5))
        }
        let rows = try XCTUnwrap(Reports.build(store: sparseOnly.store, tables: [.claims], filter: nil).claims).rows
        let lonely = try XCTUnwrap(rows.first { $0.id == "sparse-overfits-small" })
        XCTAssertEqual(lonely.evidence.map(\.note), ["no dense group", "no dense group"])
        XCTAssertEqual(lonely.verdict, .notEnoughData)
    }

    func testFewerExpertsClaimSaysWhatSwitchTransformersActuallyReports() throws {
        let row = try XCTUnwrap(try claims()["fewer-experts-better"])
        let note = try XCTUnwrap(row.note)
        XCTAssertTrue(note.lowercased().contains("commonly attributed to switch transformers"), note)
        XCTAssertTrue(note.contains("poorly understood dependence"), note)
        XCTAssertTrue(note.contains("FLOPs per token"), note)
        XCTAssertTrue(note.contains("parameter count"), note)
    }

    func testIncompleteGroupsAndMissingComparisonsGiveNotEnoughData() throws {
        // One more moe seed at a wildly different value, failed: the group becomes
        // incomplete and must not decide the claim, whatever its completed seeds say.
        try scratch.finetune(parent: parents[8]!, regime: "moe", experts: 8, seed: 3, trainSize: 4096,
                             curve: peakedCurve(best: 0.1), status: .failed)
        let c = try claims()
        let moe = try XCTUnwrap(c["moe-vs-all"])
        XCTAssertEqual(moe.verdict, .notEnoughData)
        XCTAssertTrue(moe.evidence[0].note?.contains("incomplete") == true)
        // Seed 3 exists only for moe, so every other group now misses it too.
        XCTAssertEqual(c["non-moe-vs-all"]?.verdict, .notEnoughData)
    }

    func testEmptyStoreGivesNotEnoughDataEverywhere() throws {
        let empty = try ScratchStore("empty")
        let rows = try XCTUnwrap(Reports.build(store: empty.store, tables: [.claims], filter: nil).claims).rows
        XCTAssertEqual(rows.count, 9)
        XCTAssertTrue(rows.allSatisfy { $0.verdict == .notEnoughData })
        XCTAssertTrue(rows.allSatisfy { !$0.summary.isEmpty })
    }

    /// ESFT's claims on groups of one parent paired by seed: esft-gate −0.1 pp from all
    /// (within the margin → agrees), esft-token −0.2 pp (agrees); forgetting 0.10 and 0.20
    /// nats/B against all's 0.30 (less → agrees); esft-gate 3 pp below random-experts
    /// (relevance does not beat random → disagrees).
    func testExpertSpecializedClaims() throws {
        let store = try ScratchStore("esft-claims")
        let parent = try store.pretrain(experts: 8)
        func add(_ regime: String, center: Double, forgetting: Double) throws {
            for (seed, acc) in seeds(center).enumerated() {
                try store.finetune(parent: parent, regime: regime, experts: 8, seed: seed, trainSize: 4096,
                                   curve: peakedCurve(best: acc), forgetting: forgetting + Double(seed) * 0.001)
            }
        }
        try add("all", center: 0.801, forgetting: 0.30)
        try add("esft-gate", center: 0.800, forgetting: 0.10)
        try add("esft-token", center: 0.799, forgetting: 0.20)
        try add("random-experts", center: 0.830, forgetting: 0.15)
        let report = try Reports.build(store: store.store, tables: [.claims, .regimes], filter: nil)
        let c = Dictionary(uniqueKeysWithValues: try XCTUnwrap(report.claims).rows.map { ($0.id, $0) })
        XCTAssertEqual(c["esft-matches-all"]?.verdict, .agrees, c["esft-matches-all"]?.summary ?? "")
        XCTAssertEqual(c["esft-matches-all"]?.evidence.count, 2)
        XCTAssertEqual(c["esft-forgets-less"]?.verdict, .agrees, c["esft-forgets-less"]?.summary ?? "")
        XCTAssertTrue(c["esft-forgets-less"]?.summary.contains("-0.200 [") ?? false, c["esft-forgets-less"]?.summary ?? "")
        XCTAssertTrue(c["esft-forgets-less"]?.summary.contains("nats/B") ?? false)
        XCTAssertEqual(c["relevance-beats-random"]?.verdict, .disagrees, c["relevance-beats-random"]?.summary ?? "")
        // The regimes table shows the forgetting column once runs measured it.
        let regimes = try XCTUnwrap(report.regimes)
        XCTAssertEqual(regimes.rows.first { $0.regime == "esft-gate" }?.forgetting.mean ?? .nan, 0.101, accuracy: 1e-12)
    }
}
