# Before any job runs: every file and folder the requested targets need that no rule makes
# (dataset roots and the files their adapters read, weights of the models to train or freeze and
# of the teacher members to run). All missing ones are listed in one message, each with its config key
# and how to get it, instead of one per failed job, hours into a run.
#
# Snakemake parses the Snakefile before it hands over the targets, so the check runs while it
# builds the DAG (which comes before any job, in a dry run too): from the input function of
# `catalogue`, the rule every target under results/{dataset}/ depends on, on its first call.

from snakemake.io import apply_wildcards

from reid.datasets import expected_paths
from reid.errors import UserError
from reid.weights import locate_weights

TEACHER = "teacher"
"""Marks a dataset whose part maps a target needs (the other marks are model names)."""

_preflight_done = False


def preflight_check():
    """Stop with every missing input of the requested targets, once per Snakemake process."""
    global _preflight_done
    if _preflight_done:
        return
    _preflight_done = True
    needs = {}
    for target in requested_targets():
        add_target_needs(target, needs)
    problems, weights_users = [], {}
    for dataset in sorted(needs):
        problems += missing_data(dataset)
        for name, user in weights_needed(dataset, needs[dataset]):
            weights_users.setdefault(name, []).append(user)
    for name, users in weights_users.items():
        problems += missing_weights(name, config["weights"][name], "; ".join(users))
    if problems:
        config_error(
            f"{len(problems)} input(s) the requested targets need are missing; nothing was run:\n  "
            + "\n  ".join(problems)
        )


def requested_targets():
    """The files Snakemake was asked for: target files, the inputs of target rules (`all`, the
    default), the outputs of target jobs (`--target-jobs`, how cluster jobs run)."""
    targets = [str(path) for path in workflow.dag.targetfiles]
    for target in workflow.dag.targetrules:
        targets += [str(path) for path in target.input]
    for rulename, wildcards in workflow.dag_settings.target_jobs:
        targets += [
            apply_wildcards(str(path), wildcards)
            for path in workflow.get_rule(rulename).output
        ]
    return targets


def add_target_needs(target, needs):
    """Record in `needs` (dataset → marks) what producing `target` takes: the catalogue only
    the dataset; a model's files that model, and its part maps unless it is frozen (no
    training, so no teacher); the comparison table its models; anything else the part maps.
    """
    parts = Path(target).parts
    if len(parts) < 3 or parts[0] != "results" or parts[1] not in config["datasets"]:
        return
    dataset, rest = parts[1], parts[2:]
    entry = config["datasets"][dataset]
    marks = needs.setdefault(dataset, set())
    if rest == ("catalogue.csv",):
        return
    if rest[0] in config["models"]:
        models = {rest[0]}
    elif rest == ("metrics.json",):
        models = {entry["model"]}
    elif rest == ("comparison.md",):
        models = set(compared_models(dataset))
    else:
        marks.add(TEACHER)
        if rest[0] == "figures" and rest[-1] != "part_maps.png":
            marks.update(
                name for name in (entry["model"], entry.get("baseline")) if name
            )
        return
    marks.update(models)
    if models - set(FROZEN):
        marks.add(TEACHER)


def missing_data(dataset):
    """One line per missing file or folder of the dataset (only the root when it is missing)."""
    entry = config["datasets"][dataset]
    key = f"config.yaml → datasets → {dataset}"
    problems = []
    for expected in expected_paths(
        entry["adapter"], dataset_root(dataset), entry["options"]
    ):
        kind = "folder" if expected.folder else "file"
        if expected.path.is_dir() if expected.folder else expected.path.is_file():
            continue
        if expected.option is None:
            return [
                f"{key} → root: dataset root {expected.path} is not a {kind}; put the "
                "dataset there (README, 'Running a dataset') or correct root"
            ]
        problems.append(
            f"{key} → options → {expected.option}: {expected.what} {expected.path} is not "
            f"a {kind}; put it there or correct option {expected.option}"
        )
    return problems


def weights_needed(dataset, marks):
    """(weights entry, who uses it) for the dataset's teacher and models among the marks.
    Skipped where their product already exists: the teacher's cached maps (the cache is named by
    a hash of its settings), a trained model (a retrain forced later reports them in its log).
    """
    entry = config["datasets"][dataset]
    if TEACHER in marks and not Path(masks_dir(dataset), "index.json").is_file():
        for name in teacher_settings(dataset)["weights"]:
            yield name, f"teacher {entry['teacher']} of dataset {dataset}"
    for model in sorted(marks - {TEACHER}):
        name = config["models"][model].get("pretrained")
        if name and not Path(f"results/{dataset}/{model}/model.safetensors").is_file():
            yield name, f"model {model} on dataset {dataset}"


def missing_weights(name, weights, users):
    """The line saying that weights entry `name` has no file here ([] when it has one)."""
    key = f"config.yaml → weights → {name}"
    if "path" in weights:
        if Path(weights["path"]).is_file():
            return []
        if "imgly_resource" in weights:
            source = f"run `pseudomasks fetch-weights --config config.yaml {name}` (joins it from {weights['url']})"
        elif "url" in weights:
            source = f"download {weights['url']} to it"
        else:
            source = "put the file there"
        return [
            f"{key} → path: {weights['path']} (for {users}) does not exist; {source}"
        ]
    try:
        locate_weights(weights)
    except UserError as error:
        return [f"{key} → package (for {users}): {error}"]
    return []
