rule catalogue:
    """Read a dataset (or generate the synthetic one) into the catalogue every later rule reads."""
    input:
        raw_dataset_input,
    output:
        "results/{dataset}/catalogue.csv",
    log:
        "results/{dataset}/logs/catalogue.log",
    benchmark:
        "results/{dataset}/benchmarks/catalogue.tsv"
    conda:
        "../../envs/student.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        adapter=lambda wc: config["datasets"][wc.dataset]["adapter"],
        root=lambda wc: dataset_root(wc.dataset),
        options=lambda wc: json.dumps(
            config["datasets"][wc.dataset]["options"], sort_keys=True
        ),
    shell:
        "reid catalogue --adapter {params.adapter} --root {params.root:q} "
        "--options-json {params.options:q} --out {output:q} > {log:q} 2>&1"
