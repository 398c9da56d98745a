#!/usr/bin/env bash
# Regenerates the example testbed datasets the example grids use (deterministic).
set -euo pipefail
cd "$(dirname "$0")"
tuneahead-ray testbed make-data --out clean.jsonl --size 3000 --seed 11
tuneahead-ray testbed make-data --out small_clean.jsonl --size 600 --seed 12
tuneahead-ray testbed make-data --out noisy.jsonl --size 3000 --label-noise 0.4 --seed 13
tuneahead-ray testbed make-data --out off_target.jsonl --size 3000 --off-target 0.6 --seed 14
tuneahead-ray testbed make-data --out duplicated.jsonl --size 3000 --duplication 0.7 --seed 15
tuneahead-ray testbed make-data --out corrupted.jsonl --size 3000 --format-corruption 0.4 --seed 16
tuneahead-ray testbed make-data --out easy_only.jsonl --size 3000 --max-level 2 --seed 17
