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
