/// One labelled example. `key` is the identity its split was assigned by.
public struct Example: Sendable, Equatable, Hashable {
    public var text: String
    /// Index into the task's `classes`.
    public var label: Int
    public var key: String

    public init(text: String, label: Int, key: String) {
        self.text = text
        self.label = label
        self.key = key
    }
}

/// A sequence-classification task with fixed train / validation / test splits.
///
/// Fingerprints (lowercase hex SHA-256) cover exactly what a run sees:
/// - a split's fingerprint hashes, for each example in split order, the line
///   `key \t class-name \t text \n`, where in each of the three fields `\` `TAB` `LF` `CR`
///   are written as `\\` `\t` `\n` `\r`;
/// - the task's `fingerprint` hashes `moerec-task-v1\n`, then `classes` followed by a tab
///   before each class name (escaped the same way) and `\n`, then
///   `train\t<fp>\n`, `validation\t<fp>\n`, `test\t<fp>\n`.
/// The task name is not hashed: the same data under another name has the same fingerprint.
public struct ClassificationTask: Sendable {
    public let name: String
    /// Class names; label id = index. Built-in and JSONL tasks list them sorted (strings by
    /// UTF-8 bytes, integer labels numerically), taken from the whole task, not one split.
    public let classes: [String]
    public let train: [Example]
    public let validation: [Example]
    public let test: [Example]
    public let trainFingerprint: String
    public let validationFingerprint: String
    public let testFingerprint: String
    /// Combined fingerprint of the classes and all three splits.
    public let fingerprint: String

    /// Builds a task from splits given in their final order. Every label must index
    /// `classes`, and class names must be distinct.
    public init(name: String, classes: [String], train: [Example], validation: [Example], test: [Example]) throws {
        // Distinct as bytes: two spellings of "é" are two classes (see `JSONL.loadTask`).
        guard Set(classes.map { Array($0.utf8) }).count == classes.count else {
            throw DataError.invalidArgument("task \(name): class names must be distinct")
        }
        for (split, examples) in [(DataSplit.train, train), (.validation, validation), (.test, test)] {
            if let bad = examples.first(where: { $0.label < 0 || $0.label >= classes.count }) {
                throw DataError.invalidArgument(
                    "task \(name): \(split.rawValue) example \(bad.key) has label \(bad.label) outside 0..<\(classes.count)")
            }
        }
        self.name = name
        self.classes = classes
        self.train = train
        self.validation = validation
        self.test = test
        trainFingerprint = Self.fingerprint(of: train, classes: classes)
        validationFingerprint = Self.fingerprint(of: validation, classes: classes)
        testFingerprint = Self.fingerprint(of: test, classes: classes)
        var header: [UInt8] = Array("moerec-task-v1\nclasses".utf8)
        for name in classes {
            header.append(UInt8(ascii: "\t"))
            Fingerprint.appendEscaped(name, to: &header)
        }
        header.append(contentsOf: Array(
            "\ntrain\t\(trainFingerprint)\nvalidation\t\(validationFingerprint)\ntest\t\(testFingerprint)\n".utf8))
        fingerprint = Fingerprint.sha256Hex(header)
    }

    /// Assigns `examples` to splits by the hash of their keys (see `SplitAssignment`) and
    /// orders each split by the order hash. An empty split is an error naming `source`.
    public static func assigning(name: String, classes: [String], examples: [Example], source: String) throws -> ClassificationTask {
        guard classes.count >= 2 else { throw DataError.tooFewClasses(file: source, classes: classes) }
        let splits = SplitAssignment.assign(examples) { $0.key }
        for split in DataSplit.allCases where splits[split]!.isEmpty {
            throw DataError.emptySplit(file: source, split: split, records: examples.count)
        }
        return try ClassificationTask(name: name, classes: classes, train: splits[.train]!,
                                      validation: splits[.validation]!, test: splits[.test]!)
    }

    static func fingerprint(of examples: [Example], classes: [String]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(examples.reduce(0) { $0 + $1.text.utf8.count + $1.key.utf8.count + 24 })
        for example in examples {
            Fingerprint.appendEscaped(example.key, to: &bytes)
            bytes.append(UInt8(ascii: "\t"))
            Fingerprint.appendEscaped(classes[example.label], to: &bytes)
            bytes.append(UInt8(ascii: "\t"))
            Fingerprint.appendEscaped(example.text, to: &bytes)
            bytes.append(UInt8(ascii: "\n"))
        }
        return Fingerprint.sha256Hex(bytes)
    }

    public func examples(in split: DataSplit) -> [Example] {
        switch split {
        case .train: return train
        case .validation: return validation
        case .test: return test
        }
    }

    public func fingerprint(of split: DataSplit) -> String {
        switch split {
        case .train: return trainFingerprint
        case .validation: return validationFingerprint
        case .test: return testFingerprint
        }
    }

    /// The same task with only the first `size` train examples of the split order, so the
    /// subsets are nested: the 256-subset is contained in the 4096-subset. Validation and
    /// test are unchanged; fingerprints are recomputed.
    public func trainSubset(size: Int) throws -> ClassificationTask {
        guard size > 0 else {
            throw DataError.invalidArgument("task \(name): a train subset needs a positive size, got \(size)")
        }
        guard size <= train.count else {
            throw DataError.subsetTooLarge(task: name, requested: size, available: train.count)
        }
        return try ClassificationTask(name: name, classes: classes, train: Array(train.prefix(size)),
                                      validation: validation, test: test)
    }

    /// Caps validation at its first `limit` examples of the split order (the same
    /// deterministic order as train subsets) and test at its first `testLimit` (`limit`
    /// when nil), to bound evaluation cost. A limit at or above a split's size leaves it whole.
    public func limitingEvaluation(to limit: Int, test testLimit: Int? = nil) throws -> ClassificationTask {
        let testLimit = testLimit ?? limit
        guard limit > 0, testLimit > 0 else {
            throw DataError.invalidArgument("task \(name): an evaluation limit must be positive, got \(min(limit, testLimit))")
        }
        return try ClassificationTask(name: name, classes: classes, train: train,
                                      validation: Array(validation.prefix(limit)), test: Array(test.prefix(testLimit)))
    }

    /// Number of examples per class id in `split`.
    public func classCounts(in split: DataSplit) -> [Int] {
        var counts = [Int](repeating: 0, count: classes.count)
        for example in examples(in: split) { counts[example.label] += 1 }
        return counts
    }

    /// The most frequent class of the train split (the lowest id on a tie).
    public var majorityClass: Int {
        let counts = classCounts(in: .train)
        var best = 0
        for (label, count) in counts.enumerated() where count > counts[best] { best = label }
        return best
    }

    /// Accuracy on `split` of always predicting the train split's majority class: the
    /// baseline a fine-tuned model must beat. 0 for an empty split.
    public func majorityClassAccuracy(on split: DataSplit) -> Double {
        let examples = examples(in: split)
        guard !examples.isEmpty else { return 0 }
        let majority = majorityClass
        return Double(examples.reduce(0) { $0 + ($1.label == majority ? 1 : 0) }) / Double(examples.count)
    }
}
