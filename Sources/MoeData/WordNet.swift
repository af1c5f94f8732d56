import Foundation

/// Part of speech as written in a WordNet data line's `ss_type` field.
public enum PartOfSpeech: String, Sendable, CaseIterable, Codable {
    case noun = "n"
    case verb = "v"
    case adjective = "a"
    /// An adjective satellite; it lives in data.adj and counts as an adjective for `wn-pos`.
    case adjectiveSatellite = "s"
    case adverb = "r"

    /// The coarse class used by the `wn-pos` task: adj, adv, noun or verb.
    public var coarseName: String {
        switch self {
        case .noun: return "noun"
        case .verb: return "verb"
        case .adjective, .adjectiveSatellite: return "adj"
        case .adverb: return "adv"
        }
    }
}

/// One WordNet synset, as read from a data.* line.
public struct Synset: Sendable, Equatable {
    public let pos: PartOfSpeech
    /// Byte offset of the line in its data file (unique within the file only).
    public let offset: Int
    /// Lexicographer file number, 0...44.
    public let lexFileNumber: Int
    /// Lexicographer file name, e.g. `noun.animal` (WordNet's own spelling, so `noun.Tops`).
    public let lexFile: String
    /// Lemmas in file order with `_` turned into spaces and adjective markers
    /// (`(a)`, `(p)`, `(ip)`) removed.
    public let lemmas: [String]
    /// The gloss (definition and any quoted examples), trailing spaces removed.
    public let gloss: String
    /// The identity used for split assignment: `"<ss_type letter>:<8-digit offset>"`.
    public let key: String

    public init(pos: PartOfSpeech, offset: Int, lexFileNumber: Int, lemmas: [String], gloss: String) {
        self.pos = pos
        self.offset = offset
        self.lexFileNumber = lexFileNumber
        self.lexFile = WordNet.lexicographerFiles[lexFileNumber]
        self.lemmas = lemmas
        self.gloss = gloss
        let digits = String(offset)
        self.key = pos.rawValue + ":" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }

    /// The pretraining corpus line without its newline: `lemma[, lemma…]: gloss`.
    public var corpusLine: String { lemmas.joined(separator: ", ") + ": " + gloss }
}

/// Reader for the WordNet 3.0 database files (format: wndb(5WN)).
public enum WordNet {
    public static let defaultDirectory = URL(fileURLWithPath: "/usr/share/wordnet", isDirectory: true)

    /// The 45 lexicographer file names by number, as documented in lexnames(5WN).
    /// Debian's wordnet-base does not ship the `lexnames` file, so the table lives here.
    public static let lexicographerFiles: [String] = [
        "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
        "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
        "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
        "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon",
        "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
        "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change",
        "verb.cognition", "verb.communication", "verb.competition", "verb.consumption",
        "verb.contact", "verb.creation", "verb.emotion", "verb.motion", "verb.perception",
        "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
    ]

    /// The data files in load order, with the parts of speech each may hold and the prefix
    /// of the lexicographer files those synsets must belong to.
    static let dataFiles: [(name: String, pos: [UInt8], lexPrefix: String)] = [
        ("data.noun", [UInt8(ascii: "n")], "noun."),
        ("data.verb", [UInt8(ascii: "v")], "verb."),
        ("data.adj", [UInt8(ascii: "a"), UInt8(ascii: "s")], "adj."),
        ("data.adv", [UInt8(ascii: "r")], "adv."),
    ]

    /// Loads every synset of data.noun, data.verb, data.adj and data.adv (in that order,
    /// each in file order).
    public static func load(directory: URL = defaultDirectory) throws -> [Synset] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory),
              isDirectory.boolValue else {
            throw DataError.wordNetNotInstalled(path: directory.path)
        }
        var synsets: [Synset] = []
        synsets.reserveCapacity(120_000)
        for file in dataFiles {
            let url = directory.appendingPathComponent(file.name)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw DataError.wordNetNotInstalled(path: url.path)
            }
            let data = try RegularFile.read(url.path, limit: 1 << 30)
            let bytes = [UInt8](data)
            try bytes.withUnsafeBufferPointer { buffer in
                try parseDataFile(buffer, path: url.path, allowedPOS: file.pos,
                                  lexPrefix: file.lexPrefix, into: &synsets)
            }
        }
        return synsets
    }

    /// Parses one data file. Lines starting with two spaces are the license header.
    static func parseDataFile(_ bytes: UnsafeBufferPointer<UInt8>, path: String, allowedPOS: [UInt8],
                              lexPrefix: String, into synsets: inout [Synset]) throws {
        if let bad = UTF8Validation.firstInvalidByte(bytes) {
            let line = bytes[..<bad].reduce(1) { $0 + ($1 == 10 ? 1 : 0) }
            let lineStart = bytes[..<bad].lastIndex(of: 10).map { $0 + 1 } ?? 0
            throw DataError.invalidLine(file: path, line: line, problem: .invalidUTF8(column: bad - lineStart + 1))
        }
        var lineNumber = 0
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != 10 { end += 1 }
            lineNumber += 1
            let line = UnsafeBufferPointer(rebasing: bytes[start..<end])
            start = end + 1
            if line.count >= 2 && line[0] == 0x20 && line[1] == 0x20 { continue }
            do {
                var parser = DataLineParser(line: line)
                synsets.append(try parser.parse(allowedPOS: allowedPOS, lexPrefix: lexPrefix))
            } catch let error as DataLineParser.Malformed {
                throw DataError.invalidLine(file: path, line: lineNumber, problem: .malformedWordNet(error.message))
            }
        }
    }
}

/// Parses `synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id…] p_cnt
/// [ptr…] [frames…] | gloss` (wndb(5WN)); fields are separated by single spaces.
struct DataLineParser {
    struct Malformed: Error { let message: String }

    let line: UnsafeBufferPointer<UInt8>
    var i = 0

    init(line: UnsafeBufferPointer<UInt8>) { self.line = line }

    mutating func token(_ what: String) throws -> UnsafeBufferPointer<UInt8> {
        guard i < line.count else { throw Malformed(message: "line ends before \(what)") }
        let start = i
        while i < line.count && line[i] != 0x20 { i += 1 }
        let end = i
        if i < line.count { i += 1 }
        guard end > start else { throw Malformed(message: "empty field where \(what) was expected (column \(start + 1))") }
        return UnsafeBufferPointer(rebasing: line[start..<end])
    }

    static func text(_ token: UnsafeBufferPointer<UInt8>) -> String { String(decoding: token, as: UTF8.self) }

    mutating func number(_ what: String, digits: Int, radix: Int) throws -> Int {
        let t = try token(what)
        var value = 0
        var valid = t.count == digits
        for b in t where valid {
            let digit: Int
            switch b {
            case 0x30...0x39: digit = Int(b - 0x30)
            case 0x61...0x66 where radix == 16: digit = Int(b - 0x61 + 10)
            case 0x41...0x46 where radix == 16: digit = Int(b - 0x41 + 10)
            default: valid = false; digit = 0
            }
            value = value * radix + digit
        }
        guard valid else {
            throw Malformed(message: "\(what) must be \(digits) \(radix == 16 ? "hex" : "decimal") digit(s), found \"\(Self.text(t))\"")
        }
        return value
    }

    mutating func parse(allowedPOS: [UInt8], lexPrefix: String) throws -> Synset {
        guard !line.isEmpty else { throw Malformed(message: "empty line") }
        let offset = try number("synset_offset", digits: 8, radix: 10)
        let lexFileNumber = try number("lex_filenum", digits: 2, radix: 10)
        guard lexFileNumber < WordNet.lexicographerFiles.count else {
            throw Malformed(message: "lex_filenum \(lexFileNumber) is not one of the 45 lexicographer files (00-44)")
        }
        let posToken = try token("ss_type")
        guard posToken.count == 1, allowedPOS.contains(posToken[0]),
              let pos = PartOfSpeech(rawValue: Self.text(posToken)) else {
            let allowed = allowedPOS.map { String(UnicodeScalar($0)) }.joined(separator: " or ")
            throw Malformed(message: "ss_type must be \(allowed) in this file, found \"\(Self.text(posToken))\"")
        }
        let lexFile = WordNet.lexicographerFiles[lexFileNumber]
        guard lexFile.hasPrefix(lexPrefix) else {
            throw Malformed(message: "lexicographer file \(lexFile) does not hold \(pos.coarseName) synsets")
        }
        let wordCount = try number("w_cnt", digits: 2, radix: 16)
        guard wordCount > 0 else { throw Malformed(message: "w_cnt is 0") }
        var lemmas: [String] = []
        lemmas.reserveCapacity(wordCount)
        for _ in 0..<wordCount {
            let word = try token("word")
            _ = try number("lex_id", digits: 1, radix: 16)
            lemmas.append(Self.lemma(word, isAdjective: pos == .adjective || pos == .adjectiveSatellite))
        }
        let pointerCount = try number("p_cnt", digits: 3, radix: 10)
        for _ in 0..<pointerCount {
            _ = try token("pointer_symbol")
            _ = try number("pointer synset_offset", digits: 8, radix: 10)
            let target = try token("pointer pos")
            guard target.count == 1, PartOfSpeech(rawValue: Self.text(target)) != nil else {
                throw Malformed(message: "pointer pos must be one of n v a s r, found \"\(Self.text(target))\"")
            }
            _ = try number("pointer source/target", digits: 4, radix: 16)
        }
        if pos == .verb {
            let frameCount = try number("f_cnt", digits: 2, radix: 10)
            for _ in 0..<frameCount {
                let plus = try token("frame '+'")
                guard plus.count == 1, plus[0] == UInt8(ascii: "+") else {
                    throw Malformed(message: "verb frame must start with '+', found \"\(Self.text(plus))\"")
                }
                _ = try number("f_num", digits: 2, radix: 10)
                _ = try number("w_num", digits: 2, radix: 16)
            }
        }
        let bar = try token("'|' before the gloss")
        guard bar.count == 1, bar[0] == UInt8(ascii: "|") else {
            throw Malformed(message: "expected '|' before the gloss, found \"\(Self.text(bar))\"")
        }
        var end = line.count
        while end > i && (line[end - 1] == 0x20 || line[end - 1] == 0x0D) { end -= 1 }
        let gloss = String(decoding: UnsafeBufferPointer(rebasing: line[i..<end]), as: UTF8.self)
        return Synset(pos: pos, offset: offset, lexFileNumber: lexFileNumber, lemmas: lemmas, gloss: gloss)
    }

    /// `_` becomes a space; an adjective's syntactic marker `(a)`, `(p)` or `(ip)` is dropped.
    static func lemma(_ word: UnsafeBufferPointer<UInt8>, isAdjective: Bool) -> String {
        var end = word.count
        if isAdjective && end > 0 && word[end - 1] == UInt8(ascii: ")") {
            for marker in ["(a)", "(p)", "(ip)"] {
                let m = Array(marker.utf8)
                if end > m.count && word[(end - m.count)..<end].elementsEqual(m) {
                    end -= m.count
                    break
                }
            }
        }
        var bytes = Array(word[0..<end])
        for k in bytes.indices where bytes[k] == UInt8(ascii: "_") { bytes[k] = 0x20 }
        return String(decoding: bytes, as: UTF8.self)
    }
}
