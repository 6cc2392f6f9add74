#!/usr/bin/env bash
# Longer runs beyond `make bench` (issues 5 and 6): every method for 15 epochs on the CIFAR-10 sample and
# $MNIST_EPOCHS (default 5) on full MNIST (ResNet-8, `standard` profile: batch 128, SGD lr 0.1), seed 0, plus random gates
# matched to the per-block rates the trained gates reached. Two lanes of one thread each (2 cores);
# a lane's random gate runs after the method it matches. Records: results/longer/runs; then
# `dynbench tables --results results/longer`. Resumes: finished runs are reused. Needs the data root
# ($DYNBENCH_DATA or --data-root's default) to hold the CIFAR-10 sample and MNIST. DATASETS="mnist" runs one;
# mnist_deep is ResNet-20 on MNIST: dense, SkipNet and its controls, about 13 minutes per run on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=results/longer
export OMP_NUM_THREADS=1

run() {  # run DATASET METHOD[:PRESET] [extra dynbench-run args]; prints the record path
    local dataset=$1 entry=$2; shift 2
    local method=${entry%%:*} preset=default epochs=15
    [[ $entry == *:* ]] && preset=${entry#*:}
    [[ $dataset == mnist ]] && epochs=${MNIST_EPOCHS:-5}
    "$PY" -m bench run --method "$method" --preset "$preset" --dataset "$dataset" --profile standard \
        --epochs "$epochs" --backbone "${BACKBONE:-resnet8}" --seed 0 --results "$OUT" "$@" 2>&1 \
        | grep --line-buffered -v 'it/s' | tee -a "$OUT/log.txt" | sed -n 's/^ *record: //p'
}

matched() {  # matched DATASET METHOD COMPOSITION [METHOD's run args]: a random gate at the rates METHOD reached;
    # prints METHOD's record path
    local dataset=$1 entry=$2 composition=$3 record started force=()
    shift 3
    started=$(mktemp)
    record=$(run "$dataset" "$entry" "$@")
    [[ -n $record ]] || { echo "longer_runs: $entry on $dataset failed; see $OUT/log.txt" >&2; return 1; }
    # A retrained method has new rates under the same record path: the control must not reuse its record.
    [[ $record -nt $started ]] && force=(--force)
    rm -f "$started"
    run "$dataset" random_gate --option "match_record=$record" --option "composition=$composition" "${force[@]}" >/dev/null
    echo "$record"
}

executed_fraction() {  # executed_fraction RECORD: its mean executed MACs over dense, to 2 decimals
    "$PY" -c 'import json, sys; print(round(1 - json.load(open(sys.argv[1]))["metrics"]["mac_saving"], 2))' "$1"
}

mkdir -p "$OUT"
lane_a_cifar10() {
    matched cifar10 convnet_aig aig >/dev/null
    run cifar10 cosinegate >/dev/null; run cifar10 cosinegate:realizable >/dev/null
    run cifar10 dense >/dev/null; run cifar10 static_small >/dev/null
}
lane_b_cifar10() {
    matched cifar10 skipnet skipnet >/dev/null
    run cifar10 batch_shaping >/dev/null; run cifar10 midl >/dev/null
    matched cifar10 skipnet:hrl_only_alpha0.3 skipnet >/dev/null
    matched cifar10 skipnet:baseline_alpha0.75 skipnet >/dev/null  # the preset whose gates decide per input on MNIST
}
lane_a_mnist() {
    matched mnist convnet_aig aig >/dev/null
    run mnist midl >/dev/null; run mnist batch_shaping >/dev/null; run mnist static_small >/dev/null
    run mnist midl:rho_0.25 >/dev/null  # a second budget: the default saves 19.9 %, just short of issue 5's 20 %
    # the alpha where SkipNet's gates split the inputs (methods/skipnet.py)
    matched mnist skipnet:hrl_only_alpha0.3 skipnet >/dev/null
    run mnist skipnet --option hrl_fraction=1.0 --option alpha=0.25 >/dev/null  # the same schedule below it
    matched mnist skipnet:baseline_alpha1 skipnet >/dev/null  # REINFORCE with the batch-mean baseline, w_rl 1
}
lane_b_mnist() {
    matched mnist skipnet skipnet >/dev/null
    run mnist dense >/dev/null; run mnist cosinegate:realizable >/dev/null; run mnist cosinegate >/dev/null
    run mnist skipnet:alpha1 >/dev/null  # 10x the skip reward: the default keeps every block on MNIST
    run mnist skipnet --option hrl_fraction=1.0 --option alpha=0.5 >/dev/null  # hrl_only_alpha0.3's schedule above it
    matched mnist skipnet:baseline_alpha0.75 skipnet >/dev/null
}
# SkipNet with 8 gates instead of 2, against its own dense backbone, random gates at its rates and a static
# ResNet at the MACs baseline_alpha0.75 executed.
lane_a_mnist_deep() {
    local record
    BACKBONE=resnet20 run mnist dense >/dev/null
    record=$(BACKBONE=resnet20 matched mnist skipnet:baseline_alpha0.75 skipnet)
    BACKBONE=resnet20 run mnist static_small --option "mac_budget=$(executed_fraction "$record")" >/dev/null
}
lane_b_mnist_deep() {
    BACKBONE=resnet20 run mnist skipnet >/dev/null
    BACKBONE=resnet20 matched mnist skipnet skipnet \
        --option rl_baseline=batch_mean --option w_rl=1.0 --option alpha=0.5 >/dev/null
}
for dataset in ${DATASETS:-cifar10 mnist mnist_deep}; do
    "lane_a_$dataset" & "lane_b_$dataset" & wait
done
"$PY" -m bench tables --results "$OUT"
