/// The run-config keys that select the examples a fine-tuning run sees, declared once for
/// the modules that compare runs by their data (baseline runs, reports): fine-tuning
/// configs that agree on them train, pick their step and test on the same examples,
/// whatever their regime, seed or parent, and their baselines are fitted and scored on
/// those. A stored config has `test_examples` only when it is set.
public enum DataKeys {
    public static let fineTuning = ["task", "train_size", "eval_examples", "test_examples", "context"]
}
