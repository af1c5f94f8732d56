import Foundation

/// `body(i)` for every `i` in `0..<count`, on up to `workers` threads in contiguous chunks,
/// with the results in index order: how a study checks and plans 100,000 cells in seconds.
/// `body` must be safe to call concurrently. The error of the lowest failing index is
/// rethrown once every chunk has finished; a signal on `stop` skips the chunks not yet
/// started and throws `Interrupted`.
package func parallelMap<T>(_ count: Int, workers: Int = ProcessInfo.processInfo.activeProcessorCount, stop: StopFlag,
                    _ body: (Int) throws -> T) throws -> [T] {
    guard count > 0 else { return [] }
    let threads = max(1, min(workers, 8))
    // Small chunks balance uneven cells; a few hundred per chunk keep the overhead nil.
    let chunk = max(1, min(512, count / (threads * 8)))
    let chunks = (count + chunk - 1) / chunk
    let results = UnsafeMutableBufferPointer<Result<T, Error>?>.allocate(capacity: count)
    results.initialize(repeating: nil)
    defer {
        results.deinitialize()
        results.deallocate()
    }
    let work = { (c: Int) in
        guard !stop.isRaised else { return }
        for i in c * chunk..<min(count, (c + 1) * chunk) {
            results[i] = Result { try body(i) }
        }
    }
    if threads == 1 || chunks == 1 {
        (0..<chunks).forEach(work)
    } else {
        DispatchQueue.concurrentPerform(iterations: chunks, execute: work)
    }
    try stop.check()
    return try results.map { try $0!.get() }
}
