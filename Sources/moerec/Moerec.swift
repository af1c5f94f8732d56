import ArgumentParser
import Foundation

@main
struct Moerec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moerec",
        abstract: "Train small Mixture-of-Experts transformers, keep every run by config hash, and compare fine-tuning regimes.",
        discussion: """
        Runs live in one SQLite store (default runs/moerec.sqlite, or --store / MOEREC_STORE).
        Exit codes: 0 success, 1 a check failed (reproduce mismatch, verify found corruption,
        a run failed), 2 bad input.
        """,
        version: MoerecVersion.string,
        subcommands: [Bench.self])
}

enum MoerecVersion {
    static let string = "0.1.0"
}
