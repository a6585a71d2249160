"""Nostrade Engine: a context-aware anime recommender (SASRec with item, feedback and time embeddings).

The library in layers, each importing only those below it (.importlinter; tests/test_layers.py checks it):

    applications  train, finetune, clusters (command lines); sections, ui (the app's); report, peers, plots
                  (the benchmarks' tables and figures); outside the package: predict, api, app
    registry      registry: every model by name, and a checkpoint of any served kind loaded
    wrappers      ranker (given its generators' classes), sasrec_recommender, scoring (the served score)
    models        sasrec_training (the SASRec training loop); sasrec_net (the nn.Module), baselines, similarity
    data          sequences, dataset, split, evaluate, item_features, prep, sources, synthetic, events, history,
                  checkpoint (reads and writes kinds, configs and tensors: it knows no model class), atomic, ...
"""

__version__ = "0.1.0"
