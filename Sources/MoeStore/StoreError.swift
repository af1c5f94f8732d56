import Foundation
import MoeErrors
import MoeJSON

/// Every failure the store reports. Each case carries the value that was wrong (a path, a
/// hash, a token) so the CLI can print `description` as is and choose an exit code.
public enum StoreError: MoeError, Equatable, Sendable, LocalizedError {
    // MARK: Opening the store file
    /// The file or its directory could not be opened or created.
    case cannotOpen(path: String, reason: String)
    /// The file exists but is not an SQLite database; it has not been modified.
    case notADatabase(path: String)
    /// A command that only reads was pointed at a path where no store exists.
    case notFound(path: String)
    /// An SQLite database that is not a moerec store (it has tables but no migration ledger);
    /// it has not been modified.
    case notAStore(path: String)
    /// The store (or its directory) cannot be written.
    case readOnly(path: String)
    /// The filesystem holding the store is full; the last transaction was rolled back.
    case diskFull(path: String)
    /// SQLite reports the database image as malformed.
    case corrupt(path: String, detail: String)
    /// An I/O error other than a full disk.
    case ioError(path: String, detail: String)
    /// Other processes kept the database locked for longer than the retry deadline.
    case busyTimeout(path: String, seconds: Double)

    // MARK: Schema
    /// The store was migrated by a newer moerec than this one.
    case schemaTooNew(path: String, storeVersion: Int, supportedVersion: Int)
    /// A migration recorded in the store does not match the one this build ships.
    case migrationMismatch(version: Int, storeName: String, codeName: String)
    /// A migration's SQL failed; its transaction was rolled back.
    case migrationFailed(version: Int, name: String, reason: String)

    // MARK: Runs and hashes
    /// Not a full 64-character lowercase hex SHA-256.
    case invalidHash(String)
    /// A hash prefix with characters other than hex digits, empty, or longer than 64.
    case invalidHashPrefix(String)
    /// More than one run starts with this prefix; `candidates` lists some of them.
    case ambiguousHashPrefix(String, candidates: [String])
    /// No run has this hash (or hash prefix).
    case unknownRun(String)
    /// A run with this hash is already recorded.
    case runExists(String)
    /// The parent hash names no run in this store.
    case unknownParent(String)
    /// The hash given for a run is not the hash of its identity fields.
    case hashMismatch(given: String, computed: String)
    /// A lifecycle change that the run's current status does not allow.
    case invalidStatusTransition(hash: String, from: String, to: String)
    /// A completed run's records are final; nothing more is written to it.
    case runCompleted(String)
    /// Another live process holds this run's lease (it is training it now).
    case runInProgress(hash: String, pid: Int?)
    /// The lock file for a run could not be created or locked.
    case lockFailed(path: String, reason: String)
    /// Two blob records with one SHA-256 disagree on the raw size: one of them is wrong.
    case blobConflict(sha256: String, recordedRawSize: Int64, newRawSize: Int64)
    /// A run's config is not one JSON object (`reason` says where the text goes wrong).
    case invalidConfig(reason: String)
    /// A run of the store being merged from cannot enter this store: its hash or config is
    /// malformed (a row written outside moerec). Nothing was merged from that store.
    case invalidSourceRun(path: String, hash: String, reason: String)

    // MARK: Input values
    /// A `--where` expression that does not parse; `token` is the offending piece.
    case invalidWhere(expression: String, token: String, reason: String)
    /// A config key that is not `^[A-Za-z_][A-Za-z0-9_]*$`.
    case invalidConfigKey(String)
    /// A tag outside `Store.tagLength` characters or holding a control character.
    case invalidTag(String, reason: String)
    /// An argument outside what the store accepts (empty name, negative step, ...).
    case invalidArgument(String)
    /// `query` accepts only a single read-only statement.
    case notReadOnlyQuery(String)
    /// A constraint declared in the schema rejected a write.
    case constraintViolation(String)
    /// Any other SQLite error.
    case sqlite(code: Int32, message: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "cannot open store '\(path)': \(reason)"
        case let .notADatabase(path):
            return "'\(path)' is not an SQLite database (left unchanged); pass another --store path"
        case let .notFound(path):
            return "no store at '\(path)' (nothing was created); pass the path of an existing store with --store or $MOEREC_STORE"
        case let .notAStore(path):
            return "'\(path)' is an SQLite database but not a moerec store (left unchanged); pass another --store path"
        case let .readOnly(path):
            return "store '\(path)' is read-only: moerec needs to write to the file and its directory"
        case let .diskFull(path):
            return "disk full while writing store '\(path)'; the last transaction was rolled back"
        case let .corrupt(path, detail):
            return "store '\(path)' is corrupt: \(detail)"
        case let .ioError(path, detail):
            return "I/O error on store '\(path)': \(detail)"
        case let .busyTimeout(path, seconds):
            return "store '\(path)' stayed locked by other processes for \(Int(seconds)) s"
        case let .schemaTooNew(path, storeVersion, supportedVersion):
            return "store '\(path)' has schema version \(storeVersion), newer than this moerec knows (\(supportedVersion)); upgrade moerec"
        case let .migrationMismatch(version, storeName, codeName):
            return "store migration \(version) is '\(storeName)' but this moerec ships '\(codeName)' as \(version)"
        case let .migrationFailed(version, name, reason):
            return "migration \(version) '\(name)' failed and was rolled back: \(reason)"
        case let .invalidHash(value):
            return "'\(value)' is not a run hash (64 lowercase hex digits)"
        case let .invalidHashPrefix(value):
            return "'\(value)' is not a hash prefix (1 to 64 hex digits)"
        case let .ambiguousHashPrefix(prefix, candidates):
            return "hash prefix '\(prefix)' is ambiguous: matches \(candidates.joined(separator: ", "))"
        case let .unknownRun(value):
            return "no run with hash '\(value)' in the store"
        case let .runExists(hash):
            return "run \(hash) is already in the store"
        case let .unknownParent(hash):
            return "parent run '\(hash)' is not in the store"
        case let .hashMismatch(given, computed):
            return "run hash \(given) does not match its config, parent, dataset and numerics (they hash to \(computed))"
        case let .invalidStatusTransition(hash, from, to):
            return "run \(hash) is \(from); it cannot become \(to)"
        case let .runCompleted(hash):
            return "run \(hash) is completed; its records cannot be changed"
        case let .runInProgress(hash, pid):
            return "run \(hash) is being trained by another process" + (pid.map { " (pid \($0))" } ?? "")
        case let .lockFailed(path, reason):
            return "cannot lock '\(path)': \(reason)"
        case let .blobConflict(sha, recorded, new):
            return "blob \(sha) is recorded with raw size \(recorded) but was offered with raw size \(new)"
        case let .invalidConfig(reason):
            return "a run config must be one JSON object: \(reason)"
        case let .invalidSourceRun(path, hash, reason):
            return "run \(JSONString.quoted(hash)) of store '\(path)' cannot be merged: \(reason); nothing was merged "
                + "from that store (moerec verify --store '\(path)' lists what is wrong in it)"
        case let .invalidWhere(expression, token, reason):
            return "invalid --where expression '\(expression)' at '\(token)': \(reason)"
        case let .invalidConfigKey(key):
            return "'\(key)' is not a valid config key (letters, digits and _, not starting with a digit)"
        case let .invalidTag(tag, reason):
            return "tag \(JSONString.quoted(tag)): \(reason)"
        case let .invalidArgument(reason):
            return reason
        case let .notReadOnlyQuery(sql):
            return "query() runs one read-only statement; refused: \(sql)"
        case let .constraintViolation(message):
            return "the store rejected the write: \(message)"
        case let .sqlite(code, message):
            return "SQLite error \(code): \(message)"
        }
    }

    public var errorDescription: String? { description }

    /// Errors caused by what the user typed or pointed at (a hash, a filter, a tag, a path
    /// that is not a store) are bad input; the store's own state or the system failing is not.
    public var exitMeaning: ExitMeaning {
        switch self {
        case .invalidHash, .invalidHashPrefix, .ambiguousHashPrefix, .unknownRun, .invalidWhere, .invalidConfigKey,
             .invalidTag, .notADatabase, .notFound, .notAStore, .cannotOpen, .invalidConfig, .invalidSourceRun:
            return .badInput
        default:
            return .checkFailed
        }
    }
}
