import XCTest
import Foundation
import MoeKernels
import CKernels
import MoeTestSupport

final class GemmTests: XCTestCase {
    /// Every transpose combination on odd, non-square shapes with padded leading dimensions,
    /// alpha/beta ≠ (1, 0): OpenBLAS must agree with the plain loop.
    func testSgemmMatchesReferenceOnOddShapes() throws {
        try Blas.load()
        let shapes = [(1, 1, 1), (3, 5, 7), (17, 13, 29), (64, 1, 33), (1, 70, 9), (37, 41, 3), (130, 67, 95)]
        var seed: UInt64 = 1
        for (m, n, k) in shapes {
            for transA in [false, true] {
                for transB in [false, true] {
                    let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 2, ldc = n + 5
                    let a = TestSupport.randomFloats((transA ? k : m) * lda, seed: seed)
                    let b = TestSupport.randomFloats((transB ? n : k) * ldb, seed: seed + 1)
                    let c0 = TestSupport.randomFloats(m * ldc, seed: seed + 2)
                    seed += 3
                    var fast = c0, slow = c0
                    fast.withUnsafeMutableBufferPointer { c in
                        Gemm.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.7, a: a, lda: lda,
                                   b: b, ldb: ldb, beta: 0.3, c: c.baseAddress!, ldc: ldc)
                    }
                    slow.withUnsafeMutableBufferPointer { c in
                        Gemm.sgemmReference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.7, a: a, lda: lda,
                                            b: b, ldb: ldb, beta: 0.3, c: c.baseAddress!, ldc: ldc)
                    }
                    // Padding columns beyond n must be untouched.
                    for i in 0..<m { for j in n..<ldc { XCTAssertEqual(fast[i * ldc + j], c0[i * ldc + j]) } }
                    // fp32 accumulation of k products of magnitude ≤ 1: error ≲ k·2⁻²⁴ per entry.
                    let tol = Float(k) * 1e-6 + 1e-6
                    XCTAssertLessThan(TestSupport.maxAbsDiff(fast, slow), tol, "m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB)")
                }
            }
        }
    }

    /// OpenBLAS's result for one call depends on the call's shape (it switches to small-
    /// matrix and "direct" kernels by size; splitting m=48, n=32, k=32 with Bᵀ in two
    /// changes bits). So the engine cuts every parallel GEMM into fixed blocks: the
    /// result must be bit-identical at 1, 2 and 3 workers, and match the plain loop, on
    /// bench-small's shapes and on small ones that take the other kernels.
    func testParallelGemmIsIndependentOfWorkerCount() throws {
        try Blas.load()
        let saved = Blas.threads
        defer { Blas.threads = saved }
        var shapes: [(Bool, Bool, Int, Int, Int)] = [
            (false, false, 4096, 768, 256), (false, true, 4096, 512, 256), (true, false, 512, 256, 4096),
            (false, false, 4096, 8, 256), (true, false, 256, 8, 4096), (false, false, 1203, 1024, 256),
        ]
        for m in [16, 48, 80, 200] { for n in [8, 32, 96] { for (ta, tb) in [(false, false), (false, true), (true, false)] {
            shapes.append((ta, tb, m, n, 32))
        } } }
        var seed: UInt64 = 40
        for (ta, tb, m, n, k) in shapes {
            let lda = ta ? m : k, ldb = tb ? k : n
            let a = TestSupport.randomFloats(m * k, seed: seed), b = TestSupport.randomFloats(k * n, seed: seed + 1)
            let c0 = TestSupport.randomFloats(m * n, seed: seed + 2)
            seed += 3
            var results: [[Float]] = []
            for workers in [1, 2, 3] {
                Blas.threads = workers
                var c = c0
                c.withUnsafeMutableBufferPointer { c in
                    Gemm.sgemmParallel(transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: lda,
                                       b: b, ldb: ldb, beta: 0, c: c.baseAddress!, ldc: n)
                }
                results.append(c)
            }
            let shape = "tA=\(ta) tB=\(tb) m=\(m) n=\(n) k=\(k)"
            for w in 1..<results.count {
                XCTAssertEqual(results[w].map(\.bitPattern), results[0].map(\.bitPattern), "\(w + 1) workers differ: \(shape)")
            }
            if m * n * k <= 2_000_000 {
                var slow = c0
                slow.withUnsafeMutableBufferPointer { c in
                    Gemm.sgemmReference(transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                                        beta: 0, c: c.baseAddress!, ldc: n)
                }
                XCTAssertLessThan(TestSupport.maxAbsDiff(results[0], slow), Float(k) * 1e-6 + 1e-6, shape)
            }
        }
    }

    func testCoreIsReportedAndFastCoreChosenWhenCpuAllows() throws {
        try Blas.load()
        XCTAssertFalse(Blas.coreName.isEmpty)
        XCTAssertNotEqual(Blas.coreName, "unloaded")
        if Blas.coreSource == "auto" && Blas.cpuFeatures.contains("avx512") {
            XCTAssertEqual(Blas.coreName.lowercased(), "skylakex", "AVX-512 CPU should run the SkylakeX kernels")
        }
        let before = Blas.threads
        Blas.threads = 1
        XCTAssertEqual(Blas.threads, 1)
        Blas.threads = before
    }
}

final class OpsTests: XCTestCase {
    func testCausalSoftmaxRowsSumToOneAndAreShiftInvariant() {
        let T = 7
        let x = TestSupport.randomFloats(T * T, seed: 5, scale: 30)
        var y = x, z = x.map { $0 + 100 }
        moe_causal_softmax(&y, T)
        moe_causal_softmax(&z, T)
        for r in 0..<T {
            XCTAssertEqual(y[r * T..<r * T + T].reduce(0, +), 1, accuracy: 1e-5)
            XCTAssertEqual(y[(r * T + r + 1)..<(r * T + T)].filter { $0 != 0 }.count, 0, "masked entries are exact zeros")
        }
        XCTAssertLessThan(TestSupport.maxAbsDiff(y, z), 1e-5)
    }

    func testTopKOrderAndTies() {
        let x: [Float] = [0.1, 0.5, 0.5, 0.2, 0.9]
        var idx = [Int32](repeating: -1, count: 3)
        Ops.topK(x, n: 5, k: 3, into: &idx)
        XCTAssertEqual(idx, [4, 1, 2])
    }

    /// Gradient checks of the element-wise kernels in isolation: loss = Σ r ⊙ f(x) with a
    /// fixed random r; central differences in Float with h = 1e-2 have O(h²)≈1e-4 truncation
    /// and ~1e-5 rounding error relative to gradients of order 1, hence the 1e-2 bound.
    func testLayerNormGradient() {
        let n = 3, c = 8
        var x = TestSupport.randomFloats(n * c, seed: 11, scale: 2)
        var wgt = TestSupport.randomFloats(c, seed: 12).map { $0 + 1 }
        var bias = TestSupport.randomFloats(c, seed: 13)
        let r = TestSupport.randomFloats(n * c, seed: 14)
        var out = [Float](repeating: 0, count: n * c), mean = [Float](repeating: 0, count: n), rstd = mean
        func loss() -> Double {
            Ops.layerNormForward(out: &out, mean: &mean, rstd: &rstd, inp: x, weight: wgt, bias: bias, n: n, c: c)
            return zip(out, r).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        }
        _ = loss()
        var dx = [Float](repeating: 0, count: n * c), dw = [Float](repeating: 0, count: c), db = dw
        Ops.layerNormBackward(dinp: &dx, dweight: &dw, dbias: &db, dout: r, inp: x, weight: wgt, mean: mean, rstd: rstd, n: n, c: c)
        let numX = (0..<n * c).map { i in x.withUnsafeMutableBufferPointer { TestSupport.centralDifference($0.baseAddress!, i, h: 1e-2, loss) } }
        let numW = (0..<c).map { i in wgt.withUnsafeMutableBufferPointer { TestSupport.centralDifference($0.baseAddress!, i, h: 1e-2, loss) } }
        let numB = (0..<c).map { i in bias.withUnsafeMutableBufferPointer { TestSupport.centralDifference($0.baseAddress!, i, h: 1e-2, loss) } }
        XCTAssertLessThan(TestSupport.relativeError(dx.map(Double.init), numX), 1e-2)
        XCTAssertLessThan(TestSupport.relativeError(dw.map(Double.init), numW), 1e-2)
        XCTAssertLessThan(TestSupport.relativeError(db.map(Double.init), numB), 1e-2)
    }

    func testRmsNormGradient() {
        let n = 3, c = 8
        var x = TestSupport.randomFloats(n * c, seed: 21, scale: 2)
        var wgt = TestSupport.randomFloats(c, seed: 22).map { $0 + 1 }
        let r = TestSupport.randomFloats(n * c, seed: 24)
        var out = [Float](repeating: 0, count: n * c), rstd = [Float](repeating: 0, count: n)
        func loss() -> Double {
            Ops.rmsNormForward(out: &out, rstd: &rstd, inp: x, weight: wgt, n: n, c: c)
            return zip(out, r).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        }
        _ = loss()
        var dx = [Float](repeating: 0, count: n * c), dw = [Float](repeating: 0, count: c)
        Ops.rmsNormBackward(dinp: &dx, dweight: &dw, dout: r, inp: x, weight: wgt, rstd: rstd, n: n, c: c)
        let numX = (0..<n * c).map { i in x.withUnsafeMutableBufferPointer { TestSupport.centralDifference($0.baseAddress!, i, h: 1e-2, loss) } }
        let numW = (0..<c).map { i in wgt.withUnsafeMutableBufferPointer { TestSupport.centralDifference($0.baseAddress!, i, h: 1e-2, loss) } }
        XCTAssertLessThan(TestSupport.relativeError(dx.map(Double.init), numX), 1e-2)
        XCTAssertLessThan(TestSupport.relativeError(dw.map(Double.init), numW), 1e-2)
    }

    func testGeluDerivative() {
        for x: Float in stride(from: -4, through: 4, by: 0.37) {
            let h: Float = 1e-2
            let num = (Double(Ops.gelu(x + h)) - Double(Ops.gelu(x - h))) / Double(2 * h)
            XCTAssertEqual(Double(Ops.geluDerivative(x)), num, accuracy: 1e-3, "x=\(x)")
        }
    }

    func testCrossEntropyValueAndGradient() {
        let rows = 4, v = 6
        var logits = TestSupport.randomFloats(rows * v, seed: 31, scale: 3)
        let targets: [Int32] = [0, 5, -1, 2]
        var scratch = [Float](repeating: 0, count: 2 * rows)
        func loss() -> Double {
            var copy = logits
            let r = Ops.crossEntropy(logits: &copy, targets: targets, rows: rows, v: v, gradScale: 1, backward: false,
                                     scratch: &scratch)
            return r.lossSum / Double(r.count)
        }
        // Value against a direct log-softmax in Double.
        var expected = 0.0
        for r in [0, 1, 3] {
            let row = logits[r * v..<(r + 1) * v].map(Double.init)
            let lse = log(row.map { exp($0) }.reduce(0, +))
            expected += lse - row[Int(targets[r])]
        }
        XCTAssertEqual(loss(), expected / 3, accuracy: 1e-5)
        var grad = logits
        let res = Ops.crossEntropy(logits: &grad, targets: targets, rows: rows, v: v, gradScale: 1.0 / 3, backward: true,
                                   scratch: &scratch)
        XCTAssertEqual(res.count, 3)
        XCTAssertEqual(grad[2 * v..<3 * v].reduce(0, +), 0, "ignored rows get no gradient")
        let num = (0..<rows * v).map { i in logits.withUnsafeMutableBufferPointer { TestSupport.centralDifference($0.baseAddress!, i, h: 1e-2, loss) } }
        XCTAssertLessThan(TestSupport.relativeError(grad.map(Double.init), num), 1e-2)
    }

    func testCounterRngIsPureAndUniform() {
        let rng = CounterRng(seed: 42)
        XCTAssertEqual(rng.bits(.dropout, step: 3, index: 7), rng.bits(.dropout, step: 3, index: 7))
        XCTAssertNotEqual(rng.bits(.dropout, step: 3, index: 7), rng.bits(.dropout, step: 4, index: 7))
        XCTAssertNotEqual(rng.bits(.dropout, step: 3, index: 7), rng.bits(.dataOrder, step: 3, index: 7))
        XCTAssertNotEqual(rng.bits(.dropout, step: 3, index: 7), CounterRng(seed: 43).bits(.dropout, step: 3, index: 7))
        var mean = 0.0, sq = 0.0
        let n = 20000
        for i in 0..<n {
            let z = Double(rng.normal(.initialisation, step: 0, index: UInt64(i)))
            mean += z; sq += z * z
        }
        mean /= Double(n)
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(sq / Double(n) - mean * mean, 1, accuracy: 0.05)
    }
}

final class FastMathTests: XCTestCase {
    /// Against libm over the range the router's log-sum-exp uses: ≤ 4e-7 relative.
    func testFastExpMatchesLibm() {
        var worstExp: Float = 0
        var x: Float = -87
        while x < 88 {
            let ref = expf(x)
            worstExp = max(worstExp, abs(FastMath.exp(x) - ref) / ref)
            x += 0.0137
        }
        XCTAssertLessThan(worstExp, 4e-7)
        XCTAssertEqual(FastMath.exp(-200), FastMath.exp(-87), "clamped below")
        XCTAssertTrue(FastMath.exp(200).isFinite)
    }
}

/// The element-wise kernels exist in three builds (AVX-512, AVX2+FMA, SSE2); every build
/// this CPU can run must agree with a Double-precision reference.
final class VectorKernelTests: XCTestCase {
    override func tearDown() { moe_kernels_set_level(-1) }

    func forEachLevel(_ body: (String) throws -> Void) rethrows {
        let best = moe_kernels_set_level(-1)
        for level in 0...best {
            moe_kernels_set_level(Int32(level))
            try body(String(cString: moe_kernels_name()))
        }
    }

    func testGeluAndItsDerivativeMatchReferenceAtEveryLevel() {
        let x = (0..<1003).map { Float($0 - 501) * 0.017 } + [-30, -10, 10, 30]
        forEachLevel { name in
            var y = [Float](repeating: 0, count: x.count), d = [Float](repeating: 1, count: x.count)
            moe_gelu_forward(&y, x, x.count)
            moe_gelu_backward(&d, x, x.count)
            for (i, xi) in x.enumerated() {
                let v = Double(xi), u = 0.7978845608028654 * (v + 0.044715 * v * v * v), t = Foundation.tanh(u)
                let ref = 0.5 * v * (1 + t)
                let dref = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * v * v)
                XCTAssertEqual(Double(y[i]), ref, accuracy: 2e-6 * max(1, abs(ref)), "\(name) gelu(\(xi))")
                XCTAssertEqual(Double(d[i]), dref, accuracy: 2e-6 * max(1, abs(dref)), "\(name) gelu'(\(xi))")
            }
        }
    }

    /// Dropout's mask is CounterRng.uniform of each element's index, bit for bit at every
    /// level, whatever the offset and however the buffer is cut (tails included).
    func testDropoutIsTheCounterStreamBitForBitAtEveryLevel() {
        let x = TestSupport.randomFloats(1037, seed: 11, scale: 4)
        let key = CounterRng(seed: 5).streamKey(.dropout, step: 17, stream: 3)
        for (rate, start) in [(Float(0.1), 0), (0.5, 12_345_678_901), (0.9, 7)] {
            let keep = 1 / (1 - rate)
            let reference = x.enumerated().map { i, v in
                CounterRng.uniform(key: key, index: UInt64(start + i)) < rate ? 0 : v * keep
            }
            let dropped = reference.filter { $0 == 0 }.count
            XCTAssertEqual(Double(dropped) / Double(x.count), Double(rate), accuracy: 0.05)
            forEachLevel { name in
                for cuts in [[x.count], [5, 16, 300, 716]] {
                    var y = x, offset = 0
                    for n in cuts {
                        y.withUnsafeMutableBufferPointer { moe_dropout($0.baseAddress! + offset, n, key, UInt64(start + offset), rate, keep) }
                        offset += n
                    }
                    XCTAssertTrue(y.elementsEqual(reference) { $0.bitPattern == $1.bitPattern }, "\(name) rate \(rate) cuts \(cuts)")
                }
            }
        }
    }

    func testCausalSoftmaxMatchesReferenceAtEveryLevel() {
        let T = 37
        let scores = TestSupport.randomFloats(T * T, seed: 9, scale: 6)
        forEachLevel { name in
            var p = scores
            moe_causal_softmax(&p, T)
            for t in 0..<T {
                let row = scores[(t * T)...(t * T + t)].map(Double.init)
                let m = row.max()!, z = row.reduce(0) { $0 + Foundation.exp($1 - m) }
                for j in 0..<T {
                    let ref = j <= t ? Foundation.exp(row[j] - m) / z : 0
                    XCTAssertEqual(Double(p[t * T + j]), ref, accuracy: 1e-6, "\(name) row \(t) col \(j)")
                }
            }
        }
    }

    func testLayerNormAndCrossEntropyAgreeAcrossLevels() {
        let rows = 5, c = 67, v = 41
        let x = TestSupport.randomFloats(rows * c, seed: 3, scale: 3), w = TestSupport.randomFloats(c, seed: 4)
        let b = TestSupport.randomFloats(c, seed: 5), logits = TestSupport.randomFloats(rows * v, seed: 6, scale: 5)
        var outputs: [[Float]] = []
        forEachLevel { _ in
            var y = [Float](repeating: 0, count: rows * c), mean = [Float](repeating: 0, count: rows), rstd = mean
            moe_layernorm_forward(&y, &mean, &rstd, x, w, b, rows, c, 1e-5)
            var g = logits, losses: [Float] = []
            for r in 0..<rows {
                var loss: Float = 0
                _ = g.withUnsafeMutableBufferPointer { moe_cross_entropy_row($0.baseAddress! + r * v, v, r % v, 1, 1, &loss) }
                losses.append(loss)
            }
            outputs.append(y + mean + rstd + g + losses)
        }
        for o in outputs.dropFirst() { XCTAssertLessThan(TestSupport.maxAbsDiff(o, outputs[0]), 2e-5) }
    }
}

final class ParallelTests: XCTestCase {
    /// Every part of every pass runs exactly once, across changes of the worker count
    /// (helpers created mid-run must not miss the pass that created them), and a pass
    /// started inside a pass runs inline.
    func testEveryPartRunsOnceAcrossWorkerCounts() {
        let saved = Parallel.workers
        defer { Parallel.workers = saved }
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: 8)
        defer { counts.deallocate() }
        for workers in [2, 3, 1, 5, 2, 4] {
            Parallel.workers = workers
            counts.initialize(repeating: 0, count: 8)
            for _ in 0..<500 {
                Parallel.run { part in
                    counts[part] += 1
                    Parallel.run { inner in XCTAssertEqual(inner, 0, "a nested pass runs its single part inline") }
                }
            }
            for part in 0..<8 { XCTAssertEqual(counts[part], part < workers ? 500 : 0, "workers=\(workers) part=\(part)") }
        }
    }

    func testBlocksAndAssignmentsCoverEachItemOnce() {
        for (n, block) in [(4096, 256), (1203, 256), (7, 256), (1024, 128)] {
            for parts in 1...5 {
                var seen = [Int](repeating: 0, count: n)
                for p in 0..<parts {
                    for lo in Parallel.blocks(n, block: block, part: p, parts: parts) {
                        XCTAssertEqual(lo % block, 0)
                        for i in lo..<min(n, lo + block) { seen[i] += 1 }
                    }
                }
                XCTAssertEqual(Set(seen), [1], "n=\(n) block=\(block) parts=\(parts)")
            }
        }
        let costs = [5, 1, 1, 9, 3, 3, 2, 8]
        for parts in 1...4 {
            var owner = [Int](repeating: -1, count: costs.count), load = [Int](repeating: 0, count: parts)
            for p in 0..<parts {
                Parallel.assigned(costs.count, part: p, parts: parts, cost: { costs[$0] }) { item in
                    XCTAssertEqual(owner[item], -1, "item \(item) assigned twice")
                    owner[item] = p
                    load[p] += costs[item]
                }
            }
            XCTAssertFalse(owner.contains(-1))
            XCTAssertLessThanOrEqual(load.max()! - load.min()!, costs.max()!, "greedy balance within one item")
        }
    }
}
