import ArgumentParser
import Foundation
import MoeExperiment
import MoeJSON
import MoeStore

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fold other stores (shards, a laptop's, a cluster's) into this one.",
        discussion: """
        Copies from each SRC store what this store (--store, created when missing) lacks: \
        runs with their lineage, metrics and checkpoints, blob records, sweeps with their \
        members, and tags. Every checkpoint object is read from SRC's objects/, checked \
        against its SHA-256 and written here before the records that name it; the records \
        of one SRC are written in one transaction, so a failure leaves this store as it \
        was. Merging the same store again adds nothing.

        A run running or interrupted in SRC is added as interrupted (it resumes here from \
        its checkpoint), never as completed; one this store has unfinished and SRC \
        completed is taken from SRC. A run completed in both with different metric points, \
        final parameters or step counts is a reproducibility conflict: nothing is \
        overwritten, both environments are printed, and the command exits 1 after merging \
        everything else.

        --lineage HASH merges only that run and its ancestors (no sweeps, no tags): how a \
        fine-tuning task of a Slurm sweep receives its parent in its own shard store.

        Examples:
          moerec merge runs/shards/*.sqlite
          moerec merge ~/laptop-runs/moerec.sqlite --store /scratch/runs/moerec.sqlite --format json
        """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Store files to merge from (read only).") var sources: [String] = []
    @Option(help: "Merge only this run (full hash) and its ancestors.") var lineage: String?
    @Option(help: "table or json.") var format: OutputFormat = .table

    func validate() throws {
        if sources.isEmpty { throw ValidationError("give at least one SRC store") }
        if format == .csv { throw ValidationError("--format csv: use table or json") }
        if let lineage, !RunIdentity.isValidHash(lineage) { throw ValidationError("--lineage \(lineage): expected a full 64-digit run hash") }
    }

    func run() throws {
        // Every source is checked before the destination is opened (or created).
        for source in sources {
            guard FileManager.default.fileExists(atPath: source) else {
                throw InputError("merge source '\(source)': no such store (nothing was written)")
            }
            do { try Store(path: source, mode: .readOnly).close() } catch {
                throw InputError("merge source '\(source)': \(error) (nothing was written)")
            }
            if URL(fileURLWithPath: source).standardizedFileURL.path == URL(fileURLWithPath: global.storePath).standardizedFileURL.path {
                throw InputError("merge source '\(source)' is the destination store itself")
            }
        }
        let store = try global.openStore()
        let outcomes = try StoreMerger.merge(sources, into: store, lineageOf: lineage)
        var conflicts = 0
        var rows: [OrderedJSON] = []
        for outcome in outcomes {
            let s = outcome.summary
            conflicts += s.conflicts.count
            func environment(_ e: RunEnvironment) -> OrderedJSON {
                .object([("host", .string(e.host ?? "")), ("cpu", .string(e.cpuModel ?? "")), ("blas_core", .string(e.blasCore ?? "")),
                         ("vector_level", .string(e.vectorLevel ?? "")),
                         ("threads", .optional(e.threads)), ("moerec_version", .string(e.moerecVersion ?? "")),
                         ("git_commit", .string(e.gitCommit ?? ""))])
            }
            let fields: [(String, OrderedJSON)] = [
                ("source", .string(outcome.source)), ("runs_added", .int(s.runsAdded)), ("runs_replaced", .int(s.runsReplaced)),
                ("runs_unfinished", .int(s.runsUnfinished)), ("metric_points", .int(s.metricPoints)),
                ("checkpoints", .int(s.checkpoints)), ("objects", .int(s.objects)), ("sweeps_added", .int(s.sweepsAdded)),
                ("sweep_members_added", .int(s.membersAdded)), ("tags_added", .int(s.tagsAdded)),
                ("conflicts", .array(s.conflicts.map { c in
                    .object([("hash", .string(c.hash)), ("differences", .array(c.differences.map { .string($0) })),
                             ("ours", environment(c.ours)), ("theirs", environment(c.theirs))])
                })),
            ]
            rows.append(.object(fields))
            if format == .table {
                print(TableOut.keyValues(fields.filter { $0.0 != "conflicts" }))
                for c in s.conflicts {
                    print("reproducibility conflict: run \(c.hash.prefix(12)) is completed in both stores with different results")
                    for d in c.differences { print("  \(d)") }
                    for (side, e) in [("this store", c.ours), ("source", c.theirs)] {
                        print("  \(side): host \(e.host ?? "?"), CPU \(e.cpuModel ?? "?"), BLAS core \(e.blasCore ?? "?"), vector level \(e.vectorLevel ?? "?"), threads \(e.threads.map(String.init) ?? "?"), moerec \(e.moerecVersion ?? "?")")
                    }
                }
            }
        }
        if format == .json { print(OrderedJSON.array(rows).rendered()) }
        if conflicts > 0 {
            throw CheckFailed("\(conflicts) reproducibility conflict\(conflicts == 1 ? "" : "s"): nothing was overwritten")
        }
    }
}
