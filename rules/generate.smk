rule generate:
    # Round r answers the shard's queries that no earlier round accepted (DESIGN.md §1).
    # Finished requests are flushed to <output>.partial/, so a killed job resumes.
    input:
        shard=f"{R}/queries/shards/{{shard}}.parquet",
        model=lambda w: S.teacher_generate_inputs(w.teacher),
        earlier=lambda w: S.earlier_verified(w.teacher, w.round, w.shard),
    output:
        responses=f"{R}/generate/{{teacher}}/r{{round}}/{{shard}}.parquet",
    log:
        f"{R}/logs/generate/{{teacher}}/r{{round}}/{{shard}}.log",
    priority: 20
    conda:
        lambda w: S.generate_env(w.teacher)
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=lambda w: S.teacher_gpus(w.teacher),
        nodes=lambda w: S.teacher_nodes(w.teacher),
    params:
        teacher=lambda w: S.teacher_params(w.teacher),
        prompts=config.get("prompts", {}),
        prompt_style=lambda w: S.prompt_style(config["teachers"][w.teacher]["model"]),
        seed=config["seed"],
        code=lambda w: S.generate_code_version(w.teacher),
    script:
        "../scripts/generate.py"


rule verify:
    input:
        responses=f"{R}/generate/{{teacher}}/r{{round}}/{{shard}}.parquet",
        shard=f"{R}/queries/shards/{{shard}}.parquet",
        judge=S.judge_model_dirs(),
    output:
        verified=f"{R}/verify/{{teacher}}/r{{round}}/{{shard}}.parquet",
    log:
        f"{R}/logs/verify/{{teacher}}/r{{round}}/{{shard}}.log",
    priority: 20
    conda:
        "../envs/verify.yaml"
    threads: config["verification"]["workers"] or 1
    resources:
        mem_mb=4000,
        gpu=S.judge_gpus(),
    params:
        verification=config["verification"],
        code=code_version(
            "distillab.verify",
            "distillab.verify_code",
            "distillab.verify_if",
            "distillab.verify_chat",
            "distillab.verify_judge",
            "distillab.parse",
        ),
    script:
        "../scripts/verify.py"
