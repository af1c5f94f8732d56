import CKernels

/// Fork–join over a fixed number of workers: the engine's only source of parallelism.
///
/// OpenBLAS runs single-threaded, and its results for one call depend on the call's
/// shape: it switches kernels (small-matrix and "direct" paths) by size. So a GEMM is
/// never split by the worker count. It is cut into fixed blocks of its output (`Gemm.block`
/// rows or columns, never along K), every block one sgemm call whatever the number of
/// workers, and the workers take contiguous runs of blocks. Element-wise passes split
/// freely; sums over rows stay whole (parameter-gradient columns are split instead).
/// Results therefore do not depend on the thread count: `TrainingTests` checks it bit for
/// bit at 1, 2 and 3 workers.
public enum Parallel {
    nonisolated(unsafe) private static var count = 1
    nonisolated(unsafe) private static var inRegion = false

    /// Number of workers, the calling thread included (≥ 1).
    public static var workers: Int {
        get { count }
        set { precondition(!inRegion, "cannot change the worker count inside a parallel pass"); count = max(1, newValue) }
    }

    /// Parts the next pass will use: 1 inside a running pass (no nesting), else `workers`.
    public static var parts: Int { inRegion ? 1 : count }

    /// Runs `body(part)` for every part in 0..<n (default: `parts`) and returns when all
    /// have finished. Called from inside a pass, it runs every part inline, in order.
    public static func run(parts n: Int? = nil, _ body: (Int) -> Void) {
        let n = n ?? parts
        if n <= 1 || inRegion { for p in 0..<max(n, 0) { body(p) }; return }
        inRegion = true
        defer { inRegion = false }
        withoutActuallyEscaping(body) { body in
            var task = body
            let ran = withUnsafeMutablePointer(to: &task) { pointer in
                Int(moe_pool_run(Int32(n), { context, part in
                    context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(part))
                }, pointer))
            }
            // Only if the system refused a thread: the missing parts run here.
            for part in ran..<n { body(part) }
        }
    }

    /// The `part`-th of `parts` contiguous slices of 0..<n, each a multiple of `granule`
    /// long except possibly the last non-empty one.
    @inline(__always)
    public static func slice(_ n: Int, part: Int, parts: Int, granule: Int = 1) -> Range<Int> {
        let units = (n + granule - 1) / granule
        let lo = units * part / parts, hi = units * (part + 1) / parts
        return min(n, lo * granule)..<min(n, hi * granule)
    }

    /// The blocks of 0..<n (each `block` long, the last possibly shorter) that part `part`
    /// of `parts` owns: a contiguous run, the same blocks whatever `parts` is.
    @inline(__always)
    public static func blocks(_ n: Int, block: Int, part: Int, parts: Int) -> StrideTo<Int> {
        let units = (n + block - 1) / block
        let lo = units * part / parts, hi = units * (part + 1) / parts
        return stride(from: lo * block, to: min(n, hi * block), by: block)
    }

    /// Runs `body(range)` on every `block`-long block of 0..<n, blocks spread over the workers.
    public static func forEachBlock(_ n: Int, block: Int, _ body: (Range<Int>) -> Void) {
        guard n > 0 else { return }
        let p = min(parts, (n + block - 1) / block)
        run(parts: p) { part in
            for lo in blocks(n, block: block, part: part, parts: p) { body(lo..<min(n, lo + block)) }
        }
    }

    /// Runs, on part `part` of `parts`, `body(item)` for each of the items 0..<count that a
    /// greedy balance (in item order, each item to the least-loaded part, ties to the
    /// lowest) gives it. Every part computes the same assignment, so no list is shared.
    @inline(__always)
    public static func assigned(_ count: Int, part: Int, parts: Int, cost: (Int) -> Int, _ body: (Int) -> Void) {
        if parts == 1 { for item in 0..<count { body(item) }; return }
        withUnsafeTemporaryAllocation(of: Int.self, capacity: parts) { load in
            load.initialize(repeating: 0)
            for item in 0..<count {
                var best = 0
                for p in 1..<parts where load[p] < load[best] { best = p }
                load[best] += cost(item)
                if best == part { body(item) }
            }
        }
    }

    /// Splits 0..<n into at most `maxParts` slices (default: `parts`) and runs
    /// `body(range, part)` on each non-empty one.
    public static func ranges(_ n: Int, granule: Int = 1, maxParts: Int = .max, _ body: (Range<Int>, Int) -> Void) {
        guard n > 0 else { return }
        let p = min(parts, maxParts, max(1, (n + granule - 1) / granule))
        if p == 1 { body(0..<n, 0); return }
        run(parts: p) { part in
            let r = slice(n, part: part, parts: p, granule: granule)
            if !r.isEmpty { body(r, part) }
        }
    }
}
