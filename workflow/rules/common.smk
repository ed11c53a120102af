# Config validation and the small functions rules use to resolve a dataset's settings.
# Logic that matters lives in the reid / pseudomasks packages; this file only wires names to paths.

import copy
import json
import os
import re
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from snakemake.logging import DefaultFormatter, logger
from snakemake.utils import validate

from pseudomasks.settings import teacher_id as compute_teacher_id
from reid.atomic import atomic_write_text
from reid.config import without_later_defaults
from reid.models.baselines import CELL_POOLED_ARCHS
from reid.models.frozen import TRAINED_ONLY


def config_error(message):
    """Stop with one line naming the config key and the fix (no traceback)."""
    sys.exit(f"config error: {message}")


def _validated(data, schema, where, set_default=True):
    try:
        validate(data, schema, set_default=set_default)
    except WorkflowError as error:
        # snakemake formats the ValidationError into its message; the original is the context
        cause = error.__context__
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        cause = jsonschema.exceptions.best_match([cause]) or cause
        path = " → ".join([where, *[str(p) for p in cause.absolute_path]])
        if cause.validator == "additionalProperties":
            allowed = sorted(cause.schema.get("properties", {}))
            unknown = sorted(set(cause.instance) - set(allowed))
            config_error(
                f"{path}: unknown key {', '.join(map(repr, unknown))} (allowed: {', '.join(allowed)})"
            )
        config_error(f"{path}: {cause.message}")


def show_failed_logs():
    """`--show-failed-logs` in every invocation, not only in the profiles: a failed job's log,
    which ends in the one line saying what went wrong, is printed under its error. Snakemake has
    no workflow setting for it, and finds a default profile only in profiles/default beside the
    Snakefile, outside this project's top level; so it is switched on in the output settings and
    the formatters Snakemake set up before parsing the Snakefile (snakemake 9)."""
    workflow.logger_manager.settings.show_failed_logs = True
    for handler in logger.handlers:
        if isinstance(handler.formatter, DefaultFormatter):
            handler.formatter.show_failed_logs = True


def put_project_commands_on_path():
    """Jobs call `reid` and `pseudomasks` (and torchrun): take them from the environment
    of the Python running Snakemake, which imports the project here, so a shell without the
    venv activated runs the same install (under --sdm conda, the job's env is first)."""
    scripts = sysconfig.get_path("scripts")
    os.environ.update(PATH=os.pathsep.join([scripts, os.environ.get("PATH", "")]))
    if not workflow.deployment_settings.deployment_method and not shutil.which("reid"):
        sys.exit(
            f"error: the command 'reid' is neither on PATH nor in {scripts}: activate the "
            "environment the project is installed in (source .venv/bin/activate)"
        )


show_failed_logs()
put_project_commands_on_path()
_validated(config, "../schemas/config.schema.yaml", "config.yaml")
for _kind in ("datasets", "models"):
    for _name, _entry in config[_kind].items():
        _validated(
            copy.deepcopy(_entry.get("train", {})),
            "../schemas/train.schema.yaml",
            f"config.yaml → {_kind} → {_name} → train",
            set_default=False,
        )
for _name, _dataset in config["datasets"].items():
    for _section, _key in (
        ("species", "species"),
        ("teachers", "teacher"),
        ("models", "model"),
        ("models", "baseline"),
    ):
        if _key in _dataset and _dataset[_key] not in config[_section]:
            config_error(
                f"config.yaml → datasets → {_name} → {_key}: '{_dataset[_key]}' is not defined under {_section} "
                f"(defined: {', '.join(sorted(config[_section]))})"
            )
    for _model in _dataset.get("compare", []):
        if _model not in config["models"]:
            config_error(
                f"config.yaml → datasets → {_name} → compare: '{_model}' is not defined under models "
                f"(defined: {', '.join(sorted(config['models']))})"
            )
for _name, _model in config["models"].items():
    if "pretrained" in _model and _model["pretrained"] not in config["weights"]:
        config_error(
            f"config.yaml → models → {_name} → pretrained: '{_model['pretrained']}' is not defined under weights"
        )
    if _model.get("frozen") and "pretrained" not in _model:
        config_error(
            f"config.yaml → models → {_name}: a frozen model needs 'pretrained', the entry of "
            "weights it uses as it is; add one (e.g. pretrained: efficientnet_lite0.in1k) or remove frozen"
        )
    if _model.get("frozen") and "train" in _model:
        config_error(
            f"config.yaml → models → {_name} → train: a frozen model is not trained; remove train or frozen"
        )
    if (
        _model.get("frozen")
        and _model.get("descriptor", "before_bnneck") != "before_bnneck"
    ):
        config_error(
            f"config.yaml → models → {_name} → descriptor: a frozen model has no BNNeck; remove "
            "descriptor or frozen"
        )
    if _model.get("frozen") and _model["arch"].startswith(TRAINED_ONLY):
        config_error(
            f"config.yaml → models → {_name} → arch: {_model['arch']} cannot be frozen (only training "
            "gives its part tokens or transformer weights); freeze a plain backbone or remove frozen"
        )
    if "output_stride" in _model and _model["arch"].startswith(TRAINED_ONLY):
        config_error(
            f"config.yaml → models → {_name} → output_stride: {_model['arch']} takes its stem's "
            "stride from the arch (e.g. paw_vit_efflite0_s32); output_stride is for convolutional "
            "backbones: remove it"
        )
    if "aggregation" in _model and not _model["arch"].startswith("paw_vit"):
        config_error(
            f"config.yaml → models → {_name} → aggregation: {_model['arch']} has no part tokens "
            "to aggregate; aggregation is for PAW-ViT models (paw_vit_*): remove it"
        )

DATASETS = sorted(config["datasets"])
MODELS = sorted(config["models"])
FROZEN = sorted(name for name, model in config["models"].items() if model.get("frozen"))
"""Models used as their pretrained weights are: made by rule `freeze`, not `train`."""
TRAINED = sorted(set(MODELS) - set(FROZEN))


def one_of(names):
    """Wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


def dataset_root(dataset):
    entry = config["datasets"][dataset]
    if "root" in entry:
        return entry["root"]
    return (
        f"results/{dataset}/data"
        if entry["adapter"] == "synthetic"
        else f"resources/{dataset}"
    )


def raw_dataset_input(wildcards):
    """The dataset's files as an input (ancient: re-copying a dataset reruns nothing).
    Every target needs a catalogue, so every DAG calls this: it runs preflight_check."""
    preflight_check()
    entry = config["datasets"][wildcards.dataset]
    if entry["adapter"] == "synthetic":
        return []
    return ancient(dataset_root(wildcards.dataset))


def teacher_settings(dataset):
    """The resolved document `pseudomasks run` receives; its hash names the cache directory."""
    entry = config["datasets"][dataset]
    teacher = dict(config["teachers"][entry["teacher"]], name=entry["teacher"])
    species = dict(config["species"][entry["species"]], name=entry["species"])
    names = {
        m["weights"]
        for m in [*teacher["pose"], *teacher["segmentation"]]
        if "weights" in m
    }
    if teacher["detector"] and "weights" in teacher["detector"]:
        names.add(teacher["detector"]["weights"])
    weights = {name: config["weights"][name] for name in sorted(names)}
    return {"teacher": teacher, "species": species, "weights": weights}


TEACHER_IDS = {
    dataset: compute_teacher_id(teacher_settings(dataset)) for dataset in DATASETS
}


def masks_dir(dataset):
    return f"results/{dataset}/masks/{TEACHER_IDS[dataset]}"


def teacher_settings_file(dataset):
    """The teacher's resolved settings as the file its shard jobs read (a failed job's command
    stays one line), rewritten when its content changes. Not a rule's output: a change that
    keeps the teacher id (a moved weights file, a renamed teacher) must recompute no shard.
    """
    path = Path(masks_dir(dataset)) / "settings.json"
    text = json.dumps(teacher_settings(dataset), sort_keys=True, indent=1) + "\n"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return str(path)


def crops(dataset):
    """With a cropping teacher (crop_margin), every model of the dataset sees photos cut to its
    animal boxes: the index that closes that teacher's cache (a job's input), else nothing.
    """
    teacher = config["teachers"][config["datasets"][dataset]["teacher"]]
    return (
        [f"{masks_dir(dataset)}/index.json"]
        if teacher.get("crop_margin") is not None
        else []
    )


def crops_option(dataset):
    return f"--crops {shlex.quote(masks_dir(dataset))}" if crops(dataset) else ""


def mask_shards(wildcards):
    shards = config["datasets"][wildcards.dataset]["mask_shards"]
    return [
        f"{masks_dir(wildcards.dataset)}/shard-{i:04d}-of-{shards:04d}.npz"
        for i in range(shards)
    ]


def _merged(base, override):
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def model_settings(model):
    """A model's entry as the `reid` commands take it: its `pretrained` weights entry itself (a
    path, or a package's file), its train overrides left to run_settings."""
    spec = {k: v for k, v in config["models"][model].items() if k != "train"}
    if "pretrained" in spec:
        spec["pretrained"] = config["weights"][spec["pretrained"]]
    return spec


def run_settings(dataset, model):
    """Resolved `reid train` settings: train defaults ← dataset overrides ← model overrides
    (less the settings added later at the value that computes what came before them)."""
    entry = config["datasets"][dataset]
    spec = model_settings(model)
    train = _merged(
        _merged(config["train"], entry.get("train")),
        config["models"][model].get("train"),
    )
    return {
        "model": spec,
        "train": without_later_defaults(train),
        "protocol": entry["protocol"],
        "flip_test": entry["flip_test"],
    }


def write_settings_file(path, text, log):
    """A job's settings file, written atomically (a half-written one is never read)."""
    atomic_write_text(Path(path), f"{text}\n")
    Path(log).write_text(f"wrote {path}\n")


def train_launcher(gpus):
    """`reid` for one GPU (or CPU); torchrun DDP with one process per GPU when a job has several
    (`--set-resources train:gpu=4`): a multi-GPU node needs no hand-written command."""
    if gpus <= 1:
        return "reid"
    return f"torchrun --standalone --nproc-per-node {gpus} -m reid.cli"


def part_aware(model):
    return config["models"][model]["arch"].startswith("paw_vit")


def cell_pooled(model):
    """A trained convolutional baseline, whose similarity splits over its feature map's cells."""
    return model not in FROZEN and config["models"][model]["arch"].startswith(
        CELL_POOLED_ARCHS
    )


def compared_models(dataset):
    """The models of results/{dataset}/comparison.md: default, baseline, then `compare`."""
    entry = config["datasets"][dataset]
    names = [entry["model"], entry.get("baseline"), *entry.get("compare", [])]
    return list(dict.fromkeys(name for name in names if name))


def dataset_figures(wildcards):
    """Every figure of a dataset: teacher maps, and per model (default, baseline) its retrieval,
    (trained models) curves, (part-aware models) attention and (trained convolutional
    baselines) similarity maps; the retrieval comparison when the dataset compares several
    models (a baseline or a `compare` list)."""
    dataset = wildcards.dataset
    entry = config["datasets"][dataset]
    models = [entry["model"]] + ([entry["baseline"]] if "baseline" in entry else [])
    figures = [f"results/{dataset}/figures/part_maps.png"]
    for model in models:
        kinds = ["retrieval"] if model in FROZEN else ["curves", "retrieval"]
        kinds += ["attention"] if part_aware(model) else []
        kinds += ["similarity"] if cell_pooled(model) else []
        figures += [f"results/{dataset}/{model}/figures/{kind}.png" for kind in kinds]
    if len(compared_models(dataset)) > 1:
        figures.append(f"results/{dataset}/figures/retrieval_comparison.png")
    return figures
