import XCTest
import MoeKernels
import MoeModel
import MoeTestSupport

final class MoeLayerTests: XCTestCase {
    /// With one expert and top-1 routing the router's softmax is exactly 1, capacity covers
    /// every token, and the layer must equal a dense FFN with the same weights, forward and
    /// backward.
    func testOneExpertTop1EqualsDenseFFN() {
        let n = 10, c = 8, f = 12
        let x = TestSupport.randomFloats(n * c, seed: 1)
        let wr = TestSupport.randomFloats(c, seed: 2)
        let w1 = TestSupport.randomFloats(c * f, seed: 3, scale: 0.5), b1 = TestSupport.randomFloats(f, seed: 4, scale: 0.1)
        let w2 = TestSupport.randomFloats(f * c, seed: 5, scale: 0.5), b2 = TestSupport.randomFloats(c, seed: 6, scale: 0.1)
        let dout = TestSupport.randomFloats(n * c, seed: 7)
        // Dense reference.
        var yd = [Float](repeating: 0, count: n * c), hd = [Float](repeating: 0, count: n * f)
        var act = [Float](repeating: 0, count: FeedForward.chunkRows * f), dh = act
        let ffn = FeedForward(c: c, f: f)
        ffn.forward(y: &yd, h: &hd, act: &act, x: x, w1: w1, b1: b1, w2: w2, b2: b2, n: n, dropout: nil)
        var dxd = [Float](repeating: 0, count: n * c), dw1d = [Float](repeating: 0, count: c * f), db1d = [Float](repeating: 0, count: f)
        var dw2d = [Float](repeating: 0, count: f * c), db2d = [Float](repeating: 0, count: c)
        ffn.backward(dx: &dxd, dw1: &dw1d, db1: &db1d, dw2: &dw2d, db2: &db2d, dy: dout, x: x, h: hd, act: &act, dh: &dh,
                     w1: w1, w2: w2, n: n, dropout: nil)
        // MoE layer with E = 1, K = 1.
        let store = FloatArena(count: 4096), ints = UnsafeMutablePointer<Int32>.allocate(capacity: 64)
        defer { ints.deallocate() }
        let p = store.base
        let cache = MoeCache(probs: p, lse: p + 16, idx: ints, gates: p + 32, slot: ints + 16, rowToken: ints + 32,
                             expertStart: ints + 48, firstChoice: p + 48, meanProb: p + 64, xPacked: p + 128,
                             h: p + 256, y: p + 512)
        let big = FloatArena(count: 2 * FeedForward.chunkRows * f)
        let scratch = MoeScratch(act: big.base, dh: big.base + FeedForward.chunkRows * f, dyPacked: p + 1536, dxPacked: p + 1664,
                                 dgates: p + 1792, dlogits: p + 1808)
        let moe = MoeLayer(c: c, f: f, e: 1, k: 1)
        var ym = [Float](repeating: 0, count: n * c)
        let stats = moe.forward(out: &ym, x: x, wr: wr, w1: w1, b1: b1, w2: w2, b2: b2, n: n, valid: nil,
                                capacityFactor: 1.25, expertDropout: nil, cache: cache, act: scratch.act)
        XCTAssertEqual(stats.droppedFraction, 0)
        XCTAssertEqual(ym, yd, "outputs must be identical")
        var dxm = [Float](repeating: 0, count: n * c), dwr = [Float](repeating: 0, count: c)
        var dw1m = [Float](repeating: 0, count: c * f), db1m = [Float](repeating: 0, count: f)
        var dw2m = [Float](repeating: 0, count: f * c), db2m = [Float](repeating: 0, count: c)
        moe.backward(dx: &dxm, dwr: &dwr, dw1: &dw1m, db1: &db1m, dw2: &dw2m, db2: &db2m, dout: dout, x: x, wr: wr,
                     w1: w1, w2: w2, n: n, valid: nil, validCount: n, auxCoef: 0.01, zCoef: 0, expertDropout: nil,
                     cache: cache, scratch: scratch)
        XCTAssertEqual(dw1m, dw1d); XCTAssertEqual(db1m, db1d); XCTAssertEqual(dw2m, dw2d); XCTAssertEqual(db2m, db2d)
        XCTAssertEqual(dxm, dxd)
        XCTAssertEqual(dwr, [Float](repeating: 0, count: c), "a one-expert softmax has no gradient")
    }

    /// The router's own backward against finite differences of
    /// L = Σ r·gates + c_B·L_B + c_z·L_z over the router weights, top-1 and top-2.
    func testRouterGatesAuxAndZLossGradient() {
        for k in [1, 2] {
            let n = 9, c = 6, e = 4
            let x = TestSupport.randomFloats(n * c, seed: 40)
            var wr = TestSupport.randomFloats(c * e, seed: 41)
            let r = TestSupport.randomFloats(n * k, seed: 42)
            let auxCoef: Float = 0.7, zCoef: Float = 0.3
            var probs = [Float](repeating: 0, count: n * e), lse = [Float](repeating: 0, count: n)
            var idx = [Int32](repeating: 0, count: n * k), gates = [Float](repeating: 0, count: n * k)
            var f = [Float](repeating: 0, count: e), pm = f
            func loss() -> Double {
                Router.forward(probs: &probs, lse: &lse, idx: &idx, gates: &gates, x: x, wr: wr, n: n, c: c, e: e, k: k)
                let s = Router.losses(probs: probs, lse: lse, idx: idx, valid: nil, n: n, e: e, k: k,
                                      firstChoiceFraction: &f, meanProb: &pm)
                var l = Double(auxCoef * s.auxLoss + zCoef * s.zLoss)
                for a in 0..<(n * k) { l += Double(r[a] * gates[a]) }
                return l
            }
            _ = loss()
            let baseIdx = idx
            var dlogits = [Float](repeating: 0, count: n * e), dwr = [Float](repeating: 0, count: c * e)
            Router.backward(dlogits: &dlogits, dgates: r, probs: probs, lse: lse, idx: idx, firstChoiceFraction: f,
                            valid: nil, validCount: n, n: n, e: e, k: k, auxCoef: auxCoef, zCoef: zCoef)
            Linear.backward(dinp: nil, dw: &dwr, dbias: nil, dout: dlogits, inp: x, w: wr, n: n, i: c, o: e)
            var analytic: [Double] = [], numeric: [Double] = []
            for i in 0..<(c * e) {
                let d = wr.withUnsafeMutableBufferPointer { TestSupport.centralDifference($0.baseAddress!, i, h: 1e-3, loss) }
                if idx != baseIdx { _ = loss(); continue }  // top-k changed: not differentiable here
                numeric.append(d)
                analytic.append(Double(dwr[i]))
            }
            XCTAssertGreaterThan(analytic.count, c * e / 2)
            XCTAssertLessThan(TestSupport.relativeError(analytic, numeric), 2e-2, "k=\(k)")
        }
    }

    /// Capacity: with E experts, N tokens and factor CF, ⌈CF·K·N/E⌉ slots per expert;
    /// overflow assignments are dropped in priority order (first choices first).
    func testCapacityAndDropOrder() {
        let moe = MoeLayer(c: 4, f: 4, e: 4, k: 2)
        XCTAssertEqual(moe.capacity(tokens: 10, factor: 1.0), 5)
        XCTAssertEqual(moe.capacity(tokens: 10, factor: 1.25), 7)
        XCTAssertEqual(moe.capacity(tokens: 1, factor: 0.01), 1)
    }
}
