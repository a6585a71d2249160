# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   set up, prepare the embedded real anime sample, train and evaluate the default model, launch the app
#   make test   set up and run the test suite
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup data train notebooks execute-notebooks browser reproduce clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed

data: setup
	$(PY) make_processed_data.py

train: data
	$(PY) -m nostrade.train --data data/processed --out checkpoints/model.pt

demo: train
	$(VENV)/bin/streamlit run code/app.py

# Both notebooks run on the embedded sample (01 trains the default SASRec: minutes) and saved with their outputs;
# then a second pass keeps each progress bar in its last state only (in the first, that step runs before execution).
# execute-notebooks runs them on what is there (dvc.yaml's notebooks stage, with JUPYTER=jupyter).
NOTEBOOKS := notebooks/01_sasrec_feedback_demo.ipynb notebooks/02_eval_ablation.ipynb
JUPYTER ?= $(VENV)/bin/jupyter
notebooks: train
	$(MAKE) execute-notebooks

execute-notebooks:
	env -u MPLBACKEND $(JUPYTER) nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=3600 $(NOTEBOOKS)
	$(JUPYTER) nbconvert --to notebook --inplace --CoalesceStreamsPreprocessor.enabled=True $(NOTEBOOKS)

# The DVC pipeline (dvc.yaml, params.yaml, docs/pipeline.md): the optional [pipeline] extra into the venv, then every
# stage whose dependencies or parameters changed (or STAGES and what they need: make reproduce STAGES=evaluate),
# run with the venv's python first on the PATH. Never needed by demo or test. The ML-100K stage reads
# ../shared/data/ml-100k.
STAGES ?=
$(VENV)/.pipeline: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[pipeline]'
	touch $@

reproduce: $(VENV)/.pipeline
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro $(STAGES)

# Debian's Chromium and its driver, for the real-browser test (needs root and Debian's package registry).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

test: setup browser
	$(VENV)/bin/pytest -q

clean:
	rm -rf data/processed data/.processed.* checkpoints/*.pt artifacts/iid_map.json
