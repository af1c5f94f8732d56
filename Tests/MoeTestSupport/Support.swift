import Foundation
import MoeKernels

/// Shared helpers for the numeric tests.
public enum TestSupport {
    /// Deterministic pseudo-random floats in [-scale, scale).
    public static func randomFloats(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        let rng = CounterRng(seed: seed)
        return (0..<n).map { (rng.uniform(.test, step: 0, index: UInt64($0)) * 2 - 1) * scale }
    }

    /// Relative error ‖a − b‖ / max(‖a‖, ‖b‖, floor) over whole vectors: robust to the
    /// individual near-zero entries where an element-wise relative error is meaningless.
    public static func relativeError(_ a: [Double], _ b: [Double], floor: Double = 1e-8) -> Double {
        precondition(a.count == b.count)
        var diff = 0.0, na = 0.0, nb = 0.0
        for i in 0..<a.count {
            diff += (a[i] - b[i]) * (a[i] - b[i])
            na += a[i] * a[i]
            nb += b[i] * b[i]
        }
        return diff.squareRoot() / max(na.squareRoot(), nb.squareRoot(), floor)
    }

    public static func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        var m: Float = 0
        for i in 0..<a.count { m = max(m, abs(a[i] - b[i])) }
        return m
    }

    /// Central finite difference of `loss` with respect to p[i]: (f(x+h) − f(x−h)) / 2h.
    public static func centralDifference(_ p: UnsafeMutablePointer<Float>, _ i: Int, h: Float,
                                         _ loss: () -> Double) -> Double {
        let old = p[i]
        p[i] = old + h
        let up = loss()
        p[i] = old - h
        let down = loss()
        p[i] = old
        // Use the step actually taken in Float, not the nominal h.
        let step = Double(old + h) - Double(old - h)
        return (up - down) / step
    }

    /// A fresh temporary directory removed at process exit is not guaranteed; callers delete it.
    public static func temporaryDirectory(_ label: String) -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("moerec-\(label)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
