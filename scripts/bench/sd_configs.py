"""Model configs for the diffusers benchmarks (diffusers_e2e.py, diffusers_stages.py)."""
import json


def has(configs, part):
    """Whether `load` finds a config for `part`."""
    return (configs / f"{part}.json").exists() or (configs / part / "config.json").exists()


def load(configs, part):
    """`<configs>/<part>.json` (scripts/bench/sd-turbo), or a model directory's
    `<part>/config.json`, without diffusers' bookkeeping keys."""
    path = configs / f"{part}.json"
    if not path.exists():
        path = configs / part / "config.json"
    config = json.loads(path.read_text())
    return {k: v for k, v in config.items() if not k.startswith("_") and k != "architectures"}
