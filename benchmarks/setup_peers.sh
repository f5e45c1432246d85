#!/usr/bin/env bash
# Install the peers we benchmark against into their own environments (never into .venv).
# Recipes from shared/PEERS.md; each environment is built once and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
quiet() { grep -v "^WARNING: Location" || true; }

if [ ! -f .peers/.installed ]; then
  echo "== installing EconML + CausalML into .peers"
  $PY -m venv .peers
  .peers/bin/pip install --quiet --disable-pip-version-check torch==2.13.0 2>&1 | quiet
  .peers/bin/pip install --quiet --disable-pip-version-check numpy pandas pyarrow scikit-learn lightgbm econml causalml 2>&1 | quiet
  .peers/bin/python -c "import econml, causalml; print('econml', econml.__version__)"
  touch .peers/.installed
fi

if [ ! -f .obp/.installed ]; then
  echo "== installing OBP 0.5.7 into .obp"
  $PY -m venv .obp
  .obp/bin/pip install --quiet --disable-pip-version-check torch==2.13.0 2>&1 | quiet
  .obp/bin/pip install --quiet --disable-pip-version-check "numpy==1.23.5" "scikit-learn==1.1.3" "pandas==1.5.2" \
    "scipy==1.9.3" "seaborn>=0.11.2,<0.12" "matplotlib>=3.4.3,<3.9" "tqdm>=4.62.2" "PyYAML>=6.0" \
    "pyieoe>=0.1.1" "pingouin>=0.4.0,<0.5" "mypy-extensions>=0.4.3,<0.5" lightgbm 2>&1 | quiet
  .obp/bin/pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python obp==0.5.7 2>&1 | quiet
  .obp/bin/python -c "import obp; print('obp', obp.__version__)"
  touch .obp/.installed
fi
