import Foundation
import MoeKernels

/// The reference a fine-tuned model must beat: a linear classifier on hashed word and
/// character n-grams (multinomial logistic regression, TF-IDF features), trained on exactly
/// the bytes the fine-tuned model sees (`EncodedExample` tokens below 256, i.e. the text
/// as truncated to the context) and scored on the same evaluation examples.
///
/// Deterministic by construction: features are a pure function of the bytes, the epoch
/// order comes from the counter RNG keyed by (seed, epoch), and every sum runs in a fixed
/// order on one thread, so repeated fits are bit-identical.
public struct LinearBaseline {
    /// Hashed feature space: 2^18 buckets.
    public static let dimension = 1 << 18
    public var epochs = 10
    /// Peak SGD step (decayed linearly to a tenth over the epochs).
    public var learningRate: Float = 0.5
    /// L2 penalty on the weight rows an example touches (lazy, per update).
    public var l2: Float = 1e-6
    public var seed: UInt64 = 0

    public init() {}

    /// One example's features: bucket indices with L2-normalised TF-IDF values.
    public struct Features: Equatable {
        public var index: [Int32] = []
        public var value: [Float] = []
    }

    /// Word 1- and 2-grams (lowercased ASCII letters and digits; any other byte separates
    /// words; bytes ≥ 128 are kept inside words) and character 2- to 5-grams of the
    /// lowercased text padded with one space each side, each hashed (FNV-1a, with a tag
    /// per kind) into `dimension` buckets; the value is 1 + ln(count).
    public static func counts(_ text: [UInt8]) -> [Int32: Float] {
        let lower = text.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }
        var counts: [Int32: Float] = [:]
        func add(_ tag: UInt8, _ bytes: ArraySlice<UInt8>, _ extra: ArraySlice<UInt8> = []) {
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in [tag] + bytes + (extra.isEmpty ? [] : [0] + extra) { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            counts[Int32(truncatingIfNeeded: h % UInt64(dimension)), default: 0] += 1
        }
        func isWordByte(_ b: UInt8) -> Bool { (b >= 97 && b <= 122) || (b >= 48 && b <= 57) || b >= 128 }
        var words: [ArraySlice<UInt8>] = []
        var start: Int?
        for (i, b) in lower.enumerated() {
            if isWordByte(b) { if start == nil { start = i } } else if let s = start { words.append(lower[s..<i]); start = nil }
        }
        if let s = start { words.append(lower[s...]) }
        for (i, w) in words.enumerated() {
            add(1, w)
            if i + 1 < words.count { add(2, w, words[i + 1]) }
        }
        let padded = [UInt8(32)] + lower + [32]
        for n in 2...5 where padded.count >= n {
            for i in 0...(padded.count - n) { add(UInt8(2 + n), padded[i..<i + n]) }
        }
        return counts.mapValues { 1 + log($0) }
    }

    /// Inverse document frequencies from the training texts: ln((1 + N) / (1 + df)) + 1.
    public static func idf(_ documents: [[Int32: Float]]) -> [Int32: Float] {
        var df: [Int32: Int] = [:]
        for d in documents { for k in d.keys { df[k, default: 0] += 1 } }
        let n = Float(documents.count)
        return df.mapValues { log((1 + n) / (1 + Float($0))) + 1 }
    }

    /// Sorted indices, TF × IDF (buckets unseen in training get the largest IDF), L2-normalised.
    public static func features(_ counts: [Int32: Float], idf: [Int32: Float], unseen: Float) -> Features {
        var f = Features()
        for k in counts.keys.sorted() {
            f.index.append(k)
            f.value.append(counts[k]! * (idf[k] ?? unseen))
        }
        var norm: Float = 0
        for v in f.value { norm += v * v }
        norm = norm.squareRoot()
        if norm > 0 { for i in f.value.indices { f.value[i] /= norm } }
        return f
    }

    /// A fitted model: weights (dimension × classes) and biases, plus the IDF it featurises with.
    public struct Model {
        public let classes: Int
        let weights: [Float], bias: [Float]
        let idf: [Int32: Float], unseen: Float

        public func predict(_ tokens: [Int32]) -> Int {
            let f = LinearBaseline.features(LinearBaseline.counts(tokens.text), idf: idf, unseen: unseen)
            let s = LinearBaseline.scores(f, weights: weights, bias: bias, classes: classes)
            return s.indices.max { s[$0] < s[$1] || (s[$0] == s[$1] && $0 > $1) }!
        }

        /// A 64-bit FNV-1a digest of every weight and bias bit, for bit-identity checks.
        public var weightDigest: UInt64 {
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for x in weights + bias { h = (h ^ UInt64(x.bitPattern)) &* 0x100_0000_01b3 }
            return h
        }

        /// Share of `examples` predicted right.
        public func accuracy(_ examples: [EncodedExample]) -> Double {
            guard !examples.isEmpty else { return .nan }
            let right = examples.filter { predict($0.tokens) == Int($0.label) }.count
            return Double(right) / Double(examples.count)
        }
    }

    static func scores(_ f: Features, weights: [Float], bias: [Float], classes k: Int) -> [Float] {
        var s = bias
        for (i, idx) in f.index.enumerated() {
            let row = Int(idx) * k, v = f.value[i]
            for c in 0..<k { s[c] += v * weights[row + c] }
        }
        return s
    }

    /// Fits on `train` (labels in 0..<classes) by SGD on the cross-entropy.
    public func fit(_ train: [EncodedExample], classes k: Int) -> Model {
        let counts = train.map { LinearBaseline.counts($0.tokens.text) }
        let idf = LinearBaseline.idf(counts)
        let unseen = log((1 + Float(train.count)) / 1) + 1
        let features = counts.map { LinearBaseline.features($0, idf: idf, unseen: unseen) }
        var w = [Float](repeating: 0, count: LinearBaseline.dimension * k), b = [Float](repeating: 0, count: k)
        let rng = CounterRng(seed: seed)
        let total = epochs * train.count
        var seen = 0
        for epoch in 0..<epochs {
            // A permutation by sorting on counter-RNG keys: a pure function of (seed, epoch).
            let order = train.indices.sorted {
                (rng.bits(.dataOrder, step: UInt64(epoch), index: UInt64($0)), $0)
                    < (rng.bits(.dataOrder, step: UInt64(epoch), index: UInt64($1)), $1)
            }
            for n in order {
                let lr = learningRate * (1 - 0.9 * Float(seen) / Float(max(total, 1)))
                seen += 1
                let f = features[n]
                var p = LinearBaseline.scores(f, weights: w, bias: b, classes: k)
                let top = p.max()!
                var z: Float = 0
                for c in 0..<k { p[c] = exp(p[c] - top); z += p[c] }
                for c in 0..<k { p[c] /= z }
                p[Int(train[n].label)] -= 1
                for c in 0..<k { b[c] -= lr * p[c] }
                for (i, idx) in f.index.enumerated() {
                    let row = Int(idx) * k, v = f.value[i]
                    for c in 0..<k { w[row + c] -= lr * (v * p[c] + l2 * w[row + c]) }
                }
            }
        }
        return Model(classes: k, weights: w, bias: b, idf: idf, unseen: unseen)
    }
}

extension Array where Element == Int32 {
    /// The text bytes of an encoded example (specials dropped).
    var text: [UInt8] { compactMap { $0 >= 0 && $0 < 256 ? UInt8($0) : nil } }
}
