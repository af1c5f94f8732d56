import Foundation

/// Tasks built from WordNet synsets; the text is always the gloss, the key the synset key,
/// so both tasks and the pretraining corpus share one split of the synsets.
public enum WordNetTasks {
    /// `wn-supersense`: gloss → lexicographer file (45 classes on WordNet 3.0). Classes
    /// are the lexicographer files that occur in `synsets`, sorted by name.
    public static func supersense(_ synsets: [Synset], source: String = "WordNet") throws -> ClassificationTask {
        try build(name: "wn-supersense", synsets, source: source) { $0.lexFile }
    }

    /// `wn-pos`: gloss → adj, adv, noun or verb (satellites count as adj).
    public static func partOfSpeech(_ synsets: [Synset], source: String = "WordNet") throws -> ClassificationTask {
        try build(name: "wn-pos", synsets, source: source) { $0.pos.coarseName }
    }

    static func build(name: String, _ synsets: [Synset], source: String,
                      label: (Synset) -> String) throws -> ClassificationTask {
        let classes = sortedByBytes(Set(synsets.map(label)))
        let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
        let examples = synsets.map { Example(text: $0.gloss, label: index[label($0)]!, key: $0.key) }
        return try ClassificationTask.assigning(name: name, classes: classes, examples: examples, source: source)
    }
}

func sortedByBytes<S: Sequence>(_ strings: S) -> [String] where S.Element == String {
    strings.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
}

/// The data sets moerec knows by name.
public enum TaskRegistry {
    public static let builtinNames = ["wn-pos", "wn-supersense"]
    public static let builtinCorpusNames = ["wordnet"]

    /// A built-in task by name; an unknown name is an error listing the valid ones.
    public static func builtinTask(name: String, wordNetDirectory: URL = WordNet.defaultDirectory) throws -> ClassificationTask {
        guard builtinNames.contains(name) else {
            throw DataError.unknownTask(name: name, valid: builtinNames)
        }
        let synsets = try WordNet.load(directory: wordNetDirectory)
        switch name {
        case "wn-pos": return try WordNetTasks.partOfSpeech(synsets, source: wordNetDirectory.path)
        default: return try WordNetTasks.supersense(synsets, source: wordNetDirectory.path)
        }
    }

    /// A built-in pretraining corpus by name.
    public static func builtinCorpus(name: String, wordNetDirectory: URL = WordNet.defaultDirectory) throws -> PretrainCorpus {
        guard builtinCorpusNames.contains(name) else {
            throw DataError.unknownCorpus(name: name, valid: builtinCorpusNames)
        }
        return try PretrainCorpus.wordNet(directory: wordNetDirectory)
    }
}
