#!/usr/bin/env bash
# Snakemake runs this inside the new teacher environment after creating it (--sdm conda).
# mmpose 1.3.2 declares chumpy, which cannot be built and is never imported: install mmpose
# without its declared dependencies; its real ones are in teacher.yaml.
set -euo pipefail
python -m pip install --no-deps mmpose==1.3.2
python -c "from mmpose.apis import inference_topdown, init_model"
