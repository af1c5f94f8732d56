import ArgumentParser
import Foundation
import MoeExperiment
import MoeJSON
import MoeReport
import MoeStore

/// `moerec report`: the comparison tables, regenerated from the store alone.
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Regenerate the ST-MoE-style comparison tables (regimes, experts, overfit, claims) from the store.",
        discussion: """
        Tables: regimes (one row per fine-tuning regime, grouped by task, train size and expert count, with \
        mean ± sd over seeds and Δ vs `all` with a 95% interval: paired t over the seeds when both groups \
        fine-tune one parent with the same seeds, Welch's otherwise), experts (the same metrics by expert \
        count, Δ vs the dense model), overfit (best step, overfitting onset, end gap, curves) and claims (each \
        ST-MoE and ESFT finding with this store's evidence, a verdict, and for an undecided one the seeds that \
        would decide it). Tables show the stored majority-class and linear n-gram baselines as reference rows. \
        Only completed fine-tuning runs contribute values; groups with a missing, failed or unfinished seed \
        are flagged.

        Output goes to stdout in --format (md by default). --out DIR (DIR defaults to reports/) also writes \
        <table>.md, <table>.csv and <table>.json for each table and one self-contained report.html with SVG \
        charts. The JSON fields are documented in reports/FORMAT.md.

        Examples:
          moerec report --table regimes
          moerec report --table regimes,claims --where "sweep=3" --format json
          moerec report --where "tag=paper" --out reports/
        """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, parsing: .singleValue,
            help: "regimes, experts, overfit or claims; repeat or give a comma list (default: all four).")
    var table: [String] = []

    @Option(name: .long, help: "md, csv, json or html (for stdout).")
    var format: String = "md"

    @Option(name: .customLong("where"), help: "Filter runs as `moerec runs --where`, e.g. \"sweep=3\" or \"task=wn-pos\".")
    var whereExpression: String?

    @Option(name: .long, defaultAsFlag: "reports",
            help: ArgumentHelp("Also write every format of the selected tables into this directory.", valueName: "dir"))
    var out: String? = nil

    var tables: [ReportTable] {
        get throws { table.isEmpty ? ReportTable.allCases : try ReportTable.parseList(table) }
    }

    func validate() throws {
        do {
            _ = try tables
            _ = try ReportFormat.parse(format)
        } catch let error as ReportError {
            switch error {
            case let .unknownTable(name): throw ValidationError("--table \(name): \(error)")
            case let .unknownFormat(name): throw ValidationError("--format \(name): \(error)")
            case .noTables: throw ValidationError("--table: no table given")
            case .cannotWrite: throw error
            }
        }
        if let out, out.isEmpty { throw ValidationError("--out: empty directory name") }
    }

    func run() throws {
        let store = try global.readStore()
        let filter = try whereExpression.map { try WhereFilter(runs: $0) }
        let set = try Reports.build(store: store, tables: try tables, filter: filter)
        if let out {
            let written = try Reports.write(set, to: out)
            FileHandle.standardError.write(Data(("wrote " + written.joined(separator: ", ") + "\n").utf8))
        }
        let text = Reports.render(set, format: try ReportFormat.parse(format))
        FileHandle.standardOutput.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }
}

/// Rendering for callers outside the `report` command (the sweep runner prints its
/// study's tables with it).
enum ReportCommand {
    /// `table` is one table name or a comma list; `format` md, csv, json or html.
    static func render(store: Store, table: String, format: String, filter: WhereFilter?) throws -> String {
        let tables: [ReportTable]
        let reportFormat: ReportFormat
        do {
            tables = try ReportTable.parseList([table])
            reportFormat = try ReportFormat.parse(format)
        } catch let error as ReportError {
            throw ValidationError("\(error)")
        }
        return try Reports.render(store: store, tables: tables, format: reportFormat, filter: filter)
    }
}

/// `moerec bench report`: report rendering time and memory on a large synthetic store.
struct BenchReport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Time each report table on a synthetic store of many runs and metric points.",
        discussion: """
        Builds (once; a store that already holds the runs is reused) a store of --runs completed fine-tuning \
        runs holding --points metric points in total, written through the store's own MetricWriter, then \
        renders each table in a fresh child process and prints its wall time (`seconds`, store opening \
        excluded) and that process's peak resident memory (`peak_rss_mib`). Targets: regimes < 1 s and \
        ≤ 256 MiB at 1,000 runs and 10,000,000 points.

        Example:
          moerec bench report --runs 1000 --points 10000000 --format json
        """)

    @Option(help: "Fine-tuning runs in the synthetic store.") var runs = 1000
    @Option(help: "Metric points in the synthetic store (at least 500 per run).") var points = 10_000_000
    @Option(help: "Synthetic store path (default: a directory under the system temporary directory, named by runs and points).")
    var storePath: String?
    @Option(name: .long, parsing: .singleValue, help: "Tables to time; repeat or comma list (default: all four).")
    var table: [String] = []
    @Option(help: "Report format rendered while timing: md, csv, json or html.") var render = "md"
    @Option(help: "table or json.") var format: OutputFormat = .table
    @Option(help: ArgumentHelp("Time one table in this process (used by the parent).", visibility: .hidden))
    var measureTable: String?

    var path: String {
        storePath ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("moerec-bench-report-\(runs)-\(points)/store.sqlite")
    }

    func validate() throws {
        try requireOption("--runs", runs, in: 1...1_000_000)
        guard points >= runs * ReportBenchmark.minimumPointsPerRun else {
            throw ValidationError("--points \(points): must be at least \(ReportBenchmark.minimumPointsPerRun) per run (\(runs * ReportBenchmark.minimumPointsPerRun))")
        }
        guard ReportFormat(rawValue: render) != nil else {
            throw ValidationError("--render \(render): unknown format (valid: md, csv, json, html)")
        }
        do { _ = try ReportTable.parseList(table) } catch { throw ValidationError("--table: \(error)") }
        if format == .csv { throw ValidationError("--format csv: use table or json") }
        if let measureTable, ReportTable(rawValue: measureTable) == nil {
            throw ValidationError("--measure-table \(measureTable): unknown table")
        }
    }

    func run() throws {
        let renderFormat = ReportFormat(rawValue: render)!
        if let measureTable {
            let store = try Store(path: path)
            let r = try ReportBenchmark.measure(store: store, table: ReportTable(rawValue: measureTable)!, format: renderFormat)
            print(ResultOut.json([("table", .string(measureTable)), ("seconds", .number(r.seconds)),
                                  ("peak_rss_mib", .number(ProcessStats.peakRSSMiB())), ("rows", .int(r.rows)),
                                  ("bytes", .int(r.bytes))]))
            return
        }

        let started = DispatchTime.now().uptimeNanoseconds
        let reused = try ReportBenchmark.prepareStore(path: path, runs: runs, points: points) { done, total in
            FileHandle.standardError.write(Data("bench report: built \(done)/\(total) runs\n".utf8))
        }
        let buildSeconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let tables = table.isEmpty ? ReportTable.allCases : try ReportTable.parseList(table)
        var results: [[(String, OrderedJSON)]] = []
        for t in tables {
            let fields = try measureInChild(t)
            results.append(fields)
        }
        switch format {
        case .json:
            print(ResultOut.json([
                ("runs", .int(runs)), ("points", .int(points)), ("store_path", .string(path)),
                ("store_reused", .bool(reused)), ("build_seconds", reused ? .null : .number(buildSeconds)),
                ("render_format", .string(render)), ("tables", .array(results.map { .object($0) })),
            ]))
        default:
            print("store \(path) (\(runs) runs, \(points) points, \(reused ? "reused" : String(format: "built in %.1f s", buildSeconds)))")
            print(TableOut.render(header: ["table", "seconds", "peak_rss_mib", "rows", "bytes"], rows: results.map { fields in
                fields.map { _, v in TableOut.cell(v, numberFormat: "%.3f") }
            }))
        }
    }

    /// Runs this command again with --measure-table in a fresh process, so that each
    /// table's peak memory is its own.
    func measureInChild(_ table: ReportTable) throws -> [(String, OrderedJSON)] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        process.arguments = ["bench", "report", "--store-path", path, "--measure-table", table.rawValue, "--render", render,
                             "--runs", String(runs), "--points", String(points)]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let value = try? JSONValue(parsing: data) else {
            throw CheckFailed("bench report: timing \(table.rawValue) failed (exit \(process.terminationStatus))")
        }
        return [("table", .string(table.rawValue)), ("seconds", .number(value["seconds"]?.doubleValue ?? .nan)),
                ("peak_rss_mib", .number(value["peak_rss_mib"]?.doubleValue ?? .nan)),
                ("rows", .int(Int(value["rows"]?.intValue ?? 0))), ("bytes", .int(Int(value["bytes"]?.intValue ?? 0)))]
    }
}
