import Foundation
import MoeTestSupport
import XCTest

/// The expert-specialized regimes end to end: the parent scores the experts on the task's
/// text, the choice is stored and shown, `random-experts` trains as many per layer as
/// `esft-gate`, the run reproduces bit for bit, and misplaced keys are refused.
final class ExpertRegimeTests: XCTestCase {
    /// "moe<L>  trains experts a, b (n of E)" lines of `show`, as layer → experts.
    static func trainedExperts(_ show: String) -> [String: [Int]] {
        var result: [String: [Int]] = [:]
        for line in show.split(separator: "\n") where line.contains("trains experts") {
            let fields = line.trimmingCharacters(in: .whitespaces).components(separatedBy: "  ")
            guard let list = fields.first(where: { $0.hasPrefix("trains experts ") }) else { continue }
            let experts = list.dropFirst("trains experts ".count).prefix { $0 != "(" }
            result[fields[0]] = experts.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        }
        return result
    }

    func testExpertSpecializedRegimesChooseStoreAndReproduceTheirExperts() throws {
        let lineage = try Lineage.shared()
        let store = try lineage.store.copy("esft")
        defer { store.remove() }
        func run(_ regime: String, _ extra: [String] = []) throws -> (hash: String, show: String) {
            let result = try store.moerec(["run", lineage.finetuneFile.path, "--set", "regime=\(regime)",
                                           "--set", "esft_sample_tokens=256"] + extra + Lineage.fewCheckpoints)
            XCTAssertEqual(result.status, 0, result.stderr)
            let hash = try XCTUnwrap(Output.runHash(result.stdout), result.stdout)
            return (hash, try store.moerec(["show", hash]).stdout)
        }
        let gate = try run("esft-gate")
        let chosen = Self.trainedExperts(gate.show)
        XCTAssertEqual(chosen.count, 1, "one sparse layer in the fixture model: \(gate.show)")
        XCTAssertTrue(chosen.values.allSatisfy { !$0.isEmpty && $0.count < 4 }, "\(chosen)")
        // A larger top_p takes at least as many experts.
        let wide = Self.trainedExperts(try run("esft-gate", ["--set", "esft_top_p=0.9"]).show)
        XCTAssertGreaterThan(wide.values.first?.count ?? 0, chosen.values.first?.count ?? 0, "\(wide) vs \(chosen)")
        // The control trains as many experts per layer, drawn by the seed.
        let random = Self.trainedExperts(try run("random-experts").show)
        XCTAssertEqual(random.mapValues(\.count), chosen.mapValues(\.count))
        let token = try run("esft-token")
        XCTAssertFalse(Self.trainedExperts(token.show).isEmpty)
        // The choice is part of what diff compares and reproduce checks.
        let diff = try store.moerec(["diff", gate.hash, token.hash])
        XCTAssertTrue(diff.stdout.contains("experts trained"), diff.stdout)
        let reproduce = try store.moerec(["reproduce", gate.hash])
        XCTAssertEqual(reproduce.status, 0, reproduce.stdout + reproduce.stderr)
        XCTAssertTrue(reproduce.stdout.contains("bit-identical"), reproduce.stdout)
        // Only the selected experts moved: the router and attention are the parent's.
        let parentDiff = try store.moerec(["diff", lineage.moeParent, gate.hash])
        XCTAssertTrue(parentDiff.stdout.contains("groups that differ: experts"), parentDiff.stdout)

        // The ESFT keys with another regime change the hash and do nothing: refused.
        let misplaced = try store.moerec(["run", lineage.finetuneFile.path, "--set", "esft_top_p=0.5"])
        XCTAssertEqual(misplaced.status, 2, misplaced.stderr)
        XCTAssertTrue(misplaced.stderr.contains("esft_top_p"), misplaced.stderr)
        let outOfRange = try store.moerec(["run", lineage.finetuneFile.path, "--set", "regime=esft-gate", "--set", "esft_top_p=0"])
        XCTAssertEqual(outOfRange.status, 2, outOfRange.stderr)
        // A dense parent has no experts to choose.
        let dense = try store.moerec(["run", lineage.finetuneFile.path, "--set", "regime=esft-token", "--set", "parent=\(lineage.denseParent)"])
        XCTAssertEqual(dense.status, 2, dense.stderr)
    }
}
