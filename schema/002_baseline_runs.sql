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
