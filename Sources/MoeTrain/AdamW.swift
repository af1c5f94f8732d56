import MoeKernels
import MoeModel
#if canImport(Glibc)
import Glibc
#endif

/// AdamW (decoupled weight decay) with global-norm clipping over the flat buffers.
/// Moments exist only for trainable tensors: a frozen group costs no optimizer state.
public final class AdamW {
    public let beta1: Float, beta2: Float, eps: Float, weightDecay: Float, clip: Float
    /// (tensor index, offset into the moment buffers) for each trainable tensor, in layout order.
    public private(set) var slots: [(tensor: Int, offset: Int)] = []
    /// First and second moments, each of `stateCount` floats.
    public let m: FloatArena, v: FloatArena
    public let stateCount: Int
    /// Updates applied so far (the bias-correction exponent).
    public var t = 0
    unowned let model: Transformer

    public init(model: Transformer, beta1: Float = 0.9, beta2: Float = 0.95, eps: Float = 1e-8,
                weightDecay: Float = 0.1, clip: Float = 1.0) {
        self.model = model
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay; self.clip = clip
        var planner = ArenaPlanner()
        for (i, info) in model.layout.tensors.enumerated() where model.trainable.contains(info.group) {
            slots.append((i, planner.reserve(info.count)))
        }
        stateCount = planner.size
        m = FloatArena(count: stateCount)
        v = FloatArena(count: stateCount)
    }

    /// Global L2 norm of the trainable gradients, summed in Double in layout order.
    public func gradNorm() -> Float {
        var s = 0.0
        for (i, _) in slots {
            let info = model.layout.tensors[i]
            let g = model.grads.base + info.offset
            var part: Float = 0
            for j in 0..<info.count { part += g[j] * g[j] }
            s += Double(part)
        }
        return Float(s.squareRoot())
    }

    /// One update at learning rate `lr`; returns the gradient norm before clipping.
    @discardableResult
    public func step(lr: Float) -> Float {
        let norm = gradNorm()
        let scale: Float = (clip > 0 && norm > clip) ? clip / norm : 1
        t += 1
        let c1 = 1 - powf(beta1, Float(t)), c2 = 1 - powf(beta2, Float(t))
        for (i, off) in slots {
            let info = model.layout.tensors[i]
            let p = model.params.base + info.offset, g = model.grads.base + info.offset
            let mm = m.base + off, vv = v.base + off
            let decay = info.decay ? lr * weightDecay : 0
            for j in 0..<info.count {
                let gj = g[j] * scale
                mm[j] = beta1 * mm[j] + (1 - beta1) * gj
                vv[j] = beta2 * vv[j] + (1 - beta2) * gj * gj
                let mhat = mm[j] / c1, vhat = vv[j] / c2
                p[j] -= lr * (mhat / (vhat.squareRoot() + eps)) + decay * p[j]
            }
        }
        return norm
    }
}

/// Warm-up then decay, a pure function of the step.
public struct LRSchedule: Sendable {
    public let peak: Float, warmup: Int, total: Int, kind: String, minRatio: Float

    public init(config: RunConfig) {
        peak = config.lr; warmup = config.warmupSteps; total = config.steps
        kind = config.schedule; minRatio = config.minLrRatio
    }

    /// Learning rate for 1-based step `s`.
    public func lr(step s: Int) -> Float {
        if s <= warmup && warmup > 0 { return peak * Float(s) / Float(warmup) }
        let span = max(1, total - warmup)
        let progress = min(1, Float(s - warmup) / Float(span))
        let floor = peak * minRatio
        switch kind {
        case "linear": return floor + (peak - floor) * (1 - progress)
        case "constant": return peak
        default: return floor + (peak - floor) * 0.5 * (1 + cosf(Float.pi * progress))
        }
    }
}
