-- moerec experiment store, migration 003: the Slurm job a run trained in.
-- `slurm_job` is the job id, or ARRAYJOB_TASK for a task of a job array, read from the
-- environment Slurm gives the process (SLURM_ARRAY_JOB_ID and SLURM_ARRAY_TASK_ID, else
-- SLURM_JOB_ID); NULL outside Slurm. Like the other environment columns it is recorded,
-- never part of the run hash.
ALTER TABLE runs ADD COLUMN slurm_job TEXT;
