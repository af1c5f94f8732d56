import Foundation

/// Mean and sample standard deviation of the finite values among `values`.
///
/// The standard deviation uses n − 1 (the seeds are a sample of possible seeds); it is nil
/// below two values, never a misleading 0.
public struct SampleStats: Equatable, Sendable {
    public let n: Int
    public let mean: Double?
    public let sd: Double?

    public init(_ values: [Double]) {
        let finite = values.filter(\.isFinite)
        n = finite.count
        guard n > 0 else {
            mean = nil
            sd = nil
            return
        }
        let m = finite.reduce(0, +) / Double(n)
        mean = m
        if n >= 2 {
            let ss = finite.reduce(0) { $0 + ($1 - m) * ($1 - m) }
            sd = (ss / Double(n - 1)).squareRoot()
        } else {
            sd = nil
        }
    }

    /// sd² / n, the squared standard error of the mean.
    var varianceOfMean: Double? { sd.map { $0 * $0 / Double(n) } }
}

/// Which test an interval for a difference comes from.
public enum DifferenceTest: String, Sendable, CaseIterable {
    /// t interval on per-seed differences of paired runs (same parent, seed and config
    /// apart from the compared key), n − 1 degrees of freedom.
    case pairedT = "paired-t"
    /// Welch's interval for two independent samples: unequal variances,
    /// Welch–Satterthwaite degrees of freedom.
    case welch
    /// The partially overlapping samples t interval (Derrick, Toher & White 2017, unequal
    /// variances) for groups with some seeds paired and some on one side only: every run
    /// counts, and the pairs' correlation enters the standard error.
    case partiallyOverlappingT = "partially-overlapping-t"
}

/// A two-sided confidence interval for a difference of means: Welch's for independent
/// samples, or the paired t interval on per-seed differences.
public struct DifferenceInterval: Equatable, Sendable {
    public let test: DifferenceTest
    /// mean(a) − mean(b); for a paired interval, the mean of the differences (the same number).
    public let delta: Double
    public let low: Double
    public let high: Double
    /// Welch–Satterthwaite degrees of freedom (nA + nB − 2 when both samples have zero
    /// spread), or n − 1 pairs.
    public let df: Double
    /// Standard error of the difference: sqrt(sA²/nA + sB²/nB), or s_d/√n for pairs.
    public let standardError: Double
    /// The Student t quantile used for the half-width.
    public let t: Double
    public let level: Double

    public var halfWidth: Double { t * standardError }

    /// Welch's interval for mean(a) − mean(b), or nil when either side has fewer than two
    /// finite values (no spread can be estimated from one seed).
    public init?(welch a: [Double], _ b: [Double], level: Double = 0.95) {
        let sa = SampleStats(a), sb = SampleStats(b)
        guard let ma = sa.mean, let mb = sb.mean, let va = sa.varianceOfMean, let vb = sb.varianceOfMean else { return nil }
        self.init(test: .welch, delta: ma - mb, standardError: (va + vb).squareRoot(),
                  df: Self.welchSatterthwaite(va, n: sa.n, vb, n: sb.n), level: level)
    }

    /// Welch–Satterthwaite degrees of freedom from each side's squared standard error of
    /// the mean and size: (va + vb)² / (va²/(nA−1) + vb²/(nB−1)), or nA + nB − 2 when both
    /// spreads are 0.
    static func welchSatterthwaite(_ va: Double, n na: Int, _ vb: Double, n nb: Int) -> Double {
        va + vb > 0 ? (va + vb) * (va + vb) / (va * va / Double(na - 1) + vb * vb / Double(nb - 1)) : Double(na + nb - 2)
    }

    /// The partially overlapping samples t interval for mean(a) − mean(b) (Derrick, Toher
    /// & White 2017, "How to compare the means of two samples that include paired
    /// observations and independent observations", TQMP 13(2), separate variances), where
    /// `a` and `b` are every value of each side and `pairs` the (a, b) values of the units
    /// both sides have. With s₁, s₂ the sds of all of a and of b, n₁, n₂ their sizes, n_c
    /// the pairs and r their correlation (0 when either side of the pairs has no spread):
    /// standard error sqrt(s₁²/n₁ + s₂²/n₂ − 2·r·s₁·s₂·n_c/(n₁n₂)), and df
    /// (n_c − 1) + (γ − n_c + 1)·(n_a + n_b)/(n_a + n_b + 2n_c), with γ Welch's df and n_a,
    /// n_b the unpaired counts. It is the paired interval when nothing is unpaired and
    /// Welch's when nothing is paired. nil below two pairs or two values a side.
    public init?(partiallyOverlapping a: [Double], _ b: [Double], pairs: [(Double, Double)], level: Double = 0.95) {
        let sa = SampleStats(a), sb = SampleStats(b)
        let nc = pairs.count
        guard nc >= 2, let ma = sa.mean, let mb = sb.mean, let s1 = sa.sd, let s2 = sb.sd,
              let va = sa.varianceOfMean, let vb = sb.varianceOfMean else { return nil }
        let r = Self.correlation(pairs)
        let n1 = Double(sa.n), n2 = Double(sb.n)
        let se2 = max(0, va + vb - 2 * r * s1 * s2 * Double(nc) / (n1 * n2))
        let welchDF = Self.welchSatterthwaite(va, n: sa.n, vb, n: sb.n)
        let unpaired = Double(sa.n + sb.n - 2 * nc)
        let df = Double(nc - 1) + (welchDF - Double(nc) + 1) * unpaired / (unpaired + 2 * Double(nc))
        self.init(test: .partiallyOverlappingT, delta: ma - mb, standardError: se2.squareRoot(), df: df, level: level)
    }

    /// Pearson's correlation of the pairs; 0 when either side has no spread.
    public static func correlation(_ pairs: [(Double, Double)]) -> Double {
        let n = Double(pairs.count)
        let mx = pairs.reduce(0) { $0 + $1.0 } / n, my = pairs.reduce(0) { $0 + $1.1 } / n
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for (x, y) in pairs {
            sxy += (x - mx) * (y - my); sxx += (x - mx) * (x - mx); syy += (y - my) * (y - my)
        }
        return sxx > 0 && syy > 0 ? sxy / (sxx * syy).squareRoot() : 0
    }

    /// The paired t interval for the mean of `differences` (one per pair, a − b):
    /// d̄ ± t(0.5 + level/2, n − 1)·s_d/√n; nil below two finite differences.
    public init?(paired differences: [Double], level: Double = 0.95) {
        let s = SampleStats(differences)
        guard let mean = s.mean, let v = s.varianceOfMean else { return nil }
        self.init(test: .pairedT, delta: mean, standardError: v.squareRoot(), df: Double(s.n - 1), level: level)
    }

    private init(test: DifferenceTest, delta: Double, standardError: Double, df: Double, level: Double) {
        self.test = test
        self.delta = delta
        self.standardError = standardError
        self.df = df
        self.level = level
        t = StudentT.quantile(0.5 + level / 2, df: df)
        low = delta - t * standardError
        high = delta + t * standardError
    }

    public func contains(_ x: Double) -> Bool { low <= x && x <= high }
}

/// How many replicates would make a 95% interval's half-width at most `margin` at the
/// observed spread: the smallest n with t(0.975, df(n))·s/√n ≤ margin.
/// The spread comes from the runs at hand, so n is an estimate.
public struct SeedsNeeded: Equatable, Sendable {
    /// What n counts: pairs, seeds per arm, pretraining runs per arm.
    public enum Unit: String, Sendable {
        case pairs
        case seedsPerArm = "seeds per arm"
        case pretrainingRunsPerArm = "pretraining runs per arm"
    }

    /// The search stops here; a larger need is reported as "more than `limit`".
    public static let limit = 10_000

    /// nil when no n up to `limit` suffices.
    public let n: Int?
    public let unit: Unit
    public let margin: Double

    /// Paired differences with sample sd `sd`: df = n − 1, s = sd. nil when `sd` is nil
    /// (fewer than two pairs). At least 2 (an interval needs two).
    public init?(pairedSD sd: Double?, margin: Double, minimum: Int = 2) {
        guard let sd else { return nil }
        self.init(unit: .pairs, margin: margin, minimum: minimum) { n in
            (sd * sd / Double(n), Double(n - 1))
        }
    }

    /// Two independent arms of n each with sample sds `sdA`, `sdB`: the standard error of
    /// the difference is sqrt((sA² + sB²)/n) and df the Welch–Satterthwaite value at equal
    /// n, (sA² + sB²)²(n − 1)/(sA⁴ + sB⁴) (2n − 2 when both spreads are 0). nil when
    /// either sd is nil.
    public init?(sdA: Double?, sdB: Double?, margin: Double, unit: Unit = .seedsPerArm, minimum: Int = 2) {
        guard let sdA, let sdB else { return nil }
        let va = sdA * sdA, vb = sdB * sdB
        self.init(unit: unit, margin: margin, minimum: minimum) { n in
            let m = Double(n - 1)
            let df = va + vb > 0 ? (va + vb) * (va + vb) * m / (va * va + vb * vb) : 2 * m
            return ((va + vb) / Double(n), df)
        }
    }

    /// `varianceAndDF(n)`: the squared standard error and the degrees of freedom with n replicates.
    private init(unit: Unit, margin: Double, minimum: Int, _ varianceAndDF: (Int) -> (Double, Double)) {
        self.unit = unit
        self.margin = margin
        func enough(_ n: Int) -> Bool {
            let (variance, df) = varianceAndDF(n)
            return StudentT.quantile(0.975, df: df) * variance.squareRoot() <= margin
        }
        // The half-width falls as n grows (t and 1/√n both do), so the smallest n is found
        // by doubling past it and bisecting back: the same n as counting up, in O(log n) steps.
        var low = max(2, minimum)
        guard !enough(low) else {
            n = low
            return
        }
        var high = low
        while !enough(high) {
            guard high < SeedsNeeded.limit else {
                n = nil
                return
            }
            low = high
            high = min(2 * high, SeedsNeeded.limit)
        }
        // enough(high), not enough(low)
        while high - low > 1 {
            let mid = (low + high) / 2
            if enough(mid) { high = mid } else { low = mid }
        }
        n = high
    }

    /// "12 pairs", "more than 10000 seeds per arm".
    public var text: String {
        (n.map(String.init) ?? "more than \(SeedsNeeded.limit)") + " " + unit.rawValue
    }
}

/// Student's t distribution, for the interval half-widths.
public enum StudentT {
    /// P(T ≤ t) for `df` degrees of freedom (any real df > 0).
    public static func cdf(_ t: Double, df: Double) -> Double {
        precondition(df > 0, "degrees of freedom must be positive")
        if df > 1e7 { return NormalDistribution.cdf(t) }
        // P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2), the regularized incomplete beta function.
        let x = df / (df + t * t)
        let tail = 0.5 * IncompleteBeta.regularized(x: x, a: df / 2, b: 0.5)
        return t >= 0 ? 1 - tail : tail
    }

    /// The p-quantile (0 < p < 1), found by bisection on the CDF: slow by numerical
    /// standards (a few hundred CDF evaluations) and exact to ~1e-12, which is what a report
    /// that computes a handful of intervals wants.
    public static func quantile(_ p: Double, df: Double) -> Double {
        precondition(p > 0 && p < 1, "p must be in (0, 1)")
        if p == 0.5 { return 0 }
        if p < 0.5 { return -quantile(1 - p, df: df) }
        var lo = 0.0, hi = 1.0
        while cdf(hi, df: df) < p { lo = hi; hi *= 2 }
        for _ in 0..<200 {
            let mid = (lo + hi) / 2
            if cdf(mid, df: df) < p { lo = mid } else { hi = mid }
            if hi - lo <= 1e-13 * max(1, hi) { break }
        }
        return (lo + hi) / 2
    }
}

enum NormalDistribution {
    static func cdf(_ x: Double) -> Double { 0.5 * erfc(-x / 2.0.squareRoot()) }
}

/// The regularized incomplete beta function I_x(a, b), by its continued fraction
/// (evaluated with the modified Lentz method) on the side of x where it converges fast.
enum IncompleteBeta {
    static func regularized(x: Double, a: Double, b: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        // The fraction converges quickly for x < (a+1)/(a+b+2); otherwise use the symmetry
        // I_x(a, b) = 1 − I_{1−x}(b, a).
        if x > (a + 1) / (a + b + 2) { return 1 - regularized(x: 1 - x, a: b, b: a) }
        let logFront = a * log(x) + b * log1p(-x) - logBeta(a, b)
        return exp(logFront) / a / continuedFraction(x: x, a: a, b: b)
    }

    static func logBeta(_ a: Double, _ b: Double) -> Double { lgamma(a) + lgamma(b) - lgamma(a + b) }

    /// 1 + d₁/(1 + d₂/(1 + …)) with
    /// d₂ₘ₊₁ = −(a+m)(a+b+m)x / ((a+2m)(a+2m+1)) and d₂ₘ = m(b−m)x / ((a+2m−1)(a+2m)).
    static func continuedFraction(x: Double, a: Double, b: Double) -> Double {
        let tiny = 1e-300
        var f = 1.0, c = 1.0, d = 0.0
        for j in 1...10_000 {
            let m = Double(j / 2)
            let coefficient: Double
            if j % 2 == 1 {
                coefficient = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            } else {
                coefficient = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
            }
            d = 1 + coefficient * d
            if abs(d) < tiny { d = tiny }
            d = 1 / d
            c = 1 + coefficient / c
            if abs(c) < tiny { c = tiny }
            let step = c * d
            f *= step
            if abs(step - 1) < 1e-15 { break }
        }
        return f
    }
}
