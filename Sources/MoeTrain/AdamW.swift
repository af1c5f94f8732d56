import CKernels
import MoeKernels
import MoeModel
#if canImport(Glibc)
import Glibc
#endif

/// AdamW (decoupled weight decay) with global-norm clipping over the flat buffers.
/// Moments exist only for what trains (`Transformer.trainedSlices`): a frozen group or
/// expert costs no optimizer state.
public final class AdamW {
    public let beta1: Float, beta2: Float, eps: Float, weightDecay: Float, clip: Float
    /// (trained slice, offset into the moment buffers) for each trained tensor or expert's
    /// slice of one, in layout order.
    public private(set) var slots: [(slice: TrainedSlice, offset: Int)] = []
    /// First and second moments, each of `stateCount` floats.
    public let m: FloatArena, v: FloatArena
    public let stateCount: Int
    /// Updates applied so far (the bias-correction exponent).
    public var t = 0
    unowned let model: Transformer
    /// Per-tensor sums of squares for `gradNorm`, allocated once.
    private let partialNorms: UnsafeMutablePointer<Double>

    public init(model: Transformer, beta1: Float = 0.9, beta2: Float = 0.95, eps: Float = 1e-8,
                weightDecay: Float = 0.1, clip: Float = 1.0) {
        self.model = model
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay; self.clip = clip
        var planner = ArenaPlanner()
        for slice in model.trainedSlices { slots.append((slice, planner.reserve(slice.count))) }
        stateCount = planner.size
        m = FloatArena(count: stateCount)
        v = FloatArena(count: stateCount)
        partialNorms = .allocate(capacity: max(slots.count, 1))
    }

    deinit { partialNorms.deallocate() }

    /// Global L2 norm of the trained gradients: each slice's sum of squares in Float, those
    /// summed in Double in layout order. Workers take contiguous runs of slices; each
    /// slice's own sum is never split, so the norm does not depend on the split.
    public func gradNorm() -> Float {
        let partial = partialNorms
        let grads = model.grads.base, slots = self.slots
        Parallel.ranges(stateCount, granule: 4096) { range, _ in
            // A slice belongs to the part its first moment element falls in.
            for (n, slot) in slots.enumerated() where range.contains(slot.offset) {
                partial[n] = moe_sum_squares(grads + slot.slice.offset, slot.slice.count)
            }
        }
        var s = 0.0
        for n in 0..<slots.count { s += partial[n] }
        return Float(s.squareRoot())
    }

    /// One update at learning rate `lr`; returns the gradient norm before clipping.
    @discardableResult
    public func step(lr: Float) -> Float {
        let norm = gradNorm()
        let scale: Float = (clip > 0 && norm > clip) ? clip / norm : 1
        t += 1
        let c1 = 1 - powf(beta1, Float(t)), c2 = 1 - powf(beta2, Float(t))
        let beta1 = self.beta1, beta2 = self.beta2, eps = self.eps, weightDecay = self.weightDecay
        let params = model.params.base, grads = model.grads.base, tensors = model.layout.tensors, slots = self.slots
        let mBase = m.base, vBase = v.base
        // Element-wise: workers take contiguous ranges of the concatenated moment buffers.
        Parallel.ranges(stateCount, granule: 4096) { range, _ in
            for (slice, off) in slots where off < range.upperBound && off + slice.count > range.lowerBound {
                let lo = max(range.lowerBound, off) - off, hi = min(range.upperBound, off + slice.count) - off
                let p = params + slice.offset, g = grads + slice.offset
                let mm = mBase + off, vv = vBase + off
                let decay = tensors[slice.tensor].decay ? lr * weightDecay : 0
                moe_adamw(p + lo, g + lo, mm + lo, vv + lo, hi - lo, scale, beta1, beta2, c1, c2, lr, eps, decay)
            }
        }
        return norm
    }
}

/// Warm-up then decay, a pure function of the step.
public struct LRSchedule: Sendable {
    /// The decay after warm-up.
    public enum Kind: String, CaseIterable, ConfigChoice, Equatable {
        /// Half a cosine from `lr` down to `lr`·`min_lr_ratio` at the last step.
        case cosine
        /// A straight line from `lr` down to `lr`·`min_lr_ratio` at the last step.
        case linear
        /// `lr` throughout.
        case constant
    }

    public let peak: Float, warmup: Int, total: Int, kind: Kind, minRatio: Float

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
        case .linear: return floor + (peak - floor) * (1 - progress)
        case .constant: return peak
        case .cosine: return floor + (peak - floor) * 0.5 * (1 + cosf(Float.pi * progress))
        }
    }
}
