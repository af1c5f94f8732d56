import Foundation
import MoeJSON
import MoeReport
import MoeStore
import XCTest

/// Splits one CSV line (RFC 4180 quoting) into fields.
func csvFields(_ line: Substring) -> [String] {
    var fields: [String] = [], field = "", quoted = false
    var chars = line.makeIterator()
    var pending: Character? = nil
    while let c = pending ?? chars.next() {
        pending = nil
        if quoted {
            if c == "\"" {
                if let next = chars.next() {
                    if next == "\"" { field.append("\"") } else { quoted = false; pending = next }
                } else { quoted = false }
            } else { field.append(c) }
        } else if c == "\"" {
            quoted = true
        } else if c == "," {
            fields.append(field)
            field = ""
        } else {
            field.append(c)
        }
    }
    fields.append(field)
    return fields
}

final class RenderTests: XCTestCase {
    var scratch: ScratchStore!

    override func setUpWithError() throws {
        scratch = try ScratchStore("render")
        let sparse = try scratch.pretrain(experts: 8), dense = try scratch.pretrain(experts: 1)
        for size in [256, 4096] {
            for (regime, base) in [("all", 0.60), ("non-moe", 0.61), ("moe", 0.45)] {
                for seed in 0..<3 {
                    try scratch.finetune(parent: sparse, regime: regime, experts: 8, seed: seed, trainSize: size,
                                         curve: peakedCurve(best: base + 0.01 * Double(seed)), trainableFraction: 0.5)
                }
            }
            for seed in 0..<2 {
                try scratch.finetune(parent: dense, regime: "all", experts: 1, seed: seed, trainSize: size,
                                     curve: peakedCurve(best: 0.55 + 0.01 * Double(seed), overfit: false))
            }
        }
    }

    override func tearDown() { scratch = nil }

    func render(_ tables: [ReportTable], _ format: ReportFormat, filter: WhereFilter? = nil) throws -> String {
        try Reports.render(store: scratch.store, tables: tables, format: format, filter: filter)
    }

    func testMarkdownShowsMeansIntervalsAndFlags() throws {
        let md = try render([.regimes], .md)
        XCTAssertTrue(md.hasPrefix("## Regimes\n"), md)
        XCTAssertTrue(md.contains("| task | train | experts | regime | seeds | acc % | val acc % | val loss |"), md)
        XCTAssertTrue(md.contains("| wn-supersense | 256 | 8 | all | 3/3 | 61.0 ± 1.0 | 61.0 ± 1.0 |"), md)
        XCTAssertTrue(md.contains("baseline"), md)
        XCTAssertTrue(md.contains("| +1.0 ["), md)  // non-moe − all
        XCTAssertTrue(md.contains("| paired-t |"), md)  // same parent, same seeds
        XCTAssertTrue(md.contains("2/3 ⚠"), md)  // the dense group misses seed 2
        XCTAssertTrue(md.contains("seed 2 missing"), md)
        XCTAssertTrue(md.contains("Welch"), md)
        // Sparse vs dense fine-tune different parents: never paired.
        let experts = try render([.experts], .md)
        XCTAssertTrue(experts.contains("| welch |"), experts)
        XCTAssertFalse(experts.contains("| paired-t |"), experts)
    }

    func testCSVHasOneHeaderAndRectangularRows() throws {
        let csv = try render([.regimes, .experts, .overfit, .claims], .csv)
        let blocks = csv.components(separatedBy: "\n\n")
        XCTAssertEqual(blocks.count, 4)
        for block in blocks {
            let lines = block.split(separator: "\n")
            let width = csvFields(lines[0]).count
            XCTAssertGreaterThan(lines.count, 1)
            for line in lines { XCTAssertEqual(csvFields(line).count, width, String(line)) }
        }
        XCTAssertTrue(blocks[0].hasPrefix("table,row,task,train_size,experts,regime,"))
        let regimesHeader = csvFields(blocks[0].split(separator: "\n")[0])
        let column = { (name: String) in regimesHeader.firstIndex(of: name)! }
        let csvRows = blocks[0].split(separator: "\n").map(csvFields)
        let allRow = csvRows.first { $0[2] == "wn-supersense" && $0[3] == "256" && $0[4] == "8" && $0[5] == "all" }!
        XCTAssertEqual(Double(allRow[column("acc_mean")])!, 0.61, accuracy: 1e-9)
        XCTAssertEqual(Double(allRow[column("val_acc_mean")])!, 0.61, accuracy: 1e-9)
        let nonMoe = csvRows.first { $0[3] == "256" && $0[5] == "non-moe" }!
        XCTAssertEqual(nonMoe[column("test")], "paired-t")
        XCTAssertEqual(nonMoe[column("seeds_needed_unit")], "pairs")
    }

    func testJSONParsesAndCarriesTheRunHashes() throws {
        let text = try render([.regimes, .overfit, .claims], .json, filter: try WhereFilter("train_size=256"))
        let doc = try JSONValue(parsing: text)
        XCTAssertEqual(doc["format_version"], 2)
        XCTAssertEqual(doc["where"], "train_size=256")
        let rows = try XCTUnwrap(doc["tables"]?["regimes"]?["rows"]?.arrayValue)
        XCTAssertEqual(rows.count, 4)
        XCTAssertTrue(rows.allSatisfy { $0["train_size"] == 256 })
        let nonMoe = try XCTUnwrap(rows.first { $0["regime"] == "non-moe" })
        XCTAssertEqual(nonMoe["val_acc"]?["mean"]?.doubleValue ?? 0, 0.62, accuracy: 1e-9)
        XCTAssertEqual(nonMoe["acc"]?["mean"]?.doubleValue ?? 0, 0.62, accuracy: 1e-9)
        XCTAssertEqual(nonMoe["delta_acc"]?["delta"]?.doubleValue ?? 0, 0.01, accuracy: 1e-9)
        XCTAssertEqual(nonMoe["delta_acc"]?["test"], "paired-t")
        XCTAssertEqual(nonMoe["delta_acc"]?["ci95"]?["test"], "paired-t")
        XCTAssertEqual(nonMoe["delta_acc"]?["ci95"]?["df"]?.doubleValue ?? 0, 2, accuracy: 1e-12, "3 pairs")
        XCTAssertEqual(nonMoe["caveats"], [])
        XCTAssertEqual(doc["tables"]?["regimes"]?["reference_rows"], [], "no baseline runs in this store")
        let runs = try XCTUnwrap(nonMoe["runs"]?.arrayValue)
        XCTAssertEqual(runs.count, 3)
        XCTAssertTrue(runs.allSatisfy { ($0["hash"]?.stringValue?.count ?? 0) == 64 })
        let overfit = try XCTUnwrap(doc["tables"]?["overfit"]?["rows"]?.arrayValue)
        XCTAssertEqual(overfit.first { $0["regime"] == "all" && $0["experts"] == 8 }?["onset_step"], 30)
        XCTAssertEqual(overfit.first?["curve"]?["steps"], [10, 20, 30, 40])
        XCTAssertNotNil(doc["tables"]?["overfit"]?["rule"]?.stringValue)
        XCTAssertEqual(doc["tables"]?["claims"]?["rows"]?.arrayValue?.count, 9)
    }

    func testHTMLIsOneSelfContainedPageWithCharts() throws {
        let html = try render(ReportTable.allCases, .html)
        XCTAssertTrue(html.hasPrefix("<!DOCTYPE html>"))
        XCTAssertTrue(html.hasSuffix("</html>\n"))
        let svgs = html.components(separatedBy: "<svg ").count - 1
        XCTAssertEqual(svgs, html.components(separatedBy: "</svg>").count - 1)
        // 2 train sizes × 2 expert counts × (loss + accuracy) curves, 2 sizes × 2 gap charts.
        XCTAssertEqual(svgs, 2 * 2 * 2 + 2 * 2)
        XCTAssertFalse(html.contains("<script"))
        XCTAssertFalse(html.contains("<link"))
        XCTAssertFalse(html.contains("src="))
        XCTAssertFalse(html.contains("url("))
        XCTAssertEqual(html.components(separatedBy: "http").count - 1, html.components(separatedBy: "xmlns=\"http://www.w3.org/2000/svg\"").count - 1,
                       "the only URL is the SVG namespace")
        for title in ["Regimes", "Experts", "Overfitting", "Claims", "Train and validation curves per regime", "gap vs expert count"] {
            XCTAssertTrue(html.contains(title), title)
        }
        XCTAssertTrue(html.contains("training step"))
        XCTAssertTrue(html.contains(">validation (dashed)</text>"))
    }

    func testWriteCreatesEveryFormat() throws {
        let dir = (scratch.directory as NSString).appendingPathComponent("out")
        let set = try Reports.build(store: scratch.store, tables: [.regimes, .claims], filter: nil)
        let written = try Reports.write(set, to: dir)
        let names = Set(written.map { ($0 as NSString).lastPathComponent })
        XCTAssertEqual(names, ["regimes.md", "regimes.csv", "regimes.json", "claims.md", "claims.csv", "claims.json", "report.html"])
        let md = try String(contentsOfFile: (dir as NSString).appendingPathComponent("regimes.md"), encoding: .utf8)
        XCTAssertEqual(md, Reports.render(set.only(.regimes), format: .md))
    }

    func testTableAndFormatNamesAreChecked() {
        XCTAssertEqual(try ReportTable.parseList(["regimes,claims", "regimes"]), [.regimes, .claims])
        XCTAssertThrowsError(try ReportTable.parseList(["regimes,bogus"])) { error in
            XCTAssertEqual(error as? ReportError, .unknownTable("bogus"))
            XCTAssertTrue("\(error)".contains("bogus"))
        }
        XCTAssertThrowsError(try ReportFormat.parse("xml")) { XCTAssertTrue("\($0)".contains("xml")) }
    }
}

final class ExpectedSeedTests: XCTestCase {
    /// A sweep's seed grid says which seeds a group should have, even when no group has them.
    func testSweepSeedGridFlagsSeedsThatNeverRan() throws {
        let scratch = try ScratchStore("sweep")
        let parent = try scratch.pretrain(experts: 4)
        let sweep = try scratch.store.createSweep(name: "study", specJSON: """
            {"name":"study","grid":[{"key":"regime","values":["all"]},{"key":"seed","values":[0,1,2,3]}]}
            """)
        for seed in 0..<3 {
            let hash = try scratch.finetune(parent: parent, regime: "all", experts: 4, seed: seed, curve: peakedCurve(best: 0.5))
            try scratch.store.addSweepMember(sweepId: sweep, runHash: hash)
        }
        let rows = try XCTUnwrap(Reports.build(store: scratch.store, tables: [.regimes], filter: try WhereFilter("sweep=\(sweep)")).regimes).rows
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(rows[0].flags, ["seed 3 missing"])
        XCTAssertEqual(rows[0].seedsExpected, 4)
        XCTAssertEqual(rows[0].seedsCompleted, 3)
    }

    /// A study registered again with its seed grid cut from 0–5 to 0–2: a filter naming the
    /// new sweep expects its seeds only; one naming the old sweep, or no filter, still sees
    /// the seeds the old registration planned.
    func testFilterNamingSweepsTakesExpectedSeedsFromThoseSweeps() throws {
        let scratch = try ScratchStore("reregistered")
        let parent = try scratch.pretrain(experts: 4)
        func sweep(_ name: String, seeds: [Int]) throws -> Int64 {
            try scratch.store.createSweep(name: name, specJSON: """
                {"name":"\(name)","grid":[{"key":"regime","values":["all"]},{"key":"seed","values":\(seeds)}]}
                """)
        }
        let planned = try sweep("study", seeds: Array(0...5)), cut = try sweep("study", seeds: [0, 1, 2])
        for seed in 0..<3 {
            let hash = try scratch.finetune(parent: parent, regime: "all", experts: 4, seed: seed, curve: peakedCurve(best: 0.5))
            try scratch.store.addSweepMember(sweepId: planned, runHash: hash)
            try scratch.store.addSweepMember(sweepId: cut, runHash: hash)
        }
        func row(_ filter: String?) throws -> GroupRow {
            let rows = try XCTUnwrap(Reports.build(store: scratch.store, tables: [.regimes],
                                                   filter: try filter.map { try WhereFilter($0) }).regimes).rows
            XCTAssertEqual(rows.count, 1)
            return rows[0]
        }
        let now = try row("sweep=\(cut)")
        XCTAssertTrue(now.complete, now.flags.description)
        XCTAssertEqual(now.seedsExpected, 3)
        XCTAssertEqual(try row("sweep=\(planned)").flags, ["seeds 3, 4, 5 missing"])
        XCTAssertEqual(try row(nil).seedsExpected, 6)
        XCTAssertEqual(try row("sweep=\(cut) and regime=all").seedsExpected, 3)
        XCTAssertEqual(try WhereFilter("sweep=\(cut) or sweep=7 or sweep=\(cut) and tag=x").namedSweeps, [cut, 7])
    }

    /// A sweep that does not vary the seed expects each cell's own seed only.
    func testSweepWithoutSeedGridExpectsItsOwnSeed() throws {
        let scratch = try ScratchStore("sweep1")
        let parent = try scratch.pretrain(experts: 4)
        let quick = try scratch.store.createSweep(name: "quick", specJSON: #"{"name":"quick","grid":[{"key":"regime","values":["all","moe"]}]}"#)
        for regime in ["all", "moe"] {
            let hash = try scratch.finetune(parent: parent, regime: regime, experts: 4, seed: 0, curve: peakedCurve(best: 0.5))
            try scratch.store.addSweepMember(sweepId: quick, runHash: hash)
        }
        // Another study's runs with more seeds, same store.
        for seed in 0..<3 {
            try scratch.finetune(parent: parent, regime: "all", experts: 4, seed: seed, lr: 0.01, curve: peakedCurve(best: 0.5))
        }
        let rows = try XCTUnwrap(Reports.build(store: scratch.store, tables: [.regimes], filter: nil).regimes).rows
        XCTAssertEqual(rows.count, 3)
        XCTAssertTrue(rows.allSatisfy(\.complete), rows.map(\.flags).description)
    }
}
