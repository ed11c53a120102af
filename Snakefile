# PAW-ViT workflow: catalogue → teacher part maps → train → extract → evaluate.
# `snakemake --cores 8 results/atrw/metrics.json` runs a dataset's default model;
# `results/{dataset}/{model}/metrics.json` runs any model of config.yaml (baselines, ablations).

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/preflight.smk"
include: "workflow/rules/catalogue.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/figures.smk"


localrules:
    train_settings,


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(MODELS),
    teacher_id="[0-9a-f]+",
    shard=r"\d+",
    shards=r"\d+",


rule all:
    default_target: True
    input:
        "results/demo/metrics.json",
        "results/demo/figures/README.md",
