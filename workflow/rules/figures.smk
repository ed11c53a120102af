# Figures users look at: teacher maps, part attention, retrieval grids, similarity maps, training
# curves.
# Each is also a `snakemake --report` item (captions in workflow/report/).


rule part_maps_figure:
    """Contact sheet of the teacher's part maps over training images (paper Fig. 6)."""
    input:
        catalogue="results/{dataset}/catalogue.csv",
        index=lambda wc: f"{masks_dir(wc.dataset)}/index.json",
    output:
        report(
            "results/{dataset}/figures/part_maps.png",
            caption="../report/part_maps.rst",
            category="{dataset}",
            subcategory="teacher",
        ),
    log:
        "results/{dataset}/logs/figures/part_maps.log",
    benchmark:
        "results/{dataset}/benchmarks/figures/part_maps.tsv"
    conda:
        "../../envs/teacher.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        masks=lambda wc: masks_dir(wc.dataset),
        root=lambda wc: dataset_root(wc.dataset),
    shell:
        "pseudomasks show --masks-dir {params.masks:q} --catalogue {input.catalogue:q} "
        "--root {params.root:q} --n 24 --out {output:q} > {log:q} 2>&1"


rule attention_figure:
    """The part attention maps of a trained PAW-ViT on test images (paper Fig. 2)."""
    input:
        catalogue="results/{dataset}/catalogue.csv",
        weights="results/{dataset}/{model}/model.safetensors",
    output:
        report(
            "results/{dataset}/{model}/figures/attention.png",
            caption="../report/attention.rst",
            category="{dataset}",
            subcategory="{model}",
        ),
    log:
        "results/{dataset}/logs/{model}/figures/attention.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/figures/attention.tsv"
    conda:
        "../../envs/student.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        model_dir=lambda wc: f"results/{wc.dataset}/{wc.model}",
        root=lambda wc: dataset_root(wc.dataset),
        crops=lambda wc: crops_option(wc.dataset),
    shell:
        "reid figure attention --model-dir {params.model_dir:q} --catalogue {input.catalogue:q} "
        "--root {params.root:q} {params.crops} --n 6 --out {output:q} > {log:q} 2>&1"


rule retrieval_figure:
    """Test queries with their top-5 gallery matches, green when right, red when wrong."""
    input:
        catalogue="results/{dataset}/catalogue.csv",
        features="results/{dataset}/{model}/features.npz",
    output:
        report(
            "results/{dataset}/{model}/figures/retrieval.png",
            caption="../report/retrieval.rst",
            category="{dataset}",
            subcategory="{model}",
        ),
    log:
        "results/{dataset}/logs/{model}/figures/retrieval.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/figures/retrieval.tsv"
    conda:
        "../../envs/student.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        root=lambda wc: dataset_root(wc.dataset),
        protocol=lambda wc: config["datasets"][wc.dataset]["protocol"],
    shell:
        "reid figure retrieval --features {wildcards.model}={input.features:q} "
        "--catalogue {input.catalogue:q} --root {params.root:q} --protocol {params.protocol} "
        "--out {output:q} > {log:q} 2>&1"


rule similarity_figure:
    """What a convolutional baseline's matches rest on: each photo's cells' shares of the
    similarity of test queries and their best matches."""
    input:
        catalogue="results/{dataset}/catalogue.csv",
        features="results/{dataset}/{model}/features.npz",
        weights="results/{dataset}/{model}/model.safetensors",
    output:
        report(
            "results/{dataset}/{model}/figures/similarity.png",
            caption="../report/similarity.rst",
            category="{dataset}",
            subcategory="{model}",
        ),
    log:
        "results/{dataset}/logs/{model}/figures/similarity.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/figures/similarity.tsv"
    conda:
        "../../envs/student.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        model_dir=lambda wc: f"results/{wc.dataset}/{wc.model}",
        root=lambda wc: dataset_root(wc.dataset),
        protocol=lambda wc: config["datasets"][wc.dataset]["protocol"],
        crops=lambda wc: crops_option(wc.dataset),
    shell:
        "reid figure similarity --model-dir {params.model_dir:q} --features {input.features:q} "
        "--catalogue {input.catalogue:q} --root {params.root:q} --protocol {params.protocol} "
        "{params.crops} --out {output:q} > {log:q} 2>&1"


rule retrieval_comparison_figure:
    """The same queries ranked by every model of the dataset's comparison (default model,
    baseline, `compare` list), side by side."""
    input:
        catalogue="results/{dataset}/catalogue.csv",
        features=lambda wc: [
            f"results/{wc.dataset}/{m}/features.npz"
            for m in compared_models(wc.dataset)
        ],
    output:
        report(
            "results/{dataset}/figures/retrieval_comparison.png",
            caption="../report/retrieval_comparison.rst",
            category="{dataset}",
            subcategory="comparison",
        ),
    log:
        "results/{dataset}/logs/figures/retrieval_comparison.log",
    benchmark:
        "results/{dataset}/benchmarks/figures/retrieval_comparison.tsv"
    conda:
        "../../envs/student.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        root=lambda wc: dataset_root(wc.dataset),
        protocol=lambda wc: config["datasets"][wc.dataset]["protocol"],
        features=lambda wc, input: " ".join(
            shlex.quote(f"{m}={path}")
            for m, path in zip(compared_models(wc.dataset), input.features)
        ),
    shell:
        "reid figure retrieval --features {params.features} --catalogue {input.catalogue:q} "
        "--root {params.root:q} --protocol {params.protocol} --out {output:q} > {log:q} 2>&1"


rule curves_figure:
    """Loss components, learning rate and evaluation metrics over the epochs of a training run."""
    input:
        "results/{dataset}/{model}/history.csv",
    output:
        report(
            "results/{dataset}/{model}/figures/curves.png",
            caption="../report/curves.rst",
            category="{dataset}",
            subcategory="{model}",
        ),
    log:
        "results/{dataset}/logs/{model}/figures/curves.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/figures/curves.tsv"
    conda:
        "../../envs/student.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "reid figure curves --history {input:q} --title '{wildcards.dataset} / {wildcards.model}' "
        "--out {output:q} > {log:q} 2>&1"


rule figures:
    """One target for all of a dataset's figures: results/{dataset}/figures/README.md lists them."""
    input:
        dataset_figures,
    output:
        "results/{dataset}/figures/README.md",
    log:
        "results/{dataset}/logs/figures/readme.log",
    run:
        lines = [f"# Figures of {wildcards.dataset}", ""]
        lines += [f"- `{path}`" for path in input]
        lines += [
            "",
            "`snakemake --report report.html` collects them with captions.",
            "",
        ]
        Path(output[0]).write_text("\n".join(lines))
