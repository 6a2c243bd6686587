"""Push a saved model or adapter folder (weights, config, code, model card) to the Hugging Face Hub.

    pdefm push FOLDER ORG/NAME [--private]          (or: python -m pdefm.train.push ...)
"""

from __future__ import annotations

import argparse
import os
import sys

from huggingface_hub.errors import HfHubHTTPError

from pdefm.runtime.cli_format import HelpFormatter
from pdefm.runtime.remote import RemoteUnreachableError

from .model_files.hub import push_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pdefm push", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("folder", help="a folder written by save_pretrained or by `pdefm finetune`")
    parser.add_argument("repo_id", help="the Hub repository, org/name (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.folder, "config.json")) and not os.path.isfile(
            os.path.join(args.folder, "adapter_config.json")):
        print(f"error: {args.folder!r} holds neither a saved model (config.json) nor an adapter (adapter_config.json)",
              file=sys.stderr)
        return 2
    try:
        print(push_folder(args.folder, args.repo_id, private=args.private))
    except (RemoteUnreachableError, HfHubHTTPError, ValueError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
