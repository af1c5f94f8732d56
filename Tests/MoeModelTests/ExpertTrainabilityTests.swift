import Foundation
import XCTest
import MoeKernels
import MoeModel
import MoeTestSupport

/// Training single experts: a frozen expert is a nil gradient pointer, as a frozen group is.
/// Its slices are never written, the trained ones match finite differences, and the input
/// gradient passes through the frozen experts to whatever trains below.
final class ExpertTrainabilityTests: XCTestCase {
    /// Sparse layers 1 and 3 of four, 4 experts, top-2, a 3-class head; capacity large
    /// enough that no token drops, auxiliary losses on (the frozen router's backward still
    /// carries them to the layer input).
    static func config() -> ModelConfig {
        var c = ModelConfig()
        c.vocab = 260; c.context = 8; c.dModel = 16; c.layers = 4; c.heads = 2; c.dFF = 24
        c.experts = 4; c.topK = 2; c.moeEvery = 2; c.classes = 3
        c.capacityFactorTrain = 4; c.auxLossCoef = 0.05; c.zLossCoef = 0.05; c.dropout = 0; c.expertDropout = 0
        return c
    }

    static let tokens: [Int32] = (0..<18).map { Int32(($0 * 37 + 11) % 256) }
    static let labels: [Int32] = [0, 2, 1], lengths: [Int32] = [6, 4, 5]

    func model(groups: Set<ParamGroup>, experts: ExpertSelection?) throws -> Transformer {
        let model = try Transformer(config: Self.config(), maxBatch: 3, seed: 7, trainable: groups, experts: experts)
        // Larger-than-default weights so every path carries gradient of a testable size.
        for t in model.layout.tensors where t.shape.count > 1 {
            let r = TestSupport.randomFloats(t.count, seed: UInt64(t.offset + 1), scale: 0.3)
            for i in 0..<t.count { model.params.base[t.offset + i] = r[i] }
        }
        return model
    }

    func withBatch<R>(_ body: (Batch) -> R) -> R {
        Self.tokens.withUnsafeBufferPointer { tk in Self.labels.withUnsafeBufferPointer { lb in Self.lengths.withUnsafeBufferPointer { ln in
            body(Batch(tokens: tk.baseAddress!, b: 3, t: 6, labels: lb.baseAddress!, lengths: ln.baseAddress!))
        } } }
    }

    /// Forward and backward once, with a sentinel in every gradient beforehand.
    func gradients(_ model: Transformer) -> [Float] {
        model.grads.base.update(repeating: 0.5, count: model.grads.count)
        model.zeroGrads()
        withBatch { batch in
            _ = model.forward(batch, mode: .train(step: 1))
            model.backward(batch)
        }
        return Array(model.grads.buffer)
    }

    /// Every trained slice against central differences (elements whose perturbation changes
    /// the routing skipped, as in ModelGradientTests, with its tolerance); every element
    /// outside the trained slices still holds the sentinel.
    func checkGradients(groups: Set<ParamGroup>, experts: ExpertSelection, lowestSite: Int,
                        file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try model(groups: groups, experts: experts)
        XCTAssertEqual(model.lowestTrainableSite(), lowestSite, file: file, line: line)
        let grads = gradients(model)
        let baseSignature = model.routingSignature()
        var trained = [Bool](repeating: false, count: model.grads.count)
        for s in model.trainedSlices { for i in s.offset..<(s.offset + s.count) { trained[i] = true } }
        for t in model.layout.tensors {
            for i in t.offset..<(t.offset + t.count) where !trained[i] && grads[i] != 0.5 {
                XCTFail("\(t.name)[\(i - t.offset)] is frozen but was written", file: file, line: line)
                break
            }
        }
        func loss() -> Double { withBatch { Double(model.forward($0, mode: .train(step: 1)).loss) } }
        var checked = 0
        for s in model.trainedSlices {
            let picks = Array(Set((0..<min(s.count, 10)).map { ($0 * 7919 + 13) % s.count })).sorted()
            let (analytic, numeric) = routingStableGradients(model, offset: s.offset, picks: picks,
                                                             analyticAt: { Double(grads[$0]) },
                                                             baseSignature: baseSignature, loss: loss)
            if analytic.isEmpty { continue }
            let norm = numeric.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if norm < 1e-6 && analytic.allSatisfy({ abs($0) < 1e-5 }) { continue }
            XCTAssertLessThan(TestSupport.relativeError(analytic, numeric, floor: 1e-4), 3e-2,
                              "\(s.name): analytic \(analytic.prefix(4)) numeric \(numeric.prefix(4))", file: file, line: line)
            checked += 1
        }
        XCTAssertGreaterThan(checked, model.trainedSlices.count * 2 / 3, "too few slices checked", file: file, line: line)
    }

    /// Attention trains below both sparse layers: the gradient reaches it through the
    /// frozen experts of layers 3 and 1 (lowest site: layer 0's attention).
    func testGradientsFlowThroughFrozenExpertsToAttention() throws {
        try checkGradients(groups: [.attn, .experts, .head], experts: ExpertSelection([[0, 2], [3]]), lowestSite: 1)
    }

    /// Experts only: layer 1's trained expert gets its gradient through layer 3's frozen
    /// experts; backward stops at layer 1's MoE sub-block (site 4).
    func testTrainedExpertsBelowFrozenOnesMatchFiniteDifferences() throws {
        try checkGradients(groups: [.experts, .head], experts: ExpertSelection([[1], [0, 3]]), lowestSite: 4)
    }

    /// No expert of layer 1 trains: backward stops at layer 3's MoE sub-block (site 8),
    /// as it does for a frozen group.
    func testLayerWithNoTrainedExpertEndsBackward() throws {
        try checkGradients(groups: [.experts, .head], experts: ExpertSelection([[], [2]]), lowestSite: 8)
        let model = try model(groups: [.experts, .head], experts: ExpertSelection([[], []]))
        XCTAssertEqual(model.lowestTrainableSite(), 2 * Self.config().layers + 1)
    }

    /// Freezing experts changes nothing in what still trains: the trained experts' and the
    /// attention's gradients are bit-identical to those with every expert trained (the
    /// input gradient through a frozen expert is the same computation).
    func testFreezingExpertsLeavesOtherGradientsBitIdentical() throws {
        let every = gradients(try model(groups: [.attn, .experts, .head], experts: nil))
        let narrowed = try model(groups: [.attn, .experts, .head], experts: ExpertSelection([[1, 3], [0]]))
        let some = gradients(narrowed)
        for s in narrowed.trainedSlices {
            XCTAssertTrue(every[s.offset..<(s.offset + s.count)].elementsEqual(some[s.offset..<(s.offset + s.count)]) {
                $0.bitPattern == $1.bitPattern
            }, "\(s.name) differs from its gradient with every expert trained")
        }
        XCTAssertEqual(narrowed.trainedSlices.filter { $0.expert != nil }.map(\.name), [
            "layers.1.experts.w1[1]", "layers.1.experts.w1[3]", "layers.1.experts.b1[1]", "layers.1.experts.b1[3]",
            "layers.1.experts.w2[1]", "layers.1.experts.w2[3]", "layers.1.experts.b2[1]", "layers.1.experts.b2[3]",
            "layers.3.experts.w1[0]", "layers.3.experts.b1[0]", "layers.3.experts.w2[0]", "layers.3.experts.b2[0]",
        ])
    }

    /// Slices: an expert's part of each stacked tensor, its shape without E; a selection
    /// listing every expert of a layer trains that layer's tensors whole, exactly as no
    /// selection does.
    func testSlicesAndFullSelection() throws {
        let c = Self.config()
        let layout = ParameterLayout(c)
        let slices = layout.trainedSlices(groups: [.experts], experts: ExpertSelection([[2], [3, 0, 1, 2]]))
        let w1 = layout.tensor(named: "layers.1.experts.w1")!
        let first = try XCTUnwrap(slices.first)
        XCTAssertEqual(first.tensor, layout.tensors.firstIndex(of: w1))
        XCTAssertEqual(first.expert, 2)
        XCTAssertEqual(first.offset, w1.offset + 2 * c.dModel * c.dFF)
        XCTAssertEqual(first.count, c.dModel * c.dFF)
        XCTAssertEqual(first.name, "layers.1.experts.w1[2]")
        XCTAssertEqual(first.shape, [c.dModel, c.dFF])
        XCTAssertEqual(slices.filter { $0.name.hasPrefix("layers.3.") }.map(\.name),
                       ["layers.3.experts.w1", "layers.3.experts.b1", "layers.3.experts.w2", "layers.3.experts.b2"])
        XCTAssertEqual(layout.trainedSlices(groups: [.experts, .head], experts: .first(4, of: c)),
                       layout.trainedSlices(groups: [.experts, .head], experts: nil))
        XCTAssertEqual(ExpertSelection.first(2, of: c).experts, [[0, 1], [0, 1]])
        // Given or decoded, a layer's experts are a set.
        XCTAssertEqual(ExpertSelection([[3, 1, 3], []]).experts, [[1, 3], []])
        let decoded = try JSONDecoder().decode(ExpertSelection.self, from: Data(#"{"experts": [[2, 0, 2], [1]]}"#.utf8))
        XCTAssertEqual(decoded.experts, [[0, 2], [1]])
        XCTAssertEqual(try JSONDecoder().decode(ExpertSelection.self, from: try JSONEncoder().encode(decoded)), decoded)
    }

    /// A selection that cannot apply is refused with a message that names the problem.
    func testBadSelectionsAreRefused() throws {
        let model = try model(groups: [.experts, .head], experts: nil)
        func refused(_ groups: Set<ParamGroup>, _ selection: ExpertSelection, _ words: String) {
            XCTAssertThrowsError(try model.setTrainable(groups, experts: selection)) { error in
                XCTAssertTrue("\(error)".contains(words), "\(error)")
            }
        }
        refused([.experts, .head], ExpertSelection([[0]]), "names 1 sparse layers")
        refused([.experts, .head], ExpertSelection([[0], [4]]), "expert 4 of layer 3 is not in 0..<4")
        refused([.attn, .head], ExpertSelection([[0], [1]]), "experts group, which is frozen")
    }

    /// The random control: per layer the requested count, reproducible from the seed, and
    /// not the same experts for every seed.
    func testRandomSelection() {
        let a = ExpertSelection.random(counts: [2, 3, 0], experts: 8, seed: 5)
        XCTAssertEqual(a.experts.map(\.count), [2, 3, 0])
        XCTAssertEqual(a, ExpertSelection.random(counts: [2, 3, 0], experts: 8, seed: 5))
        XCTAssertTrue(a.experts.joined().allSatisfy { (0..<8).contains($0) })
        let seeds = Set((0..<8).map { ExpertSelection.random(counts: [2], experts: 8, seed: UInt64($0)).experts[0] })
        XCTAssertGreaterThan(seeds.count, 1)
    }
}
