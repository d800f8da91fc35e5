rule gpu_canary:
    input:
        code=stage_code("loongrl.canary"),
    output:
        "results/canary/gpus.json",
    log:
        "logs/canary/gpus.log",
    conda:
        "../../envs/data.yaml"
    resources:
        gpu=1,
        runtime="10m",
        mem_mb=2000,
    shell:
        "python -m loongrl.canary --requested-gpus {resources.gpu} --output {output:q} > {log:q} 2>&1"
