// The SQL text of every migration, embedded so the binary needs no resource files.
// Each literal is byte-identical to its file in schema/ (a test compares them); shipped
// migrations are never edited: add a new numbered file and literal instead.

extension Migrations {
    /// schema/001_init.sql
    static let sql001Init = #"""
-- moerec experiment store, migration 001: the initial schema.
-- Shipped migrations are never edited; changes go into a new numbered file.
-- Timestamps are UTC ISO 8601 text with milliseconds, e.g. 2025-01-31T12:00:00.000Z.

-- One row per run, identified by the SHA-256 of its canonical identity (see README.md).
CREATE TABLE runs (
    id                  INTEGER PRIMARY KEY,
    hash                TEXT NOT NULL UNIQUE
                        CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    parent_hash         TEXT REFERENCES runs(hash),
    kind                TEXT NOT NULL CHECK (kind IN ('pretrain', 'finetune')),
    status              TEXT NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'interrupted')),
    config_json         TEXT NOT NULL
                        CHECK (json_valid(config_json) AND json_type(config_json) = 'object'),
    dataset_fingerprint TEXT NOT NULL CHECK (length(dataset_fingerprint) > 0),
    numerics_version    INTEGER NOT NULL CHECK (numerics_version >= 0),
    -- Environment of the process that trained the run: recorded, not hashed.
    host                TEXT,
    os                  TEXT,
    cpu_model           TEXT,
    blas_core           TEXT,
    threads             INTEGER CHECK (threads IS NULL OR threads >= 1),
    moerec_version      TEXT,
    git_commit          TEXT,
    pid                 INTEGER,
    -- Lifecycle.
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at          TEXT,
    finished_at         TEXT,
    wall_seconds        REAL CHECK (wall_seconds IS NULL OR wall_seconds >= 0),
    steps_done          INTEGER NOT NULL DEFAULT 0 CHECK (steps_done >= 0),
    failure_reason      TEXT,
    failure_step        INTEGER,
    -- A fine-tuning run always starts from a parent; a run is never its own parent.
    CHECK (kind = 'pretrain' OR parent_hash IS NOT NULL),
    CHECK (parent_hash IS NULL OR parent_hash <> hash),
    -- A failed run says why.
    CHECK (status <> 'failed' OR failure_reason IS NOT NULL),
    -- Only a finished run has a finish time and a wall time.
    CHECK (status IN ('completed', 'failed', 'interrupted') OR finished_at IS NULL)
);
CREATE INDEX runs_parent_hash ON runs(parent_hash);
CREATE INDEX runs_status ON runs(status);

-- Metric names and splits are interned so that each metric row holds small integers only.
CREATE TABLE metric_names (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200)
);

CREATE TABLE splits (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64)
);
INSERT INTO splits (id, name) VALUES (0, 'train'), (1, 'val'), (2, 'test');

-- One row per (run, metric, split, step). WITHOUT ROWID: the primary key is the table's
-- only b-tree, so the key is stored once (no separate index duplicating it) and a run's
-- series for one metric is a contiguous range. A point is unique by construction, so a
-- resumed run that writes a step again replaces the value instead of adding a row.
CREATE TABLE metrics (
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name_id INTEGER NOT NULL REFERENCES metric_names(id),
    split   INTEGER NOT NULL REFERENCES splits(id),
    step    INTEGER NOT NULL CHECK (step >= 0),
    -- NULL stands for NaN (SQLite cannot store NaN).
    value   REAL,
    PRIMARY KEY (run_id, name_id, split, step)
) WITHOUT ROWID;

-- Checkpoint manifests; their tensors live in content-addressed blobs.
CREATE TABLE checkpoints (
    id            INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step          INTEGER NOT NULL CHECK (step >= 0),
    manifest_json TEXT NOT NULL CHECK (json_valid(manifest_json)),
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (run_id, step)
);

-- One row per stored object, named by the SHA-256 of its raw (uncompressed) bytes.
CREATE TABLE blobs (
    sha256      TEXT PRIMARY KEY
                CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    raw_size    INTEGER NOT NULL CHECK (raw_size >= 0),
    stored_size INTEGER NOT NULL CHECK (stored_size >= 0),
    location    TEXT NOT NULL CHECK (length(location) > 0),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Which blobs a checkpoint uses (many-to-many: frozen tensors are shared across runs).
CREATE TABLE checkpoint_blobs (
    checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    sha256        TEXT NOT NULL REFERENCES blobs(sha256),
    PRIMARY KEY (checkpoint_id, sha256)
) WITHOUT ROWID;
CREATE INDEX checkpoint_blobs_sha256 ON checkpoint_blobs(sha256);

CREATE TABLE sweeps (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL CHECK (length(name) > 0),
    spec_json  TEXT NOT NULL CHECK (json_valid(spec_json)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Members are listed by run hash, in the order they were added (rowid order).
CREATE TABLE sweep_members (
    id       INTEGER PRIMARY KEY,
    sweep_id INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
    run_hash TEXT NOT NULL REFERENCES runs(hash),
    UNIQUE (sweep_id, run_hash)
);
CREATE INDEX sweep_members_run_hash ON sweep_members(run_hash);

CREATE TABLE tags (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    tag    TEXT NOT NULL CHECK (length(tag) BETWEEN 1 AND 200),
    PRIMARY KEY (run_id, tag)
) WITHOUT ROWID;
CREATE INDEX tags_tag ON tags(tag);

-- Metric points with names spelled out, for sqlite3 and pandas users.
CREATE VIEW metric_points AS
    SELECT r.hash AS run_hash, m.step AS step, s.name AS split, n.name AS name, m.value AS value
    FROM metrics m
    JOIN runs r ON r.id = m.run_id
    JOIN metric_names n ON n.id = m.name_id
    JOIN splits s ON s.id = m.split;

"""#

    /// schema/002_baseline_runs.sql
    static let sql002BaselineRuns = #"""
-- moerec experiment store, migration 002: reference classifier runs.
-- A run of kind 'baseline' is a majority-class or linear n-gram classifier trained on a
-- fine-tuning train subset and scored on the same evaluation examples; like a pretraining
-- run it has no parent. SQLite cannot change a CHECK constraint in place, so `runs` is
-- rebuilt with the same columns and rows (the runner turns foreign keys off around this
-- migration and checks them before it commits); the view that reads it is recreated.
DROP VIEW metric_points;

CREATE TABLE runs_new (
    id                  INTEGER PRIMARY KEY,
    hash                TEXT NOT NULL UNIQUE
                        CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    parent_hash         TEXT REFERENCES runs(hash),
    kind                TEXT NOT NULL CHECK (kind IN ('pretrain', 'finetune', 'baseline')),
    status              TEXT NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'interrupted')),
    config_json         TEXT NOT NULL
                        CHECK (json_valid(config_json) AND json_type(config_json) = 'object'),
    dataset_fingerprint TEXT NOT NULL CHECK (length(dataset_fingerprint) > 0),
    numerics_version    INTEGER NOT NULL CHECK (numerics_version >= 0),
    host                TEXT,
    os                  TEXT,
    cpu_model           TEXT,
    blas_core           TEXT,
    threads             INTEGER CHECK (threads IS NULL OR threads >= 1),
    moerec_version      TEXT,
    git_commit          TEXT,
    pid                 INTEGER,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at          TEXT,
    finished_at         TEXT,
    wall_seconds        REAL CHECK (wall_seconds IS NULL OR wall_seconds >= 0),
    steps_done          INTEGER NOT NULL DEFAULT 0 CHECK (steps_done >= 0),
    failure_reason      TEXT,
    failure_step        INTEGER,
    -- A fine-tuning run always starts from a parent; a baseline never has one.
    CHECK (kind = 'pretrain' OR (kind = 'finetune') = (parent_hash IS NOT NULL)),
    CHECK (parent_hash IS NULL OR parent_hash <> hash),
    CHECK (status <> 'failed' OR failure_reason IS NOT NULL),
    CHECK (status IN ('completed', 'failed', 'interrupted') OR finished_at IS NULL)
);
INSERT INTO runs_new SELECT * FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_parent_hash ON runs(parent_hash);
CREATE INDEX runs_status ON runs(status);

CREATE VIEW metric_points AS
    SELECT r.hash AS run_hash, m.step AS step, s.name AS split, n.name AS name, m.value AS value
    FROM metrics m
    JOIN runs r ON r.id = m.run_id
    JOIN metric_names n ON n.id = m.name_id
    JOIN splits s ON s.id = m.split;

"""#

    static let sql003Environment = #"""
-- moerec experiment store, migration 003: two more environment columns of a run.
-- `slurm_job` is the Slurm job the run trained in: the job id, or ARRAYJOB_TASK for a task
-- of a job array, read from the environment Slurm gives the process (SLURM_ARRAY_JOB_ID and
-- SLURM_ARRAY_TASK_ID, else SLURM_JOB_ID); NULL outside Slurm. `vector_level` is the build
-- of the element-wise kernels the CPU ran (avx512, avx2 or sse2). Like the other
-- environment columns they are recorded, never part of the run hash; rows from before
-- this migration have NULL.
ALTER TABLE runs ADD COLUMN slurm_job TEXT;
ALTER TABLE runs ADD COLUMN vector_level TEXT;

"""#

    static let sql004ImportedRuns = #"""
-- moerec experiment store, migration 004: runs trained elsewhere and imported.
-- `import_source` says where an imported run came from: its format and location, e.g.
-- "mlflow-sqlite /data/mlflow.db run 1a2b3c…". `import_fingerprint` is the SHA-256 of the
-- imported content (the run's status and metric points, in canonical form; README
-- "Imported runs"), part of the run's hash, so importing the same run twice finds it
-- stored. Both are NULL for a run this moerec trained, both set for an imported one.
ALTER TABLE runs ADD COLUMN import_source TEXT;
ALTER TABLE runs ADD COLUMN import_fingerprint TEXT
    CHECK ((import_fingerprint IS NULL) = (import_source IS NULL)
           AND (import_fingerprint IS NULL
                OR (length(import_fingerprint) = 64 AND import_fingerprint NOT GLOB '*[^0-9a-f]*')));

"""#

    /// schema/005_runs_checked_by_writers.sql
    static let sql005RunsCheckedByWriters = #"""
-- moerec experiment store, migration 005: `runs` without the CHECKs that read a whole row.
-- `json_valid(config_json) AND json_type(config_json) = 'object'` parsed every config twice
-- and `hash NOT GLOB '*[^0-9a-f]*'` matched every hash character by character: about a
-- fifth of what SQLite spent registering a sweep of 100,000 cells. moerec's writers now
-- guarantee both before a row reaches SQLite (a new run's hash is computed from its
-- identity and its config text checked to be one JSON object; a merged run is checked the
-- same way), and `moerec verify` reports a stored row that breaks either, as one written
-- outside moerec can. Every other constraint stays, `length(hash) = 64` among them.
--
-- SQLite cannot drop a CHECK in place, so `runs` is rebuilt with the same columns, in the
-- same order, and the same rows and ids (SQLite's procedure for other table changes: the
-- runner turns foreign keys off around this migration and checks them all before it
-- commits); its indexes and the view that reads it are created again.
DROP VIEW metric_points;

CREATE TABLE runs_new (
    id                  INTEGER PRIMARY KEY,
    hash                TEXT NOT NULL UNIQUE CHECK (length(hash) = 64),
    parent_hash         TEXT REFERENCES runs(hash),
    kind                TEXT NOT NULL CHECK (kind IN ('pretrain', 'finetune', 'baseline')),
    status              TEXT NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'interrupted')),
    config_json         TEXT NOT NULL,
    dataset_fingerprint TEXT NOT NULL CHECK (length(dataset_fingerprint) > 0),
    numerics_version    INTEGER NOT NULL CHECK (numerics_version >= 0),
    host                TEXT,
    os                  TEXT,
    cpu_model           TEXT,
    blas_core           TEXT,
    threads             INTEGER CHECK (threads IS NULL OR threads >= 1),
    moerec_version      TEXT,
    git_commit          TEXT,
    pid                 INTEGER,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at          TEXT,
    finished_at         TEXT,
    wall_seconds        REAL CHECK (wall_seconds IS NULL OR wall_seconds >= 0),
    steps_done          INTEGER NOT NULL DEFAULT 0 CHECK (steps_done >= 0),
    failure_reason      TEXT,
    failure_step        INTEGER,
    slurm_job           TEXT,
    vector_level        TEXT,
    import_source       TEXT,
    import_fingerprint  TEXT
        CHECK ((import_fingerprint IS NULL) = (import_source IS NULL)
               AND (import_fingerprint IS NULL
                    OR (length(import_fingerprint) = 64 AND import_fingerprint NOT GLOB '*[^0-9a-f]*'))),
    -- A fine-tuning run always starts from a parent; a baseline never has one.
    CHECK (kind = 'pretrain' OR (kind = 'finetune') = (parent_hash IS NOT NULL)),
    CHECK (parent_hash IS NULL OR parent_hash <> hash),
    -- A failed run says why.
    CHECK (status <> 'failed' OR failure_reason IS NOT NULL),
    -- Only a finished run has a finish time and a wall time.
    CHECK (status IN ('completed', 'failed', 'interrupted') OR finished_at IS NULL)
);
INSERT INTO runs_new (id, hash, parent_hash, kind, status, config_json, dataset_fingerprint, numerics_version,
                      host, os, cpu_model, blas_core, threads, moerec_version, git_commit, pid,
                      created_at, started_at, finished_at, wall_seconds, steps_done, failure_reason, failure_step,
                      slurm_job, vector_level, import_source, import_fingerprint)
    SELECT id, hash, parent_hash, kind, status, config_json, dataset_fingerprint, numerics_version,
           host, os, cpu_model, blas_core, threads, moerec_version, git_commit, pid,
           created_at, started_at, finished_at, wall_seconds, steps_done, failure_reason, failure_step,
           slurm_job, vector_level, import_source, import_fingerprint
    FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_parent_hash ON runs(parent_hash);
CREATE INDEX runs_status ON runs(status);

CREATE VIEW metric_points AS
    SELECT r.hash AS run_hash, m.step AS step, s.name AS split, n.name AS name, m.value AS value
    FROM metrics m
    JOIN runs r ON r.id = m.run_id
    JOIN metric_names n ON n.id = m.name_id
    JOIN splits s ON s.id = m.split;


"""#
}
