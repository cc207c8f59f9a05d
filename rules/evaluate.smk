from distillab.evaluate import engine_params, eval_gpus

EVAL_BACKEND = config["evaluation"].get("backend", "transformers")


rule evaluate:
    # k samples per problem, graded, scored (distillab.evaluate). Finished problems are
    # flushed to <samples>.partial/, so a preempted job generates only what is missing.
    input:
        model=lambda w: S.eval_models[w.model]["model_dir"],
        benchmark=lambda w: S.benchmark_files([w.benchmark]),
    output:
        result=f"{R}/eval/{{model}}/{{benchmark}}.json",
        samples=f"{R}/eval/{{model}}/{{benchmark}}.samples.parquet",
    log:
        f"{R}/logs/evaluate/{{model}}/{{benchmark}}.log",
    conda:
        "../envs/vllm.yaml" if EVAL_BACKEND == "vllm" else "../envs/models.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=eval_gpus(config["evaluation"]),
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
            "distillab.generate",
            "distillab.prompts",
            "distillab.verify",
            "distillab.verify_code",
            "distillab.verify_if",
            "distillab.parse",
            *S.BACKEND_MODULES[EVAL_BACKEND],
        ),
    script:
        "../scripts/evaluate.py"
