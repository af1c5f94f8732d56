import Foundation
import MoeJSON
import MoeStore
import XCTest

/// A fresh directory per test, removed when the object goes away.
final class TemporaryDirectory {
    let path: String

    init(_ label: String = "store") {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("moestore-\(label)-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
}

/// A resolved config shaped like moerec's, with the fields `runs` pulls out.
func sampleConfig(regime: String = "all", experts: Int = 8, seed: Int = 0, task: String = "wn-supersense",
                  lr: Double = 1e-3) -> JSONValue
{
    [
        "regime": .string(regime),
        "experts": .int(Int64(experts)),
        "seed": .int(Int64(seed)),
        "task": .string(task),
        "train_size": 250,
        "lr": .double(lr),
        "top_k": 2,
        "capacity_factor_train": 1.25,
    ]
}

let fingerprint = String(repeating: "ab", count: 32)

/// Asserts that `body` throws exactly `expected`.
func assertThrows<T>(_ expected: StoreError, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("expected \(expected), nothing was thrown", file: file, line: line)
    } catch let error as StoreError {
        XCTAssertEqual(error, expected, file: file, line: line)
    } catch {
        XCTFail("expected \(expected), got \(error)", file: file, line: line)
    }
}

/// Asserts that `body` throws a StoreError and returns it for further checks.
@discardableResult
func storeError<T>(file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T) -> StoreError? {
    do {
        _ = try body()
        XCTFail("expected a StoreError, nothing was thrown", file: file, line: line)
    } catch let error as StoreError {
        return error
    } catch {
        XCTFail("expected a StoreError, got \(error)", file: file, line: line)
    }
    return nil
}

/// The SHA-256 of a file's bytes, to show a file was left untouched.
func fileDigest(_ path: String) -> String {
    RunIdentity.sha256Hex(FileManager.default.contents(atPath: path) ?? Data())
}

/// Counts rows with the read-only query API.
func count(_ store: Store, _ sql: String, _ params: [JSONValue] = []) throws -> Int {
    var n = 0
    try store.query(sql, params) { row in n = Int(row.int(0) ?? -1) }
    return n
}
