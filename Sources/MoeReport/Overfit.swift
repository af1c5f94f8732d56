import Foundation
import MoeStore

/// When validation loss starts to rise while training loss falls.
public enum OverfitRule {
    /// The rise in validation loss, relative to its minimum, that counts as rising: below
    /// it, the end of a curve that merely wobbles around its minimum is not overfitting.
    public static let relativeRise = 0.01

    public static let text = """
        Onset rule: take the evaluation step with the lowest validation loss (the earliest on ties). If at the \
        last evaluation the validation loss is more than 1% above that minimum while the training loss is below \
        its value at the minimum, the onset is the first evaluation step after the minimum; otherwise there is \
        no onset ("none"). Group rows apply the rule to the seed-mean curves.
        """

    /// The onset step of a curve under the rule above, or nil.
    public static func onset(_ curve: Curve) -> Int? {
        onset(steps: curve.steps, trainLoss: curve.trainLoss, valLoss: curve.valLoss)
    }

    public static func onset(steps: [Int], trainLoss: [Double], valLoss: [Double]) -> Int? {
        let usable = steps.indices.filter { trainLoss[$0].isFinite && valLoss[$0].isFinite }
        guard let last = usable.last, usable.count >= 2 else { return nil }
        var minimum = usable[0]
        for i in usable where valLoss[i] < valLoss[minimum] { minimum = i }
        guard minimum != last else { return nil }
        let rising = valLoss[last] - valLoss[minimum] > relativeRise * abs(valLoss[minimum])
        let trainFalling = trainLoss[last] < trainLoss[minimum]
        guard rising && trainFalling else { return nil }
        return steps[usable.first { $0 > minimum }!]
    }

    /// The evaluation step of the lowest validation loss (earliest on ties).
    public static func minimumValidationLossStep(_ curve: Curve) -> Int? {
        var best: Int?
        for i in curve.steps.indices where curve.valLoss[i].isFinite {
            if best == nil || curve.valLoss[i] < curve.valLoss[best!] { best = i }
        }
        return best.map { curve.steps[$0] }
    }
}

extension Curve {
    /// The seed-mean curve: at each step every contributing run evaluated, the mean of the
    /// finite values (NaN when none).
    static func mean(of curves: [Curve]) -> Curve {
        guard let first = curves.first else { return Curve() }
        var common = Set(first.steps)
        for c in curves.dropFirst() { common.formIntersection(c.steps) }
        let steps = common.sorted()
        let lookups = curves.map { c in Dictionary(uniqueKeysWithValues: c.steps.enumerated().map { ($1, $0) }) }
        func average(_ series: KeyPath<Curve, [Double]>) -> [Double] {
            steps.map { step in
                SampleStats(curves.indices.map { k in curves[k][keyPath: series][lookups[k][step]!] }).mean ?? .nan
            }
        }
        return Curve(steps: steps, trainLoss: average(\.trainLoss), valLoss: average(\.valLoss),
                     trainAcc: average(\.trainAcc), valAcc: average(\.valAcc))
    }
}

/// One seed's overfitting figures.
public struct SeedOnset: Sendable {
    public var seed: Int?
    public var hash: String
    public var onsetStep: Int?
    public var bestStep: Int?
    public var unconverged: Bool
}

/// A row of the `overfit` table: one group (regime × experts × train size).
public struct OverfitRow: SeedGroupRow, Sendable {
    public var task: String
    public var trainSize: Int?
    public var experts: Int?
    public var regime: String
    public var variant: String
    public var seedsCompleted: Int
    public var seedsExpected: Int
    /// Step of the highest seed-mean validation accuracy.
    public var bestStep: Int?
    /// Step of the lowest seed-mean validation loss.
    public var minValLossStep: Int?
    /// `OverfitRule` on the seed-mean curve.
    public var onsetStep: Int?
    public var seedOnsets: [SeedOnset]
    /// Train accuracy − validation accuracy at the last evaluation, over seeds.
    public var gapAtEnd: SampleStats
    /// Validation loss − train loss at the last evaluation, over seeds.
    public var lossGapAtEnd: SampleStats
    public var trainAccAtEnd: SampleStats
    /// Seed-mean train and validation curves.
    public var curve: Curve
    public var flags: [String]
    /// `unconverged` (any completed seed); `no-test-at-best` and `below-linear` concern the
    /// accuracy tables and are left out here.
    public var caveats: [Caveat]
    public var complete: Bool { flags.isEmpty }
}

public struct OverfitTable: Sendable {
    public var rows: [OverfitRow]
    public var rule: String { OverfitRule.text }

    static func build(_ data: ReportData) -> OverfitTable {
        let ordered = data.groups.sorted {
            ($0.task, regimeRank($0.regime), $0.regime, $0.experts ?? -1, $0.trainSize ?? -1, $0.variant)
                < ($1.task, regimeRank($1.regime), $1.regime, $1.experts ?? -1, $1.trainSize ?? -1, $1.variant)
        }
        let rows = ordered.map { g -> OverfitRow in
            let runs = g.contributing
            let curve = Curve.mean(of: runs.map(\.curve))
            return OverfitRow(
                task: g.task, trainSize: g.trainSize, experts: g.experts, regime: g.regime, variant: g.variant,
                seedsCompleted: runs.count, seedsExpected: g.expectedSeeds.count,
                bestStep: curve.bestIndex.map { curve.steps[$0] },
                minValLossStep: OverfitRule.minimumValidationLossStep(curve),
                onsetStep: OverfitRule.onset(curve),
                seedOnsets: runs.map {
                    SeedOnset(seed: $0.seed, hash: $0.hash, onsetStep: $0.overfitOnset, bestStep: $0.bestStep,
                              unconverged: $0.isUnconverged)
                },
                gapAtEnd: SampleStats(g.values(\.gapAtEnd)), lossGapAtEnd: SampleStats(g.values(\.lossGapAtEnd)),
                trainAccAtEnd: SampleStats(g.values(\.trainAccAtEnd)), curve: curve, flags: g.flags,
                caveats: g.caveats.filter { $0 == .unconverged })
        }
        return OverfitTable(rows: rows)
    }
}
