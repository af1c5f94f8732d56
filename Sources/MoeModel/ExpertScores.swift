/// How ESFT (Wang et al., 2024, "Let the Expert Stick to His Last", §3.2) scores an
/// expert's relevance to a task, from the router's decisions on a sample of its tokens.
public enum ExpertScoreFunction: String, CaseIterable, ConfigChoice, Equatable {
    /// Average gate score: the mean over sampled tokens of the expert's gate value, which is
    /// its router softmax probability when it is among the token's top-k and 0 otherwise
    /// (the paper's g_{i,t}; the probability before this model renormalises top-k gates,
    /// which DeepSeek-V2-Lite, where ESFT was measured, does not).
    case gate
    /// Token selection ratio: the share of sampled tokens whose top-k includes the expert.
    /// (The paper also divides by K, which the per-layer normalisation removes.)
    case token
}

/// The two ESFT scores of every expert of every sparse layer, accumulated over the real
/// tokens of forward passes. Tokens are added in order and the sums kept in Double, so the
/// scores are a function of the probabilities alone; the forward pass computes those
/// identically at any thread count, and so are the scores.
public struct ExpertScores: Equatable, Sendable {
    /// E, K
    public let experts: Int, topK: Int
    /// Real (non-padding) tokens scored; every sparse layer sees the same tokens.
    public private(set) var tokens = 0
    /// (L_sparse, E) Σ over tokens of the gate value (probability when chosen, else 0)
    public private(set) var gateSums: [[Double]]
    /// (L_sparse, E) tokens whose top-k includes the expert (chosen before capacity
    /// dropping: the router's choice, as ESFT's model, which has no capacity, makes it)
    public private(set) var selections: [[Int]]

    public init(config: ModelConfig) {
        experts = config.experts
        topK = config.topK
        gateSums = Array(repeating: Array(repeating: 0, count: config.experts), count: config.sparseLayers.count)
        selections = Array(repeating: Array(repeating: 0, count: config.experts), count: config.sparseLayers.count)
    }

    /// Adds one forward pass's routing (`Transformer.lastRouting()`): every sparse layer,
    /// real tokens only.
    public mutating func add(_ routing: [LayerRouting]) {
        precondition(routing.count == gateSums.count, "routing of \(routing.count) sparse layers, scores of \(gateSums.count)")
        guard let first = routing.first else { return }
        tokens += first.valid.map { v in v.lazy.filter { $0 != 0 }.count } ?? first.tokens
        for (l, r) in routing.enumerated() {
            precondition(r.experts == experts && r.topK == topK, "routing of another model shape")
            for t in 0..<r.tokens {
                if let valid = r.valid, valid[t] == 0 { continue }
                for slot in 0..<topK {
                    let j = Int(r.chosen[t * topK + slot])
                    gateSums[l][j] += Double(r.probs[t * experts + j])
                    selections[l][j] += 1
                }
            }
        }
    }

    /// Per sparse layer and expert, the score as a mean over the scored tokens.
    public func scores(_ function: ExpertScoreFunction) -> [[Double]] {
        let n = Double(max(tokens, 1))
        switch function {
        case .gate: return gateSums.map { $0.map { $0 / n } }
        case .token: return selections.map { $0.map { Double($0) / n } }
        }
    }

    /// The experts ESFT trains: `ExpertSelection.topP` of each layer's scores. The rule
    /// normalises, so it is given the sums rather than the means: token selections stay
    /// whole counts, and the threshold test on them exact.
    public func selection(_ function: ExpertScoreFunction, topP: Double) throws -> ExpertSelection {
        guard tokens > 0 else { throw ExpertSelection.Invalid(description: "expert scores over no tokens select nothing: the sample is empty") }
        let sums = function == .gate ? gateSums : selections.map { $0.map(Double.init) }
        return ExpertSelection(try sums.map { try ExpertSelection.topP($0, topP: topP) })
    }
}

extension ExpertSelection {
    /// ESFT's rule for one layer: normalise the scores to sum to 1, order the experts by
    /// descending score (equal scores: the lower expert index first), and take experts in
    /// that order until the taken scores sum to at least `topP`. The expert whose score
    /// carries the sum across `topP` is taken (ESFT's public selection script adds experts
    /// while the sum is below top_p); an expert that would start once the sum already
    /// equals `topP` is not. The result is ascending.
    ///
    /// The test is made unnormalised, Σ taken ≥ topP·Σ all, with Σ all summed in the same
    /// order as the running sum, so the running sum ends exactly at Σ all: at topP = 1 the
    /// experts scoring 0 are never taken, and scores that are counts (token selections)
    /// meet an exactly representable topP exactly.
    public static func topP(_ scores: [Double], topP: Double) throws -> [Int] {
        guard topP > 0 && topP <= 1 else {
            throw Invalid(description: "top_p=\(topP): must be in (0, 1]")
        }
        guard scores.allSatisfy({ $0 >= 0 && $0.isFinite }) else {
            throw Invalid(description: "expert scores \(scores): must be finite and ≥ 0")
        }
        let order = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        var total = 0.0
        for j in order { total += scores[j] }
        guard total > 0 else { throw Invalid(description: "expert scores are all 0: nothing to rank") }
        let threshold = topP * total
        var taken: [Int] = [], sum = 0.0
        for j in order {
            if sum >= threshold { break }
            taken.append(j)
            sum += scores[j]
        }
        return taken.sorted()
    }
}
