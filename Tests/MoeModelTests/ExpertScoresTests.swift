import XCTest
import MoeKernels
import MoeModel
import MoeTestSupport

/// ESFT's expert scores and its top_p rule, on routings whose answers are known exactly.
final class ExpertScoresTests: XCTestCase {
    /// Hand-made routing of 4 tokens over 4 experts, top-2, the last token padding: every
    /// probability is a power of two, so each sum is exact.
    func testScoresOfAGivenRouting() throws {
        var c = ModelConfig(); c.layers = 2; c.moeEvery = 2; c.experts = 4; c.topK = 2
        let probs: [Float] = [0.5, 0.25, 0.125, 0.125,
                              0.125, 0.75, 0.0625, 0.0625,
                              0.25, 0.25, 0.5, 0,
                              0, 0, 0, 1]
        let chosen: [Int32] = [0, 1, 1, 0, 2, 0, 3, 0]
        let valid: [Float] = [1, 1, 1, 0]
        var scores = ExpertScores(config: c)
        probs.withUnsafeBufferPointer { p in chosen.withUnsafeBufferPointer { k in valid.withUnsafeBufferPointer { v in
            scores.add([LayerRouting(layer: 1, tokens: 4, experts: 4, topK: 2, probs: p, chosen: k, valid: v)])
        } } }
        XCTAssertEqual(scores.tokens, 3)
        // Gate: the probability where chosen (expert 0: 0.5 + 0.125 + 0.25), nothing elsewhere;
        // the padding token's choice of expert 3 counts for neither score.
        XCTAssertEqual(scores.gateSums, [[0.875, 1.0, 0.5, 0]])
        XCTAssertEqual(scores.selections, [[3, 2, 1, 0]])
        XCTAssertEqual(scores.scores(.gate), [[0.875 / 3, 1.0 / 3, 0.5 / 3, 0]])
        XCTAssertEqual(scores.scores(.token), [[1, 2.0 / 3, 1.0 / 3, 0]])
        // The two functions rank experts 0 and 1 differently.
        XCTAssertEqual(try scores.selection(.gate, topP: 0.4).experts, [[1]])
        XCTAssertEqual(try scores.selection(.token, topP: 0.4).experts, [[0]])
        // Token counts 3, 2, 1 of 6: top_p 0.5 is met exactly by expert 0 alone.
        XCTAssertEqual(try scores.selection(.token, topP: 0.5).experts, [[0]])
        XCTAssertEqual(try scores.selection(.token, topP: 0.51).experts, [[0, 1]])
    }

    /// A one-block model whose routing is fixed by construction: the attention branch is
    /// zero, so the router sees the norm of the token's embedding, a one-hot vector in
    /// channel v for token v ∈ 0..<4; the router weight is 100·I, so token v's logit for
    /// expert v leads the others (all equal) by about 300 and its softmax is exactly one-hot
    /// in fp32. Top-2 then takes v, and the lowest-index other expert (a tie at probability
    /// 0: expert 0, or 1 for v = 0). Padding embeds as expert 3's token and must not count.
    func testScoresOfAModelWithKnownRouting() throws {
        var c = ModelConfig()
        c.vocab = 260; c.context = 8; c.dModel = 8; c.layers = 1; c.heads = 2; c.dFF = 8
        c.experts = 4; c.topK = 2; c.moeEvery = 1; c.classes = 2; c.dropout = 0; c.expertDropout = 0
        let model = try Transformer(config: c, maxBatch: 3, seed: 1)
        model.params.zero()
        for t in model.layout.tensors where t.name.hasSuffix("weight") {
            (model.params.base + t.offset).update(repeating: 1, count: t.count)
        }
        let wte = model.params.base + model.layout.tensor(named: "embed.wte")!.offset
        for v in 0..<4 { wte[v * c.dModel + v] = 1 }
        wte[256 * c.dModel + 3] = 1
        let router = model.params.base + model.layout.tensor(named: "layers.0.router.w")!.offset
        for j in 0..<4 { router[j * c.experts + j] = 100 }

        let pad: Int32 = 256
        let tokens: [Int32] = [0, 1, 1, 2, 0,
                               3, 3, 2, pad, pad,
                               1, 0, 0, 0, pad]
        let labels: [Int32] = [0, 1, 0], lengths: [Int32] = [5, 3, 4]
        var scores = ExpertScores(config: c)
        let result = tokens.withUnsafeBufferPointer { tk in labels.withUnsafeBufferPointer { lb in lengths.withUnsafeBufferPointer { ln in
            model.forward(Batch(tokens: tk.baseAddress!, b: 3, t: 5, labels: lb.baseAddress!, lengths: ln.baseAddress!), mode: .eval)
        } } }
        XCTAssertTrue(result.loss.isFinite)
        let routing = model.lastRouting()
        XCTAssertEqual(routing.map(\.layer), [0])
        scores.add(routing)

        // Real tokens per class: 0 ×5, 1 ×3, 2 ×2, 3 ×2. First choices carry probability 1,
        // second choices 0 (expert 0 for classes 1–3: 7 tokens; expert 1 for class 0: 5).
        XCTAssertEqual(scores.tokens, 12)
        XCTAssertEqual(scores.gateSums, [[5, 3, 2, 2]])
        XCTAssertEqual(scores.selections, [[12, 8, 2, 2]])
        XCTAssertEqual(scores.scores(.gate), [[5.0 / 12, 3.0 / 12, 2.0 / 12, 2.0 / 12]])
        XCTAssertEqual(scores.scores(.token), [[1, 8.0 / 12, 2.0 / 12, 2.0 / 12]])
        // Gate: 5 + 3 of 12 cross 0.5; 0.8 needs a third expert, and of the tied 2 and 3
        // the lower index.
        XCTAssertEqual(try scores.selection(.gate, topP: 0.25).experts, [[0]])
        XCTAssertEqual(try scores.selection(.gate, topP: 0.5).experts, [[0, 1]])
        XCTAssertEqual(try scores.selection(.gate, topP: 0.8).experts, [[0, 1, 2]])
        XCTAssertEqual(try scores.selection(.gate, topP: 1).experts, [[0, 1, 2, 3]])
        // Token: expert 0 holds 12 of 24 selections, exactly half.
        XCTAssertEqual(try scores.selection(.token, topP: 0.5).experts, [[0]])
        XCTAssertEqual(try scores.selection(.token, topP: 0.6).experts, [[0, 1]])
    }

    /// The top_p rule: descending scores, ties to the lower index, the expert that crosses
    /// the threshold taken, none after the sum has reached it; invariant to scale.
    func testTopPRule() throws {
        func topP(_ s: [Double], _ p: Double) throws -> [Int] { try ExpertSelection.topP(s, topP: p) }
        // 0.4 alone is below 0.5; 0.4 + 0.3 crosses it, so expert 3 is in.
        XCTAssertEqual(try topP([0.1, 0.4, 0.2, 0.3], 0.5), [1, 3])
        // Reached exactly by the first expert: it is taken and nothing after it.
        XCTAssertEqual(try topP([2, 2, 4, 0], 0.5), [2])
        XCTAssertEqual(try topP([2, 2, 4, 0], 0.625), [0, 2])
        // Ties go to the lower index, at the first place and at the last.
        XCTAssertEqual(try topP([1, 3, 3, 1], 0.25), [1])
        XCTAssertEqual(try topP([1, 3, 3, 1], 0.75), [1, 2])
        XCTAssertEqual(try topP([1, 3, 3, 1], 0.8), [0, 1, 2])
        // top_p = 1 takes every expert with a positive score, and no zero one.
        XCTAssertEqual(try topP([5, 0, 3, 0], 1), [0, 2])
        // One expert above top_p is enough; scale does not matter.
        XCTAssertEqual(try topP([10, 1, 1, 1], 0.2), [0])
        XCTAssertEqual(try topP([0.2, 0.8, 0, 0], 0.2), try topP([2, 8, 0, 0], 0.2))
        XCTAssertEqual(try topP([0.2, 0.8, 0, 0], 0.9), [0, 1])
        let refused: [([Double], Double)] = [([1, 2], 0), ([1, 2], 1.5), ([1, 2], .nan), ([1, -1], 0.5), ([0, 0], 0.5),
                                             ([1, .infinity], 0.5)]
        for (scores, p) in refused {
            XCTAssertThrowsError(try topP(scores, p), "\(scores) top_p \(p)")
        }
        // With no tokens scored there is nothing to select from.
        var c = ModelConfig(); c.experts = 4
        XCTAssertThrowsError(try ExpertScores(config: c).selection(.token, topP: 0.2))
    }
}
