rule teacher_shard:
    """Part maps of one shard of the training images (of all images with a cropping teacher;
    resumable: only missing shards rerun)."""
    input:
        catalogue=ancient("results/{dataset}/catalogue.csv"),
    output:
        "results/{dataset}/masks/{teacher_id}/shard-{shard}-of-{shards}.npz",
    log:
        "results/{dataset}/logs/teacher/{teacher_id}-{shard}-of-{shards}.log",
    benchmark:
        "results/{dataset}/benchmarks/teacher/{teacher_id}-{shard}-of-{shards}.tsv"
    conda:
        "../../envs/teacher.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    params:
        settings=lambda wc: teacher_settings_file(wc.dataset),
        root=lambda wc: dataset_root(wc.dataset),
        out=lambda wc: f"results/{wc.dataset}/masks",
        shard=lambda wc: int(wc.shard),
        shards=lambda wc: int(wc.shards),
    shell:
        "pseudomasks run --catalogue {input.catalogue:q} --root {params.root:q} "
        "--settings {params.settings:q} --out {params.out:q} "
        "--shard {params.shard} --num-shards {params.shards} > {log:q} 2>&1"


rule teacher_index:
    """Check all shards, index the maps by image id and write the QC numbers."""
    input:
        mask_shards,
    output:
        index="results/{dataset}/masks/{teacher_id}/index.json",
        qc="results/{dataset}/masks/{teacher_id}/qc.json",
    log:
        "results/{dataset}/logs/teacher/{teacher_id}-index.log",
    benchmark:
        "results/{dataset}/benchmarks/teacher/{teacher_id}-index.tsv"
    conda:
        "../../envs/teacher.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        masks=lambda wc: masks_dir(wc.dataset),
        shards=lambda wc: config["datasets"][wc.dataset]["mask_shards"],
    shell:
        "pseudomasks index --masks-dir {params.masks:q} --num-shards {params.shards} > {log:q} 2>&1"
