import Foundation

/// A byte corpus for next-byte pretraining, split by the same hash rule as the tasks.
/// Records of the test split belong to neither `train` nor `validation`.
public struct PretrainCorpus: Sendable {
    public let name: String
    /// Train-split records, each followed by `\n`, in split order.
    public let train: [UInt8]
    /// Validation-split records, the same way.
    public let validation: [UInt8]
    /// SHA-256 (lowercase hex) of exactly `train`.
    public let trainFingerprint: String
    /// SHA-256 (lowercase hex) of exactly `validation`.
    public let validationFingerprint: String
    /// SHA-256 of `moerec-corpus-v1\ntrain\t<train fp>\nvalidation\t<validation fp>\n`.
    public let fingerprint: String
    /// Records assigned to each split (test records are held out, not included).
    public let recordCounts: [DataSplit: Int]

    public init(name: String, train: [UInt8], validation: [UInt8], recordCounts: [DataSplit: Int]) {
        self.name = name
        self.train = train
        self.validation = validation
        self.recordCounts = recordCounts
        trainFingerprint = Fingerprint.sha256Hex(train)
        validationFingerprint = Fingerprint.sha256Hex(validation)
        fingerprint = Fingerprint.sha256Hex(
            "moerec-corpus-v1\ntrain\t\(trainFingerprint)\nvalidation\t\(validationFingerprint)\n")
    }

    public func bytes(of split: DataSplit) -> [UInt8] {
        switch split {
        case .train: return train
        case .validation: return validation
        case .test: return []
        }
    }

    /// Assigns records (key, text) by key hash (see `SplitAssignment`), each split in order
    /// of the order hash; train and validation must be non-empty, else an error names `source`.
    public static func assigning(name: String, records: [(key: String, text: String)], source: String) throws -> PretrainCorpus {
        let splits = SplitAssignment.assign(records) { $0.key }
        for split in [DataSplit.train, .validation] where splits[split]!.isEmpty {
            throw DataError.emptySplit(file: source, split: split, records: records.count)
        }
        func join(_ records: [(key: String, text: String)]) -> [UInt8] {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(records.reduce(0) { $0 + $1.text.utf8.count + 1 })
            for record in records {
                bytes.append(contentsOf: record.text.utf8)
                bytes.append(UInt8(ascii: "\n"))
            }
            return bytes
        }
        return PretrainCorpus(name: name, train: join(splits[.train]!), validation: join(splits[.validation]!),
                              recordCounts: splits.mapValues(\.count))
    }

    /// The WordNet corpus: one `lemma[, lemma…]: gloss` line per synset, train-split
    /// synsets in `train`, validation-split synsets in `validation`, test synsets nowhere.
    public static func wordNet(_ synsets: [Synset], source: String = "WordNet") throws -> PretrainCorpus {
        try assigning(name: "wordnet", records: synsets.map { ($0.key, $0.corpusLine) }, source: source)
    }
}
