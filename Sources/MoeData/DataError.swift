import Foundation
import MoeErrors

/// The three fixed splits of every data set.
public enum DataSplit: String, CaseIterable, Sendable, Codable, Hashable {
    case train, validation, test
}

/// What is wrong with one line of an input file (JSONL record or WordNet data line).
public enum LineProblem: Equatable, Sendable, CustomStringConvertible {
    /// `column` is the 1-based byte position of the first byte that is not well-formed UTF-8.
    case invalidUTF8(column: Int)
    /// The line is longer than `limit` bytes; reading stopped there.
    case lineTooLong(limit: Int)
    case invalidJSON(String)
    case notAnObject
    case missingField(String)
    case wrongType(field: String, expected: String)
    case duplicateField(String)
    /// Labels must be all strings or all integers; `expected` is the kind seen first.
    case mixedLabelTypes(expected: String)
    case malformedWordNet(String)

    public var description: String {
        switch self {
        case .invalidUTF8(let column):
            return "invalid UTF-8 at byte \(column) of the line"
        case .lineTooLong(let limit):
            return "line is longer than the limit of \(limit) bytes"
        case .invalidJSON(let detail):
            return "invalid JSON: \(detail)"
        case .notAnObject:
            return "a record must be a JSON object"
        case .missingField(let field):
            return "missing field \"\(field)\""
        case .wrongType(let field, let expected):
            return "field \"\(field)\" must be \(expected)"
        case .duplicateField(let field):
            return "field \"\(field)\" appears twice"
        case .mixedLabelTypes(let expected):
            return "label is not \(expected) like the earlier labels (labels must be all strings or all integers)"
        case .malformedWordNet(let detail):
            return "malformed WordNet data line: \(detail)"
        }
    }
}

/// Errors of the data layer. Every description names the file (and line where there is one).
public enum DataError: MoeError, Equatable, Sendable, LocalizedError {
    /// The WordNet directory or one of its data files is missing.
    case wordNetNotInstalled(path: String)
    case unreadable(path: String, reason: String)
    case invalidLine(file: String, line: Int, problem: LineProblem)
    /// The file holds no records (it is empty or has only blank lines).
    case emptyFile(path: String)
    /// After hash assignment a split that is needed has no record.
    case emptySplit(file: String, split: DataSplit, records: Int)
    case tooFewClasses(file: String, classes: [String])
    case unknownTask(name: String, valid: [String])
    case unknownCorpus(name: String, valid: [String])
    case subsetTooLarge(task: String, requested: Int, available: Int)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .wordNetNotInstalled(let path):
            return "WordNet 3.0 not found: \(path) does not exist. Install it with "
                + "`apt-get install wordnet-base`, or point moerec at a directory holding "
                + "data.noun, data.verb, data.adj and data.adv."
        case .unreadable(let path, let reason):
            return "\(path): cannot read: \(reason)"
        case .invalidLine(let file, let line, let problem):
            return "\(file):\(line): \(problem)"
        case .emptyFile(let path):
            return "\(path): no records (the file is empty or holds only blank lines)"
        case .emptySplit(let file, let split, let records):
            return "\(file): the \(split.rawValue) split is empty: \(records) record(s) were "
                + "assigned by hash (80% train, 10% validation, 10% test) and none landed in "
                + "\(split.rawValue); add more records"
        case .tooFewClasses(let file, let classes):
            return "\(file): a classification task needs at least 2 distinct labels, found "
                + "\(classes.count)\(classes.isEmpty ? "" : " (\(classes.joined(separator: ", ")))")"
        case .unknownTask(let name, let valid):
            return "unknown task \"\(name)\"; built-in tasks are: \(valid.joined(separator: ", "))"
        case .unknownCorpus(let name, let valid):
            return "unknown corpus \"\(name)\"; built-in corpora are: \(valid.joined(separator: ", "))"
        case .subsetTooLarge(let task, let requested, let available):
            return "task \(task): a train subset of \(requested) examples was requested but the "
                + "train split has only \(available)"
        case .invalidArgument(let detail):
            return detail
        }
    }

    public var errorDescription: String? { description }

    /// Every data error is about a file, name or size the user chose.
    public var exitMeaning: ExitMeaning { .badInput }
}
