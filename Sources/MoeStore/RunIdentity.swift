import Crypto
import Foundation
import MoeJSON

/// The run hash: what makes two runs "the same run".
///
/// The hash is the lowercase hex SHA-256 of the canonical JSON (see `JSONValue`) of
///
///     {"config":<resolved config>,"dataset":"<fingerprint>","numerics":<int>,"parent":"<hash>"|null}
///
/// A run trained elsewhere and imported adds `"imported":"<content fingerprint>"` (between
/// `dataset` and `numerics` in canonical order): its config alone does not make it the
/// same run, its logged content does. Runs moerec trains never have the member, so their
/// hashes are unchanged by it.
///
/// The config must be the *resolved* config, every default written out, so that a config
/// file that spells out a default and one that omits it hash the same. Environment facts
/// (host, BLAS core, threads, moerec version) are deliberately not part of the hash: they
/// are recorded with the run and `reproduce` reports when they differ.
///
/// Changing this function, the canonical form or the field names changes every hash in
/// every store; golden tests pin them.
public enum RunIdentity {
    public static func hash(config: JSONValue, parent: String?, datasetFingerprint: String, numerics: Int,
                            imported: String? = nil) throws -> String {
        try hash(configJSON: config.canonicalString, parent: parent, datasetFingerprint: datasetFingerprint, numerics: numerics,
                 imported: imported)
    }

    /// The same from the config's canonical JSON text (`JSONValue.canonicalString`), which
    /// a planner has already written: the identity object's canonical bytes are that text
    /// spliced between its other members, in the canonical (sorted) key order.
    public static func hash(configJSON: String, parent: String?, datasetFingerprint: String, numerics: Int,
                            imported: String? = nil) throws -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(configJSON.utf8.count + 256)
        bytes += #"{"config":"#.utf8
        var configJSON = configJSON
        configJSON.withUTF8 { bytes += $0 }
        // Each member's canonical value: a string as JSONString writes it, an integer in decimal.
        bytes += #","dataset":"#.utf8
        JSONString.write(datasetFingerprint, into: &bytes)
        if let imported {
            bytes += #","imported":"#.utf8
            JSONString.write(imported, into: &bytes)
        }
        bytes += #","numerics":"#.utf8
        bytes += String(numerics).utf8
        bytes += #","parent":"#.utf8
        if let parent { JSONString.write(parent, into: &bytes) } else { bytes += "null".utf8 }
        bytes.append(UInt8(ascii: "}"))
        return sha256Hex(bytes)
    }

    /// Lowercase hex SHA-256 of `bytes`.
    public static func sha256Hex<Bytes: DataProtocol>(_ bytes: Bytes) -> String {
        lowercaseHex(SHA256.hash(data: bytes))
    }

    /// True for a full run hash as the store keeps it: 64 lowercase hex digits.
    public static func isValidHash(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy(isLowerHex)
    }

    static func isLowerHex(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f"))
    }
}
