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

/// A two-sided confidence interval for a difference of means, from Welch's t-test:
/// unequal variances, Welch–Satterthwaite degrees of freedom.
public struct WelchInterval: Equatable, Sendable {
    /// mean(a) − mean(b)
    public let delta: Double
    public let low: Double
    public let high: Double
    /// Welch–Satterthwaite degrees of freedom (nA + nB − 2 when both samples have zero spread).
    public let df: Double
    /// Standard error of the difference, sqrt(sA²/nA + sB²/nB).
    public let standardError: Double
    /// The Student t quantile used for the half-width.
    public let t: Double
    public let level: Double

    /// The interval for mean(a) − mean(b), or nil when either side has fewer than two finite
    /// values (no spread can be estimated from one seed).
    public init?(_ a: [Double], _ b: [Double], level: Double = 0.95) {
        let sa = SampleStats(a), sb = SampleStats(b)
        guard let ma = sa.mean, let mb = sb.mean, let va = sa.varianceOfMean, let vb = sb.varianceOfMean else { return nil }
        delta = ma - mb
        let se2 = va + vb
        standardError = se2.squareRoot()
        if se2 > 0 {
            // Welch–Satterthwaite: (va + vb)² / (va²/(nA−1) + vb²/(nB−1)).
            df = se2 * se2 / (va * va / Double(sa.n - 1) + vb * vb / Double(sb.n - 1))
        } else {
            df = Double(sa.n + sb.n - 2)
        }
        self.level = level
        t = StudentT.quantile(0.5 + level / 2, df: df)
        low = delta - t * standardError
        high = delta + t * standardError
    }

    public func contains(_ x: Double) -> Bool { low <= x && x <= high }
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
