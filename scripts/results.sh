#!/usr/bin/env bash
# Every run behind RESULTS.md, and the copy of its tables and plots kept in results/.
#
#   scripts/results.sh
#
# trains what is not trained yet (about four hours on 2 cores from nothing) and copies each
# table's results.md, results.csv and plots to results/TABLE/; once everything is trained
# it only re-summarises (a minute).
# The runs live in runs/results/ (not in git). `hebbref compare` resumes: a finished run is
# read, not trained again, and a run with fewer epochs than asked is continued. Several
# tables share a folder (table 1's runs are the tied rows of table 4 and the hinge rows of
# table 5), so each compare below rewrites that folder's results.md for its own table, and
# the copy to results/ is made right after it. `deep` has two folders: rules-deep-8 for
# table 1 (8 epochs) and rules-deep for table 4 (tied and untied, 4 epochs; the 8-epoch
# runs were these tied runs, copied and continued). Runs use one thread each, two at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
HEBBREF=${HEBBREF:-.venv/bin/hebbref}
RUNS=runs/results
JOBS=${JOBS:-2}
export NUMBA_NUM_THREADS=${NUMBA_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

table() {  # table NAME FOLDER ARGS...: run one compare into runs/results/FOLDER, copy it to results/NAME
    local name=$1 folder=$2
    shift 2
    "$HEBBREF" compare "$@" --jobs "$JOBS" --quiet --out "$RUNS/$folder" > /dev/null
    mkdir -p "results/$name"
    cp "$RUNS/$folder/results.md" "$RUNS/$folder/results.csv" "$RUNS/$folder"/*.png "results/$name/"
    # every run's per-epoch log, so that scripts/results_plots.py can redraw the plots without training
    for run in "$RUNS/$folder"/runs/*/; do
        mkdir -p "results/$name/logs/$(basename "$run")"
        cp "$run/log.jsonl" "results/$name/logs/$(basename "$run")/"
    done
    echo "results/$name: $(grep -c '^| `' "results/$name/results.md") rows"
}

table 1-simple rules-simple --net simple --rule bp,frfb,urfb --seed 0,1,2 --epochs 10
table 1-deep rules-deep-8 --net deep --rule bp,frfb,urfb --seed 0,1,2 --epochs 8
table 2-symmetric symmetric --net simple --rule bp,urfb --init symmetric --seed 0,1,2 --epochs 2
table 3-depth depth --study depth --depths 2,3,4,6,8 --width 100 --seed 0,1,2 --epochs 10 \
    --batch-size 100 --lr 0.3
table 4-simple-untied rules-simple --net simple --rule bp,urfb --layers tied,untied --seed 0,1,2 --epochs 10
table 5-softmax rules-simple --net simple --rule bp,urfb --loss hinge,softmax --seed 0,1,2 --epochs 10
table 4-deep-untied rules-deep --net deep --rule bp,urfb --layers tied,untied --seed 0,1,2 --epochs 4
# table 7: all nine rules of hebbref.rules (table 1's and table 3's runs are its bp, frfb and urfb rows)
ALL_RULES=bp,frfb,urfb,kp,usf,frsf,brsf,dfa,wm
table 7-rules-simple rules-simple --net simple --rule $ALL_RULES --seed 0,1,2 --epochs 10
table 7-rules-depth depth --study depth --rule $ALL_RULES --depths 2,3,4,6,8 --width 100 --seed 0,1,2 \
    --epochs 10 --batch-size 100 --lr 0.3
table 7-rules-simple-decay rules-simple-decay --net simple --rule bp,kp --weight-decay 0.01 --seed 0,1,2 --epochs 10
