#!/usr/bin/env bash
# Regenerate the README's figures, docs/figures/<run>.png, each the `figure:` its spec names.
#
#   docs/make_figures.sh                   # both README figures; trains two agents first (~5 min on 2 cores)
#   docs/make_figures.sh steer-tokens      # one figure by run name (this one needs no training: seconds)
#
# Runs resume: a rerun after a finished run only redraws. RUNNER overrides the runner command.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNNER=${RUNNER:-.venv/bin/runner}

declare -A SPECS=(
  # line: closed-loop success against steering coefficient, a line per layer (README's quickstart)
  [quickstart]="specs/quickstart_train.yaml specs/quickstart.yaml"
  # heatmap: restored fraction of the colour word over position x head, a panel per layer
  [patch-mission-word]="specs/train_bc_gotolocal.yaml specs/patch_mission_word.yaml"
  # line, token model, no training: a quick check that this script works
  [steer-tokens]="specs/steer_tokens.yaml"
)
README_FIGURES=(quickstart patch-mission-word)

names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${README_FIGURES[@]}")
for name in "${names[@]}"; do
  if [ -z "${SPECS[$name]+x}" ]; then
    echo "error: no figure named $name; known: ${!SPECS[*]}" >&2
    exit 2
  fi
done
mkdir -p docs/figures
for name in "${names[@]}"; do
  for spec in ${SPECS[$name]}; do
    "$RUNNER" run "$spec"
  done
  "$RUNNER" plot "$name" --out "docs/figures/$name.png"
done
