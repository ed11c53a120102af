rule teacher_settings:
    """The teacher's resolved settings as the file its jobs read (a failed job's command line
    stays one line). Rewritten when any setting changes; the shards take it as `ancient`, so a
    change that keeps the teacher id (a moved weights file, a renamed teacher) recomputes nothing.
    """
    output:
        "results/{dataset}/masks/{teacher_id}/settings.json",
    log:
        "results/{dataset}/logs/teacher/{teacher_id}-settings.log",
    params:
        settings=lambda wc: json.dumps(
            teacher_settings(wc.dataset), sort_keys=True, indent=1
        ),
    run:
        write_settings_file(output[0], params.settings, log[0])


rule teacher_shard:
    """Part maps of one shard of the training images (of all images with a cropping teacher;
    resumable: only missing shards rerun)."""
    input:
        catalogue=ancient("results/{dataset}/catalogue.csv"),
        settings=ancient("results/{dataset}/masks/{teacher_id}/settings.json"),
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
        root=lambda wc: dataset_root(wc.dataset),
        out=lambda wc: f"results/{wc.dataset}/masks",
        shard=lambda wc: int(wc.shard),
        shards=lambda wc: int(wc.shards),
    shell:
        "pseudomasks run --catalogue {input.catalogue:q} --root {params.root:q} "
        "--settings {input.settings:q} --out {params.out:q} "
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
