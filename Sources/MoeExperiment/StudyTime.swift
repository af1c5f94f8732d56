import Foundation
import MoeMetricNames
import MoeStore

/// Where the wall time of a set of runs (a study) went, from what the runs recorded:
/// their start and finish times, their wall seconds, their worker threads, and the
/// `timing` series of training steps, evaluations and checkpoints.
///
/// The span runs from the first start to the last finish. A run counts with its worker
/// threads (a pretraining parent trained alone on 2 threads occupies 2 cores, as two
/// 1-thread runs side by side do); with at most C threads at once, the span offers
/// C × span core-seconds. Each run's wall time, times its threads, splits into training
/// steps, evaluation, checkpoints and the rest of its time (set-up, data, the store). Cores
/// that completed runs outside the selection used within the span (the parents, when only
/// a study's fine-tuning runs are selected) are "other runs"; what no run used — process
/// start, planning, baselines, a core left idle while the last runs finish — is "outside
/// runs".
public struct StudyTime: Equatable {
    public var runs: Int
    public var span: Double
    public var cores: Int
    public var training: Double
    public var evaluation: Double
    public var checkpoints: Double
    /// Runs whose evaluation and checkpoint times were not recorded (trained by a moerec
    /// before they were): their time is in `otherInRuns`.
    public var runsWithoutPhaseTimes: Int
    public var otherInRuns: Double
    /// Core-seconds of the span used by completed runs outside the selection.
    public var otherRuns: Double = 0
    public var outsideRuns: Double

    public var coreSeconds: Double { span * Double(cores) }

    /// The share of the selection's own core time (the span's, less other runs') spent
    /// outside training steps.
    public var notTrainingShare: Double {
        let own = coreSeconds - otherRuns
        return own > 0 ? (own - training) / own : .nan
    }

    /// What one run recorded: the interval it ran ([finish − wall, finish], so that a
    /// resumed run counts the time it trained, not the gap between its first start and its
    /// finish), its worker threads and its phase sums (nil when not recorded).
    public struct Run: Equatable {
        public var start: Double, end: Double, threads: Int
        public var training: Double, evaluation: Double?, checkpoints: Double
        /// Baselines record no phases and are not counted as runs without them.
        public var isBaseline = false

        public init(start: Double, end: Double, threads: Int, training: Double, evaluation: Double?, checkpoints: Double,
                    isBaseline: Bool = false) {
            self.start = start; self.end = end; self.threads = max(1, threads)
            self.training = training; self.evaluation = evaluation; self.checkpoints = checkpoints
            self.isBaseline = isBaseline
        }
    }

    /// Reads the completed runs of `selection` that recorded start and finish times, and the
    /// intervals of the store's other completed runs.
    public static func measure(store: Store, selection: RunSelection) throws -> StudyTime? {
        var completed = selection
        completed.status = .completed
        func timed(_ records: [RunRecord]) -> [RunRecord] {
            records.filter { $0.startedAt != nil && $0.finishedAt != nil && $0.wallSeconds != nil }
        }
        let records = timed(try store.runs(completed))
        let steps = try store.seriesValues(.sum, name: MetricName.stepTime, split: Split.timing, of: completed)
        let evals = try store.seriesValues(.sum, name: MetricName.evalTime, split: Split.timing, of: completed)
        let saves = try store.seriesValues(.sum, name: MetricName.checkpointTime, split: Split.timing, of: completed)
        func interval(_ r: RunRecord) -> (start: Double, end: Double, threads: Int)? {
            Timestamp.seconds(r.finishedAt!).map { ($0 - r.wallSeconds!, $0, r.environment.threads ?? 1) }
        }
        let runs = records.compactMap { r -> Run? in
            guard let i = interval(r) else { return nil }
            return Run(start: i.start, end: i.end, threads: i.threads, training: steps[r.hash] ?? 0,
                       evaluation: evals[r.hash], checkpoints: saves[r.hash] ?? 0, isBaseline: r.kind == .baseline)
        }
        let selected = Set(records.map(\.hash))
        var everyCompleted = RunSelection()
        everyCompleted.status = .completed
        let others = timed(try store.runs(everyCompleted)).filter { !selected.contains($0.hash) }.compactMap { r -> Run? in
            interval(r).map { Run(start: $0.start, end: $0.end, threads: $0.threads, training: 0, evaluation: nil, checkpoints: 0) }
        }
        return split(runs, others: others)
    }

    /// The split of `runs`' core time, `others` (runs outside the selection, only their
    /// intervals and threads read) counted where they overlap its span; nil without runs.
    public static func split(_ runs: [Run], others: [Run] = []) -> StudyTime? {
        guard !runs.isEmpty else { return nil }
        let start = runs.map(\.start).min()!, end = runs.map(\.end).max()!
        // The most threads at once, from a sweep over the interval ends.
        var events = runs.flatMap { [($0.start, $0.threads), ($0.end, -$0.threads)] }
        events.sort { ($0.0, $0.1) < ($1.0, $1.1) }
        var active = 0, peak = 0
        for (_, delta) in events { active += delta; peak = max(peak, active) }
        var t = StudyTime(runs: runs.count, span: end - start, cores: max(peak, 1), training: 0, evaluation: 0,
                          checkpoints: 0, runsWithoutPhaseTimes: 0, otherInRuns: 0, outsideRuns: 0)
        var used = 0.0
        for run in runs {
            let threads = Double(run.threads)
            used += (run.end - run.start) * threads
            t.training += run.training * threads
            t.evaluation += (run.evaluation ?? 0) * threads
            t.checkpoints += run.checkpoints * threads
            if !run.isBaseline && run.evaluation == nil { t.runsWithoutPhaseTimes += 1 }
        }
        t.otherInRuns = max(0, used - t.training - t.evaluation - t.checkpoints)
        let free = max(0, t.coreSeconds - used)
        t.otherRuns = min(free, others.reduce(0) { $0 + max(0, min(end, $1.end) - max(start, $1.start)) * Double($1.threads) })
        t.outsideRuns = free - t.otherRuns
        return t
    }
}

/// The store's UTC timestamps (`2025-01-31T12:00:00.000Z`) as seconds since 1970.
enum Timestamp {
    static func seconds(_ text: String) -> Double? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: text)?.timeIntervalSince1970
    }
}
