/// Human-readable summaries for notes and logs.
public enum DataStats {
    public static func summary(of task: ClassificationTask) -> String {
        var lines: [String] = []
        lines.append("task \(task.name): \(task.classes.count) classes, fingerprint \(task.fingerprint)")
        let majority = task.classes[task.majorityClass]
        for split in DataSplit.allCases {
            let counts = task.classCounts(in: split)
            let present = counts.filter { $0 > 0 }.count
            let accuracy = task.majorityClassAccuracy(on: split) * 100
            lines.append("  \(split.rawValue): \(task.examples(in: split).count) examples, "
                + "\(present)/\(task.classes.count) classes present, majority class (\(majority)) accuracy "
                + "\(formatPercent(accuracy)), fingerprint \(task.fingerprint(of: split))")
        }
        return lines.joined(separator: "\n")
    }

    public static func summary(of corpus: PretrainCorpus) -> String {
        [
            "corpus \(corpus.name): fingerprint \(corpus.fingerprint)",
            "  train: \(corpus.recordCounts[.train] ?? 0) records, \(corpus.train.count) bytes, fingerprint \(corpus.trainFingerprint)",
            "  validation: \(corpus.recordCounts[.validation] ?? 0) records, \(corpus.validation.count) bytes, fingerprint \(corpus.validationFingerprint)",
            "  test (held out): \(corpus.recordCounts[.test] ?? 0) records",
        ].joined(separator: "\n")
    }

    static func formatPercent(_ value: Double) -> String {
        let scaled = Int((value * 100).rounded())
        let fraction = scaled % 100
        return "\(scaled / 100).\(fraction < 10 ? "0" : "")\(fraction)%"
    }
}
