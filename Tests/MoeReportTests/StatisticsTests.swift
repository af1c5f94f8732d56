import MoeReport
import XCTest

final class StatisticsTests: XCTestCase {
    /// Reference quantiles t(0.975, df) from a statistics library (scipy.stats.t.ppf).
    func testStudentTQuantilesMatchReferenceValues() {
        let reference: [(Double, Double)] = [
            (1, 12.706204736174694), (2, 4.302652729749462), (3, 3.1824463052837078), (4, 2.7764451051977934),
            (10, 2.228138851986274), (30, 2.0422724563012378), (2.5, 3.5746548420036817),
        ]
        for (df, q) in reference {
            XCTAssertEqual(StudentT.quantile(0.975, df: df), q, accuracy: 1e-9, "df \(df)")
            XCTAssertEqual(StudentT.quantile(0.025, df: df), -q, accuracy: 1e-9, "df \(df)")
        }
        XCTAssertEqual(StudentT.quantile(0.975, df: 1e9), 1.959963984540054, accuracy: 1e-7)
        XCTAssertEqual(StudentT.cdf(1.3, df: 7.3), 0.8834292249669171, accuracy: 1e-10)
        XCTAssertEqual(StudentT.cdf(0, df: 3), 0.5, accuracy: 1e-15)
    }

    func testSampleStatsUseNMinusOneAndIgnoreNonFiniteValues() {
        let s = SampleStats([0.60, 0.62, 0.64, .nan])
        XCTAssertEqual(s.n, 3)
        assertClose(s.mean, 0.62)
        assertClose(s.sd, 0.02, accuracy: 1e-12)
        let one = SampleStats([0.5])
        XCTAssertEqual(one.n, 1)
        assertClose(one.mean, 0.5)
        XCTAssertNil(one.sd, "one seed has no spread, not a spread of 0")
        XCTAssertNil(SampleStats([]).mean)
    }

    /// Welch interval for unequal variances and sizes; reference from scipy:
    /// df = 3.234718826405868, t = 3.055712710425896, interval [-5.542327954923024, 2.5423279549230244].
    func testWelchIntervalMatchesReference() throws {
        let w = try XCTUnwrap(DifferenceInterval(welch: [1, 2, 3, 4], [2, 4, 6]))
        XCTAssertEqual(w.test, .welch)
        XCTAssertEqual(w.delta, -1.5, accuracy: 1e-12)
        XCTAssertEqual(w.df, 3.234718826405868, accuracy: 1e-9)
        XCTAssertEqual(w.t, 3.055712710425896, accuracy: 1e-8)
        XCTAssertEqual(w.low, -5.542327954923024, accuracy: 1e-8)
        XCTAssertEqual(w.high, 2.5423279549230244, accuracy: 1e-8)
        XCTAssertEqual(w.standardError, 1.75.squareRoot(), accuracy: 1e-12)
    }

    /// The partially overlapping samples t interval, separate variances, on the worked
    /// example of Derrick, Toher & White (2017): 8 unpaired and 8 paired values a side.
    /// Reference from the published formula evaluated with scipy: r = 0.68680, standard
    /// error 0.826755, df 18.4223, [0.265903, 3.734097].
    func testPartiallyOverlappingIntervalMatchesReference() throws {
        let aUnpaired: [Double] = [20, 21, 16, 18, 14, 12, 14, 17], aPaired: [Double] = [14, 15, 18, 20, 11, 19, 14, 15]
        let bUnpaired: [Double] = [10, 16, 18, 16, 15, 14, 13, 10], bPaired: [Double] = [15, 10, 15, 17, 13, 19, 12, 13]
        let i = try XCTUnwrap(DifferenceInterval(partiallyOverlapping: aUnpaired + aPaired, bUnpaired + bPaired,
                                                 pairs: Array(zip(aPaired, bPaired))))
        XCTAssertEqual(i.test, .partiallyOverlappingT)
        XCTAssertEqual(i.delta, 2, accuracy: 1e-12)
        XCTAssertEqual(i.standardError, 0.8267545619234621, accuracy: 1e-9)
        XCTAssertEqual(i.df, 18.422332269264114, accuracy: 1e-6)
        XCTAssertEqual(i.low, 0.26590297052780487, accuracy: 1e-6)
        XCTAssertEqual(i.high, 3.734097029472195, accuracy: 1e-6)
    }

    /// With every value paired it is the paired interval; one side without spread in the
    /// pairs counts as uncorrelated; fewer than two pairs give nothing.
    func testPartiallyOverlappingReducesToPairedAndNeedsTwoPairs() throws {
        let a: [Double] = [0.60, 0.70, 0.65, 0.55], b: [Double] = [0.62, 0.75, 0.66, 0.59]
        let partial = try XCTUnwrap(DifferenceInterval(partiallyOverlapping: a, b, pairs: Array(zip(a, b))))
        let paired = try XCTUnwrap(DifferenceInterval(paired: zip(a, b).map { $0 - $1 }))
        XCTAssertEqual(partial.df, paired.df, accuracy: 1e-12)
        XCTAssertEqual(partial.standardError, paired.standardError, accuracy: 1e-12)
        XCTAssertEqual(partial.low, paired.low, accuracy: 1e-12)
        XCTAssertEqual(DifferenceInterval.correlation([(1, 0.5), (2, 0.5), (3, 0.5)]), 0)
        XCTAssertNil(DifferenceInterval(partiallyOverlapping: a, b, pairs: [(0.60, 0.62)]))
    }

    func testWelchNeedsTwoValuesPerSideAndHandlesZeroSpread() throws {
        XCTAssertNil(DifferenceInterval(welch: [0.5], [0.4, 0.6]))
        XCTAssertNil(DifferenceInterval(welch: [0.5, 0.6], [0.4]))
        // Exactly representable values, so that both spreads are exactly 0.
        let flat = try XCTUnwrap(DifferenceInterval(welch: [0.5, 0.5], [0.25, 0.25, 0.25]))
        XCTAssertEqual(flat.delta, 0.25)
        XCTAssertEqual(flat.low, flat.delta, accuracy: 1e-12)
        XCTAssertEqual(flat.high, flat.delta, accuracy: 1e-12)
        XCTAssertEqual(flat.df, 3)
    }
}
