#!/usr/bin/env bash
# Runs the Slurm launcher's tests against a single-node Slurm started here for the purpose
# (root: installs Debian's slurmctld, slurmd and munge when missing) and stops it after.
# `make test` runs the same tests only when a Slurm controller already answers.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
scripts/install-deps.sh
swift build -c release --build-tests
scripts/slurm-local.sh install
eval "$(scripts/slurm-local.sh start)"
trap 'scripts/slurm-local.sh stop' EXIT
MOEREC_REQUIRE_SLURM=1 swift test -c release --skip-build --disable-swift-testing --filter SlurmTests
