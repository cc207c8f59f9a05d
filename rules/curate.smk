rule accepted:
    input:
        verified=lambda w: S.all_verified(w.teacher),
        shards=expand(f"{R}/queries/shards/{{shard}}.parquet", shard=S.shards),
    output:
        accepted=f"{R}/accepted/{{teacher}}.parquet",
        stats=f"{R}/accepted/{{teacher}}.stats.json",
    log:
        f"{R}/logs/accepted/{{teacher}}.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        rounds=lambda w: S.teacher_rounds(w.teacher),
        code=code_version("distillab.curate"),
    script:
        "../scripts/accepted.py"


rule curate:
    input:
        accepted=f"{R}/accepted/{{teacher}}.parquet",
    output:
        curated=f"{R}/curated/{{teacher}}.parquet",
        rejected=f"{R}/curated/{{teacher}}.rejected.parquet",
    log:
        f"{R}/logs/curate/{{teacher}}.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        code=code_version("distillab.curate"),
    script:
        "../scripts/curate.py"


rule parallel:
    # The SFT dataset in messages form; the policy decides which teachers it depends on.
    input:
        curated=lambda w: [
            f"{R}/curated/{t}.parquet" for t in S.parallel_teachers(w.teacher)
        ],
        queries=f"{R}/queries/clean.parquet",
        tokenizer=S.model_dir(config["curation"]["tokenizer_model"]),
    output:
        dataset=f"{R}/parallel/{{teacher}}.parquet",
        rejected=f"{R}/parallel/{{teacher}}.rejected.parquet",
    log:
        f"{R}/logs/parallel/{{teacher}}.log",
    conda:
        "../envs/models.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        teachers=lambda w: S.parallel_teachers(w.teacher),
        policy=config["curation"]["parallel_policy"],
        prompts=config.get("prompts", {}),
        code=code_version("distillab.curate", "distillab.prompts"),
    script:
        "../scripts/parallel.py"
