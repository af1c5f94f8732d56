import Foundation
import MoeTestSupport
import XCTest

/// `moerec baseline`: both reference classifiers on a config's data, repeatable, no store.
final class BaselineCommandTests: XCTestCase {
    func testBaselinesOfAFineTuningConfig() throws {
        let store = StoreUnderTest.fresh("cli-baseline")
        defer { store.remove() }
        let root = store.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: root)
        let config = try write(Fixtures.finetuneConfig(task: data.task, parent: "0"), to: root.appendingPathComponent("ft.json"))
        func measure() throws -> [String: Any] {
            let r = try CLI.run(["baseline", config.path, "--format", "json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            var fields = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
            fields["seconds"] = nil
            return fields
        }
        let first = try measure()
        XCTAssertEqual(first["train_size"] as? Int, 128)
        XCTAssertEqual(first["validation_examples"] as? Int, 32)
        for key in ["majority_val_acc", "majority_test_acc", "linear_val_acc", "linear_test_acc"] {
            let v = try XCTUnwrap(first[key] as? Double, key)
            XCTAssertTrue(v >= 0 && v <= 1, "\(key)=\(v)")
        }
        XCTAssertEqual(NSDictionary(dictionary: try measure()), NSDictionary(dictionary: first), "a second measurement differs")

        let pretrain = try CLI.run(["baseline", "--set", "steps=3"])
        XCTAssertEqual(pretrain.status, 2, pretrain.stderr)
        XCTAssertTrue(pretrain.stderr.contains("kind=finetune"), pretrain.stderr)
    }
}
