"""Model configs for the diffusers benchmarks (diffusers_e2e.py, diffusers_stages.py)."""
import json


def path(configs, part):
    """`<configs>/<part>.json` (scripts/bench/sd-turbo), else a model
    directory's `<part>/config.json` (`scheduler/scheduler_config.json` for
    the scheduler); None when neither is there."""
    candidates = [configs / f"{part}.json", configs / part / "config.json", configs / part / f"{part}_config.json"]
    return next((p for p in candidates if p.is_file()), None)


def has(configs, part):
    """Whether `load` finds a config for `part`."""
    return path(configs, part) is not None


def load(configs, part):
    """`part`'s config from `path`, without diffusers' bookkeeping keys."""
    found = path(configs, part)
    if found is None:
        raise FileNotFoundError(f"no config for {part} in {configs}")
    config = json.loads(found.read_text())
    return {k: v for k, v in config.items() if not k.startswith("_") and k != "architectures"}
