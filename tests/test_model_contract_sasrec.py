"""SASRec passes the same block check as every baseline (tests/model_contract.py), through the same interface."""
from model_contract import ModelContract, one_torch_thread  # noqa: F401 (autouse)

from nostrade.registry import make_model


class TestSASRec(ModelContract):
    def make_model(self, seed):
        return make_model("sasrec", seed, max_len=8, d_model=32, n_heads=2, n_layers=1, dropout=0.0, epochs=40,
                          lr=1e-2, batch_size=16, warmup=5, patience=40, weight_decay=0.0, num_threads=1,
                          progress=False)


class TestSASRecSampledLoss(TestSASRec):
    """The sampled softmax: 8 shared negatives of the 24 items per batch, half uniform, half by popularity."""
    def make_model(self, seed):
        return make_model("sasrec", seed, max_len=8, d_model=32, n_heads=2, n_layers=1, dropout=0.0, epochs=40,
                          lr=1e-2, batch_size=16, warmup=5, patience=40, weight_decay=0.0, num_threads=1,
                          progress=False, loss="sampled", shared_negatives=8, uniform_share=0.5)


class TestSASRecWithItemFeatures(ModelContract):
    def make_model(self, seed):
        return make_model("sasrec", seed, max_len=8, d_model=32, n_heads=2, n_layers=1, dropout=0.0, epochs=40,
                          lr=1e-2, batch_size=16, warmup=5, patience=40, weight_decay=0.0, num_threads=1,
                          progress=False, use_item_features=True, id_dropout=0.2)


class TestSASRecWithSummedItemFeatures(ModelContract):
    def make_model(self, seed):
        return make_model("sasrec", seed, max_len=8, d_model=32, n_heads=2, n_layers=1, dropout=0.0, epochs=40,
                          lr=1e-2, batch_size=16, warmup=5, patience=40, weight_decay=0.0, num_threads=1,
                          progress=False, use_item_features=True, features_as="sum", id_dropout=0.2)
