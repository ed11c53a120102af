rule train_settings:
    """A trained model's resolved settings as the file `reid train` reads (a failed job's
    command line stays one line); rewritten, and the model retrained, when any setting changes.
    """
    output:
        "results/{dataset}/{model}/settings.json",
    log:
        "results/{dataset}/logs/{model}/settings.log",
    wildcard_constraints:
        model=one_of(TRAINED),
    params:
        settings=lambda wc: json.dumps(
            run_settings(wc.dataset, wc.model), sort_keys=True, indent=1
        ),
    run:
        write_settings_file(output[0], params.settings, log[0])


rule train:
    """Train one model on one dataset's training split and its part maps."""
    input:
        settings="results/{dataset}/{model}/settings.json",
        catalogue="results/{dataset}/catalogue.csv",
        index=lambda wc: f"{masks_dir(wc.dataset)}/index.json",
    output:
        weights="results/{dataset}/{model}/model.safetensors",
        config="results/{dataset}/{model}/model.json",
        history="results/{dataset}/{model}/history.csv",
    log:
        "results/{dataset}/logs/{model}/train.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/train.tsv"
    wildcard_constraints:
        model=one_of(TRAINED),
    conda:
        "../../envs/student.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=1440,
    params:
        root=lambda wc: dataset_root(wc.dataset),
        masks=lambda wc: masks_dir(wc.dataset),
        out=lambda wc: f"results/{wc.dataset}/{wc.model}",
        launch=lambda wc, resources: train_launcher(resources.gpu),
        workers=lambda wc, threads, resources: max(1, threads // max(1, resources.gpu)),
    shell:
        "{params.launch} train --settings {input.settings:q} --catalogue {input.catalogue:q} "
        "--root {params.root:q} --masks {params.masks:q} --out {params.out:q} "
        "--workers {params.workers} --resume --no-progress > {log:q} 2>&1"


rule freeze:
    """A frozen model's directory (its pretrained weights as they are): no data, no part maps
    (only a cropping teacher's record, so `reid identify` cuts photos as extraction does).
    """
    input:
        crops=lambda wc: crops(wc.dataset),
    output:
        weights="results/{dataset}/{model}/model.safetensors",
        config="results/{dataset}/{model}/model.json",
    log:
        "results/{dataset}/logs/{model}/freeze.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/freeze.tsv"
    wildcard_constraints:
        model=one_of(FROZEN),
    conda:
        "../../envs/student.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        model=lambda wc: json.dumps(model_settings(wc.model), sort_keys=True),
        flip=lambda wc: (
            "--flip-test" if config["datasets"][wc.dataset]["flip_test"] else ""
        ),
        out=lambda wc: f"results/{wc.dataset}/{wc.model}",
        crops=lambda wc: crops_option(wc.dataset),
    shell:
        "reid freeze --model-json {params.model:q} {params.flip} {params.crops} "
        "--out {params.out:q} > {log:q} 2>&1"


rule extract:
    """Eval-mode descriptors of the test images (cut to their animal boxes with a cropping
    teacher)."""
    input:
        catalogue="results/{dataset}/catalogue.csv",
        weights="results/{dataset}/{model}/model.safetensors",
        crops=lambda wc: crops(wc.dataset),
    output:
        "results/{dataset}/{model}/features.npz",
    log:
        "results/{dataset}/logs/{model}/extract.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/extract.tsv"
    conda:
        "../../envs/student.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        root=lambda wc: dataset_root(wc.dataset),
        model_dir=lambda wc: f"results/{wc.dataset}/{wc.model}",
        flip=lambda wc: (
            "--flip-test" if config["datasets"][wc.dataset]["flip_test"] else ""
        ),
        crops=lambda wc: crops_option(wc.dataset),
    shell:
        "reid extract --model-dir {params.model_dir:q} --catalogue {input.catalogue:q} "
        "--root {params.root:q} {params.flip} {params.crops} --workers {threads} "
        "--out {output:q} > {log:q} 2>&1"


rule evaluate:
    """Re-ID metrics of the descriptors under the dataset's protocol, with provenance."""
    input:
        catalogue="results/{dataset}/catalogue.csv",
        features="results/{dataset}/{model}/features.npz",
        config="results/{dataset}/{model}/model.json",
    output:
        "results/{dataset}/{model}/metrics.json",
    log:
        "results/{dataset}/logs/{model}/evaluate.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/evaluate.tsv"
    conda:
        "../../envs/student.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        protocol=lambda wc: config["datasets"][wc.dataset]["protocol"],
        model_dir=lambda wc: f"results/{wc.dataset}/{wc.model}",
    shell:
        "reid evaluate --features {input.features:q} --catalogue {input.catalogue:q} "
        "--protocol {params.protocol} --model-dir {params.model_dir:q} --threads {threads} "
        "--out {output:q} > {log:q} 2>&1"


rule default_metrics:
    """results/{dataset}/metrics.json: the metrics of the dataset's default model."""
    input:
        lambda wc: f"results/{wc.dataset}/{config['datasets'][wc.dataset]['model']}/metrics.json",
    output:
        "results/{dataset}/metrics.json",
    log:
        "results/{dataset}/logs/default_metrics.log",
    benchmark:
        "results/{dataset}/benchmarks/default_metrics.tsv"
    conda:
        "../../envs/student.yaml"
    threads: 1
    resources:
        mem_mb=100,
        runtime=1,
    shell:
        "cp {input:q} {output:q} 2> {log:q}"


rule comparison:
    """results/{dataset}/comparison.md: one table of the dataset's models (default, baseline and
    `compare`: trained and frozen) with their metrics, training time and descriptor size; the
    same as HTML for the report.
    """
    input:
        lambda wc: [
            f"results/{wc.dataset}/{model}/metrics.json"
            for model in compared_models(wc.dataset)
        ],
    output:
        table="results/{dataset}/comparison.md",
        page=report(
            "results/{dataset}/comparison.html",
            caption="../report/comparison.rst",
            category="{dataset}",
            subcategory="comparison",
        ),
    log:
        "results/{dataset}/logs/comparison.log",
    benchmark:
        "results/{dataset}/benchmarks/comparison.tsv"
    conda:
        "../../envs/student.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=1,
    params:
        metrics=lambda wc, input: " ".join(
            f"{model}={path}"
            for model, path in zip(compared_models(wc.dataset), input)
        ),
    shell:
        "reid compare --metrics {params.metrics} --title {wildcards.dataset:q} "
        "--out {output.table:q} --html {output.page:q} > {log:q} 2>&1"
