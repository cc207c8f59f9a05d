rule release:
    # The student as an HF model dir whose card carries its evaluation results (the
    # checkpoint's files hard-linked, not copied; distillab.release).
    input:
        checkpoint=f"{R}/train/{{student}}__{{teacher}}",
        results=lambda w: S.eval_results_of(f"{w.student}__{w.teacher}"),
    output:
        release=directory(f"{R}/release/{{student}}__{{teacher}}"),
    log:
        f"{R}/logs/release/{{student}}__{{teacher}}.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        code=code_version("distillab.release"),
    script:
        "../scripts/release.py"
