import Foundation
import MoeCheckpoint
import MoeExperiment
import MoeJSON
import MoeModel
import MoeTestSupport
import MoeTrain
import XCTest

/// moerec's forward pass against an independent one: `Tests/Reference/moe_reference.py`, a
/// NumPy (fp64) implementation written from README "The model, operation by operation".
/// Each model is exported as safetensors by the code `moerec export` runs, its logits and
/// losses for a fixed batch (evaluation mode) must match the reference's to 1e-4 relative,
/// and every perturbation of one detail of the description (norm epsilon, GELU form,
/// causal mask, gate renormalisation, capacity, slot order, …) must make them disagree,
/// which shows the comparison is sensitive to each of those details.
final class ReferenceTests: XCTestCase {
    struct Case {
        var name: String
        var config: ModelConfig
        /// The reference's `--perturb` names that change this model's output on this batch.
        var perturbations: [String]
        var classification: Bool { config.classes > 0 }
    }

    static func base() -> ModelConfig {
        var c = ModelConfig()
        c.vocab = 260; c.context = 16; c.dModel = 32; c.heads = 4; c.dFF = 48
        c.dropout = 0.1; c.expertDropout = 0.1   // not applied: evaluation mode
        return c
    }

    static let attention = ["norm-eps", "gelu", "causal", "attn-scale"]

    func testDenseModelMatchesTheReference() throws {
        var c = Self.base()
        c.layers = 2; c.experts = 1; c.topK = 1
        try check(Case(name: "dense", config: c, perturbations: Self.attention))
    }

    /// Top-2 routing with a capacity that cannot hold every assignment: 4 experts, 48
    /// tokens, capacity ⌈0.75·2·48/4⌉ = 18 slots each for 96 assignments.
    func testSparseModelWithDroppedTokensMatchesTheReference() throws {
        var c = Self.base()
        c.layers = 4; c.experts = 4; c.topK = 2; c.moeEvery = 2
        c.capacityFactorEval = 0.75; c.auxLossCoef = 0.01; c.zLossCoef = 0.001
        try check(Case(name: "sparse top-2", config: c,
                       perturbations: Self.attention + ["gate-renorm", "drop-renorm", "capacity", "slot-order", "aux-loss"]))
    }

    /// A fine-tuned shape: classification head on mean-pooled states, padded sequences,
    /// Switch (top-1) routing in every layer, RMSNorm.
    func testClassificationHeadMatchesTheReference() throws {
        var c = Self.base()
        c.layers = 2; c.experts = 4; c.topK = 1; c.moeEvery = 1; c.norm = .rmsnorm
        c.capacityFactorEval = 0.75; c.auxLossCoef = 0.01; c.zLossCoef = 0.001
        c.classes = 5
        try check(Case(name: "classification", config: c,
                       perturbations: Self.attention + ["gate-renorm", "drop-renorm", "capacity", "aux-loss", "pool", "pad-routing"]))
    }

    // MARK: The check

    func check(_ cs: Case, file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try NumPyReference.python()
        let dir = TestSupport.temporaryDirectory("reference")
        defer { try? FileManager.default.removeItem(at: dir) }
        let batch = cs.classification ? Self.classificationBatch() : Self.languageModelBatch(context: cs.config.context)
        let model = try Transformer(config: cs.config, maxBatch: batch.b, seed: 5)
        Self.makeNonTrivial(model)

        let result = batch.run { model.forward($0, mode: .eval) }
        let logits = model.lastLogits()
        XCTAssertEqual(logits.count, batch.b * (cs.classification ? cs.config.classes : batch.t * cs.config.vocab), file: file, line: line)
        XCTAssertEqual(result.router.count, cs.config.sparseLayers.count, file: file, line: line)
        for (layer, stats) in zip(cs.config.sparseLayers, result.router) {
            XCTAssertGreaterThan(stats.droppedFraction, 0, "layer \(layer) dropped nothing: capacity is not exercised", file: file, line: line)
        }

        // The parameters as `moerec export` writes them: through a checkpoint's objects.
        var run = RunConfig()
        run.model = cs.config
        let configJSON = try ConfigResolver.value(of: run).canonicalString
        let objects = ObjectStore(root: dir.appendingPathComponent("objects"))
        let tensors = model.layout.tensors.map { t in
            NamedTensor(name: t.name, shape: t.shape, group: t.group.rawValue,
                        values: UnsafeBufferPointer(start: model.params.base + t.offset, count: t.count))
        }
        let runHash = String(repeating: "0", count: 64)
        let (manifest, _) = try writeCheckpoint(objects: objects, runHash: runHash, step: 0, tensors: tensors, optimizer: [],
                                                optimizerStep: 0, state: [:], configJSON: configJSON)
        let exported = try Safetensors.exportParameters(objects: objects, manifest: manifest, runHash: runHash, configJSON: configJSON)
        let modelFile = dir.appendingPathComponent("model.safetensors")
        try Data(exported.bytes).write(to: modelFile)
        let configFile = URL(fileURLWithPath: Safetensors.configPath(besideExport: modelFile.path))
        try Data(Safetensors.configFileText(configJSON).utf8).write(to: configFile)

        // The reference reads each tensor's bytes as the checkpoint holds them.
        let digests = try NumPyReference.digests(of: modelFile)
        XCTAssertEqual(digests, Dictionary(uniqueKeysWithValues: manifest.tensors.map { ($0.name, $0.sha256) }), file: file, line: line)

        let batchFile = dir.appendingPathComponent("batch.json"), expectedFile = dir.appendingPathComponent("expected.json")
        try Data(try batch.json.canonicalBytes).write(to: batchFile)
        let expected: JSONValue = .object([
            "logits": .array(logits.map { .double(Double($0)) }),
            "cross_entropy": .double(Double(result.crossEntropy)),
            "aux_loss": .double(Double(result.auxLoss)),
            "z_loss": .double(Double(result.zLoss)),
            "loss": .double(Double(result.loss)),
            "dropped": .array(result.router.map { .double(Double($0.droppedFraction)) }),
        ])
        try Data(try expected.canonicalBytes).write(to: expectedFile)
        let arguments = ["compare", modelFile.path, configFile.path, batchFile.path, expectedFile.path,
                         "--tolerance", String(NumPyReference.tolerance)]

        let plain = try NumPyReference.run(arguments)
        let difference = NumPyReference.maxRelativeDifference(plain.stdout)
        XCTAssertEqual(plain.status, 0, "\(cs.name): moerec and the reference disagree\n\(plain.stdout)\(plain.stderr)", file: file, line: line)
        XCTAssertLessThanOrEqual(try XCTUnwrap(difference, plain.stdout + plain.stderr, file: file, line: line),
                                 NumPyReference.tolerance, file: file, line: line)
        var report = "\(cs.name): dropped \(result.router.map { String(format: "%.3f", $0.droppedFraction) }), "
            + "max relative difference \(Self.format(difference))"

        for name in cs.perturbations {
            let perturbed = try NumPyReference.run(arguments + ["--perturb", name])
            let d = NumPyReference.maxRelativeDifference(perturbed.stdout)
            XCTAssertEqual(perturbed.status, 1, "\(cs.name), --perturb \(name): expected a mismatch\n\(perturbed.stdout)\(perturbed.stderr)",
                           file: file, line: line)
            XCTAssertGreaterThan(d ?? 0, NumPyReference.tolerance, "\(cs.name), --perturb \(name)", file: file, line: line)
            report += "; \(name) \(Self.format(d))"
        }
        print(report)
    }

    static func format(_ d: Double?) -> String { d.map { String(format: "%.2e", $0) } ?? "none" }

    /// Weights away from their initial values, so that every gain, bias and projection
    /// matters: matrices uniform with unit output variance (fan-in scaled), norm gains in
    /// [0.5, 1.5), biases in [−0.2, 0.2). Two details are arranged so that a perturbation
    /// of the description shows: the embeddings keep their N(0, 0.02) draw, so the first
    /// norm sees rows of variance ~1e-3, where its epsilon is visible; and the FFN hidden
    /// units sit in GELU's negative tail (pre-activations about −2.5 ± 0.5), where the tanh
    /// and erf forms differ by about 1% (near 0 by 0.02%), with w2 scaled up to keep the
    /// branch's output of order 1.
    static func makeNonTrivial(_ model: Transformer) {
        let rms = model.config.norm == .rmsnorm
        for (i, t) in model.layout.tensors.enumerated() where t.group != .embed {
            let p = model.params.base + t.offset
            let r = TestSupport.randomFloats(t.count, seed: 1000 + UInt64(i))
            if t.name.hasSuffix(".weight") {
                for j in 0..<t.count { p[j] = 1 + 0.5 * r[j] }
            } else if t.group == .norm {
                // RMSNorm has no bias: the tensor stays zero, as training leaves it.
                for j in 0..<t.count { p[j] = rms ? 0 : 0.2 * r[j] }
            } else if t.name.hasSuffix(".b1") {
                for j in 0..<t.count { p[j] = -2.5 + 0.2 * r[j] }
            } else if t.shape.count == 1 || t.name.hasSuffix(".b2") {
                for j in 0..<t.count { p[j] = 0.2 * r[j] }
            } else {
                let gain: Float = t.name.hasSuffix(".w1") ? 0.5 : t.name.hasSuffix(".w2") ? 20 : 1
                let scale = gain * (3 / Float(t.shape[t.shape.count - 2])).squareRoot()
                for j in 0..<t.count { p[j] = scale * r[j] }
            }
        }
    }

    // MARK: Batches

    struct FixedBatch {
        var b: Int, t: Int
        var tokens: [Int32]
        var targets: [Int32] = [], labels: [Int32] = [], lengths: [Int32] = []

        func run<R>(_ body: (Batch) -> R) -> R {
            tokens.withUnsafeBufferPointer { tk in targets.withUnsafeBufferPointer { tg in
                labels.withUnsafeBufferPointer { lb in lengths.withUnsafeBufferPointer { ln in
                    body(labels.isEmpty
                         ? Batch(tokens: tk.baseAddress!, b: b, t: t, targets: tg.baseAddress!)
                         : Batch(tokens: tk.baseAddress!, b: b, t: t, labels: lb.baseAddress!, lengths: ln.baseAddress!))
                } }
            } }
        }

        var json: JSONValue {
            func ints(_ xs: [Int32]) -> JSONValue { .array(xs.map { .int(Int64($0)) }) }
            var o: [String: JSONValue] = ["b": .int(Int64(b)), "t": .int(Int64(t)), "tokens": ints(tokens)]
            if labels.isEmpty { o["targets"] = ints(targets) } else { o["labels"] = ints(labels); o["lengths"] = ints(lengths) }
            return .object(o)
        }
    }

    static let text = Array("entity: that which is perceived or known or inferred to have its own distinct existence".utf8)

    /// Three pretraining windows (bytes i…i+T−1, targets i+1…i+T); every seventh target is −1,
    /// so the mean runs over the scored rows only.
    static func languageModelBatch(context T: Int) -> FixedBatch {
        var batch = FixedBatch(b: 3, t: T, tokens: [])
        for (row, start) in [0, 23, 51].enumerated() {
            for t in 0..<T {
                batch.tokens.append(Int32(text[start + t]))
                batch.targets.append((row * T + t) % 7 == 6 ? -1 : Int32(text[start + t + 1]))
            }
        }
        return batch
    }

    /// Four examples as fine-tuning encodes them (BOS + bytes), right-padded to the longest.
    static func classificationBatch() -> FixedBatch {
        let examples = [(0, 16, 3), (9, 5, 0), (30, 11, 4), (44, 1, 1)].map { start, count, label in
            TrainingData.encode(text: Array(text[start..<(start + count)]), label: label, context: 16)
        }
        let T = examples.map(\.tokens.count).max()!
        var batch = FixedBatch(b: examples.count, t: T, tokens: [])
        for ex in examples {
            batch.tokens += ex.tokens + Array(repeating: TokenIds.pad, count: T - ex.tokens.count)
            batch.labels.append(ex.label)
            batch.lengths.append(Int32(ex.tokens.count))
        }
        return batch
    }
}
