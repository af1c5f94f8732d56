import ArgumentParser
import Foundation
import MoeCheckpoint
import MoeErrors
import MoeExperiment
import MoeJSON
import MoeStore

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a run's parameters as safetensors, or metric points as CSV or JSON Lines.",
        discussion: """
        --format safetensors writes the parameters of HASH's last checkpoint (or the one at \
        --step N) to --out FILE, with the run hash, step and resolved config in the file's \
        metadata (moerec_run, moerec_step, moerec_config), and the config as JSON beside it \
        (FILE with .config.json in place of .safetensors). Tensors are F32, named and shaped \
        as README "Exported parameters" lists them. Every tensor is read from its checkpoint \
        object and checked against its SHA-256 first.

        --format csv or jsonl writes the metric points of HASH, or of every run --where \
        selects, in long form (run, step, split, name, value), to --out FILE or stdout: \
        ready for pandas.read_csv / read_json(lines=True).

        An existing --out file is refused (exit 2); nothing is written on an error.

        Examples:
          moerec export 3fa2c1 --format safetensors --out model.safetensors
          moerec export 3fa2c1 --format safetensors --step 500 --out step500.safetensors
          moerec export --where "sweep=2" --format csv > metrics.csv
        """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case safetensors, csv, jsonl }

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Run hash (any unique prefix).") var hash: String?
    @Option(help: "safetensors, csv or jsonl.") var format: Format
    @Option(help: "The checkpoint step to export (safetensors; default: the last).") var step: Int?
    @Option(name: .customLong("where"), help: "Runs whose metric points to export (csv, jsonl), instead of HASH.") var whereExpression: String?
    @Option(help: "The file to write (required for safetensors; default for csv and jsonl: stdout).") var out: String?

    func validate() throws {
        switch format {
        case .safetensors:
            guard hash != nil else { throw ValidationError("--format safetensors exports one run: give HASH") }
            guard out != nil else { throw ValidationError("--format safetensors needs --out FILE") }
            if whereExpression != nil { throw ValidationError("--where selects runs for csv or jsonl, not safetensors") }
            if let out, !out.hasSuffix(".safetensors") { throw ValidationError("--out \(out): a safetensors file name ends in .safetensors") }
        case .csv, .jsonl:
            guard (hash == nil) != (whereExpression == nil) else { throw ValidationError("give HASH or --where, not both and not neither") }
            if step != nil { throw ValidationError("--step chooses a checkpoint (safetensors only)") }
        }
        if let step, step < 0 { throw ValidationError("--step \(step): must be ≥ 0") }
        if let out, FileManager.default.fileExists(atPath: out) { throw ValidationError("--out \(out): the file exists (nothing was written)") }
    }

    func run() throws {
        let store = try global.readStore()
        let objects = ObjectStore(root: Executor.objectsDirectory(forStore: store.path))
        switch format {
        case .safetensors:
            let run = try store.resolve(prefix: hash!)
            let checkpoints = try store.checkpoints(runHash: run)
            guard let chosen = step.map({ s in checkpoints.first { $0.step == s } }) ?? checkpoints.last else {
                let steps = checkpoints.map { String($0.step) }.joined(separator: ", ")
                throw InputError(step.map { "--step \($0): run \(run.prefix(12)) has no checkpoint there (steps: \(steps.isEmpty ? "none" : steps))" }
                                 ?? "run \(run.prefix(12)) has no checkpoint to export")
            }
            let manifest = try CheckpointManifest(json: chosen.manifestJSON)
            let config = try store.run(hash: run)!.configJSON
            let exported = try Safetensors.exportParameters(objects: objects, manifest: manifest, runHash: run, configJSON: config)
            let configFile = Safetensors.configPath(besideExport: out!)
            if FileManager.default.fileExists(atPath: configFile) { throw InputError("--out: \(configFile) exists (nothing was written)") }
            try write(to: out!) { try $0.write(contentsOf: exported.bytes) }
            try write(to: configFile) { try $0.write(contentsOf: Data(Safetensors.configFileText(config).utf8)) }
            print("\(out!): \(exported.tensors) tensors, \(exported.parameters) parameters, run \(run.prefix(12)) step \(manifest.step); config in \(configFile)")
        case .csv, .jsonl:
            let runs: [String]
            if let hash { runs = [try store.resolve(prefix: hash)] } else {
                runs = try store.allRuns(filter: try WhereFilter(runs: whereExpression!)).map(\.hash)
            }
            // Streamed in chunks of about 1 MiB: a selection may hold millions of points.
            let emit = { (handle: FileHandle) throws in
                var chunk = format == .csv ? "run,step,split,name,value\n" : ""
                for run in runs {
                    try store.forEachMetric(runHash: run) { p in
                        if format == .csv {
                            chunk += "\(p.runHash),\(p.step),\(CSV.escape(p.split)),\(CSV.escape(p.name)),\(p.value)\n"
                        } else {
                            chunk += "{\"run\":\"\(p.runHash)\",\"step\":\(p.step),\"split\":\(JSONString.quoted(p.split)),\"name\":\(JSONString.quoted(p.name)),\"value\":\(p.value.isFinite ? String(p.value) : "null")}\n"
                        }
                        if chunk.utf8.count >= 1 << 20 {
                            try handle.write(contentsOf: Data(chunk.utf8))
                            chunk = ""
                        }
                    }
                }
                try handle.write(contentsOf: Data(chunk.utf8))
            }
            if let out { try write(to: out, emit) } else { try emit(.standardOutput) }
        }
    }

    /// Writes `path` through `body` under a temporary name, then links it into place: the
    /// file is absent or complete, and an existing one is never replaced.
    func write(to path: String, _ body: (FileHandle) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())").path
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw InputError("--out \(path): cannot write: \(String(cString: strerror(errno))) (nothing was written)") }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        do {
            try body(handle)
            try handle.close()
        } catch let error as MoeError {
            unlink(temporary)
            throw error
        } catch {
            unlink(temporary)
            throw InputError("--out \(path): cannot write: \(error.localizedDescription) (nothing was written)")
        }
        defer { unlink(temporary) }
        guard link(temporary, url.path) == 0 else {
            let code = errno
            throw InputError("--out \(path): \(code == EEXIST ? "the file exists" : String(cString: strerror(code))) (nothing was written)")
        }
    }
}
