"""GPU checks (marker ``gpu``): the CUDA paths run for real and agree with the CPU.

Skipped without a CUDA GPU; ``make gpu-check`` (tools/gpu_check.py) runs them on a GPU machine.
Each is written so that it can pass only if the work ran on CUDA: parameters and outputs are
asserted to be on the GPU (a global forward hook records the device and dtype of every module's
output, so linear layers under bf16 autocast must have produced bf16 on CUDA), the process
group's backend must be NCCL and an all-reduce must sum over it, the ONNX session's first
provider must be CUDA's. Results are compared with the CPU on the same random weights, within
the tolerance each test states. A check whose optional package is absent skips, naming it.

The two tests at the end run everywhere: they keep what the GPU checks build valid on CPU.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from gpu_support import (
    DISTRIBUTION,
    NEEDS,
    REPO,
    bench,
    conv_salient_model,
    keypoint_agreement,
    linear_outputs,
    mask_iou,
    model_settings,
    module_outputs,
    native_bf16,
    no_cuda_reason,
    row_cosine,
    superanimal_snapshot,
    synthetic_dataset,
    unavailable,
)

HERE = Path(__file__).parent
NO_CUDA = no_cuda_reason()
CUDA = torch.device("cuda")


def gpu_check(test):
    """Mark a test ``gpu`` and skip it, with the reason, on a machine without a CUDA GPU."""
    return pytest.mark.gpu(pytest.mark.skipif(NO_CUDA is not None, reason=str(NO_CUDA))(test))


def require(check: str) -> None:
    """Skip the running test, naming the package, when ``check`` cannot run here."""
    reason = unavailable(check)
    if reason:
        pytest.skip(reason)


def precision() -> str:
    """What ``auto`` resolves to on this GPU."""
    return "bf16" if native_bf16() else "fp32"


def checkout_env() -> dict[str, str]:
    """The environment for subprocesses: this checkout importable even where it is not
    installed (`python -m reid.cli`, the torchrun worker)."""
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def run(command: list, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=checkout_env(),
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command[:4]))} ... exited {result.returncode}:\n"
            f"{result.stderr[-3000:]}",
            pytrace=False,
        )
    return result


def reid(*args) -> list:
    return [sys.executable, "-m", "reid.cli", *args]


def ran_on(records: list, module: str | None = None) -> set[str]:
    """The device types of the recorded outputs (of ``module`` modules only, if named)."""
    return {d for name, _, d in records if module is None or name == module}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    require("cli")
    return synthetic_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture()
def exact_cuda():
    """fp32 convolutions and matrix products on the GPU without TF32 (PyTorch's default for
    cuDNN convolutions, which changes results by ~1e-3), so that CUDA and CPU differ by rounding
    only and near-ties (heatmap maxima, detections) do not swap."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# ---------------------------------------------------------------------------------------------
# Student: bf16 training, reid train / extract / evaluate, torchrun over NCCL
# ---------------------------------------------------------------------------------------------


@gpu_check
@pytest.mark.parametrize("arch", ["paw_vit_tiny_patch16_256", "paw_vit_efflite0"])
def test_bf16_training_step_on_cuda(arch, tmp_path):
    """An epoch of the real trainer in bf16 autocast on the GPU (PAW-ViT, and the hybrid on the
    EfficientNet-Lite0 stem): every linear layer outputs bf16 on CUDA; parameters, gradients and
    each loss term stay fp32 on CUDA and finite; the steps change the weights. Descriptors in
    bf16 are within cosine 0.99 of fp32 ones on the GPU and on the CPU (same weights); fp32 on
    the GPU is within 0.999 of the CPU."""
    require("training")
    if not native_bf16():
        pytest.skip(f"{torch.cuda.get_device_name()} has no native bf16: training runs in fp32")
    from tiny_data import make_tiny_dataset

    from reid.config import RunSettings
    from reid.engine.extract import extract_descriptors
    from reid.engine.train import Trainer, TrainInputs

    tiny = make_tiny_dataset(tmp_path, size=64)
    settings = RunSettings.from_dict(model_settings(arch, 64, epochs=1, precision="bf16"))
    inputs = TrainInputs(tiny.catalogue, tiny.root, tiny.masks, tmp_path / "run")
    trainer = Trainer(settings, inputs, device="cuda", workers=0, progress=False)
    assert trainer.device.type == "cuda" and trainer.precision == "bf16"
    losses: list[dict[str, torch.Tensor]] = []
    trainer.loss.register_forward_hook(
        lambda module, args, out: losses.append({k: v.detach() for k, v in out.items()})
    )
    params = dict(trainer.model_core.named_parameters())
    before = {name: p.detach().clone() for name, p in params.items()}

    with module_outputs() as records:
        row = trainer.train_epoch(0, lr=1e-3)

    assert linear_outputs(records) == {(torch.bfloat16, "cuda")}
    assert ran_on(records) == {"cuda"}
    assert len(losses) == row["steps"] > 0
    for step in losses:
        for name, value in step.items():
            assert (value.dtype, value.device.type) == (torch.float32, "cuda"), name
            assert torch.isfinite(value).all(), name
    assert {(p.dtype, p.device.type) for p in params.values()} == {(torch.float32, "cuda")}
    grads = [p.grad for p in params.values() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(not torch.equal(p.detach(), before[name]) for name, p in params.items())

    paths = [tiny.root / p for p in tiny.table["path"]]
    model = trainer.model_core
    with module_outputs() as records:
        bf16 = extract_descriptors(model, paths, 64, CUDA, precision="bf16")
    assert linear_outputs(records) == {(torch.bfloat16, "cuda")}
    fp32 = extract_descriptors(model, paths, 64, CUDA, precision="fp32")
    cpu_model = copy.deepcopy(model).cpu()
    cpu = extract_descriptors(cpu_model, paths, 64, torch.device("cpu"), precision="fp32")
    assert bf16.dtype == fp32.dtype == np.float32 and np.isfinite(bf16).all()
    assert row_cosine(bf16, fp32).min() > 0.99
    assert row_cosine(bf16, cpu).min() > 0.99
    assert row_cosine(fp32, cpu).min() > 0.999


def history_rows(out: Path) -> dict[str, dict[str, str]]:
    """history.csv as written (strings, so floats compare exactly), by epoch."""
    with open(out / "history.csv", newline="") as handle:
        return {row["epoch"]: row for row in csv.DictReader(handle)}


def run_until_killed(command: list, state: Path, epoch: int, log: Path) -> dict:
    """Start ``command``, SIGKILL it once its checkpoint state says ``epoch`` is done; return
    the state it left."""
    with open(log, "w") as stderr:
        process = subprocess.Popen([str(c) for c in command], stderr=stderr, env=checkout_env())
        deadline = time.monotonic() + 300
        while True:
            done = json.loads(state.read_text())["epoch"] if state.is_file() else -1
            if done >= epoch:
                process.kill()
                break
            if process.poll() is not None:
                ended = f"training ended (exit {process.returncode}) before the kill"
                pytest.fail(f"{ended}:\n{log.read_text()[-3000:]}", pytrace=False)
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"no checkpoint of epoch {epoch + 1} within 300 s", pytrace=False)
            time.sleep(0.02)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the training process was not killed"
    return json.loads(state.read_text())


@gpu_check
def test_reid_train_on_cuda_resumes_after_a_kill_then_extracts_and_evaluates(synthetic, tmp_path):
    """`reid train --device cuda` on the synthetic species (two evaluations on the GPU on the
    way), SIGKILLed after its second epoch's checkpoint and rerun with --resume: the rerun says
    it resumes, keeps the killed run's epochs exactly as they were (their timings included, which a
    rerun from scratch would change), ends with the losses of an uninterrupted run (within 2 %:
    CUDA kernels are not bit-reproducible) and records the GPU and precision in model.json.
    `reid extract --device cuda` runs every module on the GPU (linear layers in bf16 where the
    GPU has it) and its descriptors are within cosine 0.99 of the CPU's; `reid evaluate` scores
    both within 0.05 mAP."""
    from reid.cli import main as reid_main
    from reid.engine.extract import load_features

    epochs = 12
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps(model_settings("paw_vit_tiny_patch16_256", 64, epochs=epochs, eval_every=6))
    )
    data = ["--catalogue", synthetic.catalogue, "--root", synthetic.root]
    train = ["train", "--settings", settings, *data, "--masks", synthetic.masks]
    train += ["--device", "cuda", "--workers", "2", "--no-progress"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    run(reid(*train, "--out", full))
    state = killed / "checkpoint" / "last.json"
    at_kill = run_until_killed(reid(*train, "--out", killed), state, 1, tmp_path / "killed.log")
    assert at_kill["epoch"] + 1 < epochs, "the run finished before the kill: raise `epochs`"

    resumed = run(reid(*train, "--out", killed, "--resume"))

    assert f"resuming after epoch {at_kill['epoch'] + 1}" in resumed.stderr
    rows = history_rows(killed)
    assert list(rows) == [str(e) for e in range(epochs + 1)]
    for kept in at_kill["history"]:
        written = rows[str(kept["epoch"])]
        assert {k: written[k] for k in kept} == {k: str(v) for k, v in kept.items()}
    reference = history_rows(full)
    for epoch in range(1, epochs + 1):
        np.testing.assert_allclose(
            float(rows[str(epoch)]["loss_total"]),
            float(reference[str(epoch)]["loss_total"]),
            rtol=0.02,
            err_msg=f"epoch {epoch}",
        )
    for epoch in ("0", "6", "12"):
        assert 0 <= float(rows[epoch]["eval_mAP"]) <= 1
    config = json.loads((killed / "model.json").read_text())
    assert config["device"] == "cuda:0" and config["world_size"] == 1
    assert config["precision"] == precision()

    extract = ["extract", "--model-dir", killed, *data, "--workers", "0"]
    features = {"cuda": tmp_path / "cuda.npz", "cpu": tmp_path / "cpu.npz"}
    with module_outputs() as records:
        argv = [*extract, "--device", "cuda", "--precision", precision(), "--out", features["cuda"]]
        assert reid_main([str(a) for a in argv]) == 0
    assert records and ran_on(records) == {"cuda"}
    dtype = torch.bfloat16 if precision() == "bf16" else torch.float32
    assert linear_outputs(records) == {(dtype, "cuda")}
    argv = [*extract, "--device", "cpu", "--precision", "fp32", "--out", features["cpu"]]
    assert reid_main([str(a) for a in argv]) == 0
    (ids_cuda, on_cuda), (ids_cpu, on_cpu) = (load_features(features[d]) for d in ("cuda", "cpu"))
    assert ids_cuda == ids_cpu and row_cosine(on_cuda, on_cpu).min() > 0.99

    metrics = {}
    for device, path in features.items():
        out = tmp_path / f"metrics-{device}.json"
        argv = ["evaluate", "--features", path, "--catalogue", synthetic.catalogue]
        argv += ["--protocol", "all-vs-all", "--model-dir", killed, "--out", out]
        assert reid_main([str(a) for a in argv]) == 0
        metrics[device] = json.loads(out.read_text())
    for key in ("mAP", "rank1", "rank5", "mINP"):
        assert 0 <= metrics["cuda"][key] <= 1, key
    assert abs(metrics["cuda"]["mAP"] - metrics["cpu"]["mAP"]) <= 0.05


@gpu_check
@pytest.mark.parametrize("processes", [1, 2])
def test_torchrun_trains_over_nccl(processes, synthetic, tmp_path):
    """`torchrun` with one process per GPU runs the trainer on CUDA and NCCL carries the
    collectives: the group's backend is NCCL and an all-reduce of rank + 1 on each GPU sums over
    all processes. With 2 processes the trainer itself wraps the model in DDP and every rank ends
    with the same weights; with 1 process (reid trains without DDP then) a DDP-wrapped copy of
    the trained model reduces gradients over NCCL to those of plain backward."""
    if torch.cuda.device_count() < processes:
        pytest.skip(f"needs {processes} GPUs; this machine has {torch.cuda.device_count()}")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(model_settings("paw_vit_tiny_patch16_256", 64, epochs=2)))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", processes, HERE / "gpu_ddp_worker.py", settings]
    run([*command, synthetic.catalogue, synthetic.root, synthetic.masks, out])

    records = [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]
    for rank, record in enumerate(records):
        assert record["backend"] == "nccl" and record["world_size"] == processes
        assert record["all_reduce"] == processes * (processes + 1) / 2
        assert record["all_reduce_device"] == f"cuda:{rank}"
        assert record["parameter_devices"] == [f"cuda:{rank}"]
        assert record["trained_with_ddp"] == (processes > 1)
    assert len({r["weights"] for r in records}) == 1
    config = json.loads((out / "model.json").read_text())
    assert config["world_size"] == processes and config["device"] == "cuda:0"
    if processes == 1:
        assert records[0]["ddp_gradients_match"]


# ---------------------------------------------------------------------------------------------
# Teacher members on CUDA against the CPU
# ---------------------------------------------------------------------------------------------


def member_outputs(make, predict, devices=("cpu", "cuda")) -> dict:
    """``predict(make(device))`` per device; asserts every convolution ran on that device."""
    outputs = {}
    for device in devices:
        member = make(device)
        with module_outputs() as records:
            outputs[device] = predict(member)
        assert ran_on(records, "Conv2d") == {device}
    return outputs


@gpu_check
def test_superanimal_teacher_maps_on_cuda_match_cpu(tmp_path, exact_cuda):
    """The teacher with the superanimal pose member (SuperAnimal-Quadruped HRNet-w32 on the
    DeepLabCut reference test's weights) and annotated silhouettes: the network sits and runs on
    the GPU, at least 95 % of the keypoints land on the same pixel as on the CPU and the part
    maps agree on at least 95 % of their 64×64 cells."""
    require("superanimal")
    from test_pseudomasks_superanimal import QUADRUPED, reference_images

    from pseudomasks.members.base import Sample
    from pseudomasks.settings import parse_settings
    from pseudomasks.teacher import ImageResult, Teacher

    snapshot = superanimal_snapshot(tmp_path / "snapshot.pt")
    samples = []
    for name, image in reference_images().items():
        h, w = image.shape[:2]
        silhouette = np.zeros((h, w), np.uint8)
        silhouette[h // 6 : 5 * h // 6, w // 8 : 7 * w // 8] = 255
        cv2.imwrite(str(tmp_path / f"{name}.png"), silhouette)
        samples.append(Sample(name, image, {"silhouette": f"{name}.png"}, tmp_path))
    settings = parse_settings(
        {
            "teacher": {
                "pose": [{"member": "superanimal", "weights": "sa"}],
                "segmentation": [{"member": "annotations"}],
            },
            "species": QUADRUPED,
            "weights": {"sa": {"path": str(snapshot), "sha256": "", "url": ""}},
        }
    )

    def both(teacher: Teacher) -> tuple:
        assert next(teacher.pose[0].network.parameters()).device.type == teacher.pose[0].device
        return teacher.pose[0].predict(samples), teacher.process(samples)

    out = member_outputs(lambda device: Teacher(settings, device=device), both)
    (cpu_keypoints, cpu_maps), (cuda_keypoints, cuda_maps) = out["cpu"], out["cuda"]
    assert keypoint_agreement(cpu_keypoints, cuda_keypoints, atol_px=0.5) >= 0.95
    for a, b in zip(cpu_maps, cuda_maps, strict=True):
        assert isinstance(a, ImageResult) and isinstance(b, ImageResult)
        assert (a.part_map.labels == b.part_map.labels).mean() >= 0.95, a.image_id
        assert len(np.unique(b.part_map.labels)) > 1  # the maps compared are not empty


@gpu_check
def test_salient_member_runs_on_the_cuda_execution_provider(tmp_path):
    """The salient foreground member on onnxruntime's CUDAExecutionProvider (onnxruntime-gpu):
    the session's first provider is CUDA's, and for a three-convolution model of the real
    contract its masks equal the CPU provider's on at least 99 % of the pixels."""
    require("salient")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(
            f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: "
            f"{', '.join(ort.get_available_providers())}): install onnxruntime-gpu"
        )
    from test_pseudomasks_salient import animal, member, sample

    path = conv_salient_model(tmp_path / "salient.onnx")
    animals = [animal((240, 320), seed) for seed in range(4)]
    batch = [sample(image, f"img{i}") for i, (image, _) in enumerate(animals)]
    masks = {}
    for device, provider in (("cpu", "CPUExecutionProvider"), ("cuda", "CUDAExecutionProvider")):
        salient = member(path, device, model="rmbg2", keep="all", size=512)
        assert salient.session.get_providers()[0] == provider
        masks[device] = salient.predict(batch, [None] * len(batch))
    for a, b, (_, truth) in zip(masks["cpu"], masks["cuda"], animals, strict=True):
        assert (a == b).mean() >= 0.99
        assert mask_iou(b, truth) > 0.5  # the masks compared hold the animal


@gpu_check
def test_ultralytics_members_on_cuda_match_cpu(tmp_path, exact_cuda):
    """yolo_detect, yolo_seg and ultralytics_pose (the neural-member tests' random yolov8n,
    yolov8n-seg and yolo11n-pose) run their convolutions on the GPU and agree with the CPU:
    boxes and masks with IoU ≥ 0.9, at least 90 % of keypoints within 1 px."""
    require("ultralytics")
    from random_yolo import save_random_yolo_models
    from test_pseudomasks_neural import member, samples

    from pseudomasks.members.base import WeightsSpec
    from pseudomasks.members.ultralytics_pose import UltralyticsPose
    from pseudomasks.members.yolo_detect import YoloDetect
    from pseudomasks.members.yolo_seg import YoloSeg

    paths = save_random_yolo_models(tmp_path)
    models = {name: WeightsSpec(str(path), "", "") for name, path in paths.items()}
    batch = samples()
    options = {"confidence": 0.0, "imgsz": 320}

    def make(cls, weights):
        return lambda device: member(cls, models, device, weights=weights, **options)

    boxes = member_outputs(make(YoloDetect, "detect"), lambda m: m.predict(batch))
    masks = member_outputs(make(YoloSeg, "seg"), lambda m: m.predict(batch, [None] * len(batch)))
    keypoints = member_outputs(make(UltralyticsPose, "pose"), lambda m: m.predict(batch))
    for a, b in zip(boxes["cpu"], boxes["cuda"], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert mask_iou(box_mask(a, 128, 128), box_mask(b, 128, 128)) >= 0.9
    for a, b in zip(masks["cpu"], masks["cuda"], strict=True):
        assert mask_iou(a, b) >= 0.9
    assert keypoint_agreement(keypoints["cpu"], keypoints["cuda"], atol_px=1.0) >= 0.9


def box_mask(box, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[box.y0 : box.y1, box.x0 : box.x1] = True
    return mask


@gpu_check
def test_sam_member_on_cuda_matches_cpu(tmp_path, exact_cuda, monkeypatch):
    """The sam member (the neural-member tests' tiny SAM, the real modules) runs on the GPU and
    its masks for the same prompts agree with the CPU's (IoU ≥ 0.95)."""
    require("sam")
    from test_pseudomasks_neural import member, sam_registry, samples, tiny_sam_builder

    from pseudomasks.members.base import WeightsSpec
    from pseudomasks.members.sam import SamSegmentation

    monkeypatch.setitem(sam_registry(), "tiny", tiny_sam_builder(32))
    torch.manual_seed(0)
    torch.save(tiny_sam_builder(32)().state_dict(), tmp_path / "sam.pth")
    models = {"sam": WeightsSpec(str(tmp_path / "sam.pth"), "", "")}
    batch = samples()
    prompts = [np.array([[20, 30, 0.9], [90, 70, 0.8], [50, 50, 0.0]]), None]
    masks = member_outputs(
        lambda device: member(SamSegmentation, models, device, model_type="tiny", weights="sam"),
        lambda m: m.predict(batch, prompts),
    )
    for a, b in zip(masks["cpu"], masks["cuda"], strict=True):
        assert mask_iou(a, b) >= 0.95


@gpu_check
def test_mmpose_member_on_cuda_matches_cpu(exact_cuda, tmp_path):
    """The mmpose member (AP-10K HRNet-w32 config shipped with mmpose, random weights) runs on
    the GPU and at least 90 % of its keypoints are within 1 px of the CPU's."""
    require("mmpose")
    from pseudomasks.members.base import MemberContext
    from pseudomasks.members.registry import member_class

    members = bench("bench_members")
    name, config, _ = members.MMPOSE_MODELS[0]
    weights = {name: members.random_mmpose_weights(tmp_path, name, config)}
    samples = members.load_samples(None, 4)
    cls = member_class("pose", "mmpose", "gpu-check")
    options = cls.resolve_options({"config": config, "weights": name}, "mmpose")

    def make(device: str):
        return cls(options, MemberContext(members.SPECIES, 0.3, device, weights))

    keypoints = member_outputs(make, lambda m: m.predict(samples))
    assert keypoint_agreement(keypoints["cpu"], keypoints["cuda"], atol_px=1.0) >= 0.9


# ---------------------------------------------------------------------------------------------
# The workflow
# ---------------------------------------------------------------------------------------------


@gpu_check
def test_demo_dag_with_the_local_gpu_profile(tmp_path):
    """The demo DAG (small: 6 identities, 2 epochs at 32 px, every figure) through Snakemake
    with `--profile workflow/profiles/local-gpu`: every job succeeds, training ran on the GPU
    in the precision the GPU supports (model.json), and the metrics are fractions."""
    require("dag")
    from test_workflow import small_config, snakemake, succeeded

    small_config(tmp_path)
    profile = REPO / "workflow" / "profiles" / "local-gpu"
    targets = ["results/demo/metrics.json", "results/demo/figures/README.md"]
    assert succeeded(snakemake(tmp_path, "--profile", str(profile), *targets), tmp_path)
    config = json.loads((tmp_path / "results/demo/paw_vit_tiny/model.json").read_text())
    assert config["device"] == "cuda:0" and config["precision"] == precision()
    metrics = json.loads((tmp_path / "results/demo/metrics.json").read_text())
    assert all(0 <= metrics[k] <= 1 for k in ("mAP", "rank1", "rank5", "rank10", "mINP"))


# ---------------------------------------------------------------------------------------------
# On every machine: what the GPU checks build is valid
# ---------------------------------------------------------------------------------------------


def test_the_salient_check_model_finds_the_animal_on_cpu(tmp_path):
    """The ONNX model the salient GPU check compares is valid, loads in the member and gives a
    mask that holds the animal (so the GPU check compares something)."""
    if reason := unavailable("salient"):
        pytest.skip(reason)
    from test_pseudomasks_salient import animal, member, sample

    image, truth = animal((240, 320), 0)
    salient = member(
        conv_salient_model(tmp_path / "m.onnx"), "cpu", model="rmbg2", keep="all", size=256
    )
    (mask,) = salient.predict([sample(image)], [None])
    assert mask_iou(mask, truth) > 0.5


def test_a_missing_package_is_named_and_a_broken_module_raises(monkeypatch):
    monkeypatch.setitem(NEEDS, "example", ("json", "no_such_package_for_gpu_check"))
    assert unavailable("example") == "package no_such_package_for_gpu_check is not installed"
    monkeypatch.setitem(NEEDS, "example", ("reid.no_such_module",))
    with pytest.raises(ModuleNotFoundError):
        unavailable("example")


def test_the_dag_check_needs_every_weights_package_of_the_demo_models(tmp_path):
    """The demo DAG check skips, naming the package, rather than failing in a job, where a
    weights package of the small demo's models (its model and those it is compared with) is
    missing: each such package is among the modules the check needs."""
    from test_workflow import small_config

    small_config(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    demo = config["datasets"]["demo"]
    models = [config["models"][name] for name in [demo["model"], *demo.get("compare", [])]]
    named = {
        config["weights"][model["pretrained"]]["package"]
        for model in models
        if "package" in config["weights"].get(model.get("pretrained"), {})
    }
    assert named, "the demo names no weights package: this test checks nothing"
    assert named <= {DISTRIBUTION.get(module, module) for module in NEEDS["dag"]}
