"""nbval settings for the tutorials: compare what a reader sees, skip what varies."""


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += (
            "stderr",
            "application/javascript",
            "application/vnd.jupyter.widget-view+json",
        )
