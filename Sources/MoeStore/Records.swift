import Foundation
import MoeJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// One Codable record type per table, with the table's columns as properties. Rows that
// reference a run by its integer id (metrics, checkpoints, tags) carry the run's hash
// instead: integer ids are local to one store, hashes are what callers and merges use.

/// `runs.kind`
public enum RunKind: String, Codable, Sendable, CaseIterable {
    case pretrain
    case finetune
    /// A reference classifier (majority class or linear n-gram) on a fine-tuning task's data.
    case baseline
}

/// `runs.status`
public enum RunStatus: String, Codable, Sendable, CaseIterable {
    case queued
    case running
    case completed
    case failed
    case interrupted
}

/// The environment columns of `runs`: where and how a run was trained. Recorded, never
/// part of the run hash; `reproduce` reports differences.
public struct RunEnvironment: Codable, Equatable, Sendable {
    public var host: String?
    public var os: String?
    public var cpuModel: String?
    public var blasCore: String?
    public var threads: Int?
    public var moerecVersion: String?
    public var gitCommit: String?
    /// The Slurm job (ARRAYJOB_TASK for an array task) the run trained in; nil outside Slurm.
    public var slurmJob: String?
    /// The build of the element-wise kernels the CPU ran (avx512, avx2, sse2).
    public var vectorLevel: String?

    public init(host: String? = nil, os: String? = nil, cpuModel: String? = nil, blasCore: String? = nil,
                threads: Int? = nil, moerecVersion: String? = nil, gitCommit: String? = nil, slurmJob: String? = nil,
                vectorLevel: String? = nil)
    {
        self.slurmJob = slurmJob
        self.vectorLevel = vectorLevel
        self.host = host
        self.os = os
        self.cpuModel = cpuModel
        self.blasCore = blasCore
        self.threads = threads
        self.moerecVersion = moerecVersion
        self.gitCommit = gitCommit
    }

    /// This machine's host name, OS and CPU model, plus what only the caller knows.
    public static func current(blasCore: String?, vectorLevel: String?, threads: Int?, moerecVersion: String?,
                               gitCommit: String?) -> RunEnvironment {
        var name = [CChar](repeating: 0, count: 256)
        let host = gethostname(&name, name.count) == 0 ? String(cString: name) : nil
        var info = utsname()
        var os: String?
        if uname(&info) == 0 {
            // utsname fields are fixed-size C char tuples.
            func field<T>(_ value: T) -> String {
                withUnsafeBytes(of: value) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
            }
            os = "\(field(info.sysname)) \(field(info.release)) \(field(info.machine))"
        }
        return RunEnvironment(host: host, os: os, cpuModel: cpuModelName(), blasCore: blasCore, threads: threads,
                              moerecVersion: moerecVersion, gitCommit: gitCommit, slurmJob: slurmJob(), vectorLevel: vectorLevel)
    }

    /// The Slurm job this process runs in, from the variables Slurm sets: "ARRAYJOB_TASK"
    /// for a job-array task, the job id otherwise, nil outside Slurm.
    public static func slurmJob(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let array = environment["SLURM_ARRAY_JOB_ID"], let task = environment["SLURM_ARRAY_TASK_ID"] { return "\(array)_\(task)" }
        return environment["SLURM_JOB_ID"]
    }

    private static func cpuModelName() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }
}

/// A row of `runs`.
public struct RunRecord: Codable, Equatable, Sendable {
    public var id: Int64
    public var hash: String
    public var parentHash: String?
    public var kind: RunKind
    public var status: RunStatus
    /// The resolved config in canonical JSON.
    public var configJSON: String
    public var datasetFingerprint: String
    public var numericsVersion: Int
    public var environment: RunEnvironment
    public var pid: Int?
    public var createdAt: String
    public var startedAt: String?
    public var finishedAt: String?
    public var wallSeconds: Double?
    public var stepsDone: Int
    public var failureReason: String?
    public var failureStep: Int?
    /// Where an imported run came from (format and location); nil for a run moerec trained.
    public var importSource: String?
    /// SHA-256 of an imported run's content (`ImportedRun.fingerprint`), part of its hash.
    public var importFingerprint: String?

    /// Whether the run was trained elsewhere and imported: it has no checkpoints and cannot
    /// be re-executed.
    public var isImported: Bool { importFingerprint != nil }

    /// The resolved config, parsed.
    public var config: JSONValue {
        get throws { try JSONValue(parsing: configJSON) }
    }
}

/// A row of `metrics`, with the interned name and split spelled out.
/// A NaN value is stored as SQL NULL and read back as `.nan`.
public struct MetricPoint: Codable, Equatable, Sendable {
    public var runHash: String
    public var step: Int
    public var split: String
    public var name: String
    public var value: Double

    public init(runHash: String, step: Int, split: String, name: String, value: Double) {
        self.runHash = runHash
        self.step = step
        self.split = split
        self.name = name
        self.value = value
    }

    public static func == (a: MetricPoint, b: MetricPoint) -> Bool {
        // Bitwise-equal values (so NaN equals NaN): a stored series compares equal to itself.
        a.runHash == b.runHash && a.step == b.step && a.split == b.split && a.name == b.name
            && (a.value == b.value || (a.value.isNaN && b.value.isNaN))
    }
}

/// A row of `metric_names`.
public struct MetricNameRecord: Codable, Equatable, Sendable {
    public var id: Int64
    public var name: String
}

/// A row of `splits` (`train` = 0, `val` = 1, `test` = 2 are built in; others are added on use).
public struct SplitRecord: Codable, Equatable, Sendable {
    public var id: Int64
    public var name: String
}

/// A row of `checkpoints`.
public struct CheckpointRecord: Codable, Equatable, Sendable {
    public var id: Int64
    public var runHash: String
    public var step: Int
    public var manifestJSON: String
    public var createdAt: String
}

/// A row of `blobs`: one stored object, named by the SHA-256 of its raw bytes.
public struct BlobRecord: Codable, Equatable, Sendable {
    public var sha256: String
    public var rawSize: Int64
    public var storedSize: Int64
    /// Where the object lives, as the checkpoint code wrote it (e.g. a path relative to the
    /// store directory).
    public var location: String
    /// Set by the store when the row is first inserted; ignored on input.
    public var createdAt: String?

    public init(sha256: String, rawSize: Int64, storedSize: Int64, location: String, createdAt: String? = nil) {
        self.sha256 = sha256
        self.rawSize = rawSize
        self.storedSize = storedSize
        self.location = location
        self.createdAt = createdAt
    }
}

/// A row of `sweeps`.
public struct SweepRecord: Codable, Equatable, Sendable {
    public var id: Int64
    public var name: String
    public var specJSON: String
    public var createdAt: String
}

/// A row of `sweep_members`.
public struct SweepMemberRecord: Codable, Equatable, Sendable {
    public var sweepId: Int64
    public var runHash: String
}

/// A row of `tags`.
public struct TagRecord: Codable, Equatable, Sendable {
    public var runHash: String
    public var tag: String
}

/// A row of `schema_migrations`.
public struct MigrationRecord: Codable, Equatable, Sendable {
    public var version: Int
    public var name: String
    public var appliedAt: String
}

/// One line of `moerec runs`: a run with its key config fields and headline metrics.
public struct RunSummary: Codable, Equatable, Sendable {
    /// Config keys pulled out by default.
    public static let defaultKeyFields = ["regime", "experts", "seed", "task", "train_size"]

    public var hash: String
    public var parentHash: String?
    public var kind: RunKind
    public var status: RunStatus
    /// The requested key fields that the run's config has (absent keys are left out).
    public var keyFields: [String: JSONValue]
    /// Highest `acc` on split `val`, nil when the run logged none.
    public var bestValAccuracy: Double?
    /// Lowest `loss` on split `val`, nil when the run logged none.
    public var bestValLoss: Double?
    public var stepsDone: Int
    public var wallSeconds: Double?
    public var createdAt: String
    /// The Slurm job (ARRAYJOB_TASK) that last trained the run; nil outside Slurm.
    public var slurmJob: String? = nil
    /// Where an imported run came from (`RunRecord.importSource`); nil for a run moerec trained.
    public var importSource: String? = nil

    public var regime: String? { keyFields["regime"]?.stringValue }
    public var experts: Int? { keyFields["experts"]?.intValue.map(Int.init) }
    public var seed: Int? { keyFields["seed"]?.intValue.map(Int.init) }
    public var task: String? { keyFields["task"]?.stringValue }
    public var trainSize: JSONValue? { keyFields["train_size"] }
}

/// Per (metric, split) overview of one run's series, for `moerec show`.
public struct MetricSeriesSummary: Codable, Equatable, Sendable {
    public var name: String
    public var split: String
    public var count: Int
    public var firstStep: Int
    public var lastStep: Int
    public var lastValue: Double?
    public var minValue: Double?
    public var maxValue: Double?
}
