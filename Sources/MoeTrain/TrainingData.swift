import MoeKernels

/// One encoded classification example: BOS + UTF-8 bytes (truncated to the context).
public struct EncodedExample: Sendable, Equatable {
    public var tokens: [Int32]
    public var label: Int32
    public init(tokens: [Int32], label: Int32) { self.tokens = tokens; self.label = label }
}

public enum TokenIds {
    public static let pad: Int32 = 256, bos: Int32 = 257, eos: Int32 = 258
}

/// The data of one run, already materialised and fingerprinted by the caller.
public enum TrainingData {
    case corpus(train: [UInt8], validation: [UInt8])
    case classification(classes: Int, train: [EncodedExample], validation: [EncodedExample], test: [EncodedExample])

    public static func encode(text: [UInt8], label: Int, context: Int) -> EncodedExample {
        var tokens: [Int32] = [TokenIds.bos]
        for byte in text.prefix(context - 1) { tokens.append(Int32(byte)) }
        return EncodedExample(tokens: tokens, label: Int32(label))
    }
}

/// Fills batch buffers. Which examples a step sees is a pure function of (seed, step):
/// resuming at step s needs no loader state.
final class Batcher {
    let rng: CounterRng
    let batchSize: Int, context: Int
    /// (B, T) tokens, (B, T) targets, (B) labels, (B) lengths
    var tokens: [Int32], targets: [Int32], labels: [Int32], lengths: [Int32]
    private var permutation: [Int32] = []
    private var permutationEpoch = -1

    init(seed: Int, batchSize: Int, context: Int) {
        rng = CounterRng(seed: UInt64(seed))
        self.batchSize = batchSize
        self.context = context
        tokens = Array(repeating: TokenIds.pad, count: batchSize * context)
        targets = Array(repeating: -1, count: batchSize * context)
        labels = Array(repeating: 0, count: batchSize)
        lengths = Array(repeating: 0, count: batchSize)
    }

    /// Pretraining window b of `step`: a uniformly drawn offset into the corpus.
    func fillCorpus(_ bytes: [UInt8], step: Int) -> (b: Int, t: Int) {
        let T = context, span = bytes.count - T - 1
        precondition(span > 0, "corpus shorter than one window")
        for b in 0..<batchSize {
            let start = Int(rng.bits(.dataOrder, step: UInt64(step), index: UInt64(b)) % UInt64(span))
            fillWindow(bytes, start: start, row: b)
        }
        return (batchSize, T)
    }

    /// Evaluation window i of n, evenly spaced over the split so every evaluation sees the same text.
    func fillCorpusEval(_ bytes: [UInt8], first: Int, count: Int, total: Int) -> (b: Int, t: Int) {
        let T = context, span = max(1, bytes.count - T - 1)
        for b in 0..<count {
            let start = (first + b) * span / max(1, total)
            fillWindow(bytes, start: start, row: b)
        }
        return (count, T)
    }

    private func fillWindow(_ bytes: [UInt8], start: Int, row b: Int) {
        let T = context
        for t in 0..<T {
            tokens[b * T + t] = Int32(bytes[start + t])
            targets[b * T + t] = Int32(bytes[start + t + 1])
        }
    }

    /// Fine-tuning batch of `step`: epochs over the train set, each in its own permutation
    /// (sorted by a counter hash of (epoch, index)).
    func fillClassification(_ examples: [EncodedExample], step: Int) -> (b: Int, t: Int) {
        let n = examples.count
        var chosen: [Int] = []
        chosen.reserveCapacity(batchSize)
        for b in 0..<batchSize {
            let global = (step - 1) * batchSize + b
            let epoch = global / n
            if epoch != permutationEpoch {
                let key = rng.streamKey(.dataOrder, step: UInt64(epoch))
                let keys = (0..<n).map { CounterRng.mix(key ^ UInt64($0)) }
                permutation = (0..<n).sorted { keys[$0] < keys[$1] || (keys[$0] == keys[$1] && $0 < $1) }.map { Int32($0) }
                permutationEpoch = epoch
            }
            chosen.append(Int(permutation[global % n]))
        }
        return fillExamples(chosen.map { examples[$0] })
    }

    /// Packs examples right-padded to the longest one in the batch.
    func fillExamples(_ batch: [EncodedExample]) -> (b: Int, t: Int) {
        let T = max(1, batch.map(\.tokens.count).max() ?? 1)
        for (b, ex) in batch.enumerated() {
            for t in 0..<T { tokens[b * T + t] = t < ex.tokens.count ? ex.tokens[t] : TokenIds.pad }
            labels[b] = ex.label
            lengths[b] = Int32(ex.tokens.count)
        }
        return (batch.count, T)
    }
}
