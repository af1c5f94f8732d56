import Foundation
import MoeData
import MoeStore
import MoeTrain

/// Materialises the data a config names, with its fingerprint, caching loaded sources so
/// a sweep reads WordNet once per process.
public final class DataProvider {
    public struct Prepared {
        public let data: TrainingData
        /// SHA-256 over the materialised splits the run sees (part of the run hash).
        public let fingerprint: String
        public let classes: [String]
        /// Accuracy of always predicting the most frequent training class, on validation.
        public let majorityAccuracy: Double?
    }

    private var corpora: [String: PretrainCorpus] = [:]
    /// Fine-tuning data by what selects it (task, train size, evaluation examples, context):
    /// the cells of a sweep that differ in other keys share one subset and fingerprint.
    private var subsets: [String: Prepared] = [:]
    private var tasks: [String: ClassificationTask] = [:]
    private var synsets: [Synset]?
    public let wordNetDirectory: URL

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
        if config.isFinetune {
            let key = "\(config.task)\u{0}\(config.trainSize)\u{0}\(config.evalExamples)\u{0}\(config.context)"
            if let prepared = subsets[key] { return prepared }
            let task = try loadTask(config.task)
            guard config.trainSize <= task.train.count else {
                throw InputError("train_size=\(config.trainSize): task \(config.task) has only \(task.train.count) training examples")
            }
            let subset = try task.trainSubset(size: config.trainSize).limitingEvaluation(to: config.evalExamples)
            func encode(_ examples: [Example]) -> [EncodedExample] {
                examples.map { TrainingData.encode(text: Array($0.text.utf8), label: $0.label, context: config.context) }
            }
            // Majority class of the full training split: the baseline a classifier must beat.
            let majority = task.majorityClass
            let val = subset.validation
            let majorityAccuracy = val.isEmpty ? nil : Double(val.filter { $0.label == majority }.count) / Double(val.count)
            let prepared = Prepared(data: .classification(classes: task.classes.count, train: encode(subset.train),
                                                          validation: encode(subset.validation), test: encode(subset.test)),
                                    fingerprint: subset.fingerprint, classes: task.classes, majorityAccuracy: majorityAccuracy)
            subsets[key] = prepared
            return prepared
        }
        let corpus = try loadCorpus(config.corpus)
        return Prepared(data: .corpus(train: corpus.train, validation: corpus.validation),
                        fingerprint: corpus.fingerprint, classes: [], majorityAccuracy: nil)
    }

    func loadTask(_ name: String) throws -> ClassificationTask {
        if let t = tasks[name] { return t }
        let task: ClassificationTask
        if Self.isPath(name) {
            task = try JSONL.loadTask(url: URL(fileURLWithPath: name), name: name)
        } else {
            guard TaskRegistry.builtinNames.contains(name) else {
                throw InputError("task=\(name): unknown task (valid: \(TaskRegistry.builtinNames.joined(separator: ", ")), or a path to a .jsonl file)")
            }
            let synsets = try wordNet()
            task = name == "wn-pos" ? try WordNetTasks.partOfSpeech(synsets) : try WordNetTasks.supersense(synsets)
        }
        tasks[name] = task
        return task
    }

    func loadCorpus(_ name: String) throws -> PretrainCorpus {
        if let c = corpora[name] { return c }
        let corpus: PretrainCorpus
        if Self.isPath(name) {
            corpus = try JSONL.loadCorpus(url: URL(fileURLWithPath: name), name: name)
        } else {
            guard TaskRegistry.builtinCorpusNames.contains(name) else {
                throw InputError("corpus=\(name): unknown corpus (valid: \(TaskRegistry.builtinCorpusNames.joined(separator: ", ")), or a path to a .jsonl file)")
            }
            corpus = try PretrainCorpus.wordNet(try wordNet())
        }
        corpora[name] = corpus
        return corpus
    }
}
