from distillab.evaluate import engine_params, eval_gpus

EVAL_BACKEND = config["evaluation"].get("backend", "transformers")


rule eval_generate:
    # k samples per problem for one part of a benchmark's problems (evaluation.jobs parts,
    # distillab.evaluate.generate_part). Finished problems are flushed to
    # <responses>.partial/, so a preempted job generates only what is missing.
    input:
        model=lambda w: S.eval_models[w.model]["model_dir"],
        benchmark=lambda w: S.benchmark_files([w.benchmark]),
    output:
        responses=f"{R}/eval/{{model}}/{{benchmark}}/part{{part}}.parquet",
        info=f"{R}/eval/{{model}}/{{benchmark}}/part{{part}}.json",
    log:
        f"{R}/logs/eval_generate/{{model}}/{{benchmark}}/part{{part}}.log",
    conda:
        "../envs/vllm.yaml" if EVAL_BACKEND == "vllm" else "../envs/models.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=eval_gpus(config["evaluation"]),
    params:
        benchmark=lambda w: config["evaluation"]["benchmarks"][w.benchmark],
        jobs=lambda w: S.eval_jobs(w.benchmark),
        sampling=config["evaluation"]["sampling"],
        engine=engine_params(config["evaluation"]),
        prompts=config.get("prompts", {}),
        prompt_style=lambda w: S.eval_models[w.model]["prompt_style"],
        demonstrations=lambda w: S.eval_models[w.model]["demonstrations"],
        code=code_version(
            "distillab.evaluate",
            "distillab.benchmarks",
            "distillab.generate",
            "distillab.prompts",
            "distillab.parse",
            *S.BACKEND_MODULES[EVAL_BACKEND],
        ),
    script:
        "../scripts/eval_generate.py"


rule evaluate:
    # Grade every part's samples (code in the sandbox, with LiveCodeBench's rules) and
    # score them (distillab.evaluate.score): a CPU job, so grading never holds GPUs, and
    # a grader change regrades without generating anew.
    input:
        responses=lambda w: S.eval_parts(w.model, w.benchmark, "parquet"),
        info=lambda w: S.eval_parts(w.model, w.benchmark, "json"),
        benchmark=lambda w: S.benchmark_files([w.benchmark]),
    output:
        result=f"{R}/eval/{{model}}/{{benchmark}}.json",
        samples=f"{R}/eval/{{model}}/{{benchmark}}.samples.parquet",
    log:
        f"{R}/logs/evaluate/{{model}}/{{benchmark}}.log",
    conda:
        "../envs/verify.yaml"
    threads: config["verification"]["workers"] or 1
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        benchmark=lambda w: config["evaluation"]["benchmarks"][w.benchmark],
        sampling=config["evaluation"]["sampling"],
        engine=engine_params(config["evaluation"]),
        prompts=config.get("prompts", {}),
        prompt_style=lambda w: S.eval_models[w.model]["prompt_style"],
        demonstrations=lambda w: S.eval_models[w.model]["demonstrations"],
        model_info=lambda w: S.model_info()[w.model],
        verification=config["verification"],
        code=code_version(
            "distillab.evaluate",
            "distillab.benchmarks",
            "distillab.metrics",
            "distillab.prompts",
            "distillab.verify",
            "distillab.verify_code",
            "distillab.verify_if",
            "distillab.parse",
        ),
    script:
        "../scripts/evaluate.py"
