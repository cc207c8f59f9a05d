rule report:
    input:
        evals=S.eval_results(),
        verification=expand(f"{R}/accepted/{{teacher}}.stats.json", teacher=S.teachers),
        accepted=expand(f"{R}/accepted/{{teacher}}.parquet", teacher=S.teachers),
        curated=expand(f"{R}/curated/{{teacher}}.parquet", teacher=S.teachers),
        ngram_top=[f"{R}/ngrams/{t}.top.json" for t in S.teachers if S.ngram_flags(t)],
        parallel=expand(f"{R}/parallel/{{teacher}}.parquet", teacher=S.teachers),
        analysis=f"{R}/analysis/stats.json",
        checkpoints=S.student_checkpoints(),
        figures=[
            f"{R}/analysis/instances_tokens.png",
            f"{R}/analysis/lengths_hist.png",
            f"{R}/analysis/lengths_box.png",
            f"{R}/analysis/perplexity.png",
        ],
    output:
        summary_json=f"{R}/report/summary.json",
        summary_md=report(
            f"{R}/report/summary.md",
            caption="../docs/report/summary.rst",
            category="Results",
        ),
        length_by_difficulty=report(
            f"{R}/report/length_by_difficulty.png",
            caption="../docs/report/length_by_difficulty.rst",
            category="Results",
        ),
    log:
        f"{R}/logs/report/report.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        study=config["study"],
        teachers=S.teachers,
        model_info=S.model_info(),
        # evaluation.reference: paper puts the paper's Table 1/2 beside the study's; its
        # teachers are matched to the study's by the hub id of their weights
        reference=config["evaluation"].get("reference"),
        teacher_repos={
            t: config["models"][spec["model"]].get("repo_id")
            for t, spec in config["teachers"].items()
        },
        code=code_version("distillab.report"),
    script:
        "../scripts/report.py"
