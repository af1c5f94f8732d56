import Foundation
import MoeData
import MoeStore
import MoeTrain

/// Materialises the data a config names, with its fingerprint, caching loaded sources so
/// a sweep reads WordNet once per process. Safe to call from several threads (a study
/// plans its cells in parallel); loading is serialised.
public final class DataProvider: @unchecked Sendable {
    public struct Prepared {
        public let data: TrainingData
        /// SHA-256 over the materialised splits the run sees (part of the run hash).
        public let fingerprint: String
        public let classes: [String]
        /// Accuracy of always predicting the most frequent training class, on validation.
        public let majorityAccuracy: Double?
        /// Accuracy on validation and test of always predicting the most frequent class of
        /// the train *subset* (the majority baseline); nil for a corpus.
        public var subsetMajority: (validation: Double, test: Double)? = nil
    }

    private var corpora: [String: PretrainCorpus] = [:]
    /// Fine-tuning data by what selects it (the fields of `DataKeys.fineTuning`, test by its limit):
    /// the cells of a sweep that differ in other keys share one subset and fingerprint.
    private var subsets: [String: Prepared] = [:]
    private var tasks: [String: ClassificationTask] = [:]
    private var synsets: [Synset]?
    public let wordNetDirectory: URL
    private let lock = NSLock()

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        wordNetDirectory = environment["MOEREC_WORDNET_DIR"].map { URL(fileURLWithPath: $0) } ?? WordNet.defaultDirectory
    }

    private func wordNet() throws -> [Synset] {
        if let synsets { return synsets }
        let loaded = try WordNet.load(directory: wordNetDirectory)
        synsets = loaded
        return loaded
    }

    static func isPath(_ name: String) -> Bool { name.hasSuffix(".jsonl") || name.contains("/") }

    public func prepare(_ config: RunConfig) throws -> Prepared {
        lock.lock()
        defer { lock.unlock() }
        if config.isFinetune {
            let testLimit = config.settings.testExampleLimit
            let key = "\(config.task)\u{0}\(config.trainSize)\u{0}\(config.evalExamples)\u{0}\(testLimit)\u{0}\(config.context)"
            if let prepared = subsets[key] { return prepared }
            let task = try loadTask(config.task)
            guard config.trainSize <= task.train.count else {
                throw InputError("train_size=\(config.trainSize): task \(config.task) has only \(task.train.count) training examples")
            }
            let subset = try task.trainSubset(size: config.trainSize).limitingEvaluation(to: config.evalExamples, test: testLimit)
            func encode(_ examples: [Example]) -> [EncodedExample] {
                examples.map { TrainingData.encode(text: Array($0.text.utf8), label: $0.label, context: config.context) }
            }
            // Majority class of the full training split: the baseline a classifier must beat.
            let majority = task.majorityClass
            let val = subset.validation
            let majorityAccuracy = val.isEmpty ? nil : Double(val.filter { $0.label == majority }.count) / Double(val.count)
            let prepared = Prepared(data: .classification(classes: task.classes.count, train: encode(subset.train),
                                                          validation: encode(subset.validation), test: encode(subset.test)),
                                    fingerprint: subset.fingerprint, classes: task.classes, majorityAccuracy: majorityAccuracy,
                                    subsetMajority: (subset.majorityClassAccuracy(on: .validation),
                                                     subset.majorityClassAccuracy(on: .test)))
            subsets[key] = prepared
            return prepared
        }
        let corpus = try loadCorpus(config.corpus)
        return Prepared(data: .corpus(train: corpus.train, validation: corpus.validation),
                        fingerprint: corpus.fingerprint, classes: [], majorityAccuracy: nil)
    }

    func loadTask(_ name: String) throws -> ClassificationTask {
        try load(name, key: "task", cache: &tasks, file: { try JSONL.loadTask(url: $0, name: $1) }) {
            try TaskRegistry.builtinTask(name: name, synsets: wordNet)
        }
    }

    func loadCorpus(_ name: String) throws -> PretrainCorpus {
        try load(name, key: "corpus", cache: &corpora, file: { try JSONL.loadCorpus(url: $0, name: $1) }) {
            try TaskRegistry.builtinCorpus(name: name, synsets: wordNet)
        }
    }

    /// A data set named by config key `key`: a `.jsonl` path, else a built-in name; each
    /// loaded once per provider.
    private func load<Loaded>(_ name: String, key: String, cache: inout [String: Loaded],
                              file: (URL, String) throws -> Loaded, builtin: () throws -> Loaded) throws -> Loaded
    {
        if let loaded = cache[name] { return loaded }
        let loaded: Loaded
        if Self.isPath(name) {
            loaded = try file(URL(fileURLWithPath: name), name)
        } else {
            do {
                loaded = try builtin()
            } catch let DataError.unknownTask(_, valid), let DataError.unknownCorpus(_, valid) {
                throw InputError("\(key)=\(name): unknown \(key) (valid: \(valid.joined(separator: ", ")), or a path to a .jsonl file)")
            }
        }
        cache[name] = loaded
        return loaded
    }
}
