// The names of the stored metric series, declared once. Every module that writes or reads
// a series (training, run execution, the store's listings, reports, diffs, the CLI) names
// it through these, so a name cannot drift between writer and reader. The strings are
// what stores hold: changing one makes existing stores and committed reports read
// differently.

/// Metric splits. "timing" holds wall-clock figures, which vary between executions and
/// are therefore left out of reproduction checks.
public enum Split {
    /// Evaluation on the training subset, the validation and the test split.
    public static let train = "train", val = "val", test = "test"
    /// One point per optimizer step, from the training batch.
    public static let step = "step"
    /// Wall-clock figures.
    public static let timing = "timing"
    /// Facts about the run recorded once, at step 0.
    public static let info = "info"
    /// The splits an evaluation writes, in the order reports list them.
    public static let evaluation = [train, val, test]
}

/// Metric names, grouped by the splits that carry them.
public enum MetricName {
    /// Every evaluation split, and `step` (the training batch's total loss).
    public static let loss = "loss"
    /// Evaluation splits: classification accuracy.
    public static let accuracy = "acc"

    /// Evaluation splits, with `test_eval: selected`: loss and accuracy on `eval_examples`
    /// with the parameters of the step validation selected, at that step (the periodic
    /// `loss`/`acc` there measured fewer examples).
    public static let selectedLoss = "selected_loss", selectedAccuracy = "selected_acc"

    /// `step`: cross-entropy, learning rate, global gradient norm.
    public static let crossEntropy = "ce", learningRate = "lr", gradientNorm = "grad_norm"
    /// `step` (summed over sparse layers) and, per sparse layer, evaluation splits
    /// (`layer(_:_:)`): load-balancing loss, router z-loss, dropped-token fraction.
    public static let auxLoss = "aux", zLoss = "z", dropped = "dropped"
    /// Evaluation splits, per sparse layer: router entropy.
    public static let entropy = "entropy"

    /// `timing`: seconds per optimizer step, training tokens per second; seconds spent on
    /// one evaluation (all its splits) and on writing one checkpoint, at their step.
    public static let stepTime = "step_time", tokensPerSecond = "tokens_per_s"
    public static let evalTime = "eval_time", checkpointTime = "checkpoint_time"

    /// `info`: total parameter count, share of parameters the regime updates,
    /// majority-class validation accuracy.
    public static let parameters = "parameters", trainableFraction = "trainable_fraction",
                      majorityAccuracy = "majority_acc"

    /// A router statistic of sparse layer `layer`: `moe<layer>.<name>`.
    public static func layer(_ layer: Int, _ name: String) -> String { "moe\(layer).\(name)" }

    /// Expert `expert`'s share of the tokens routed at sparse layer `layer`.
    public static func load(layer: Int, expert: Int) -> String { self.layer(layer, "load.\(expert)") }

    /// `info`, expert-specialized regimes: expert `expert`'s score (`gate` or `token`) at
    /// sparse layer `layer`, and whether it trains (`selected`, 1 or 0): `esft.moe<layer>.<what>.<expert>`.
    public static func esft(layer: Int, _ what: String, expert: Int) -> String { "esft.moe\(layer).\(what).\(expert)" }
    public static let esftSelected = "selected"

    /// `val`, with `forgetting_eval: parent`: the body's language-modelling loss (nats per
    /// byte) on the parent's validation text with the parent's LM head, at step 0 (before
    /// fine-tuning) and at the last step. `info`, at the last step: the second minus the first.
    public static let parentLMLoss = "parent_lm_loss", forgetting = "forgetting"

    /// Whether `name` is an ESFT score or selection flag.
    public static func isExpertSelection(_ name: String) -> Bool { name.hasPrefix("esft.moe") }

    /// Whether `name` is a per-expert load share (many series, hidden from summaries).
    public static func isLoad(_ name: String) -> Bool { name.contains(".load.") }
}
