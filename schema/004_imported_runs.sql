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
