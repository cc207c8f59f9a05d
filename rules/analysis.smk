rule analysis:
    input:
        datasets=expand(f"{R}/parallel/{{teacher}}.parquet", teacher=S.teachers),
        accepted_stats=expand(
            f"{R}/accepted/{{teacher}}.stats.json", teacher=S.teachers
        ),
        curated_stats=expand(f"{R}/curated/{{teacher}}.stats.json", teacher=S.teachers),
        perplexity=[p for t in S.teachers for p in S.perplexity_scores(t)],
    output:
        stats=f"{R}/analysis/stats.json",
        instances_tokens=report(
            f"{R}/analysis/instances_tokens.png",
            caption="../docs/report/instances_tokens.rst",
            category="Training data",
        ),
        lengths_hist=report(
            f"{R}/analysis/lengths_hist.png",
            caption="../docs/report/lengths_hist.rst",
            category="Training data",
        ),
        perplexity=report(
            f"{R}/analysis/perplexity.png",
            caption="../docs/report/perplexity.rst",
            category="Training data",
        ),
        lengths_box=report(
            f"{R}/analysis/lengths_box.png",
            caption="../docs/report/lengths_box.rst",
            category="Training data",
        ),
    log:
        f"{R}/logs/analysis/analysis.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        teachers=S.teachers,
        bin_tokens=config["analysis"]["bin_tokens"],
        n_bins=config["analysis"]["n_bins"],
        code=code_version("distillab.analysis"),
    script:
        "../scripts/analysis.py"
