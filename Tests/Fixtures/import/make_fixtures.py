#!/usr/bin/env python3
"""Regenerate the fixtures for `moerec import` from scratch.

Run from anywhere with the venv that has torch, transformers, accelerate and
mlflow installed:

    /tmp/imp/bin/python Tests/Fixtures/import/make_fixtures.py

Everything is written next to this file:

    hf-trainer/<regime>-seed<seed>/trainer_state.json   real transformers.Trainer runs
    mlflow-file/mlruns/                                  real MLflow file store
    mlflow-sqlite/mlflow.db                              real MLflow SQLite store
    expected.json                                        what a report over each store must show
    VERSIONS                                             python/torch/transformers/accelerate/mlflow

Existing outputs are deleted first. Metric values are deterministic (seeded
training on CPU for the Trainer runs, closed form for MLflow); run ids, the
`*_runtime`/`*_per_second` fields of trainer_state.json, artifact paths and
the git tags MLflow records are not.
"""

import json
import math
import os
import platform
import shutil
import sqlite3
import sys
import warnings
from pathlib import Path

# No network: no telemetry, no hub.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# MLflow 3.x refuses the file store ("maintenance mode") unless this is set.
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
warnings.filterwarnings("ignore")

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------
# best-step rule shared by every store
# ---------------------------------------------------------------------------


def best_of(val_points, test_points):
    """val_points/test_points: list of (step, value).

    Best step = the step with the highest val accuracy, the earliest on ties.
    test = the test accuracy logged at exactly that step, else None.
    """
    best_step, best_val = None, None
    for step, value in sorted(val_points, key=lambda p: p[0]):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if best_val is None or value > best_val:
            best_step, best_val = step, value
    test = None
    for step, value in test_points:
        if step == best_step:
            test = value
    return {"best_step": best_step, "val_accuracy": best_val, "test_accuracy": test}


def summarise(runs_by_regime):
    """runs_by_regime: {regime: {seed: best_of(...)}} -> expected.json shape."""
    out = {}
    for regime in sorted(runs_by_regime):
        seeds = runs_by_regime[regime]
        per_seed = {str(s): seeds[s] for s in sorted(seeds)}
        vals = [r["val_accuracy"] for r in per_seed.values()]
        tests = [r["test_accuracy"] for r in per_seed.values()]
        out[regime] = {
            "seeds": per_seed,
            "n": len(vals),
            "mean_val_accuracy": sum(vals) / len(vals),
            "mean_test_accuracy": (sum(tests) / len(tests)) if all(t is not None for t in tests) else None,
            "n_test_at_best": sum(t is not None for t in tests),
            "mean_test_accuracy_where_logged": (
                sum(t for t in tests if t is not None) / sum(t is not None for t in tests)
                if any(t is not None for t in tests) else None
            ),
        }
    return out


# ---------------------------------------------------------------------------
# Hugging Face Trainer
# ---------------------------------------------------------------------------

HF_REGIMES = ["all", "attention"]
HF_SEEDS = [1, 2, 3]
HF_DATA_SEED = 1234
HF_NUM_LABELS = 4
HF_SEQ_LEN = 16
HF_VOCAB = 64          # 0 pad, 1 [CLS], 2 [SEP], 3..6 class keywords, 8..63 filler
HF_KEYWORD0 = 3
HF_FILLER0 = 8
HF_LABEL_NOISE = 0.15  # fraction of examples whose label is replaced at random
HF_N = {"train": 512, "eval": 128, "test": 128}
HF_KEYWORD_REPEATS = 2
HF_EPOCHS = 10
HF_EVAL_STEPS = 16
HF_LOGGING_STEPS = 8


def hf_make_split(n, generator, torch):
    """Synthetic classification: the class is which keyword token (3..6) the
    sequence contains (HF_KEYWORD_REPEATS times, at random positions among
    random filler tokens); 15% of
    labels are resampled uniformly, so the ceiling is about 0.89."""
    rows = []
    for _ in range(n):
        label = int(torch.randint(0, HF_NUM_LABELS, (1,), generator=generator))
        body = torch.randint(HF_FILLER0, HF_VOCAB, (HF_SEQ_LEN - 2,), generator=generator)
        pos = torch.randperm(HF_SEQ_LEN - 2, generator=generator)[:HF_KEYWORD_REPEATS]
        body[pos] = HF_KEYWORD0 + label
        if float(torch.rand(1, generator=generator)) < HF_LABEL_NOISE:
            label = int(torch.randint(0, HF_NUM_LABELS, (1,), generator=generator))
        ids = [1] + body.tolist() + [2]
        rows.append({
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.ones(HF_SEQ_LEN, dtype=torch.long),
            "labels": torch.tensor(label, dtype=torch.long),
        })
    return rows


class ListDataset:
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def hf_compute_metrics(eval_pred):
    import numpy as np
    logits, labels = eval_pred
    if isinstance(logits, tuple):
        logits = logits[0]
    preds = np.argmax(logits, axis=-1)
    return {"accuracy": float((preds == labels).mean())}


def hf_train_one(out_dir, regime, seed, splits):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments, set_seed

    set_seed(seed)
    config = BertConfig(
        vocab_size=HF_VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=HF_SEQ_LEN,
        type_vocab_size=1,
        num_labels=HF_NUM_LABELS,
        pad_token_id=0,
    )
    model = BertForSequenceClassification(config)  # random init, no hub
    if regime == "attention":
        # Trainable: every parameter of the attention modules
        # (bert.encoder.layer.N.attention.{self.query,self.key,self.value,output.dense,output.LayerNorm})
        # and the classifier head. Everything else is frozen.
        for name, p in model.named_parameters():
            p.requires_grad = (".attention." in name) or name.startswith("classifier.")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    args = TrainingArguments(
        output_dir=str(out_dir),
        num_train_epochs=HF_EPOCHS,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=2e-3,
        weight_decay=0.0,
        warmup_steps=0,
        lr_scheduler_type="linear",
        eval_strategy="steps",
        eval_steps=HF_EVAL_STEPS,
        logging_strategy="steps",
        logging_steps=HF_LOGGING_STEPS,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=seed,
        data_seed=seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ListDataset(splits["train"]),
        eval_dataset=ListDataset(splits["eval"]),
        compute_metrics=hf_compute_metrics,
    )
    trainer.train()
    trainer.evaluate(eval_dataset=ListDataset(splits["test"]), metric_key_prefix="test")
    trainer.save_state()
    # Keep only trainer_state.json.
    for child in out_dir.iterdir():
        if child.name == "trainer_state.json":
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    return trainable, total


def make_hf():
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    root = HERE / "hf-trainer"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    g = torch.Generator().manual_seed(HF_DATA_SEED)
    splits = {name: hf_make_split(n, g, torch) for name, n in HF_N.items()}
    params = {}
    for regime in HF_REGIMES:
        for seed in HF_SEEDS:
            out = root / f"{regime}-seed{seed}"
            out.mkdir()
            trainable, total = hf_train_one(out, regime, seed, splits)
            params[regime] = {"trainable": trainable, "total": total}
            print(f"hf-trainer {regime} seed {seed}: trainable {trainable}/{total}", flush=True)
    return params


def expected_hf():
    by_regime = {}
    for run_dir in sorted((HERE / "hf-trainer").iterdir()):
        regime, seed = run_dir.name.rsplit("-seed", 1)
        state = json.loads((run_dir / "trainer_state.json").read_text())
        val = [(e["step"], e["eval_accuracy"]) for e in state["log_history"] if "eval_accuracy" in e]
        test = [(e["step"], e["test_accuracy"]) for e in state["log_history"] if "test_accuracy" in e]
        row = best_of(val, test)
        row["last_step"] = max(s for s, _ in val)
        row["test_accuracy_logged_at"] = [s for s, _ in test]
        row["test_accuracy_last"] = test[-1][1] if test else None
        by_regime.setdefault(regime, {})[int(seed)] = row
    return summarise(by_regime)


# ---------------------------------------------------------------------------
# MLflow (closed-form values)
# ---------------------------------------------------------------------------

EXPERIMENT = "st-moe-regimes"
STEPS = [0, 50, 100, 150, 200]
SEED_OFFSET = {1: 0, 2: 1, 3: -1, 4: -2}
# All accuracies are computed in integer thousandths, then divided by 1000,
# so every value is the double nearest to a 3-decimal number.
BASE_MILLI = {"all": 780, "moe": 790, "attention": 740}
RISE_MILLI = {
    # all: rises to the end -> best step = last step (200)
    "all": {0: 0, 50: 50, 100: 80, 150: 95, 200: 100},
    # moe: plateau, 150 and 200 tie -> best step = 150 (earliest on ties)
    "moe": {0: 0, 50: 60, 100: 90, 150: 100, 200: 100},
    # attention: peaks at 100, then drops -> best step = 100 != last step
    "attention": {0: 0, 50: 60, 100: 85, 150: 75, 200: 70},
}
START_TIME_MS = {"mlflow-file": 1767225600000, "mlflow-sqlite": 1767312000000}  # 2026-01-01 / 2026-01-02 UTC


def val_milli(regime, seed, step, shift_milli):
    return BASE_MILLI[regime] + shift_milli + 10 * SEED_OFFSET[seed] + RISE_MILLI[regime][step]


def train_loss_milli(regime, seed, step):
    return 1400 - 4 * step + 10 * SEED_OFFSET[seed]


def val_loss_milli(regime, seed, step, shift_milli):
    # mirrors val accuracy: lowest where accuracy is highest
    return 1500 - 5 * RISE_MILLI[regime][step] - shift_milli - 10 * SEED_OFFSET[seed]


def run_plan(store, seeds, shift_milli):
    """The list of runs for one store, in logging order."""
    plan = []
    for regime in ["all", "moe", "attention"]:
        for seed in seeds:
            plan.append(dict(regime=regime, seed=seed, shift=shift_milli, steps=STEPS,
                             status="FINISHED", delete=False, name=f"{regime}-seed{seed}"))
    # A re-run of all/seed 1 that was then deleted: much lower values, so a
    # report that does not skip deleted runs gets visibly wrong means.
    plan.append(dict(regime="all", seed=1, shift=shift_milli - 300, steps=STEPS,
                     status="FINISHED", delete=True, name="all-seed1-rerun-deleted"))
    # A run that crashed after two logged steps: seed outside the grid.
    plan.append(dict(regime="all", seed=4, shift=shift_milli, steps=STEPS[:2],
                     status="FAILED", delete=False, name="all-seed4-failed"))
    return plan


def log_store(tracking_uri, store, seeds, shift_milli, artifact_location=None, nan_at=None):
    """Write one MLflow store with the real client. Returns expected summary."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from mlflow.tracking.context import registry as context_registry

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    exp_id = mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location)
    mlflow.set_experiment(experiment_id=exp_id)

    t0 = START_TIME_MS[store]
    by_regime, excluded = {}, []
    for i, r in enumerate(run_plan(store, seeds, shift_milli)):
        regime, seed, shift = r["regime"], r["seed"], r["shift"]
        start = t0 + i * 3_600_000
        # create_run lets the start time be fixed; the run is then resumed and
        # logged to with the fluent API (mlflow.start_run/log_params/log_metric).
        tags = context_registry.resolve_tags({"mlflow.note.content": f"fixture run {r['name']}"})
        tags.pop("mlflow.source.git.commit", None)
        created = client.create_run(exp_id, start_time=start, run_name=r["name"], tags=tags)
        run_id = created.info.run_id
        mlflow.start_run(run_id=run_id)
        mlflow.log_params({
            "finetune_regime": regime,
            "num_experts": 8,
            "seed": seed,
            "dataset": "wn-supersense",
        })
        mlflow.log_param("n_train", 4096)
        # One small artifact per run. MLflow's file store only accepts a run
        # folder that has metrics/, params/ and artifacts/, and git keeps no
        # empty folder, so an empty artifacts/ would make the committed store
        # unreadable by MLflow itself.
        mlflow.log_dict({"finetune_regime": regime, "seed": seed, "num_experts": 8}, "run_config.json")

        vals = {s: val_milli(regime, seed, s, shift) for s in r["steps"]}
        best_step = min((s for s in r["steps"] if vals[s] == max(vals.values())))
        last_step = r["steps"][-1]
        val_points, test_points = [], []
        for s in r["steps"]:
            ts = start + 60_000 + s * 1000
            v = vals[s] / 1000
            mlflow.log_metric("val_accuracy", v, step=s, timestamp=ts)
            mlflow.log_metric("train_loss", train_loss_milli(regime, seed, s) / 1000, step=s, timestamp=ts)
            vl = val_loss_milli(regime, seed, s, shift) / 1000
            if nan_at is not None and (regime, seed, s) == nan_at:
                vl = float("nan")
            mlflow.log_metric("val_loss", vl, step=s, timestamp=ts)
            val_points.append((s, v))
            if s in (best_step, last_step):
                t = (vals[s] - 5) / 1000
                mlflow.log_metric("test_accuracy", t, step=s, timestamp=ts + 500)
                test_points.append((s, t))
        mlflow.end_run(status=r["status"])
        # end_run stamps the wall clock; pin end_time so the store is reproducible.
        client.set_terminated(run_id, status=r["status"], end_time=start + 60_000 + last_step * 1000 + 1000)
        if r["delete"]:
            mlflow.delete_run(run_id)

        row = best_of(val_points, test_points)
        row["last_step"] = last_step
        row["test_accuracy_logged_at"] = [s for s, _ in test_points]
        row["test_accuracy_last"] = test_points[-1][1] if test_points else None
        row["run_name"] = r["name"]
        if r["delete"] or r["status"] != "FINISHED":
            excluded.append({"run_name": r["name"], "regime": regime, "seed": seed,
                             "status": r["status"], "lifecycle_stage": "deleted" if r["delete"] else "active",
                             **{k: row[k] for k in ("best_step", "val_accuracy", "test_accuracy")}})
        else:
            by_regime.setdefault(regime, {})[seed] = row
    return {"experiment": EXPERIMENT, "regimes": summarise(by_regime), "excluded_runs": excluded}


def make_mlflow_file():
    root = HERE / "mlflow-file"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    mlruns = root / "mlruns"
    summary = log_store(mlruns.as_uri(), "mlflow-file", [1, 2, 3], 0)
    # Empty folders (the store's .trash/) cannot be kept in git; remove them so
    # the folder on disk is what is committed. MLflow recreates .trash/ on open.
    for d in sorted(mlruns.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return summary


def make_mlflow_sqlite():
    root = HERE / "mlflow-sqlite"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    db = root / "mlflow.db"
    artifacts = root / "artifacts"
    nan_at = ("moe", 2, 100)
    summary = log_store(f"sqlite:///{db}", "mlflow-sqlite", [1, 2], 20,
                        artifact_location=artifacts.as_uri(), nan_at=nan_at)
    summary["nan_metric"] = {"run_name": "moe-seed2", "key": "val_loss", "step": nan_at[2]}
    # A 1 KiB page keeps the ~65 mostly empty MLflow tables (one page each, plus
    # their indexes) from taking ~1 MB; the rows are untouched.
    con = sqlite3.connect(db)
    con.execute("PRAGMA page_size=1024")
    con.execute("VACUUM")
    con.close()
    if artifacts.exists() and not any(p.is_file() for p in artifacts.rglob("*")):
        shutil.rmtree(artifacts)
    return summary


def verify_mlflow(tracking_uri, summary):
    """Read the store back through the MLflow client and check that it yields
    the summary written to expected.json (and that deleted runs are deleted,
    the failed run FAILED, the NaN a NaN)."""
    import mlflow
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    by_regime, excluded = {}, []
    nan_seen = []
    for run in runs:
        p = run.data.params
        regime, seed = p["finetune_regime"], int(p["seed"])
        hist = {k: client.get_metric_history(run.info.run_id, k) for k in ("val_accuracy", "test_accuracy", "val_loss")}
        row = best_of([(m.step, m.value) for m in hist["val_accuracy"]],
                      [(m.step, m.value) for m in hist["test_accuracy"]])
        nan_seen += [(run.info.run_name, m.step) for m in hist["val_loss"] if math.isnan(m.value)]
        if run.info.lifecycle_stage == "deleted" or run.info.status != "FINISHED":
            excluded.append((run.info.run_name, run.info.status, run.info.lifecycle_stage,
                             row["best_step"], row["val_accuracy"], row["test_accuracy"]))
        else:
            by_regime.setdefault(regime, {})[seed] = row
    for regime, seeds in summary["regimes"].items():
        for seed, want in seeds["seeds"].items():
            got = by_regime[regime][int(seed)]
            assert all(got[k] == want[k] for k in ("best_step", "val_accuracy", "test_accuracy")), (regime, seed, got, want)
    assert sum(len(v) for v in by_regime.values()) == sum(r["n"] for r in summary["regimes"].values())
    want_ex = sorted((e["run_name"], e["status"], e["lifecycle_stage"], e["best_step"], e["val_accuracy"], e["test_accuracy"])
                     for e in summary["excluded_runs"])
    assert sorted(excluded) == want_ex, (excluded, want_ex)
    want_nan = [(summary["nan_metric"]["run_name"], summary["nan_metric"]["step"])] if "nan_metric" in summary else []
    assert nan_seen == want_nan, nan_seen
    print(f"verified {tracking_uri}: {len(runs)} runs", flush=True)


# ---------------------------------------------------------------------------


def versions():
    import accelerate
    import mlflow
    import torch
    import transformers
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "mlflow": mlflow.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


def verify_copies():
    """In a fresh process (no cached MLflow stores), read copies of both stores
    as they are committed (no empty folders) and check them against expected.json."""
    import tempfile
    expected = json.loads((HERE / "expected.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "mlflow-file" in expected:
            shutil.copytree(HERE / "mlflow-file" / "mlruns", tmp / "mlruns")
            verify_mlflow((tmp / "mlruns").as_uri(), expected["mlflow-file"])
        if "mlflow-sqlite" in expected:
            shutil.copy(HERE / "mlflow-sqlite" / "mlflow.db", tmp / "mlflow.db")
            verify_mlflow(f"sqlite:///{tmp / 'mlflow.db'}", expected["mlflow-sqlite"])


def main():
    if sys.argv[1:] == ["--verify"]:
        verify_copies()
        return
    which = set(sys.argv[1:]) or {"hf", "file", "sqlite"}
    expected_path = HERE / "expected.json"
    expected = json.loads(expected_path.read_text()) if expected_path.exists() else {}
    ver = versions()

    if "file" in which:
        expected["mlflow-file"] = make_mlflow_file()
    if "sqlite" in which:
        expected["mlflow-sqlite"] = make_mlflow_sqlite()
    if "hf" in which:
        params = make_hf()
        expected["hf-trainer"] = {"regimes": expected_hf(), "trainable_parameters": params}

    expected["rule"] = ("best_step = step with the highest val accuracy (eval_accuracy for hf-trainer), "
                        "earliest on ties; val_accuracy = the value there; test_accuracy = test accuracy "
                        "logged at exactly best_step, else null. Per-regime means are over FINISHED, "
                        "non-deleted runs only; runs left out are listed under excluded_runs.")
    expected["versions"] = ver
    ordered = {k: expected[k] for k in ["rule", "versions", "mlflow-file", "mlflow-sqlite", "hf-trainer"] if k in expected}
    expected_path.write_text(json.dumps(ordered, indent=2, sort_keys=False) + "\n")
    (HERE / "VERSIONS").write_text("".join(f"{k} {v}\n" for k, v in ver.items()))
    print(json.dumps(ver))
    import subprocess
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--verify"], check=True)


if __name__ == "__main__":
    main()
