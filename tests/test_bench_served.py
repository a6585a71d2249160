"""benchmarks/served.py: the benchmarks' models are trained once, where their file is missing."""
import served


def test_a_model_is_trained_where_absent_and_reused_after(processed_anime, tmp_path):
    checkpoint, metrics = tmp_path / "ease.pt", tmp_path / "metrics.json"
    assert served.trained(checkpoint, processed_anime, metrics, "--model", "ease") == (checkpoint, processed_anime)
    assert checkpoint.exists() and metrics.exists()
    written = checkpoint.stat().st_mtime_ns
    served.trained(checkpoint, processed_anime, metrics, "--model", "ease")
    assert checkpoint.stat().st_mtime_ns == written


def test_random_sasrec_is_the_set_or_the_time_model(processed_anime, tmp_path):
    from nostrade.registry import load_checkpoint
    from nostrade.sasrec_net import ORDERINGS
    for order_is_time, orderings in ((False, ORDERINGS), (True, 0)):
        path = served.random_sasrec(tmp_path / f"{order_is_time}.pt", processed_anime, order_is_time)
        assert load_checkpoint(path).model.cfg.permutations == orderings
