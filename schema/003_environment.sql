-- moerec experiment store, migration 003: two more environment columns of a run.
-- `slurm_job` is the Slurm job the run trained in: the job id, or ARRAYJOB_TASK for a task
-- of a job array, read from the environment Slurm gives the process (SLURM_ARRAY_JOB_ID and
-- SLURM_ARRAY_TASK_ID, else SLURM_JOB_ID); NULL outside Slurm. `vector_level` is the build
-- of the element-wise kernels the CPU ran (avx512, avx2 or sse2). Like the other
-- environment columns they are recorded, never part of the run hash; rows from before
-- this migration have NULL.
ALTER TABLE runs ADD COLUMN slurm_job TEXT;
ALTER TABLE runs ADD COLUMN vector_level TEXT;
