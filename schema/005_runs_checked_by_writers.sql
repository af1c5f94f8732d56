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

