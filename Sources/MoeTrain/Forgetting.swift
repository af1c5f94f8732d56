import MoeMetricNames
import MoeModel

/// What fine-tuning forgets: the language-modelling loss of a fine-tuned body on its
/// parent's pretraining validation text, scored with the parent's LM head.
///
/// The probe is the parent's own pretraining setup — its config, its corpus, its
/// validation windows (`eval_batches` × `batch_size`), its evaluation code — so that a body
/// equal to the parent's gives the parent's own validation loss, bit for bit. A body is
/// every tensor the language model has (all but the classification head), its token
/// embedding included as the input embedding; the output projection stays the parent's
/// `wte` (`Transformer.evaluationHead`), so a fine-tuned embedding counts as forgetting
/// where it changes what the body computes, not by replacing the LM head.
public final class ForgettingProbe {
    let trainer: Trainer

    /// `parentConfig` is the parent's resolved pretraining config, `corpus` its data;
    /// `loadParent` puts the parent's parameters into the trainer it is given (as resuming
    /// from a checkpoint does).
    public init(parentConfig: RunConfig, corpus: TrainingData, loadParent: (Trainer) throws -> Void) throws {
        guard case .corpus = corpus, !parentConfig.isFinetune else {
            throw TrainerSetupError(description: "the forgetting probe runs on the parent's pretraining corpus")
        }
        trainer = try Trainer(config: parentConfig, data: corpus, sink: MemorySink(), evaluationOnly: true)
        try loadParent(trainer)
        let model = trainer.model, wte = model.layout.tensors[model.layout.wte]
        model.evaluationHead = Array(UnsafeBufferPointer(start: model.params.base + wte.offset, count: wte.count))
    }

    /// The mean next-byte cross-entropy (nats per byte) of `body` on the parent's
    /// validation windows; nil when `shouldStop` interrupted it. `body` must have the
    /// parent's architecture (a fine-tuning run inherits it).
    public func loss(of body: Transformer, shouldStop: (() -> Bool)? = nil) -> Double? {
        let model = trainer.model
        var byName: [String: TensorInfo] = [:]
        for t in body.layout.tensors { byName[t.name] = t }
        for t in model.layout.tensors {
            guard let source = byName[t.name] else { preconditionFailure("the body has no tensor \(t.name)") }
            precondition(source.count == t.count, "tensor \(t.name): the body's has \(source.count) values, the parent's \(t.count)")
            (model.params.base + t.offset).update(from: body.params.base + source.offset, count: t.count)
        }
        trainer.shouldStop = shouldStop
        return trainer.evaluate(split: Split.val)?.loss
    }
}
