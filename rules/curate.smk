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


rule perplexity:
    # PAPER.md §5: perplexity of each accepted response (assistant tokens only, given
    # the prompt) under the reference model; the cut is applied by `curate`.
    input:
        accepted=f"{R}/accepted/{{teacher}}.parquet",
        queries=f"{R}/queries/clean.parquet",
        model=S.perplexity_model_dir(),
    output:
        scores=f"{R}/perplexity/{{teacher}}.parquet",
    log:
        f"{R}/logs/perplexity/{{teacher}}.log",
    conda:
        S.perplexity_env()
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=S.perplexity_gpus(),
    params:
        scorer=S.scorer_params(),
        prompts=config.get("prompts", {}),
        code=code_version("distillab.perplexity", "distillab.prompts"),
    script:
        "../scripts/perplexity.py"


rule ngrams:
    # PAPER.md §5: n-token spans occurring more than max_count times in the teacher's
    # data, counted with bounded memory (hashes spilled to disk by partition).
    input:
        accepted=f"{R}/accepted/{{teacher}}.parquet",
        tokenizer=S.model_dir(config["curation"]["tokenizer_model"]),
    output:
        flags=f"{R}/ngrams/{{teacher}}.parquet",
        top=f"{R}/ngrams/{{teacher}}.top.json",
    log:
        f"{R}/logs/ngrams/{{teacher}}.log",
    conda:
        "../envs/models.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        spec=config["curation"]["ngram"],
        code=code_version("distillab.ngram_filter"),
    script:
        "../scripts/ngrams.py"


rule curate:
    input:
        accepted=f"{R}/accepted/{{teacher}}.parquet",
        queries=f"{R}/queries/clean.parquet",
        ngrams=lambda w: S.ngram_flags(w.teacher),
        perplexity=lambda w: S.perplexity_scores(w.teacher),
    output:
        curated=f"{R}/curated/{{teacher}}.parquet",
        rejected=f"{R}/curated/{{teacher}}.rejected.parquet",
        stats=f"{R}/curated/{{teacher}}.stats.json",
    log:
        f"{R}/logs/curate/{{teacher}}.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        structure=config["curation"]["structure"],
        ngram=config["curation"]["ngram"],
        ppl_threshold=lambda w: S.perplexity_threshold(w.teacher),
        code=code_version("distillab.curate", "distillab.perplexity"),
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
