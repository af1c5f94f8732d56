import Crypto
import Foundation
import MoeJSON

/// Split assignment and ordering by a hash of a record's identity, never by file order.
///
/// For a key (a WordNet synset's `"<pos>:<8-digit offset>"`, a JSONL record's `id`, or its
/// text when it has no `id`), let `d = SHA-256(UTF-8 bytes of key)`:
/// - the *unit value* is the big-endian integer of `d[0..<8]`, its top 53 bits divided by
///   2^53, a number in [0, 1); below 0.8 is train, below 0.9 validation, else test;
/// - the *order value* is the big-endian integer of `d[8..<16]`. Every split is sorted by
///   it (ties, which only equal keys produce, keep input order). A train subset of size n
///   is the first n of that order, so smaller subsets are nested in larger ones, and the
///   order does not depend on the order of the input file.
public enum SplitAssignment {
    public static let trainEnd = 0.8
    public static let validationEnd = 0.9

    public struct KeyHash: Sendable, Equatable {
        public let unit: Double
        public let order: UInt64
        public var split: DataSplit {
            unit < SplitAssignment.trainEnd ? .train
                : unit < SplitAssignment.validationEnd ? .validation : .test
        }
    }

    public static func hash(key: String) -> KeyHash {
        var key = key
        let digest = key.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
        return digest.withUnsafeBytes { raw in
            var head: UInt64 = 0
            var order: UInt64 = 0
            for i in 0..<8 {
                head = head << 8 | UInt64(raw[i])
                order = order << 8 | UInt64(raw[8 + i])
            }
            return KeyHash(unit: Double(head >> 11) * 0x1p-53, order: order)
        }
    }

    public static func split(forKey key: String) -> DataSplit { hash(key: key).split }

    /// Groups items into splits by the hash of `key(item)`, each split sorted by order value.
    static func assign<T>(_ items: [T], key: (T) -> String) -> [DataSplit: [T]] {
        var buckets: [DataSplit: [(order: UInt64, index: Int)]] = [.train: [], .validation: [], .test: []]
        for (index, item) in items.enumerated() {
            let h = hash(key: key(item))
            buckets[h.split]!.append((h.order, index))
        }
        var result: [DataSplit: [T]] = [:]
        for (split, entries) in buckets {
            let sorted = entries.sorted { $0.order != $1.order ? $0.order < $1.order : $0.index < $1.index }
            result[split] = sorted.map { items[$0.index] }
        }
        return result
    }
}

/// SHA-256 helpers; fingerprints are lowercase hex.
enum Fingerprint {
    static func sha256Hex<D: DataProtocol>(_ bytes: D) -> String {
        lowercaseHex(SHA256.hash(data: bytes))
    }

    static func sha256Hex(_ text: String) -> String {
        sha256Hex(Array(text.utf8))
    }

    /// Escapes the bytes that would make a tab-separated line ambiguous.
    static func appendEscaped(_ text: String, to out: inout [UInt8]) {
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case UInt8(ascii: "\t"): out.append(contentsOf: [92, UInt8(ascii: "t")])
            case UInt8(ascii: "\n"): out.append(contentsOf: [92, UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): out.append(contentsOf: [92, UInt8(ascii: "r")])
            default: out.append(byte)
            }
        }
    }
}
