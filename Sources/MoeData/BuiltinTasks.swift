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

/// The data sets moerec knows by name: the one dispatch from a built-in name to its task
/// or corpus, for the CLI and tests alike.
public enum TaskRegistry {
    public static let builtinNames = ["wn-pos", "wn-supersense"]
    public static let builtinCorpusNames = ["wordnet"]

    /// A built-in task by name, built from the synsets `synsets` loads (called only for a
    /// known name, so a caller may load WordNet once and cache it). An unknown name is
    /// `DataError.unknownTask`, listing the valid ones.
    public static func builtinTask(name: String, synsets: () throws -> [Synset]) throws -> ClassificationTask {
        switch name {
        case "wn-pos": return try WordNetTasks.partOfSpeech(try synsets())
        case "wn-supersense": return try WordNetTasks.supersense(try synsets())
        default: throw DataError.unknownTask(name: name, valid: builtinNames)
        }
    }

    /// A built-in pretraining corpus by name; an unknown name is `DataError.unknownCorpus`.
    public static func builtinCorpus(name: String, synsets: () throws -> [Synset]) throws -> PretrainCorpus {
        switch name {
        case "wordnet": return try PretrainCorpus.wordNet(try synsets())
        default: throw DataError.unknownCorpus(name: name, valid: builtinCorpusNames)
        }
    }
}
